"""A lake of normal weeks for the alert rules, and each anomaly injected into its last day
(imported as ``quality.alertgen``).

Forty days up to ``AT`` (a Monday noon, UTC) of a weekly pattern: every hour one session per
user group sends events numbered ``session.seq`` 1..n, where n depends on the weekday and the
hour (busy working hours, quiet nights, half on weekends) and wobbles by ±1 from week to week.
Three of four events are ``project.commit`` (stream ``product``), every fourth ``signin.open``
(stream ``signin``). Normal weeks carry background noise below every rule's limit: about 1 % of
commits lack ``data.project_id``, every 20th session lost its second message (under 1 % loss)
and a few failed-event records arrive every day (under 0.5 %).
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from tallystick.control.definitions import Configuration, parse_configuration
from tallystick.control.store import ControlStore
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import EVENT_SCHEMA, EVENTS, FAILED, MESSAGES, Lake

AT: Final = dt.datetime(2026, 3, 30, 12, 0, tzinfo=dt.UTC)
"""The evaluation time: a Monday, noon."""
DAYS: Final = 36
WINDOW: Final = dt.timedelta(hours=24)
SINCE: Final = (AT - WINDOW).date()
"""The first day an anomaly touches."""
GROUPS: Final = 2
"""Sessions per hour."""

CONFIG: Final[dict[str, Any]] = {
    "streams": [
        {
            "name": "product",
            "events": ["project.*"],
            "alerts": [
                {"rule": "volume", "drop": 0.5, "spike": 1.0, "weeks": 4},
                {"rule": "keys", "keys": {"data.project_id": "string", "user.id": "string"}},
                {"rule": "failed_rate", "max_rate": 0.01},
                {"rule": "loss_rate", "max_rate": 0.02},
            ],
        },
        {
            "name": "signin",
            "events": ["signin.*"],
            "alerts": [{"rule": "volume"}, {"rule": "failed_rate", "max_rate": 0.05}],
        },
    ]
}


def configuration() -> Configuration:
    return parse_configuration(CONFIG)


@functools.cache
def _migrated() -> Path:
    """An empty control-plane database at the newest schema, made once per run."""
    folder = Path(tempfile.mkdtemp(prefix="alert-control-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    ControlStore.open(f"sqlite:///{folder / 'control.db'}").close()
    return folder / "control.db"


def control_store(path: Path, config: dict[str, Any] | None = None) -> ControlStore:
    """A control-plane database at ``path`` (a copy of a migrated one: migrating anew for every
    test costs more than the test) holding ``config`` (default: ``CONFIG``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated(), path)
    store = ControlStore.open(f"sqlite:///{path}")
    store.apply(parse_configuration(CONFIG if config is None else config), "test")
    return store


Row = dict[str, Any]


def table(rows: Sequence[Row]) -> pa.Table:
    """The lake's event columns of ``rows`` (lake column names; ``data`` a dict)."""
    n = len(rows)
    present = {key for r in rows for key in r}
    arrays = []
    for f in EVENT_SCHEMA:
        if f.name == "schema_version":
            arrays.append(pa.array([1] * n, f.type))
        elif f.name == "data":
            values = [None if r.get("data") is None else json.dumps(r["data"]) for r in rows]
            arrays.append(pa.array(values, f.type))
        elif f.name in present:
            arrays.append(pa.array([r.get(f.name) for r in rows], f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


@dataclasses.dataclass
class Data:
    """Event rows (lake columns) and failed-event records."""

    rows: list[Row]
    failed: list[FailedEvent]

    def lake(self, root: Path, base: Lake | None = None) -> Lake:
        """A lake of this data at ``root``. With ``base`` (a lake of the same data before
        ``SINCE``), its files dated before ``SINCE`` are hard-linked rather than written again:
        the anomalies all happen later."""
        lake = Lake(root)
        rows, failed = self.rows, self.failed
        if base is not None:
            for kind in (EVENTS, MESSAGES, FAILED):
                for day, paths in base.partitions(kind).items():
                    if day < SINCE:
                        for path in paths:
                            (root / path).parent.mkdir(parents=True, exist_ok=True)
                            os.link(base.root / path, root / path)
            rows = [r for r in rows if r["client_ts"].date() >= SINCE]
            failed = [f for f in failed if f.received_ts.date() >= SINCE]
        lake.write_events(table(rows), "events-0")
        if failed:
            lake.write_failed(failed, "failed-0")
        return lake


def per_hour(at: dt.datetime) -> int:
    """Events per session in the hour starting at ``at``: the weekly pattern and its wobble."""
    busy = 9 if 8 <= at.hour < 20 else 3
    if at.weekday() >= 5:
        busy = max(2, busy // 2)
    week = (at - AT).days // 7
    return busy + (week + at.hour) % 3 - 1


def _event(session: str, seq: int, at: dt.datetime, user: str) -> Row:
    commit = seq % 4 != 0
    row: Row = {
        "event_id": f"{session}-{seq}",
        "name": "project.commit" if commit else "signin.open",
        "client_ts": at,
        "received_ts": at + dt.timedelta(seconds=2),
        "stream": "product" if commit else "signin",
        "user_id": user,
        "session_id": session,
        "session_seq": seq,
        "client_library": "tallystick-js",
        "client_library_version": "1.0",
        "data": {"project_id": f"p{seq % 5}", "files": seq} if commit else {"method": "sso"},
    }
    return row


def normal(days: int = DAYS) -> Data:
    """``days`` normal days up to ``AT``."""
    rows: list[Row] = []
    failed: list[FailedEvent] = []
    start = AT - dt.timedelta(days=days)
    sessions = 0
    for h in range(days * 24):
        hour = start + dt.timedelta(hours=h)
        n = per_hour(hour)
        for g in range(GROUPS):
            session = f"s{h}-{g}"
            sessions += 1
            for seq in range(1, n + 1):
                if seq == 2 and sessions % 20 == 0 and n >= 3:
                    continue  # background loss
                at = hour + dt.timedelta(minutes=(60 * (seq - 1)) // n, seconds=g)
                rows.append(_event(session, seq, at, f"u{g}"))
        if h % 24 == 13:  # background failures: one commit and one signin a day
            failed.append(failed_record("project.commit", hour + dt.timedelta(minutes=5)))
            failed.append(failed_record("signin.open", hour + dt.timedelta(minutes=6)))
    for i, row in enumerate(r for r in rows if r["name"] == "project.commit"):
        if i % 97 == 0:  # background: about 1 % of commits lack the key
            row["data"] = {"files": 1}
    return Data(rows, failed)


def failed_record(name: str | None, at: dt.datetime, *, whole: bool = False) -> FailedEvent:
    """A failed-event record: an event (or, ``whole``, a refused request of two events) with
    an event name the collector could not accept."""
    event = {"event_id": "x", "name": name, "client_ts": "not a time"}
    raw = json.dumps([event, {**event, "name": "other.thing"}] if whole else event)
    return FailedEvent(at, "http", "invalid_field", "client_ts is not a time", raw)


def in_window(row: Row) -> bool:
    received: dt.datetime = row["received_ts"]
    return AT - WINDOW <= received < AT


# -- anomalies, each injected into the last 24 hours ------------------------------------------


def drop(data: Data) -> Data:
    """Two sessions of three are gone (whole sessions: nothing is missing from the others), and
    with them their failures."""
    sessions = sorted({r["session_id"] for r in data.rows if in_window(r)})
    kept = set(sessions[::3])
    return Data(
        [r for r in data.rows if not in_window(r) or r["session_id"] in kept],
        [f for f in data.failed if not AT - WINDOW <= f.received_ts < AT],
    )


def spike(data: Data) -> Data:
    """Every session of the last day is joined by two more of the same shape."""
    extra = [
        {**r, "session_id": f"{r['session_id']}-{k}", "event_id": f"{r['event_id']}-{k}"}
        for r in data.rows
        if in_window(r)
        for k in (1, 2)
    ]
    return Data(data.rows + extra, data.failed)


def _commits_changed(data: Data, change: Callable[[Row], Row], every: int) -> Data:
    rows = []
    i = 0
    for r in data.rows:
        if in_window(r) and r["name"] == "project.commit":
            i += 1
            if i % every == 0:
                r = change(r)
        rows.append(r)
    return Data(rows, data.failed)


def missing_key(data: Data) -> Data:
    """One commit in eight lacks ``data.project_id``."""
    return _commits_changed(data, lambda r: {**r, "data": {"files": 2}}, 8)


def wrong_type(data: Data) -> Data:
    """One commit in eight has a number for ``data.project_id``."""
    return _commits_changed(data, lambda r: {**r, "data": {"project_id": 7, "files": 2}}, 8)


def missing_user(data: Data) -> Data:
    """One commit in eight arrives without ``user.id``."""
    return _commits_changed(data, lambda r: {**r, "user_id": None}, 8)


def failures(name: str | None, share: float, *, whole: bool = False) -> Callable[[Data], Data]:
    """Failed records named ``name``: ``share`` of the stream's events of the last day."""

    def inject(data: Data) -> Data:
        stored = sum(
            1 for r in data.rows if in_window(r) and r["name"] == (name or "project.commit")
        )
        n = int(stored * share) + 1
        step = WINDOW / n
        extra = [failed_record(name, AT - WINDOW + i * step, whole=whole) for i in range(n)]
        return Data(data.rows, data.failed + extra)

    return inject


def lost(data: Data) -> Data:
    """Messages lost in transit: in every session of the last day, every third message but
    the last (a gap, never the tail, which no one can see)."""
    last: dict[str, int] = {}
    for r in data.rows:
        last[r["session_id"]] = max(last.get(r["session_id"], 0), r["session_seq"])
    return Data(
        [
            r
            for r in data.rows
            if not (
                in_window(r)
                and r["session_seq"] % 3 == 0
                and r["session_seq"] != last[r["session_id"]]
            )
        ],
        data.failed,
    )


Scenario = Callable[[Data], Data]


def scenario_ids(scenarios: Sequence[tuple[str, Scenario, set[str]]]) -> list[str]:
    return [name for name, _, _ in scenarios]


# -- a webhook receiver on loopback ----------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it and answers with
    ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses = list(statuses)
        self.received = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                assert self.headers.get("Content-Type") == "application/json"
                receiver.bodies.append(body)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                receiver.received.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook?token=secret"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
