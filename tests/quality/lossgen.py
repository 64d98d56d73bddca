"""Messages for the loss report: a table for DuckDB, and generated logs whose loss and
duplicates are known by construction (imported as ``quality.lossgen``)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from tallystick.quality.loss import LossRow, Message, group_key, payload_fingerprint
from tallystick.quality.loss_sql import report_sql, run_report
from tallystick.schema import Client, Event, Session

MESSAGE_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("event_id", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("library", pa.string()),
        pa.field("version", pa.string()),
        pa.field("day", pa.date32()),
        pa.field("received_ts", pa.timestamp("us", tz="UTC")),
        pa.field("stream", pa.string()),
    ]
)


def messages_table(messages: Sequence[Message]) -> pa.Table:
    return pa.Table.from_pylist(
        [{f: getattr(m, f) for f in MESSAGE_SCHEMA.names} for m in messages],
        schema=MESSAGE_SCHEMA,
    )


@functools.cache
def _connection() -> duckdb.DuckDBPyConnection:
    """One connection for the whole run (opening one costs more than a query)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def close_connection() -> None:
    if _connection.cache_info().currsize:
        _connection().close()
        _connection.cache_clear()


def sql_report(messages: Sequence[Message]) -> list[LossRow]:
    """The SQL implementation over ``messages``."""
    con = _connection().cursor()
    try:
        con.register("messages", messages_table(messages))
        return run_report(con, report_sql("messages"))
    finally:
        con.close()


def _json(value: object) -> str:
    """JSON as the lake stores ``data`` (msgspec, compact)."""
    return msgspec.json.encode(value).decode()


# -- generated logs ----------------------------------------------------------------------------

START = dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC)
LIBRARIES = (
    ("tallystick-python", "0.1.0"),
    ("tallystick-python", "0.2.0"),
    ("tallystick-js", "1.0"),
)
FULL_STREAMS = ("a", "b")
NARROW = "narrow"
"""A stream that keeps no context: its copies carry no session and no client library."""


@dataclass
class Row:
    """One stored row of a generated log (one stream's copy of one delivery)."""

    event_id: str
    name: str
    client_ts: dt.datetime
    data: str | None
    received_ts: dt.datetime
    stream: str
    session_id: str | None
    seq: int | None
    library: str | None
    version: str | None

    def message(self) -> Message:
        return Message(
            event_id=self.event_id,
            fingerprint=payload_fingerprint(self.name, self.client_ts, self.data),
            day=self.client_ts.date(),
            received_ts=self.received_ts,
            stream=self.stream,
            session_id=self.session_id,
            seq=self.seq,
            library=self.library,
            version=self.version,
        )


@dataclass
class Log:
    rows: list[Row] = field(default_factory=list)
    truth: dict[tuple[dt.date, str | None, str | None], dict[str, int]] = field(
        default_factory=lambda: defaultdict(
            lambda: dict.fromkeys(
                ("sessions", "expected", "received", "conflicts", "events", "natural", "synth"),
                0,
            )
        )
    )

    def messages(self) -> list[Message]:
        return [r.message() for r in self.rows]

    def expected_report(self) -> list[LossRow]:
        return [
            LossRow.from_counts(
                group,
                {
                    **self.truth[group],
                    "seq_conflicts": self.truth[group]["conflicts"],
                    "synthetic": self.truth[group]["synth"],
                },
            )
            for group in sorted(self.truth, key=group_key)
        ]

    def events(self) -> tuple[list[Event], list[dt.datetime], list[str | None]]:
        """The rows as monoschema events for ``lake.events_to_table``."""
        events = []
        for r in self.rows:
            events.append(
                Event(
                    event_id=uuid.UUID(r.event_id),
                    name=r.name,
                    client_ts=r.client_ts,
                    sent_ts=r.received_ts,
                    client=Client(library=r.library, library_version=r.version)
                    if r.library is not None
                    else None,
                    session=Session(id=r.session_id, seq=r.seq)
                    if r.session_id is not None
                    else None,
                    data=json.loads(r.data) if r.data is not None else {},
                )
            )
        return events, [r.received_ts for r in self.rows], [r.stream for r in self.rows]


class Generator:
    """Builds a log one event at a time and keeps the report it must produce."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.log = Log()
        self.clock = START
        self.ids = 0

    def _id(self) -> str:
        self.ids += 1
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def _received(self) -> dt.datetime:
        self.clock += dt.timedelta(microseconds=self.rng.randint(1, 5_000_000))
        return self.clock

    def _deliver(
        self,
        event_id: str,
        name: str,
        client_ts: dt.datetime,
        data: str | None,
        session: tuple[str, int] | None,
        library: tuple[str, str] | None,
        times: int,
    ) -> None:
        """``times`` deliveries of one payload; each stored once per stream it is routed to,
        and now and then twice in one request."""
        left = times
        while left:
            received = self._received()
            batch = 2 if left >= 2 and self.rng.random() < 0.2 else 1
            left -= batch
            streams = list(self.rng.sample(FULL_STREAMS, self.rng.randint(1, 2)))
            if self.rng.random() < 0.3:
                streams.append(NARROW)
            for stream in streams:
                full = stream != NARROW
                for _ in range(batch):
                    self.log.rows.append(
                        Row(
                            event_id=event_id,
                            name=name,
                            client_ts=client_ts,
                            data=data,
                            received_ts=received,
                            stream=stream,
                            session_id=session[0] if session and full else None,
                            seq=session[1] if session and full else None,
                            library=library[0] if library and full else None,
                            version=library[1] if library and full else None,
                        )
                    )

    def event(
        self,
        client_ts: dt.datetime,
        session: tuple[str, int] | None,
        library: tuple[str, str] | None,
    ) -> None:
        """One event: delivered 1–3 times, sometimes with its id reused for another payload
        (delivered 1–2 times, after the first)."""
        rng = self.rng
        event_id = self._id()
        name = rng.choice(("page.view", "project.commit"))
        data = _json({"n": rng.randint(0, 3)}) if rng.random() < 0.7 else None
        natural = rng.choice((0, 0, 0, 1, 2))
        self._deliver(event_id, name, client_ts, data, session, library, 1 + natural)
        t = self.log.truth[(client_ts.date(), *(library or (None, None)))]
        t["events"] += 1
        t["natural"] += natural
        if rng.random() < 0.15:
            other = rng.choice(("name", "data", "time"))
            name2 = "other.action" if other == "name" else name
            data2 = _json({"bug": True}) if other == "data" else data
            ts2 = client_ts + dt.timedelta(seconds=1) if other == "time" else client_ts
            times = rng.randint(1, 2)
            self._deliver(event_id, name2, ts2, data2, session, library, times)
            t["synth"] += 1
            t["natural"] += times - 1

    def session(self) -> None:
        """A session of 1–8 messages, some dropped (never all), some seq reused by a bug."""
        rng = self.rng
        session_id = f"s-{self._id()}"
        library = rng.choice(LIBRARIES)
        n = rng.randint(1, 8)
        start = START + dt.timedelta(minutes=rng.randint(0, 180))
        delivered = [seq for seq in range(1, n + 1) if rng.random() > 0.25] or [n]
        conflicts = 0
        for seq in delivered:
            client_ts = start + dt.timedelta(minutes=10 * (seq - 1), microseconds=seq)
            self.event(client_ts, (session_id, seq), library)
            if rng.random() < 0.05:
                self.event(client_ts, (session_id, seq), library)
                conflicts += 1
        day = (start + dt.timedelta(minutes=10 * (delivered[0] - 1))).date()
        t = self.log.truth[(day, *library)]
        t["sessions"] += 1
        t["expected"] += max(delivered)
        t["received"] += len(delivered)
        t["conflicts"] += conflicts

    def unsequenced(self) -> None:
        """An event without a session (or without a client library)."""
        rng = self.rng
        client_ts = START + dt.timedelta(minutes=rng.randint(0, 240))
        library = rng.choice((*LIBRARIES, None))
        self.event(client_ts, None, library)


def generate(rng: random.Random, sessions: int, unsequenced: int) -> Log:
    gen = Generator(rng)
    kinds = ["session"] * sessions + ["unsequenced"] * unsequenced
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "session":
            gen.session()
        else:
            gen.unsequenced()
    rows = gen.log.rows
    rng.shuffle(rows)
    return gen.log


# -- generated traffic, for the real collector ---------------------------------------------------


class RequestGenerator(Generator):
    """The same log as ``Generator`` (and the same truth), as requests to ``POST /v1/events``
    instead of stored rows: the collector decides the copies (its streams) and the received
    times (one per request, in the order they are sent).

    An event's first delivery goes into one of the first half of the requests; its retries
    (the same payload) into the same or any later request — twice in one request is two
    deliveries —, and a reused id (another payload) strictly later, so the event's first
    delivery is always its original one, as the truth says."""

    def __init__(self, rng: random.Random, requests: int) -> None:
        super().__init__(rng)
        self.requests: list[list[dict[str, Any]]] = [[] for _ in range(requests)]
        self._first: dict[str, int] = {}

    def _deliver(
        self,
        event_id: str,
        name: str,
        client_ts: dt.datetime,
        data: str | None,
        session: tuple[str, int] | None,
        library: tuple[str, str] | None,
        times: int,
    ) -> None:
        last = len(self.requests) - 1
        event: dict[str, Any] = {
            "event_id": event_id,
            "name": name,
            "client_ts": client_ts.isoformat(),
        }
        if library is not None:
            event["client"] = {"library": library[0], "library_version": library[1]}
        if session is not None:
            event["session"] = {"id": session[0], "seq": session[1]}
        if data is not None:
            event["data"] = json.loads(data)
        if event_id in self._first:  # another payload: after the first delivery
            first = self._first[event_id]
            slots = [self.rng.randint(first + 1, last) for _ in range(times)]
        else:
            first = self._first[event_id] = self.rng.randint(0, last // 2)
            slots = [first] + [self.rng.randint(first, last) for _ in range(times - 1)]
        for slot in slots:
            self.requests[slot].append(dict(event))


def generate_requests(
    rng: random.Random, sessions: int, unsequenced: int, requests: int
) -> tuple[list[list[dict[str, Any]]], Log]:
    """Requests (lists of events, to send in order) and the log whose report they must give."""
    gen = RequestGenerator(rng, requests)
    kinds = ["session"] * sessions + ["unsequenced"] * unsequenced
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "session":
            gen.session()
        else:
            gen.unsequenced()
    for request in gen.requests:
        rng.shuffle(request)
    return gen.requests, gen.log
