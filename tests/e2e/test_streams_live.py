"""Changing streams under a running `tally serve` (two workers, default poll interval): routing,
curation, disable/enable, expiry and renew take effect without a restart, within 10 s."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support import make_event
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.definitions import parse_configuration
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake
from tallystick.store.reader import with_retry

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 10.0
POLL_SECONDS = Settings().control_poll_seconds


def post(server: ServerProcess, events: list[dict[str, Any]]) -> None:
    body = json.dumps(events).encode()
    request = urllib.request.Request(server.url + "/v1/events", data=body)
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["accepted"] == len(events)


def versions_seen(server: ServerProcess, tries: int) -> set[int]:
    seen = set()
    for _ in range(tries):
        with urllib.request.urlopen(server.url + "/readyz") as response:
            seen.add(json.loads(response.read())["config_version"])
    return seen


def wait_applied(server: ServerProcess, version: int, changed_at: float) -> float:
    """Wait until the server answers with ``version``; then one more poll interval, so every
    worker has read it. Returns the seconds from the change to the first worker applying it."""
    while time.monotonic() - changed_at < DEADLINE_SECONDS:
        if versions_seen(server, 5) == {version}:
            applied = time.monotonic() - changed_at
            time.sleep(POLL_SECONDS + 0.5)
            assert versions_seen(server, 20) == {version}
            return applied
        time.sleep(0.05)
    raise AssertionError(f"configuration version {version} not applied within {DEADLINE_SECONDS} s")


def stored(lake: Lake) -> Counter[tuple[str, str]]:
    rows = with_retry(
        lake,
        lambda con: con.execute(
            "SELECT stream, name, count(*) FROM raw_events GROUP BY ALL"
        ).fetchall(),
    )
    return Counter({(str(s), str(n)): int(c) for s, n, c in rows})


def wait_for(lake: Lake, key: tuple[str, str], count: int) -> Counter[tuple[str, str]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = stored(lake) if lake.files() else Counter()
        if found[key] >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{key} never reached {count} stored events")


def test_stream_changes_reach_a_running_collector(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lake = Lake(data / "lake")
    settings = Settings(data=data)
    server = ServerProcess(data, workers=2, extra_args=["--flush-interval-seconds", "0.2"]).start()
    latencies = []
    try:
        with ControlStore.for_settings(settings) as store:
            changed = time.monotonic()
            store.apply(
                parse_configuration(
                    {
                        "streams": [
                            {
                                "name": "product",
                                "events": ["project.*"],
                                "curation": [
                                    {"field": "app.environment", "op": "equals", "value": "test"}
                                ],
                            },
                            {"name": "auth", "events": ["signin.*"]},
                        ]
                    }
                ),
                actor="test",
            )
            latencies.append(wait_applied(server, store.version(), changed))
            post(
                server,
                [
                    make_event("project.commit", app={"id": "web", "environment": "production"}),
                    make_event("project.commit", app={"id": "web", "environment": "test"}),
                    make_event("signin.open"),
                    make_event("search.query"),
                ],
            )
            found = wait_for(lake, ("auth", "signin.open"), 1)
            found = wait_for(lake, ("unrouted", "search.query"), 1)
            assert found == {
                ("product", "project.commit"): 1,  # the test environment's copy was curated out
                ("auth", "signin.open"): 1,
                ("unrouted", "search.query"): 1,
            }

            def step(action: str, count: int, **changes: Any) -> Counter[tuple[str, str]]:
                changed = time.monotonic()
                store.update_stream("product", "test", action, **changes)
                latencies.append(wait_applied(server, store.version(), changed))
                for _ in range(3):  # several requests: both workers get some
                    post(server, [make_event("project.commit"), make_event("signin.open")])
                return wait_for(lake, ("auth", "signin.open"), count)

            assert step("disable", 4, enabled=False)[("product", "project.commit")] == 1
            past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            assert (
                step("enable", 7, enabled=True, expires=past.isoformat())[
                    ("product", "project.commit")
                ]
                == 1
            ), "an expired stream collects nothing"
            renewed = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            assert (
                step("renew", 10, expires=renewed.isoformat())[("product", "project.commit")] == 4
            )
            from tallystick.store.health import declined

            # 3 events while disabled, 3 while expired, 1 curated out: counted, not lost
            assert declined(lake, dt.datetime.now(dt.UTC).date()) == {
                "product": {"curated": 1, "disabled": 3, "expired": 3}
            }
            actions = [e.action for e in store.audit_log(kind="stream", name="product")]
            assert actions == ["renew", "enable", "disable", "apply"]
    finally:
        assert server.stop() == 0
    assert max(latencies) < DEADLINE_SECONDS
    print(f"configuration applied after {', '.join(f'{s:.2f}' for s in latencies)} s")
