"""Materialised metrics: Parquet that DuckDB and pandas read, equal to running the analysis;
incremental by input fingerprint; idempotent; backfills from the lake's first date."""

from __future__ import annotations

import datetime as dt
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from metrics.harness import close
from metrics.lakerows import to_table, write_rows
from tallystick.metrics.catalog import Catalog, MetricDef, load_catalog
from tallystick.metrics.engines import DuckDBEngine
from tallystick.metrics.materialize import (
    FORMAT,
    STATE,
    Report,
    grains_for,
    materialize,
    plan_all,
    read_state,
    results_path,
    select,
)
from tallystick.metrics.params import Grain, MetricError
from tallystick.metrics.periods import add_periods, periods_between
from tallystick.store.lake import EVENTS, Lake

D = dt.date.fromisoformat
NOW = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None, **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"m{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts).replace(tzinfo=dt.UTC),
        "user_id": user,
        **cols,
    }


def history() -> list[dict[str, Any]]:
    """Thursday 2026-01-08 .. Tuesday 2026-02-17: sign-ups, logins, creates, page views."""
    rows: list[dict[str, Any]] = []
    start = dt.date(2026, 1, 8)
    for day in range(41):
        date = start + dt.timedelta(days=day)
        for u in range(1 + day % 4):
            user = f"u{(day + u) % 7}"
            site = "a" if u % 2 else "b"
            rows.append(ev("login", f"{date}T09:0{u}:00", user, app_instance=site))
            if (day + u) % 3 == 0:
                rows.append(ev("create", f"{date}T10:0{u}:00", user, data={"ms": 10 * day + u}))
            rows.append(ev("page.view", f"{date}T11:0{u}:00", None, data={"ms": day + u}))
        if day % 5 == 0:
            rows.append(ev("signup", f"{date}T08:00:00", f"n{day}"))
            rows.append(ev("login", f"{date + dt.timedelta(days=8)}T08:00:00", f"n{day}"))
    return [r for r in rows if r["client_ts"].date() <= D("2026-02-17")]


CATALOG = """\
- name: core_actions
  title: Core actions
  type: core
  params: {actions: [create, login], active: [login], breakdown: app.instance}
- name: wau
  title: Weekly active users
  type: active
  params: {active: [login]}
  importance: kpi
- name: views
  title: Page views
  type: count
  params: {event: page.view}
- name: create_rate
  title: Creates per login
  type: ratio
  params: {numerator: create, denominator: login, unit: event}
- name: create_ms
  title: Create latency
  type: percentile
  params: {event: create, field: data.ms, p: [50, 90]}
- name: stickiness
  title: DAU / MAU
  type: active
  params: {active: [login], stickiness: true}
- name: login_funnel
  title: Sign-up to login
  type: funnel
  params: {steps: [signup, login], window: 9d}
- name: new_user_retention
  title: New-user retention
  type: retention
  params: {cohort_event: signup, return_events: [login], periods: 2}
- name: draft_metric
  title: Not ready
  type: count
  params: {event: login}
  status: draft
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    directory = tmp_path / "config" / "metrics"
    directory.mkdir(parents=True)
    (directory / "all.yaml").write_text(CATALOG)
    return load_catalog(directory)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return write_rows(tmp_path / "lake", history())


def expected(lake: Lake, metric: MetricDef, grain: Grain) -> dict[dt.date, list[dict[str, Any]]]:
    """The rows of each period from running the analysis the way the docs say: over the lake's
    dates; a funnel over each period's dates."""
    first, last = min(lake.partitions()), max(lake.partitions())
    engine = DuckDBEngine(lake)
    analysis = metric.build(grain=grain, date_from=first, date_to=last)
    out: dict[dt.date, list[dict[str, Any]]] = {}
    if analysis.name == "funnel":
        for period in periods_between(first, last, grain):
            end = min(add_periods(period, grain, 1) - dt.timedelta(days=1), last)
            part = metric.build(grain=grain, date_from=max(period, first), date_to=end)
            out[period] = [{"period": period, **r} for r in part.run(engine).rows]
        return out
    key = "cohort" if analysis.name == "retention" else "period"
    for r in analysis.run(engine).rows:
        out.setdefault(r[key], []).append({"period": r[key], **r})
    return out


def stored(lake: Lake, name: str, grain: str) -> list[dict[str, Any]]:
    glob = str(lake.root / f"metrics/{name}/grain={grain}/*.parquet")
    rel = duckdb.sql(f"SELECT * FROM '{glob}'")
    assert rel is not None
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    return rows


def by_period(rows: list[dict[str, Any]]) -> dict[dt.date, list[dict[str, Any]]]:
    out: dict[dt.date, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["period"], []).append(r)
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, with ints and floats compared as numbers (Parquet keeps one type per column)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return close(a, b)


def computed(reports: list[Report]) -> dict[tuple[str, str], tuple[dt.date, ...]]:
    return {(r.metric, r.grain): r.computed for r in reports if r.computed}


def test_results_equal_the_analysis_and_are_readable_by_duckdb_and_pandas(
    lake: Lake, catalog: Catalog
) -> None:
    metrics = select(catalog)
    assert "draft_metric" not in [m.name for m in metrics]
    reports = materialize(lake, metrics, now=NOW)
    assert all(r.written for r in reports)
    grains = {(r.metric, r.grain) for r in reports}
    assert ("stickiness", "month") in grains
    assert ("stickiness", "week") not in grains
    assert ("wau", "day") not in grains
    for report in reports:
        metric = catalog[report.metric]
        rows = stored(lake, report.metric, report.grain)
        assert rows, report
        assert list(rows[0])[:3] == ["metric", "grain", "period"]
        assert list(rows[0])[-1] == "computed_at"
        assert {r["metric"] for r in rows} == {report.metric}
        assert {r["grain"] for r in rows} == {report.grain}
        assert {r["computed_at"] for r in rows} == {NOW}
        groups = by_period(rows)
        assert sorted(groups) == list(report.computed)
        want = expected(lake, metric, report.grain)
        assert sorted(want) == sorted(groups)
        for period, got in groups.items():
            plain = [
                {k: v for k, v in r.items() if k not in ("metric", "grain", "computed_at")}
                for r in got
            ]
            assert same(plain, want[period]), (report.metric, report.grain, period, plain)
    frame = pd.read_parquet(lake.root / results_path("wau", "week"))
    assert list(frame.columns) == ["metric", "grain", "period", "active_users", "computed_at"]
    assert frame["active_users"].sum() > 0
    weeks = sorted(by_period(stored(lake, "wau", "week")))
    assert weeks[0] == D("2026-01-05")  # the week of the lake's first date, Thursday 2026-01-08
    assert weeks[-1] == D("2026-02-16")  # the week of its last date


def test_funnel_and_retention_rows(lake: Lake, catalog: Catalog) -> None:
    materialize(lake, [catalog["login_funnel"], catalog["new_user_retention"]], now=NOW)
    funnel = stored(lake, "login_funnel", "week")
    first = [r for r in funnel if r["period"] == D("2026-01-05")]
    assert [(r["step"], r["name"], r["users"]) for r in first] == [
        (1, "signup", 1),
        (2, "login", 1),
    ]
    retention = by_period(stored(lake, "new_user_retention", "week"))
    cohort = retention[D("2026-01-05")]
    assert len(cohort) == 1
    assert cohort[0]["cohort"] == D("2026-01-05")
    assert cohort[0]["size"] == 1
    assert cohort[0]["retained"] == [1, 1, 0]
    last = retention[D("2026-02-16")][0]
    assert last["retained"][1:] == [None, None]  # after the lake's last date


def test_second_run_recomputes_and_writes_nothing(lake: Lake, catalog: Catalog) -> None:
    metrics = select(catalog)
    materialize(lake, metrics, now=NOW)
    files = sorted((lake.root / "metrics").rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in files}
    again = materialize(lake, metrics, now=NOW + dt.timedelta(hours=1))
    assert computed(again) == {}
    assert not any(r.written for r in again)
    assert all(r.periods > 0 for r in again)
    assert {p: p.stat().st_mtime_ns for p in sorted((lake.root / "metrics").rglob("*"))} == before


def test_new_events_on_one_day_recompute_only_the_periods_that_read_it(
    lake: Lake, catalog: Catalog
) -> None:
    metrics = [catalog[n] for n in ("wau", "views", "login_funnel", "new_user_retention")]
    materialize(lake, metrics, now=NOW)
    extra = [
        ev("login", "2026-01-21T12:00:00", "late"),
        ev("page.view", "2026-01-21T12:00:00", None),
    ]
    lake.write_events(to_table(extra), "late-arrivals")
    reports = materialize(lake, metrics, now=NOW)
    week, month = D("2026-01-19"), D("2026-01-01")
    assert computed(reports) == {
        ("wau", "week"): (week,),
        ("wau", "month"): (month,),
        ("views", "week"): (week,),
        ("views", "month"): (month,),
        # A funnel attempt of the week before may end on the 21st (9-day window).
        ("login_funnel", "week"): (D("2026-01-12"), week),
        ("login_funnel", "month"): (month,),
        # A cohort reads everything up to the end of its last followed period (or the lake's
        # last date): every cohort from two weeks before the day on.
        ("new_user_retention", "week"): tuple(
            periods_between(D("2026-01-05"), D("2026-02-17"), "week")
        ),
        ("new_user_retention", "month"): (month, D("2026-02-01")),
    }
    wau = {r["period"]: r["active_users"] for r in stored(lake, "wau", "week")}
    assert wau[week] == expected(lake, catalog["wau"], "week")[week][0]["active_users"]
    assert wau[week] == 9  # seven regular users, n5 back after signing up, the late one
    views = stored(lake, "views", "month")
    assert [r["period"] for r in views] == [D("2026-01-01"), D("2026-02-01")]


def test_edited_definition_recomputes_everything(lake: Lake, catalog: Catalog) -> None:
    wau = catalog["wau"]
    first = materialize(lake, [wau], now=NOW)
    edited = MetricDef(
        name="wau", title="WAU", type="active", params={"active": ("login", "create")}
    )
    again = materialize(lake, [edited], now=NOW)
    assert computed(again) == computed(first)
    state = read_state(lake, "wau", "week")
    assert state is not None
    assert state["definition"] == edited.definition_hash()
    assert state["params"] == {"active": ["login", "create"]}
    # A new title or owner is not a new definition.
    retitled = MetricDef(
        name="wau", title="Other", type="active", params={"active": ("login", "create")}
    )
    assert computed(materialize(lake, [retitled], now=NOW)) == {}


def test_full_recomputes_everything(lake: Lake, catalog: Catalog) -> None:
    first = materialize(lake, [catalog["views"]], now=NOW)
    later = NOW + dt.timedelta(days=1)
    again = materialize(lake, [catalog["views"]], full=True, now=later)
    assert computed(again) == computed(first)
    assert {r["computed_at"] for r in stored(lake, "views", "week")} == {later}


def test_backfill_from_a_date_then_all_history(lake: Lake, catalog: Catalog) -> None:
    views = catalog["views"]
    recent = materialize(lake, [views], since=D("2026-02-04"), now=NOW)
    assert computed(recent)[("views", "week")] == (
        D("2026-02-02"),
        D("2026-02-09"),
        D("2026-02-16"),
    )
    assert computed(recent)[("views", "month")] == (D("2026-02-01"),)
    everything = materialize(lake, [views], now=NOW)
    assert computed(everything)[("views", "week")] == (
        D("2026-01-05"),
        D("2026-01-12"),
        D("2026-01-19"),
        D("2026-01-26"),
    )
    assert [r["period"] for r in stored(lake, "views", "month")] == [
        D("2026-01-01"),
        D("2026-02-01"),
    ]
    # Older events imported later: the new first periods are computed, and the old first one
    # again (its range now starts earlier).
    lake.write_events(to_table([ev("page.view", "2025-12-30T10:00:00", None)]), "import")
    older = materialize(lake, [views], now=NOW)
    assert computed(older)[("views", "week")] == (D("2025-12-29"), D("2026-01-05"))
    assert computed(older)[("views", "month")] == (D("2025-12-01"), D("2026-01-01"))
    weeks = {r["period"]: r["events"] for r in stored(lake, "views", "week")}
    assert weeks[D("2025-12-29")] == 1


def test_lost_results_or_state_recompute(lake: Lake, catalog: Catalog) -> None:
    views = catalog["views"]
    first = materialize(lake, [views], now=NOW)
    (lake.root / results_path("views", "week")).unlink()
    (lake.root / results_path("views", "month")).with_name(STATE).write_text("{oops")
    assert computed(materialize(lake, [views], now=NOW)) == computed(first)


def test_state_records_each_period(lake: Lake, catalog: Catalog) -> None:
    materialize(lake, [catalog["views"]], now=NOW)
    state = json.loads((lake.root / results_path("views", "week")).with_name(STATE).read_text())
    assert state["format"] == FORMAT
    assert state["metric"] == "views"
    assert state["grain"] == "week"
    first = state["periods"]["2026-01-05"]
    assert (first["from"], first["to"]) == ("2026-01-08", "2026-01-11")
    assert first["files"] == 8  # 4 days x 2 fixture files
    assert len(first["fingerprint"]) == 64
    assert state["periods"]["2026-02-16"]["to"] == "2026-02-17"


def test_events_readers_ignore_the_metrics_folder(lake: Lake, catalog: Catalog) -> None:
    before = lake.files()
    materialize(lake, [catalog["wau"]], now=NOW)
    assert lake.files() == before
    assert all(f.startswith(f"{EVENTS}/") for f in lake.files())
    assert len(lake.partitions()) == 41


def test_select_and_grains(catalog: Catalog) -> None:
    assert [m.name for m in select(catalog, ["draft_metric", "wau", "wau"])] == [
        "draft_metric",
        "wau",
    ]
    with pytest.raises(MetricError, match="did you mean 'wau'"):
        select(catalog, ["wua"])
    assert grains_for(catalog["stickiness"]) == ("month",)
    daily = MetricDef(name="d", title="D", type="count", params={"event": "x"}, grain="day")
    assert grains_for(daily) == ("day", "week", "month")
    assert grains_for(catalog["wau"]) == ("week", "month")


def test_empty_lake_has_nothing_to_do(tmp_path: Path, catalog: Catalog) -> None:
    lake = Lake(tmp_path / "empty")
    plans = plan_all(lake, select(catalog))
    assert all(p.periods == () and p.todo == () for p in plans)
    assert not any(r.written for r in materialize(lake, select(catalog)))
    assert not (lake.root / "metrics").exists()


def test_definitions_in_a_config_dir(tmp_path: Path, lake: Lake) -> None:
    directory = tmp_path / "cfg" / "metrics"
    directory.mkdir(parents=True)
    (directory / "wau.yaml").write_text(
        textwrap.dedent(
            """\
            name: wau
            title: WAU
            type: active
            params: {active: login}
            """
        )
    )
    reports = materialize(lake, load_catalog(directory), now=NOW)
    assert {(r.metric, r.grain) for r in reports} == {("wau", "week"), ("wau", "month")}


def test_a_daily_metric_is_also_materialised_per_day(lake: Lake) -> None:
    daily = MetricDef(
        name="daily_views", title="Views", type="count", params={"event": "page.view"}, grain="day"
    )
    reports = materialize(lake, [daily], since=D("2026-02-10"), now=NOW)
    assert [r.grain for r in reports] == ["day", "week", "month"]
    days = stored(lake, "daily_views", "day")
    assert [r["period"] for r in days] == list(
        periods_between(D("2026-02-10"), D("2026-02-17"), "day")
    )
    assert days[0]["events"] == len(
        [
            r
            for r in history()
            if r["name"] == "page.view" and r["client_ts"].date() == D("2026-02-10")
        ]
    )
