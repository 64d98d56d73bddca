"""Query times of catalog metrics: recorded by ``GET|POST /v1/metrics/<name>`` (real
computations only, not kept answers) and ``tally metrics run``; a control store that cannot be
opened never fails the query."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from metrics.lakerows import write_rows
from tallystick.catalog.runs import MetricRuns
from tallystick.cli import app as cli
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.store import ControlStore
from tallystick.metrics.analysis import Outcome
from tallystick.query.app import QueryApp

CATALOG = """\
- name: opens
  title: Sign-in opens
  type: count
  params: {event: signin.open}
  owner: o@x.org
"""
RANGE = {"from": "2026-03-02", "to": "2026-03-15"}


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{i}",
            "name": "signin.open",
            "client_ts": dt.datetime(2026, 3, 2 + i, 10, tzinfo=dt.UTC),
            "user_id": f"u{i % 3}",
        }
        for i in range(10)
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(data=tmp_path / "data", min_free_bytes=0)
    write_rows(settings.lake_dir, _rows())
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "all.yaml").write_text(CATALOG)
    return settings


def _runs(settings: Settings) -> list[tuple[str, int, str]]:
    with ControlStore.for_settings(settings) as store, store.engine.connect() as conn:
        from tallystick.control import tables as t

        return [
            (r.metric, r.rows, r.source)
            for r in conn.execute(t.metric_runs.select().order_by(t.metric_runs.c.id))
        ]


def test_timed_records_time_and_rows(settings: Settings) -> None:
    outcome = Outcome(rows=[{"a": 1}, {"a": 2}], sql="SELECT 1", engine="duckdb")
    with MetricRuns(settings, "cli") as runs:
        assert runs.timed("opens", lambda: outcome) is outcome
        assert runs.record("opens", 0.25, 7)
    assert _runs(settings) == [("opens", 2, "cli"), ("opens", 7, "cli")]
    with ControlStore.for_settings(settings) as store:
        [cost] = store.metric_costs()
    assert (cost.metric, cost.runs) == ("opens", 2)
    assert cost.max_seconds >= 0.25


def test_an_unavailable_store_never_fails_the_query(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = Settings(data=tmp_path, control_url=f"sqlite:///{blocker}/control.db")
    outcome = Outcome(rows=[], sql="", engine="duckdb")
    with MetricRuns(settings, "http") as runs:
        assert runs.timed("opens", lambda: outcome) is outcome
        assert not runs.record("opens", 0.1, 0)


def test_the_http_api_records_computations_not_kept_answers(
    app: Collector, settings: Settings
) -> None:
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            first = client.get("/v1/metrics/opens", params=RANGE)
            assert first.status_code == 200, first.text
            assert sum(r["events"] for r in first.json()["rows"]) == 10
            again = client.post("/v1/metrics/opens", json=RANGE)  # the kept answer
            assert again.json()["rows"] == first.json()["rows"]
            other = client.get("/v1/metrics/opens", params={**RANGE, "grain": "day"})
            assert other.status_code == 200
            assert client.get("/v1/metrics/nothing").status_code == 404
            assert client.get("/v1/query/count", params={"event": "signin.open"}).is_success
    finally:
        query = app._query
        if isinstance(query, QueryApp):
            query.close()
    assert _runs(settings) == [("opens", 2, "http"), ("opens", 14, "http")]


def test_tally_metrics_run_records_its_time(settings: Settings) -> None:
    args = ["metrics", "run", "opens", "--data", str(settings.data), "--format", "json"]
    result = CliRunner().invoke(cli, [*args, "--from", RANGE["from"], "--to", RANGE["to"]])
    assert result.exit_code == 0, result.output
    assert _runs(settings) == [("opens", 2, "cli")]
