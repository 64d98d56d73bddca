"""`tally status` and `tally failed` on a data directory filled through the collector."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from support import load, make_event
from tallystick.cli import app as cli
from tallystick.collect.app import Collector
from tallystick.config import Settings


def _fill(app_: Collector, client: TestClient, settings: Settings) -> None:
    events = [
        make_event(client_ts="2026-03-02T10:00:00Z", user={"id": f"u-{i % 3}"}) for i in range(5)
    ]
    events.append(make_event(name="Bad Name"))
    assert client.post("/v1/events", json=events).status_code == 207
    assert client.post("/v1/events", content=b"{nope").status_code == 400
    load(settings, app_)


def test_status_counts_events_users_and_failures(
    app: Collector, collector: TestClient, settings: Settings
) -> None:
    _fill(app, collector, settings)
    result = CliRunner().invoke(cli, ["status", "--data", str(settings.data), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    day = next(r for r in rows if r["day"] == "2026-03-02")
    assert day["events"] == 5
    assert day["users"] == 3
    assert sum(r["failed"] for r in rows) == 2


def test_failed_lists_reasons(app: Collector, collector: TestClient, settings: Settings) -> None:
    _fill(app, collector, settings)
    result = CliRunner().invoke(cli, ["failed", "--data", str(settings.data), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "malformed_json" in result.output
    assert "lowercase dotted action" in result.output
    only = CliRunner().invoke(
        cli,
        ["failed", "--data", str(settings.data), "--format", "json", "--code", "malformed_json"],
    )
    assert [r["error_code"] for r in json.loads(only.output)] == ["malformed_json"]


def test_bad_setting_is_a_usage_error(settings: Settings) -> None:
    from tallystick.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALLYSTICK_MAX_EVENT_BYTES", "lots")
        mp.setattr("sys.argv", ["tally", "status", "--data", str(settings.data)])
        with pytest.raises(SystemExit) as exit_info:
            main()
    assert exit_info.value.code == 2
