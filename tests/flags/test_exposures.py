"""Exposure events: deduplicated per (experiment, variation, hash attribute, unit) in a bounded
LRU, and an ``experiment.exposure`` event the collector accepts."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

from tallystick.collect.validate import check_event
from tallystick.flags.evaluate import Evaluation, Reason, compile_ruleset
from tallystick.flags.exposures import (
    EXPOSURE_EVENT,
    Exposure,
    ExposureDeduplicator,
    ExposureLogger,
    exposure_event,
    exposure_key,
)
from tallystick.schema import Event
from tallystick.sdk.events import Defaults, build_event, encode_event


def exposure(unit: str, variation: str = "B", experiment: str = "signin-dialog") -> Evaluation:
    return Evaluation(
        "signin-dialog",
        variation,
        Reason.EXPERIMENT,
        "ab",
        experiment,
        0 if variation == "A" else 1,
        variation,
        "id",
        unit,
        0.4321,
        True,
    )


def test_first_exposure_only() -> None:
    dedup = ExposureDeduplicator()
    assert dedup.should_log(exposure("u1"))
    assert not dedup.should_log(exposure("u1"))
    assert dedup.should_log(exposure("u2"))
    assert dedup.should_log(exposure("u1", "A"))  # a new variation is a new exposure
    assert dedup.should_log(exposure("u1", experiment="other"))
    assert len(dedup) == 4


def test_non_exposures_are_never_logged_nor_remembered() -> None:
    dedup = ExposureDeduplicator()
    for e in (
        Evaluation("f", True, Reason.TARGETED, "r"),
        Evaluation("f", True, Reason.ROLLOUT, "r"),
        Evaluation("f", None, Reason.UNKNOWN),
    ):
        assert exposure_key(e) is None
        assert not dedup.should_log(e)
    assert len(dedup) == 0
    with pytest.raises(ValueError, match="not an experiment exposure"):
        exposure_event(Evaluation("f", True, Reason.TARGETED))


def test_memory_is_bounded_and_least_recently_seen_evicted() -> None:
    dedup = ExposureDeduplicator(max_entries=3)
    for u in ("a", "b", "c"):
        assert dedup.should_log(exposure(u))
    assert not dedup.should_log(exposure("a"))  # a is now the most recent
    assert dedup.should_log(exposure("d"))  # evicts b
    assert len(dedup) == 3
    assert not dedup.should_log(exposure("a"))
    assert dedup.should_log(exposure("b"))  # forgotten: logged again (harmless duplicate)
    for i in range(1000):
        dedup.should_log(exposure(f"x{i}"))
    assert len(dedup) == 3
    with pytest.raises(ValueError, match="at least 1"):
        ExposureDeduplicator(0)


def test_concurrent_callers_log_each_key_once() -> None:
    dedup = ExposureDeduplicator()
    logged: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [dedup.should_log(exposure(f"u{i}")) for i in range(2000)]
        with lock:
            logged.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(logged) == 2000


def test_the_event_payload() -> None:
    x = exposure_event(exposure("user-7"))
    assert x == Exposure(
        EXPOSURE_EVENT,
        {
            "experiment": "signin-dialog",
            "variation": "B",
            "variation_index": 1,
            "flag": "signin-dialog",
            "rule": "ab",
            "hash_attribute": "id",
            "unit": "user-7",
            "bucket": 0.4321,
        },
        {"signin-dialog": "B"},
    )


@pytest.mark.parametrize("key", ["Signin", "team/signin", "a:b", "x" * 129])
def test_a_key_the_schema_refuses_stays_in_data_only(key: str) -> None:
    x = exposure_event(exposure("u", experiment=key))
    assert x.experiments == {}
    assert x.data["experiment"] == key


def _validated(x: Exposure, **context: Any) -> Event:
    event = build_event(
        x.name,
        defaults=Defaults(app_id="demo"),
        user_id="user-7",
        data=x.data,
        context={"experiments": x.experiments, **context},
    )
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    checked = check_event(encode_event(event), max_event_bytes=64_000, latest_client_ts=now)
    assert isinstance(checked, Event), checked
    return checked


@pytest.mark.parametrize("key", ["signin-dialog", "Team/Signin:2"])
def test_the_event_passes_the_collectors_validation(key: str) -> None:
    checked = _validated(exposure_event(exposure("user-7", experiment=key)))
    assert checked.name == "experiment.exposure"
    assert checked.data["experiment"] == key
    assert checked.data["unit"] == "user-7"
    assert checked.experiments == ({"signin-dialog": "B"} if key == "signin-dialog" else {})


def test_from_a_real_evaluation() -> None:
    doc = {
        "flags": {
            "checkout": {
                "type": "json",
                "default": None,
                "environments": {
                    "prod": {
                        "rules": [
                            {
                                "experiment": {
                                    "key": "checkout.v2",
                                    "variations": [
                                        {"key": "control", "value": {"steps": 3}},
                                        {"key": "short", "value": {"steps": 1}},
                                    ],
                                }
                            }
                        ]
                    }
                },
            }
        }
    }
    flags = compile_ruleset(doc, "prod")
    sent: list[Exposure] = []
    log = ExposureLogger(sent.append)
    for _ in range(2):
        for i in range(20):
            log(flags.evaluate("checkout", {"id": f"user-{i}"}))
    assert len(sent) == 20
    for x in sent:
        checked = _validated(x)
        assert checked.experiments == {"checkout.v2": x.data["variation"]}
        assert x.data["variation"] in {"control", "short"}
        assert x.data["rule"] == "0"


def test_logger_forgets_a_key_when_the_sink_fails() -> None:
    calls: list[Exposure] = []

    def flaky(x: Exposure) -> None:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("closed")

    log = ExposureLogger(flaky, max_entries=10)
    with pytest.raises(RuntimeError):
        log(exposure("u"))
    assert log(exposure("u")) is not None
    assert log(exposure("u")) is None
    assert len(calls) == 2
    assert log(Evaluation("f", True, Reason.TARGETED)) is None
