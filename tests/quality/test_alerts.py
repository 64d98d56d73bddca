"""Alert rules over a real lake: quiet on normal weeks, each firing on its anomaly, with the
measured values checked against a plain-Python reference; notices delivered once per change to
a webhook on 127.0.0.1, and every evaluation recorded."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quality import alertgen as g
from tallystick.collect.server import free_port
from tallystick.control.definitions import Alert, Stream, parse_configuration
from tallystick.control.store import ControlStore
from tallystick.quality.alert_delivery import post
from tallystick.quality.alerts import (
    AlertRun,
    check,
    current,
    evaluate,
    evaluate_with,
    history,
    prune,
    record,
)
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

VOLUME = ("product", "volume(24h)")
SIGNIN_VOLUME = ("signin", "volume(24h)")
KEYS = ("product", "keys(data.project_id,user.id)")
FAILED = ("product", "failed_rate(24h)")
SIGNIN_FAILED = ("signin", "failed_rate(24h)")
LOSS = ("product", "loss_rate(24h)")

SCENARIOS: list[tuple[str, g.Scenario, set[tuple[str, str]]]] = [
    ("normal", lambda d: d, set()),
    ("volume drop", g.drop, {VOLUME, SIGNIN_VOLUME}),
    ("volume spike", g.spike, {VOLUME, SIGNIN_VOLUME}),
    ("missing key", g.missing_key, {KEYS}),
    ("wrong type", g.wrong_type, {KEYS}),
    ("missing user.id", g.missing_user, {KEYS}),
    ("failed events", g.failures("project.commit", 0.03), {FAILED}),
    ("refused requests", g.failures("project.commit", 0.03, whole=True), {FAILED}),
    ("failed sign-ins", g.failures("signin.open", 0.1), {SIGNIN_FAILED}),
    ("lost messages", g.lost, {LOSS}),
]


Lakes = dict[str, tuple[g.Data, Lake]]


def _lakes(normal: g.Data, root: Path) -> Lakes:
    """Each scenario's data and lake, built on first use (the files before the anomalies are
    shared with the normal lake)."""
    base = normal.lake(root / "normal")

    class Built(dict[str, tuple[g.Data, Lake]]):
        def __missing__(self, name: str) -> tuple[g.Data, Lake]:
            scenario = next(s for n, s, _ in SCENARIOS if n == name)
            data = scenario(normal)
            self[name] = (data, data.lake(root / name.replace(" ", "-"), base))
            return self[name]

    return Built({"normal": (normal, base)})


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> Lakes:
    """Forty days: every rule has its baseline."""
    return _lakes(g.normal(), tmp_path_factory.mktemp("alert-lakes"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Lakes:
    """Two days (quick to read): volume rules have no baseline and stay quiet; the others judge
    the last day as on the big lake. For the tests of delivery and history."""
    return _lakes(g.normal(days=2), tmp_path_factory.mktemp("small-lakes"))


# -- a plain-Python reference of what each rule measures -----------------------------------------


def _window(at: dt.datetime, alert: Alert, weeks_back: int = 0) -> tuple[dt.datetime, dt.datetime]:
    hi = at - dt.timedelta(days=7 * weeks_back)
    return hi - dt.timedelta(hours=alert.window_hours), hi


def _events(data: g.Data, stream: str, lo: dt.datetime, hi: dt.datetime) -> list[g.Row]:
    """The stream's events received in [lo, hi), each (event_id, name) once."""
    seen: dict[tuple[str, str], g.Row] = {}
    for r in data.rows:
        if r["stream"] == stream and lo <= r["received_ts"] < hi:
            seen.setdefault((r["event_id"], r["name"]), r)
    return list(seen.values())


_MISSING = object()


def lookup(row: g.Row, field: str) -> Any:
    if field == "user.id":
        return row.get("user_id") or _MISSING
    value: Any = row.get("data")
    key = field.removeprefix("data.")
    if isinstance(value, dict) and key in value:
        return _MISSING if value[key] is None else value[key]
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return _MISSING if value is None else value


def type_ok(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "any": True,
        "string": isinstance(value, str),
        "integer": number and isinstance(value, int),
        "number": number,
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[kind]


def failed_name(raw: str) -> str | None:
    body = json.loads(raw)
    if isinstance(body, list):
        body = body[0] if body and isinstance(body[0], dict) else {}
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) and name else None


def routed(stream: Stream, name: str | None) -> bool:
    if name is None:
        return "*" in stream.events
    return any(name == s or (s.endswith("*") and name.startswith(s[:-1])) for s in stream.events)


def reference(data: g.Data, stream: Stream, alert: Alert, at: dt.datetime) -> tuple[float, Any]:
    """(value, expected) of a rule, computed from the rows in Python."""
    lo, hi = _window(at, alert)
    events = _events(data, stream.name, lo, hi)
    if alert.rule == "volume":
        weeks = [len(_events(data, stream.name, *_window(at, alert, k))) for k in range(1, 5)]
        seen = [n for n in weeks if n]
        return len(events), sum(seen) / len(seen)
    if alert.rule == "keys":
        bad = sum(
            any(
                (v := lookup(e, field)) is _MISSING or not type_ok(v, kind)
                for field, kind in alert.keys
            )
            for e in events
        )
        return bad / len(events), alert.max_rate
    if alert.rule == "failed_rate":
        failed = sum(
            lo <= f.received_ts < hi and routed(stream, failed_name(f.raw)) for f in data.failed
        )
        return failed / (failed + len(events)), alert.max_rate
    sessions = {
        r["session_id"]
        for r in data.rows
        if r["stream"] == stream.name and lo <= r["received_ts"] < hi
    }
    seqs: dict[str, set[int]] = {s: set() for s in sessions}
    for r in data.rows:
        if r["session_id"] in seqs:
            seqs[r["session_id"]].add(r["session_seq"])
    expected = sum(max(s) for s in seqs.values())
    received = sum(len(s) for s in seqs.values())
    return (expected - received) / expected, alert.max_rate


# -- the rules on the lake -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fired"), [(n, f) for n, _, f in SCENARIOS], ids=[n for n, _, _ in SCENARIOS]
)
def test_each_rule_fires_on_its_anomaly_only_and_measures_what_python_counts(
    lakes: Lakes, name: str, fired: set[tuple[str, str]]
) -> None:
    data, lake = lakes[name]
    config = g.configuration()
    runs = evaluate(config.streams, lake, g.AT)
    assert len(runs) == sum(len(s.alerts) for s in config.streams)
    assert {r.key for r in runs if r.fired} == fired, [r.message for r in runs]
    for run in runs:
        stream = config.stream(run.stream)
        assert stream is not None
        alert = next(a for a in stream.alerts if a.label == run.label)
        value, expected = reference(data, stream, alert, g.AT)
        assert run.value == pytest.approx(value), run.message
        assert run.expected == pytest.approx(expected), run.message
        assert run.spec == alert.as_dict()
        assert run.at == g.AT


def test_a_normal_week_stays_quiet_on_every_day_of_it(lakes: Lakes) -> None:
    _, lake = lakes["normal"]
    streams = g.configuration().streams
    con = connect(lake)
    try:
        for step in range(0, 7 * 24, 28):  # every 28 hours: six weekdays, each at another hour
            at = g.AT - dt.timedelta(hours=step)
            loud = [r.message for r in evaluate_with(con, streams, at) if r.fired]
            assert not loud, (at, loud)
    finally:
        con.close()


def test_without_enough_baseline_a_volume_rule_is_quiet_and_says_so(
    lakes: Lakes,
) -> None:
    _, lake = lakes["volume drop"]
    early = g.AT - dt.timedelta(days=g.DAYS - 8)  # only one earlier week has data
    runs = evaluate(g.configuration().streams, lake, early)
    volume = next(r for r in runs if r.key == VOLUME)
    assert not volume.fired
    assert "not enough baseline" in volume.message
    assert "1 of the 4 earlier weeks have data, 2 needed" in volume.message


def test_streams_that_are_not_collecting_are_not_evaluated(
    lakes: Lakes,
) -> None:
    _, lake = lakes["volume drop"]
    config = {"streams": [{**s, "enabled": s["name"] != "product"} for s in g.CONFIG["streams"]]}
    runs = evaluate(parse_configuration(config).streams, lake, g.AT)
    product = [r for r in runs if r.stream == "product"]
    assert product
    assert all(not r.fired and r.value is None for r in product)
    assert {r.message for r in product} == {"not evaluated: the stream is disabled"}
    assert next(r for r in runs if r.key == SIGNIN_VOLUME).fired
    config = {"streams": [{**s, "enabled": False} for s in g.CONFIG["streams"]]}
    runs = evaluate(parse_configuration(config).streams, lake, g.AT)
    assert len(runs) == 6
    assert not any(r.fired for r in runs)


# -- history and delivery --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    with g.control_store(tmp_path / "control.db") as store:
        yield store


def test_changes_are_announced_once_to_the_log_and_the_webhook_and_every_run_is_recorded(
    store: ControlStore,
    small: Lakes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "tallystick.alerts")
    rules = 6
    with g.Receiver() as hook:
        quiet = check(store, small["normal"][1], at=g.AT, webhook_url=hook.url)
        assert len(quiet) == rules
        assert not any(r.fired or r.notice for r in quiet)
        assert hook.bodies == []
        assert caplog.records == []

        fired = check(store, small["missing key"][1], at=g.AT, webhook_url=hook.url)
        assert [(r.key, r.notice) for r in fired if r.notice] == [(KEYS, "fired")]
        body = hook.bodies[0]
        run = next(r for r in fired if r.key == KEYS)
        assert body == {
            "text": f"[tallystick] FIRING product {KEYS[1]}: {run.message}",
            "source": "tallystick",
            "version": body["version"],
            "notice": "fired",
            "at": "2026-03-30T12:00:00Z",
            "stream": "product",
            "rule": "keys",
            "label": KEYS[1],
            "fired": True,
            "value": run.value,
            "expected": 0.05,
            "message": run.message,
            "spec": run.spec,
        }
        assert run.delivery == {
            "notice": "fired",
            "log": True,
            "webhook": {"status": "sent", "attempts": 1, "http_status": 200, "error": None},
        }
        assert [r.getMessage() for r in caplog.records] == [
            f"alert fired: stream product, {KEYS[1]}: {run.message}"
        ]

        later = g.AT + dt.timedelta(minutes=5)
        ongoing = check(store, small["missing key"][1], at=later, webhook_url=hook.url)
        assert next(r for r in ongoing if r.key == KEYS).fired
        assert not any(r.notice for r in ongoing)
        assert len(hook.bodies) == 1

        resolved = check(store, small["normal"][1], at=later, webhook_url=hook.url)
        assert [(r.key, r.notice) for r in resolved if r.notice] == [(KEYS, "resolved")]
        assert len(hook.bodies) == 2
        assert hook.bodies[1]["notice"] == "resolved"
        assert hook.bodies[1]["text"].startswith("[tallystick] RESOLVED product keys(")

    every = history(store)
    assert len(every) == 4 * rules
    ids = [r.id or 0 for r in every]
    assert ids == sorted(ids, reverse=True)
    assert [(r.key, r.notice) for r in history(store, notices=True)] == [
        (KEYS, "resolved"),
        (KEYS, "fired"),
    ]
    assert len(history(store, since=later)) == 2 * rules
    assert len(history(store, limit=3, stream="signin")) == 3
    assert "secret" not in json.dumps([r.as_dict() for r in every])  # the URL is not kept
    assert not current(store)[KEYS].fired


@pytest.mark.parametrize(
    ("statuses", "posts", "status", "http_status"),
    [
        ([500, 500], 2, "failed", 500),  # retried once, then given up
        ([503], 2, "sent", 200),  # the retry got through
        ([404], 1, "failed", 404),  # a retry would not help
        ([429], 2, "sent", 200),
    ],
)
def test_a_failing_webhook_is_retried_once_and_what_happened_is_recorded(
    store: ControlStore,
    small: Lakes,
    statuses: list[int],
    posts: int,
    status: str,
    http_status: int,
) -> None:
    with g.Receiver(statuses) as hook:
        runs = check(
            store, small["lost messages"][1], at=g.AT, webhook_url=hook.url, retry_pause=0.01
        )
    assert len(hook.bodies) == posts
    webhook = next(r for r in runs if r.key == LOSS).delivery["webhook"]  # type: ignore[index]
    assert (webhook["status"], webhook["attempts"], webhook["http_status"]) == (
        status,
        posts,
        http_status,
    )
    assert (webhook["error"] is None) == (status == "sent")
    recorded = history(store, notices=True)
    assert [r.delivered for r in recorded] == [status == "sent"]


def test_a_webhook_nobody_answers_is_recorded_as_failed(store: ControlStore, small: Lakes) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    runs = check(
        store, small["lost messages"][1], at=g.AT, webhook_url=url, timeout=2, retry_pause=0.01
    )
    delivery = next(r for r in runs if r.key == LOSS).delivery
    assert delivery is not None
    assert delivery["log"] is True
    assert delivery["webhook"]["status"] == "failed"
    assert delivery["webhook"]["attempts"] == 2
    assert delivery["webhook"]["http_status"] is None
    assert "refused" in delivery["webhook"]["error"].lower()


def test_a_dry_run_sends_and_records_nothing(store: ControlStore, small: Lakes) -> None:
    with g.Receiver() as hook:
        runs = check(store, small["missing key"][1], at=g.AT, webhook_url=hook.url, deliver=False)
    assert {r.key for r in runs if r.notice == "fired"} == {KEYS}
    assert all(r.id is None for r in runs)
    assert next(r for r in runs if r.key == KEYS).delivery == {
        "notice": "fired",
        "log": False,
        "webhook": None,
    }
    assert hook.bodies == []
    assert history(store) == []


def test_one_stream_only_and_an_unknown_stream(store: ControlStore, small: Lakes) -> None:
    runs = check(store, small["normal"][1], at=g.AT, stream="signin")
    assert {r.stream for r in runs} == {"signin"}
    assert len(runs) == 2
    with pytest.raises(KeyError):
        check(store, small["normal"][1], at=g.AT, stream="nope")


def test_old_runs_that_announced_nothing_are_pruned_but_notices_and_states_stay(
    store: ControlStore,
) -> None:
    def run(days: int, fired: bool, notice: str | None, label: str = "volume(24h)") -> AlertRun:
        return AlertRun(
            g.AT + dt.timedelta(days=days),
            "product",
            "volume",
            label,
            {},
            fired,
            1.0,
            2.0,
            "m",
            None if notice is None else {"notice": notice, "log": True, "webhook": None},
        )

    record(
        store,
        [
            run(0, True, "fired"),
            run(1, True, None),  # ongoing: pruned
            run(2, False, "resolved"),
            run(3, False, None),  # quiet: pruned
            run(4, False, None, "other"),  # old, but the latest of its rule: kept
            run(40, False, None),  # recent: kept
        ],
    )
    assert prune(store, g.AT + dt.timedelta(days=10)) == 2
    assert [(r.at - g.AT).days for r in history(store)] == [40, 4, 2, 0]
    assert history(store)[-1].as_dict()["at"] == "2026-03-30T12:00:00Z"


def test_a_receiver_that_answers_nonsense_is_a_failed_delivery() -> None:
    """Not HTTP at all (http.client raises neither URLError nor OSError for it)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            for _ in range(2):  # the attempt and its retry
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"nonsense\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        got = post(f"http://127.0.0.1:{port}/", {"x": 1}, timeout=2, retry_pause=0.01)
        thread.join(5)
    assert got["status"] == "failed"
    assert got["attempts"] == 2
    assert got["http_status"] is None
    assert got["error"].startswith("BadStatusLine")
