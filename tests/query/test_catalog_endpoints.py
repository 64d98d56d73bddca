"""GET /v1/catalog and GET|POST /v1/metrics/<name> through the collector in-process: catalog
metrics answer exactly what /v1/query/<analysis> answers for their parameters."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from query.responses import error_message, valid
from query.sample import PARAMS, RANGE, make_lake
from tallystick import messages
from tallystick.config import Settings
from tallystick.demo import catalog as demo_catalog
from tallystick.metrics.catalog import MetricDef, read_catalog
from tallystick.metrics.materialize import materialize
from tallystick.metrics.registry import value_column
from tallystick.query.catalog import used_in
from tallystick.store.lake import Lake

# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analysis", "params", "column"),
    [
        ("active", {"active": "a"}, "active_users"),
        ("active", {"active": "a", "stickiness": True}, "stickiness"),
        ("stickiness", {"active": "a"}, "stickiness"),
        ("count", {"event": "e"}, "events"),
        ("count", {"event": "e", "unit": "session.id"}, "units"),
        ("ratio", {"numerator": "n", "denominator": "d"}, "ratio"),
        ("percentile", {"event": "e", "field": "data.ms", "p": [90, 50]}, "p90"),
        ("percentile", {"event": "e", "field": "data.ms", "p": "99.9,50"}, "p99.9"),
        ("core", {"actions": "a", "active": "b"}, "share"),
        ("funnel", {"steps": "a,b"}, None),
        ("retention", {"cohort_event": "a", "return_events": "b"}, None),
    ],
)
def test_value_column_is_the_headline_column(
    analysis: str, params: dict[str, Any], column: str | None
) -> None:
    assert value_column(analysis, params) == column


@pytest.mark.parametrize(
    ("type_", "importance", "pages"),
    [
        ("active", "kpi", ["kpis", "explore"]),
        ("active", "high", ["explore"]),
        ("core", "normal", ["core-actions", "explore"]),
        ("core", "kpi", ["kpis", "core-actions", "explore"]),
        ("funnel", "high", ["funnel", "explore"]),
        ("retention", "low", ["retention", "explore"]),
        ("ratio", "kpi", ["kpis", "explore"]),
    ],
)
def test_used_in_names_the_dashboard_pages(type_: str, importance: str, pages: list[str]) -> None:
    assert used_in(MetricDef("m", "M", type_, importance=importance)) == pages


# -- a catalog of one metric per analysis over the sample lake -------------------------------------

#: metric name -> (type, params): PARAMS as definitions (stickiness is active with stickiness)
METRICS: dict[str, tuple[str, dict[str, Any]]] = {
    f"sample_{name}": (
        ("active", {**params, "stickiness": True}) if name == "stickiness" else (name, params)
    )
    for name, params in PARAMS.items()
}


def _write_catalog(directory: Path, **overrides: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sample.yaml"
    definitions = [
        {
            "name": name,
            "title": name.replace("_", " ").capitalize(),
            "type": type_,
            "params": params,
            "importance": "kpi" if name == "sample_active" else "normal",
            **overrides.get(name, {}),
        }
        for name, (type_, params) in METRICS.items()
    ]
    path.write_text(yaml.safe_dump(definitions, sort_keys=False))
    return path


@pytest.fixture
def client(settings: Settings, collector: TestClient) -> TestClient:
    make_lake(settings.lake_dir)
    _write_catalog(settings.catalog_dir)
    return collector


@pytest.mark.parametrize("name", list(METRICS))
def test_a_metric_answers_the_rows_of_its_analysis(client: TestClient, name: str) -> None:
    type_, params = METRICS[name]
    query = client.post(f"/v1/query/{type_}", json={**RANGE, **params, "grain": "week"})
    assert query.status_code == 200, query.text
    got = client.get(f"/v1/metrics/{name}", params=RANGE)
    assert got.status_code == 200, got.text
    body = got.json()
    valid("MetricResult", body)
    expected = query.json()
    assert body["rows"]
    assert body["rows"] == expected["rows"]
    assert body["sql"] == expected["sql"]
    assert body["engine"] == "duckdb"
    assert body["metric"] == name
    assert body["analysis"] == ("stickiness" if name == "sample_stickiness" else type_)
    assert body["definition"]["name"] == name
    assert body["definition"]["params"] == params
    posted = client.post(f"/v1/metrics/{name}", json=RANGE)
    assert posted.status_code == 200, posted.text
    assert posted.json() == body


def test_grain_and_dates_can_be_chosen(client: TestClient) -> None:
    params = METRICS["sample_count"][1]
    by_month = client.post("/v1/query/count", json={**RANGE, **params, "grain": "month"}).json()
    got = client.get("/v1/metrics/sample_count", params={**RANGE, "grain": "month"})
    assert got.status_code == 200, got.text
    assert got.json()["rows"] == by_month["rows"]
    aliases = client.post(
        "/v1/metrics/sample_count",
        json={"date_from": RANGE["from"], "date-to": RANGE["to"], "grain": "month"},
    )
    assert aliases.json()["rows"] == by_month["rows"]


def test_without_dates_a_metric_runs_over_the_default_range(client: TestClient) -> None:
    params = METRICS["sample_count"][1]
    default = client.post("/v1/query/count", json=params).json()
    got = client.get("/v1/metrics/sample_count")
    assert got.status_code == 200, got.text
    assert got.json()["rows"] == default["rows"]


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "code", "message"),
    [
        ("GET", "sample_cont", {}, 404, "not_found", "did you mean 'sample_count'?"),
        ("GET", "", {}, 404, "not_found", "name the metric: use /v1/metrics/<name>"),
        ("GET", "sample_count", {"event": "login"}, 400, "invalid_query",
         "a catalog metric takes only from, to, grain and include_bots, not event"),
        ("POST", "sample_count", {"where": "a=b", "unit": "x"}, 400, "invalid_query",
         "not unit, where: its other parameters are in its definition (metrics/sample.yaml:"),
        ("GET", "sample_count", {"grain": "year"}, 400, "invalid_query",
         "unknown grain 'year': use day, week or month"),
        ("GET", "sample_count", {"from": "2026-02-30"}, 400, "invalid_query",
         "from '2026-02-30' is not a date: write YYYY-MM-DD"),
        ("POST", "sample_count", {"from": 20260101}, 400, "invalid_query",
         "parameter 'from' must be a date string"),
        ("DELETE", "sample_count", {}, 405, "method_not_allowed", "use GET or POST"),
    ],
)  # fmt: skip
def test_bad_metric_requests(
    client: TestClient,
    method: str,
    path: str,
    params: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    url = f"/v1/metrics/{path}"
    if method == "GET":
        response = client.get(url, params=params)
    elif method == "POST":
        response = client.post(url, json=params)
    else:
        response = client.request(method, url)
    assert message in error_message(response, status, code)


def test_bare_metrics_path_says_how_to_name_one(client: TestClient) -> None:
    assert "name the metric" in error_message(client.get("/v1/metrics"), 404, messages.NOT_FOUND)


# -- /v1/catalog -------------------------------------------------------------------------------


def test_catalog_lists_definitions_with_what_the_dashboard_needs(
    client: TestClient, settings: Settings
) -> None:
    response = client.get("/v1/catalog")
    assert response.status_code == 200, response.text
    body = response.json()
    valid("Catalog", body)
    assert body["directory"] == str(settings.catalog_dir)
    assert body["problems"] == []
    catalog, _ = read_catalog(settings.catalog_dir)
    assert [m["name"] for m in body["metrics"]] == catalog.names() == list(METRICS)
    for listed, metric in zip(body["metrics"], catalog, strict=True):
        extra = {
            k: listed.pop(k)
            for k in ("analysis", "value", "used_in", "materialized", "runs_per_week")
        }
        assert listed == metric.to_dict()
        assert extra == {
            "analysis": metric.analysis,
            "value": value_column(metric.analysis, metric.parameters()),
            "used_in": used_in(metric),
            "materialized": [],
            "runs_per_week": 0.0,  # the control store has recorded no run of it yet
        }
    by_name = {m["name"]: m for m in response.json()["metrics"]}
    assert (by_name["sample_active"]["value"], by_name["sample_active"]["used_in"]) == (
        "active_users",
        ["kpis", "explore"],
    )
    assert by_name["sample_stickiness"]["analysis"] == "stickiness"
    assert by_name["sample_percentile"]["value"] == "p50"
    assert by_name["sample_funnel"]["value"] is None


def test_catalog_follows_edits_and_lists_problems_beside_valid_definitions(
    client: TestClient, settings: Settings
) -> None:
    assert client.get("/v1/catalog").json()["metrics"][0]["title"] == "Sample core"
    path = _write_catalog(settings.catalog_dir, sample_core={"title": "Edited"})
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock
    assert client.get("/v1/catalog").json()["metrics"][0]["title"] == "Edited"
    (settings.catalog_dir / "broken.yaml").write_text(
        "name: broken\ntitle: Broken\ntype: count\nparams: {event: a}\nonwer: me\n"
    )
    body = client.get("/v1/catalog").json()
    valid("Catalog", body)
    assert body["problems"] == [
        "metrics/broken.yaml:5: unknown key 'onwer' — did you mean 'owner'?"
    ]
    assert len(body["metrics"]) == len(METRICS)
    assert "no metric named 'broken'" in error_message(
        client.get("/v1/metrics/broken"), 404, "not_found"
    )


def test_catalog_shows_materialised_grains_of_the_current_definition(
    client: TestClient, settings: Settings
) -> None:
    catalog, _ = read_catalog(settings.catalog_dir)
    materialize(
        Lake(settings.lake_dir),
        [catalog["sample_count"], catalog["sample_stickiness"]],
        now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
    )
    by_name = {m["name"]: m for m in client.get("/v1/catalog").json()["metrics"]}
    assert by_name["sample_count"]["materialized"] == ["week", "month"]
    assert by_name["sample_stickiness"]["materialized"] == ["month"]
    assert by_name["sample_core"]["materialized"] == []
    path = _write_catalog(settings.catalog_dir, sample_count={"params": {"event": "login"}})
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    by_name = {m["name"]: m for m in client.get("/v1/catalog").json()["metrics"]}
    assert by_name["sample_count"]["materialized"] == []  # results of the old definition


def test_a_missing_catalog_is_empty(collector: TestClient, settings: Settings) -> None:
    response = collector.get("/v1/catalog")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "directory": str(settings.catalog_dir),
        "metrics": [],
        "problems": [],
    }
    message = error_message(collector.get("/v1/metrics/anything"), 404, messages.NOT_FOUND)
    assert "no metric named 'anything'" in message


def test_the_demo_catalog_is_listed_whole(collector: TestClient, settings: Settings) -> None:
    demo_catalog.install(settings.catalog_dir)
    body = collector.get("/v1/catalog").json()
    valid("Catalog", body)
    assert body["problems"] == []
    by_name = {m["name"]: m for m in body["metrics"]}
    kpis = {name for name, m in by_name.items() if "kpis" in m["used_in"]}
    assert {"weekly_active_users", "weekly_active_sites"} <= kpis
    assert by_name["weekly_active_users"]["value"] == "active_users"
    assert all(m["used_in"][-1] == "explore" for m in body["metrics"])
