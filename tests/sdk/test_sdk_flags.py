"""Feature flags in the Python SDK through a real `tally serve`: an admin key applies a ruleset,
a Tracker with a write key fetches it, evaluates flags locally (equal to the server's
``POST /v1/flags/evaluate``), picks up a change on refresh (304 while unchanged), logs one
exposure event per unit (flag(), variant() and the OpenFeature provider share the dedup) that
lands in the lake, and serves defaults without raising when the server is down.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature.evaluation_context import EvaluationContext

from support import http_call as call
from tallystick import Tracker
from tallystick.collect.server import ServerProcess, free_port
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.flags.evaluate import Reason
from tallystick.sdk.flags import FlagClient, experiment_index
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e

RULESET: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "pro",
                            "condition": {"attribute": "plan", "op": "equals", "value": "pro"},
                            "value": True,
                        }
                    ]
                }
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "experiment": {
                                "key": "signin-exp",
                                "variations": [
                                    {"key": "a", "value": "A"},
                                    {"key": "b", "value": "B"},
                                ],
                            },
                        }
                    ]
                }
            },
        },
    },
}
SESSION_FLAG: dict[str, Any] = {
    "type": "string",
    "default": "list",
    "environments": {
        "prod": {
            "rules": [
                {
                    "id": "per-session",
                    "experiment": {
                        "key": "checkout-layout",
                        "hash_attribute": "session_id",
                        "variations": [
                            {"key": "list", "value": "list"},
                            {"key": "grid", "value": "grid"},
                        ],
                    },
                }
            ]
        }
    },
}
RULESET["flags"]["checkout-layout"] = SESSION_FLAG
UNITS = [{"id": f"user-{i}", "plan": "pro" if i % 2 else "free"} for i in range(6)]


def exposures_in_lake(lake: Lake, count: int, timeout: float = 15.0) -> list[tuple[Any, ...]]:
    """The stored exposure events (user, data, experiments), once ``count`` of them are there."""
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        if lake.files():
            rows = (
                connect(lake)
                .execute(
                    "SELECT user_id, data, experiments FROM raw_events "
                    "WHERE name = 'experiment.exposure'"
                )
                .fetchall()
            )
            if len(rows) >= count:
                return rows
        time.sleep(0.1)
    raise AssertionError(f"only {len(rows)} of {count} exposure events reached the lake")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, Path]]:
    data: Path = tmp_path_factory.mktemp("sdkflags") / "data"
    data.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        _, admin = create_key(store, "admin", "ops", actor="test")
        _, write = create_key(store, "write", "shop-web", actor="test", app="shop")
    with ServerProcess(data, extra_args=["--flush-interval-seconds", "0.2"]) as running:
        status, _, applied = call(running.url, "PUT", "/v1/admin/flags", admin, RULESET)
        assert status == 200, applied
        yield running.url, admin, write, data


def tracker_for(base: str, write: str, **options: Any) -> Tracker:
    return Tracker(
        base,
        write_key=write,
        app_id="shop",
        queue_dir=False,
        flush_interval=0.1,
        flags_environment="prod",
        **options,
    )


def test_local_evaluation_equals_the_server(served: tuple[str, str, str, Path]) -> None:
    base, _, write, _ = served
    with tracker_for(base, write, wait_for_flags=5.0, flags_poll_seconds=None) as tracker:
        assert tracker.flags_ruleset is not None
        assert experiment_index(tracker.flags_ruleset) == {
            "signin-exp": "signin-dialog",
            "checkout-layout": "checkout-layout",
        }
        for unit in UNITS:
            status, _, answer = call(base, "POST", "/v1/flags/evaluate", write,
                                     {"environment": "prod", "attributes": unit})  # fmt: skip
            assert status == 200, answer
            server = answer["flags"]
            assert tracker.flag("new-signin", None, unit) is server["new-signin"]["value"]
            assert tracker.flag("new-signin", None, unit) is (unit["plan"] == "pro")
            assert tracker.flag("signin-dialog", "?", unit) == server["signin-dialog"]["value"]
            assert tracker.variant("signin-exp", unit) == server["signin-dialog"]["variation_key"]
        # the user id is the `id` attribute; unknown flags and experiments give the default
        assert tracker.variant("signin-exp", user_id="user-1") == tracker.variant(
            "signin-exp", {"id": "user-1"}
        )
        assert tracker.flag("nope", 7, UNITS[0]) == 7
        assert tracker.variant("nope", UNITS[0]) is None
        assert tracker.flag_details("new-signin", attributes=UNITS[1]).reason == Reason.TARGETED


def test_a_changed_ruleset_is_picked_up_on_refresh(served: tuple[str, str, str, Path]) -> None:
    base, admin, write, _ = served
    pro = {"id": "user-9", "plan": "pro"}
    tracker = tracker_for(base, write, flags_poll_seconds=None)
    try:
        assert tracker.flag("new-signin", "default", pro) == "default"  # not fetched yet
        assert tracker.refresh_flags(timeout=5.0)
        before = tracker.flags_ruleset
        assert before is not None
        assert tracker.flag("new-signin", None, pro) is True
        assert tracker.refresh_flags(timeout=5.0)  # unchanged: 304, the same compiled ruleset
        assert tracker.flags_ruleset is before

        killed = copy.deepcopy(RULESET)
        killed["flags"]["new-signin"]["killed"] = True
        status, _, changed = call(base, "PUT", "/v1/admin/flags", admin, killed)
        assert status == 200, changed
        try:
            assert tracker.refresh_flags(timeout=5.0)
            after = tracker.flags_ruleset
            assert after is not None
            assert after is not before
            assert after.ruleset.version == changed["version"]
            assert tracker.flag("new-signin", None, pro) is False
            assert tracker.flag_details("new-signin", None, pro).reason == Reason.KILLED
        finally:
            status, _, _ = call(base, "PUT", "/v1/admin/flags", admin, RULESET)
            assert status == 200
    finally:
        tracker.close()


def test_polling_picks_up_a_change(served: tuple[str, str, str, Path]) -> None:
    base, admin, write, _ = served
    pro = {"id": "user-9", "plan": "pro"}
    with tracker_for(base, write, wait_for_flags=5.0, flags_poll_seconds=0.1) as tracker:
        assert tracker.flag("new-signin", None, pro) is True
        changed = copy.deepcopy(RULESET)
        changed["flags"]["new-signin"]["environments"]["prod"]["enabled"] = False
        assert call(base, "PUT", "/v1/admin/flags", admin, changed)[0] == 200
        try:
            deadline = time.monotonic() + 5.0
            while tracker.flag("new-signin", None, pro) is not False:
                assert time.monotonic() < deadline, "the poller never fetched the change"
                time.sleep(0.05)
        finally:
            assert call(base, "PUT", "/v1/admin/flags", admin, RULESET)[0] == 200


def test_one_exposure_per_unit_reaches_the_lake(served: tuple[str, str, str, Path]) -> None:
    base, _, write, data = served
    units = [f"exp-{i}" for i in range(4)]
    with tracker_for(base, write, wait_for_flags=5.0, flags_poll_seconds=None) as tracker:
        client = _provider_client(tracker)
        assigned = {}
        for unit in units:
            for _ in range(3):
                value = tracker.flag("signin-dialog", "?", user_id=unit)
            variation = tracker.variant("signin-exp", user_id=unit)
            assert variation in ("a", "b")
            assert value == variation.upper()
            details = client.get_string_details(
                "signin-dialog", "?", EvaluationContext(unit, {"plan": "free"})
            )
            assert (details.value, details.variant) == (value, variation)
            assigned[unit] = variation
        # flags without experiments log nothing
        tracker.flag("new-signin", False, {"id": "exp-0", "plan": "pro"})
        assert tracker.stats.queued == len(units)
        assert tracker.flush(timeout=10)
        assert tracker.stats.sent == len(units)
    rows = exposures_in_lake(Lake(data / "lake"), len(units))
    mine = [r for r in rows if r[0] in assigned]
    assert len(mine) == len(units)
    for user, payload, experiments in mine:
        body = json.loads(payload) if isinstance(payload, str) else payload
        assert body["experiment"] == "signin-exp"
        assert body["variation"] == assigned[user]
        assert (body["flag"], body["rule"], body["hash_attribute"]) == ("signin-dialog", "ab", "id")
        assert dict(experiments) == {"signin-exp": assigned[user]}


def _provider_client(tracker: Tracker) -> Any:
    from openfeature import api

    provider = tracker.openfeature_provider()
    api.set_provider(provider, domain="sdk-flags-test")
    return api.get_client(domain="sdk-flags-test")


def test_server_down_serves_defaults(caplog: pytest.LogCaptureFixture) -> None:
    base = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    started = time.monotonic()
    with Tracker(
        base,
        queue_dir=False,
        flags_environment="prod",
        wait_for_flags=1.0,
        flags_poll_seconds=0.05,
        close_timeout=0.5,
    ) as tracker:
        assert tracker.flags_ruleset is None
        assert tracker.flag("new-signin", "off", {"id": "u"}) == "off"
        assert tracker.variant("signin-exp", user_id="u") is None
        assert tracker.refresh_flags(timeout=0.5) is False
        details = tracker.openfeature_provider().resolve_boolean_details("new-signin", True)
        assert details.value is True
    assert time.monotonic() - started < 5
    assert "cannot fetch the flags ruleset" in caplog.text


def test_flags_off_and_a_bad_answer_keeps_the_last(served: tuple[str, str, str, Path]) -> None:
    base, _, write, _ = served
    with Tracker(base, queue_dir=False) as plain, pytest.raises(RuntimeError, match="flags"):
        plain.flag("new-signin", False)
    sunk: list[Any] = []
    client = FlagClient(base, write_key=write, environment="prod", sink=sunk.append)
    assert client.refresh(timeout=5.0)
    good = client.ruleset
    wrong = FlagClient(base, write_key="not-a-key", environment="prod", sink=sunk.append)
    assert not wrong.refresh(timeout=5.0)
    assert wrong.ruleset is None
    client._etag = None  # a refusal (404: no such environment) keeps the last good ruleset
    client._path = "/v1/flags/ruleset?environment=staging"
    assert not client.refresh(timeout=5.0)
    assert client.ruleset is good
    with pytest.raises(ValueError, match="flags_poll_seconds"):
        Tracker(base, queue_dir=False, flags_environment="prod", flags_poll_seconds=0)
    with pytest.raises(ValueError, match="flags_poll_seconds"):
        FlagClient(base, write_key=None, environment="prod", poll_seconds=0, sink=sunk.append)


def test_a_session_unit_exposure_carries_the_session(served: tuple[str, str, str, Path]) -> None:
    """An experiment hashed on ``session_id`` logs its exposure in that session, so a readout
    with ``unit: session.id`` finds it."""
    base, _, write, data = served
    sessions = [f"sess-{i}" for i in range(3)]
    with tracker_for(base, write, wait_for_flags=5.0, flags_poll_seconds=None) as tracker:
        assigned = {s: tracker.variant("checkout-layout", {"session_id": s}) for s in sessions}
        assert set(assigned.values()) <= {"list", "grid"}
        assert tracker.flush(timeout=10)
    lake = Lake(data / "lake")
    deadline = time.monotonic() + 15
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and len(rows) < len(sessions):
        rows = (
            connect(lake)
            .execute(
                "SELECT session_id, experiments FROM raw_events "
                "WHERE name = 'experiment.exposure' AND session_id LIKE 'sess-%'"
            )
            .fetchall()
            if lake.files()
            else []
        )
        time.sleep(0.1)
    assert {r[0]: dict(r[1])["checkout-layout"] for r in rows} == assigned
