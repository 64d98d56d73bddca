"""The demo's metric catalog: every shipped definition validates, runs and materialises on a small
generated demo lake; installing never overwrites a file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from tallystick.demo import catalog as demo_catalog
from tallystick.demo.generator import CORE_ACTIONS, FUNNEL, generate
from tallystick.metrics.catalog import Catalog, load_catalog
from tallystick.metrics.engines import DuckDBEngine
from tallystick.metrics.materialize import materialize
from tallystick.schema import Event
from tallystick.store.lake import Lake, events_to_table

END = dt.date(2026, 6, 30)
#: the demo's deliberate gaps, for `tally audit` to find (planned.yaml)
UNOWNED = "weekly_searches"
UNSENT = "dataset_downloads"
RECEIVED = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    events = [
        msgspec.json.decode(msgspec.json.encode(e), type=Event)
        for e in generate(users=60, days=30, end=END, seed=3)
    ]
    lake = Lake(tmp_path_factory.mktemp("demo") / "lake")
    lake.write_events(events_to_table(events, [RECEIVED] * len(events)), "demo")
    return lake


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    directory = tmp_path_factory.mktemp("config") / "metrics"
    demo_catalog.install(directory)
    return load_catalog(directory)


def test_every_shipped_file_installs_and_validates(catalog: Catalog) -> None:
    assert sorted(p.name for p in catalog.directory.iterdir()) == demo_catalog.names()
    assert len(catalog) >= 10
    kpis = [m for m in catalog if m.importance == "kpi"]
    assert [(m.name, m.type, m.params["unit"]) for m in kpis] == [
        ("weekly_active_users", "active", "user.id"),
        ("weekly_active_sites", "active", "app.instance"),
    ]
    types = {m.type for m in catalog}
    assert types == {"active", "core", "count", "ratio", "percentile", "funnel", "retention"}
    for metric in catalog:
        assert metric.title
        assert metric.description
        assert metric.owner or metric.name == UNOWNED
        assert metric.teams
        assert metric.sources


def test_every_metric_has_an_extended_entry(catalog: Catalog) -> None:
    for metric in catalog:
        assert metric.calculation, metric.name
        assert metric.implemented is not None, metric.name
        assert metric.privacy is not None, metric.name
        assert metric.access, metric.name
        assert metric.retention_days, metric.name
    wau = catalog["weekly_active_users"]
    assert wau.implemented is not None
    assert wau.modified is not None
    assert wau.implemented < wau.modified
    assert wau.slo == "fresh by 06:00 UTC every Monday, 99 % of weeks"
    assert "leadership-weekly" in wau.dashboards
    assert catalog["signin_funnel_by_variant"].sunset == dt.date(2026, 12, 31)
    assert {m.privacy for m in catalog} == {"public", "internal", "personal"}


def test_the_catalogs_gaps_are_deliberate(catalog: Catalog) -> None:
    assert catalog[UNOWNED].owner is None
    assert catalog[UNSENT].params["event"] == "dataset.download"
    assert {catalog[UNOWNED].status, catalog[UNSENT].status} == {"draft"}


def test_definitions_use_the_demos_events(catalog: Catalog) -> None:
    assert catalog["weekly_active_users"].params["active"] == CORE_ACTIONS
    assert catalog["signin_funnel"].params["steps"] == FUNNEL
    assert catalog["user_stickiness"].analysis == "stickiness"


def test_every_definition_runs_on_a_demo_lake(lake: Lake, catalog: Catalog) -> None:
    first, last = min(lake.partitions()), max(lake.partitions())
    engine = DuckDBEngine(lake)
    results = {m.name: m.build(date_from=first, date_to=last).run(engine).rows for m in catalog}
    assert [n for n, rows in results.items() if not rows] == []
    # the event it counts is never sent: a row per week, every one zero
    assert {(r["events"], r["units"]) for r in results[UNSENT]} == {(0, 0)}
    assert max(r["active_users"] for r in results["weekly_active_users"]) > 10
    sites = max(r["active_users"] for r in results["weekly_active_sites"])
    assert 1 < sites <= 12
    funnel = results["signin_funnel"]
    assert [r["name"] for r in funnel] == list(FUNNEL)
    assert funnel[0]["users"] > funnel[-1]["users"] > 0
    assert {r["breakdown"] for r in results["signin_funnel_by_variant"]} >= {"a", "b"}
    assert any(r["ratio"] for r in results["error_rate"])
    assert any(r["p50"] for r in results["page_load_latency"])
    assert any(r["size"] for r in results["new_user_retention"])
    assert any(r["share"] for r in results["core_actions"])


def test_every_definition_materialises(lake: Lake, catalog: Catalog) -> None:
    reports = materialize(lake, list(catalog))
    assert {r.metric for r in reports} == set(catalog.names())
    assert all(r.written and r.rows for r in reports if r.metric != UNSENT)


def test_install_only_creates_missing_files(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    assert len(demo_catalog.install(directory)) == len(demo_catalog.names())
    edited = directory / "kpis.yaml"
    edited.write_text("# mine now\n")
    (directory / "signin.yaml").unlink()
    assert demo_catalog.install(directory) == [directory / "signin.yaml"]
    assert edited.read_text() == "# mine now\n"
    assert not list(directory.glob(".*"))
