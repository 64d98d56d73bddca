"""The server's periodic evaluation: ``tally serve`` with ``alert_interval_seconds=1`` announces
a rule that fires, and its resolution, to a webhook on 127.0.0.1; a failing evaluation is logged
and never stops the loop; a bad webhook setting stops ``tally serve`` before it starts."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pytest

from quality import alertgen as g
from tallystick.collect.server import AlertLoop, ServerProcess, check_alert_settings
from tallystick.config import ConfigError, Settings
from tallystick.control.definitions import parse_configuration
from tallystick.control.store import ControlStore
from tallystick.quality.alerts import history
from tallystick.store.lake import Lake

KEYS = "keys(data.project_id)"


def _config(max_rate: float) -> dict[str, object]:
    rule = {"rule": "keys", "keys": {"data.project_id": "string"}, "max_rate": max_rate}
    return {"streams": [{"name": "product", "events": ["project.*"], "alerts": [rule]}]}


def _prepare(data: Path) -> Settings:
    """A data directory whose last hour holds 30 commits, a third without ``project_id``."""
    settings = Settings(data=data)
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "event_id": f"e{i}",
            "name": "project.commit",
            "client_ts": now - dt.timedelta(minutes=30 + i),
            "received_ts": now - dt.timedelta(minutes=30 + i),
            "stream": "product",
            "data": {"files": 1} if i % 3 == 0 else {"project_id": "p"},
        }
        for i in range(30)
    ]
    Lake(settings.lake_dir).write_events(g.table(rows), "fixture")
    g.control_store(settings.data / "control.db", _config(0.05)).close()
    return settings


def _wait(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


@pytest.mark.e2e
def test_tally_serve_evaluates_the_rules_periodically_and_announces_changes(
    tmp_path: Path,
) -> None:
    settings = _prepare(tmp_path / "data")
    with g.Receiver() as hook:
        env = {
            "TALLYSTICK_ALERT_INTERVAL_SECONDS": "1",
            "TALLYSTICK_ALERT_WEBHOOK_URL": hook.url,
            "TALLYSTICK_WARM_UP": "false",
        }
        server = ServerProcess(settings.data, env=env).start()
        try:
            _wait(lambda: len(hook.bodies) >= 1, 30)
            assert hook.bodies[0]["notice"] == "fired"
            assert hook.bodies[0]["label"] == KEYS
            assert hook.bodies[0]["value"] == pytest.approx(10 / 30)
            # the rules are read anew at each evaluation: relaxing it resolves the alert
            with ControlStore.for_settings(settings) as store:
                store.apply(parse_configuration(_config(0.5)), "test")
            _wait(lambda: len(hook.bodies) >= 2, 30)
            assert hook.bodies[1]["notice"] == "resolved"
            time.sleep(1.5)  # a few more evaluations: nothing more to announce
            output = server.output()
        finally:
            assert server.stop() == 0
    assert len(hook.bodies) == 2
    assert "alert fired: stream product, keys(data.project_id)" in output
    assert "alert resolved: stream product, keys(data.project_id)" in output
    with ControlStore.for_settings(settings) as store:
        runs = history(store)
        assert [r.notice for r in history(store, notices=True)] == ["resolved", "fired"]
    assert len(runs) >= 3
    assert all(r.delivered for r in runs if r.notice)


def test_a_failing_evaluation_is_logged_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "tallystick.alerts")
    settings = Settings(
        data=tmp_path / "data",
        alert_interval_seconds=0.05,
        control_url=f"sqlite:///{tmp_path / 'empty.db'}",  # no tables: never migrated
    )
    loop = AlertLoop(settings).start()
    try:
        _wait(lambda: loop.failures >= 3, 20)
    finally:
        loop.close()
    assert not loop.thread.is_alive()
    assert loop.evaluations == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("alert evaluation failed (OperationalError: ")
    assert messages[0].endswith("trying again in 0.05 s")
    assert caplog.records[0].exc_info is not None  # the first failure with its traceback...
    assert not caplog.records[1].exc_info  # ...then one line each


def test_the_loop_evaluates_and_records(tmp_path: Path) -> None:
    settings = _prepare(tmp_path / "data")
    loop = AlertLoop(Settings(data=settings.data, alert_interval_seconds=0.05)).start()
    try:
        _wait(lambda: loop.evaluations >= 2, 20)
    finally:
        loop.close()
    with ControlStore.for_settings(settings) as store:
        runs = history(store)
    assert len(runs) >= 2
    assert [r.notice for r in runs][-1] == "fired"
    assert runs[-1].delivery == {"notice": "fired", "log": True, "webhook": None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alert_webhook_url": "hooks.example.org"}, "alert_webhook_url: the webhook must be"),
        ({"alert_interval_seconds": -1.0}, "alert_interval_seconds must be 0 (off) or more"),
    ],
)
def test_bad_alert_settings_stop_the_server_before_it_starts(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_alert_settings(Settings().with_changes(**changes))
