"""The query API through the collector app in-process: results, errors, the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import duckdb
import jsonschema
import pyarrow as pa
import pytest
from sqlglot import exp
from starlette.testclient import TestClient

from query.responses import error_message
from query.sample import PARAMS, RANGE, make_lake
from support import make_event
from tallystick import messages
from tallystick.admin import openapi as control
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.metrics import api
from tallystick.metrics.registry import ANALYSES, COMMON, REQUIRED, SPECIFIC
from tallystick.privacy import dp
from tallystick.query.app import QueryApp
from tallystick.query.openapi import PARAMS as DOCUMENTED


@pytest.fixture
def client(settings: Settings, collector: TestClient) -> TestClient:
    make_lake(settings.lake_dir)
    return collector


def _json(rows: list[dict[str, Any]]) -> Any:
    return json.loads(json.dumps(rows, default=lambda d: d.isoformat()))


def _get_params(name: str) -> dict[str, Any]:
    """PARAMS[name] as a query string: lists as repeated parameters."""
    return {**RANGE, **{k: [str(x) for x in v] if isinstance(v, list) else v
                        for k, v in PARAMS[name].items()}}  # fmt: skip


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from tallystick.query.openapi import document

    return document("test")


def _validate(doc: dict[str, Any], ref: str, value: object) -> None:
    """``value`` is valid against the document's schema ``ref``."""
    schema = {"$ref": ref, "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


@pytest.mark.parametrize("name", list(ANALYSES))
def test_get_and_post_return_the_python_apis_rows(
    client: TestClient, settings: Settings, name: str, openapi: dict[str, Any]
) -> None:
    expected = api.query(name, data=settings.data, **RANGE, **PARAMS[name])
    got = client.get(f"/v1/query/{name}", params=_get_params(name))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body == {
        "analysis": name,
        "engine": "duckdb",
        "rows": _json(expected.rows),
        "sql": expected.sql,
    }
    assert body["rows"]
    posted = client.post(f"/v1/query/{name}", json={**RANGE, **PARAMS[name]})
    assert posted.status_code == 200, posted.text
    assert posted.json() == body
    _validate(openapi, f"#/components/schemas/{name.capitalize()}Result", body)


def test_active_with_stickiness_is_the_stickiness_result(
    client: TestClient, openapi: dict[str, Any]
) -> None:
    got = client.get("/v1/query/active", params={**RANGE, "active": "login", "stickiness": "true"})
    assert got.status_code == 200, got.text
    same = client.post("/v1/query/stickiness", json={**RANGE, "active": "login"}).json()
    assert got.json()["rows"] == same["rows"]
    assert set(same["rows"][0]) == {"period", "dau_mean", "mau", "stickiness"}
    _validate(openapi, "#/components/schemas/ActiveResult", got.json())


def test_filters_in_every_spelling_agree(client: TestClient) -> None:
    base = {**RANGE, "event": "login", "grain": "month"}

    def events(response: Any) -> int:
        assert response.status_code == 200, response.text
        return int(response.json()["rows"][0]["events"])

    get = client.get(
        "/v1/query/count", params={**base, "where": ["app.environment!=test", "user.id in u1,u2"]}
    )
    assert events(get) == 3
    for where in (
        ["app.environment!=test", "user.id in u1,u2"],
        [["app.environment", "!=", "test"], ["user.id", "in", ["u1", "u2"]]],
        [
            {"field": "app.environment", "op": "!=", "value": "test"},
            {"field": "user.id", "op": "in", "value": ["u1", "u2"]},
        ],
    ):
        assert events(client.post("/v1/query/count", json={**base, "where": where})) == 3
    one = client.post("/v1/query/count", json={**base, "where": "user.id=u2"})
    assert events(one) == 2


def test_aliases_and_dashes_are_accepted(client: TestClient) -> None:
    body = {"date_from": RANGE["from"], "date-to": RANGE["to"], "cohort-event": "signup",
            "return_events": "login", "periods": "2"}  # fmt: skip
    response = client.post("/v1/query/retention", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["rows"][1]["retained"] == [2, 1, 1]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-13-01"}, "from '2026-13-01' is not a date: write YYYY-MM-DD"),
        ({"grain": "year"}, "unknown grain 'year': use day, week or month"),
        ({"where": "nonsense"}, "cannot read filter 'nonsense'"),
        ({"where": "nope=1"}, "filter field 'nope'"),
        ({"breakdown": "data.bad key"}, "not a valid data key"),
        ({"steps": "a,b"}, "count does not take steps; it takes"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "is before --from"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    got = client.get("/v1/query/count", params={"event": "create", **params})
    assert message in error_message(got, 400, messages.INVALID_QUERY)
    posted = client.post("/v1/query/count", json={"event": "create", **params})
    assert message in error_message(posted, 400, messages.INVALID_QUERY)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event": 5}, "parameter 'event' must be a string, got 5"),
        ({"event": "a", "from": 20260101}, "parameter 'from' must be a date string"),
        ({"event": "a", "where": [5]}, "parameter 'where' must be a list of filters"),
        ({"event": "a", "where": [["a", "="]]}, "parameter 'where' must be a list of filters"),
        ({"event": "a", "unit": ["user.id"]}, "parameter 'unit' must be a string"),
        ({}, "count needs event: add e.g. event=workflow.run"),
    ],
)
def test_wrong_json_types_are_400s_naming_the_parameter(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    assert message in error_message(client.post("/v1/query/count", json=body), 400, "invalid_query")


def test_more_wrong_types(client: TestClient) -> None:
    def refused(name: str, body: dict[str, Any]) -> str:
        return error_message(client.post(f"/v1/query/{name}", json=body), 400, "invalid_query")

    assert "'actions' must be an event name list" in refused("core", {"actions": 1, "active": "a"})
    assert "'periods' must be a whole number" in refused(
        "retention", {"cohort_event": "a", "return_events": "b", "periods": 1.5}
    )
    assert "'stickiness' must be true or false" in refused(
        "active", {"active": "a", "stickiness": "maybe"}
    )
    assert "'p' must be percentiles" in refused(
        "percentile", {"event": "a", "field": "data.ms", "p": {"x": 1}}
    )
    assert "'window' must be a duration" in refused("funnel", {"steps": "a,b", "window": True})


def test_request_level_refusals(client: TestClient) -> None:
    twice = client.get("/v1/query/count?event=a&event=b")
    assert "parameter 'event' is given twice" in error_message(twice, 400, "invalid_query")
    assert "not valid JSON" in error_message(
        client.post("/v1/query/count", content=b"{nope"), 400, messages.MALFORMED_JSON
    )
    assert "must be a JSON object" in error_message(
        client.post("/v1/query/count", json=["event"]), 400, "invalid_query"
    )
    huge = client.post("/v1/query/count", json={"event": "a" * 70_000})
    assert "larger than 65,536 bytes" in error_message(huge, 413, messages.REQUEST_TOO_LARGE)
    unknown = client.get("/v1/query/nope")
    assert "no analysis 'nope': use /v1/query/<analysis> with one of core" in error_message(
        unknown, 404, messages.NOT_FOUND
    )
    assert "name the analysis" in error_message(client.get("/v1/query"), 404, "not_found")
    wrong = client.delete("/v1/query/count")
    assert "use GET or POST" in error_message(wrong, 405, messages.METHOD_NOT_ALLOWED)
    assert wrong.headers["allow"] == "GET, POST"
    assert client.post("/openapi.json").headers["allow"] == "GET"


def test_root_lists_the_query_endpoints(client: TestClient) -> None:
    endpoints = client.get("/v1").json()["endpoints"]
    assert {"GET /v1/query/{analysis}", "POST /v1/query/{analysis}", "GET /openapi.json"} <= set(
        endpoints
    )


def test_empty_lake_gives_zero_rows_not_an_error(collector: TestClient) -> None:
    response = collector.get("/v1/query/count", params={"event": "a", **RANGE})
    assert response.status_code == 200, response.text
    assert {r["events"] for r in response.json()["rows"]} == {0}


# -- the OpenAPI document -------------------------------------------------------------------


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _schemas(node: object) -> Iterator[dict[str, Any]]:
    """Every Schema Object under ``node`` (values of ``schema`` keys and components)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            else:
                yield from _schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schemas(item)


def test_openapi_is_served_and_describes_every_analysis(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert set(doc["paths"]) == {f"/v1/query/{n}" for n in ANALYSES} | {
        "/v1/metrics/{name}",
        "/v1/catalog",
        "/v1/meta",
        "/v1/health",
        "/v1/quality/loss",
        "/v1/quality/skew",
        "/v1/quality/alerts",
        "/v1/experiments/{key}/results",
        "/openapi.json",
    } | set(control.paths())
    operation_ids = []
    for name in ANALYSES:
        item = doc["paths"][f"/v1/query/{name}"]
        assert set(item) == {"get", "post"}
        get, post = item["get"], item["post"]
        operation_ids += [get["operationId"], post["operationId"]]
        documented = {p["name"]: p for p in get["parameters"]}
        assert set(documented) == {*COMMON, *SPECIFIC[name], *dp.PARAMS.get(name, ())}
        for pname, p in documented.items():
            assert p["in"] == "query"
            assert p["required"] is (pname in REQUIRED[name])
            assert p["description"]
            assert p["schema"]
            assert pname in DOCUMENTED, f"{pname} has no description of its own"
        body = post["requestBody"]["content"]["application/json"]
        assert set(body["schema"]["properties"]) == set(documented)
        assert body["schema"]["required"] == list(REQUIRED[name])
        jsonschema.Draft202012Validator(body["schema"]).validate(body["example"])
        for op in (get, post):
            assert op["summary"]
            assert op["description"]
            assert {"200", "400", "401", "500"} <= set(op["responses"])
            assert op["security"] == [{"readKey": []}, {}]
            for response_ in op["responses"].values():
                assert response_["description"]
                assert "application/json" in response_["content"]
    assert len(operation_ids) == len(set(operation_ids))


def test_openapi_schemas_are_valid_and_references_resolve(openapi: dict[str, Any]) -> None:
    schemas = list(_schemas(openapi["paths"])) + list(openapi["components"]["schemas"].values())
    assert len(schemas) > 50
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in set(_refs(openapi)):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in openapi["components"]["schemas"], ref
    _validate(
        openapi, "#/components/schemas/Error", {"error": {"code": "invalid_query", "message": "m"}}
    )
    with pytest.raises(jsonschema.ValidationError):
        _validate(openapi, "#/components/schemas/CountResult", {"rows": []})


def test_query_parameter_examples_are_valid(openapi: dict[str, Any]) -> None:
    for item in openapi["paths"].values():
        for p in item.get("get", {}).get("parameters", []):
            if "example" in p:
                jsonschema.Draft202012Validator(p["schema"]).validate(p["example"])


# -- queries do not block ingestion; engine failures --------------------------------------------


class _HeldEngine:
    """A DuckDB stand-in whose query waits until released (or fails with ``error``)."""

    name = "duckdb"

    def __init__(self, error: Exception | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error = error

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr:
        return exp.to_table("events")

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        if self.error is not None:
            raise self.error
        self.entered.set()
        assert self.release.wait(30)
        return pa.table({}), "SELECT 1"


def test_a_running_query_does_not_block_ingestion(app: Collector, collector: TestClient) -> None:
    engine = _HeldEngine()
    app._query = QueryApp(app.settings, engine)  # type: ignore[arg-type]
    result: dict[str, Any] = {}

    def query() -> None:
        result["response"] = collector.get("/v1/query/count", params={"event": "a", **RANGE})

    thread = threading.Thread(target=query)
    thread.start()
    try:
        assert engine.entered.wait(30)
        assert collector.get("/healthz").status_code == 200
        sent = collector.post("/v1/events", json=[make_event()])
        assert sent.status_code == 200, sent.text
        assert "response" not in result  # the query is still running
    finally:
        engine.release.set()
        thread.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json()["sql"] == "SELECT 1"


def test_an_engine_failure_is_a_500_query_failed(app: Collector, collector: TestClient) -> None:
    engine = _HeldEngine(duckdb.BinderException("Binder Error: no such column\nLINE 1"))
    app._query = QueryApp(app.settings, engine)  # type: ignore[arg-type]
    response = collector.get("/v1/query/count", params={"event": "a", **RANGE})
    message = error_message(response, 500, messages.QUERY_FAILED)
    assert message == (
        "duckdb could not run the count analysis: Binder Error: no such column. Try again later."
    )
