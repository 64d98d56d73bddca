"""Loss and duplicate accounting from the per-session message index: the plain-Python reference.

The input is one ``Message`` per stored copy of an event as it arrived (the lake's delivery
ledger, ``store.ledger``: every copy, one per stream it was stored for); the output is one
``LossRow`` per (client day, client library, library version). ``tallystick.quality.loss_sql``
computes the same in DuckDB SQL and is tested to agree with this module exactly.

Loss (from ``session.seq``, the per-session message index starting at 1)
------------------------------------------------------------------------
- A **sequenced message** has a non-empty ``session_id`` and a ``seq`` ≥ 1. Rows without either
  (no session, an empty session id, no seq) cannot show loss: they are left out of every loss
  column, but still count in ``events`` and the duplicate columns.
- A **session** is a distinct ``session_id`` (assumed unique across libraries and days).
- ``expected`` of a session is the highest ``seq`` received in it: messages 1..max were sent. So
  loss before the first received message (seq 1 lost) is counted, loss after the last received
  one (the tail of a session) cannot be seen and is not.
- ``received`` of a session is the number of distinct ``seq`` values received in it, whatever the
  number of copies (streams, retries, duplicates): a received message is counted once.
- ``lost`` = ``expected`` − ``received`` (the gaps), never negative.
- ``loss_rate`` = ``lost`` / ``expected`` of the group (``None`` when ``expected`` is 0).
- A session counts **whole, on one group**: the UTC date of its earliest client timestamp (a
  session spanning midnight is counted on the day it started, with every message, also those of
  the next day), and the client library and version of its first message that names a library
  (lowest ``seq``; ties: earliest ``received_ts``, then library, then version, nulls last). Its
  library is ``None`` only if no message of the session names one. Reports over a range of days
  must therefore read the partitions after the range too (a session's later messages).
- A ``seq`` that two different ``event_id`` values carry in one session (a client bug) is received
  once and counted in ``seq_conflicts`` (the number of such (session, seq) pairs).
- A seq far beyond the others (a bogus index) inflates ``expected`` as it stands: the report
  shows it as loss rather than guessing.

Duplicates (by ``event_id``)
----------------------------
- A **delivery** is one accepted copy of an event from one request. The collector stores a request's
  event once per stream it is routed to, with the same ``received_ts``; those copies are one
  delivery, not duplicates. The number of deliveries of an event with a given payload at one
  ``received_ts`` is the largest number of rows with that payload in any single stream (an event
  sent twice in one batch is two deliveries; ``stream`` ``None`` — files older than streams — is a
  stream of its own).
- The **payload** is compared by ``fingerprint``: for the lake, ``payload_fingerprint`` of
  ``name``, ``client_ts`` and ``data`` — what every stream stores as sent. Context a stream may
  leave out (``keep``), ``sent_ts`` (a retry is sent again, later) and ``received_ts`` are not part
  of it. So a different ``name`` under the same ``event_id`` is a different payload; so is ``data``
  whose JSON differs only in key order (it is stored as the client sent it).
- ``duplicates_natural`` of an event: its deliveries beyond the first of each payload (retries).
- ``duplicates_synthetic`` of an event: its distinct payloads beyond the first (one ``event_id``
  reused for different content: a client bug). An event with two payloads each delivered twice has
  2 natural and 1 synthetic duplicate: every delivery beyond the first is counted exactly once.
- An event counts on the group of its **first delivery** (earliest ``received_ts``; among its
  copies, the one naming a library first, then by version, day and fingerprint) — its own day,
  library and version, not its session's. ``events`` counts distinct ``event_id`` values.
- The lake's event files lose duplicates to compaction (one copy per ``event_id``, ``name`` and
  ``stream``); the ledger never does, so the counts stay exact after compaction. A lake written
  before the ledger existed is read from its event files: exact until they were compacted, a
  lower bound after.

Weeks (``weekly``) are sums of the daily rows: every count is additive, as each session and
each event counts on exactly one day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SEP: Final = "\x1f"

Group = tuple[dt.date, str | None, str | None]


def payload_fingerprint(name: str, client_ts: dt.datetime, data: str | None) -> str:
    """The payload of a stored event as every stream stores it: ``name``, ``client_ts`` (to the
    microsecond, any offset) and the ``data`` JSON. Equal to the SQL in ``loss_sql``."""
    micros = (client_ts - _EPOCH) // dt.timedelta(microseconds=1)
    body = "n" if data is None else "j" + data
    text = f"{name}{_SEP}{micros}{_SEP}{body}"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Message:
    """One stored row (one stream's copy of one delivery of an event)."""

    event_id: str
    fingerprint: str
    day: dt.date
    """UTC date of ``client_ts``."""
    received_ts: dt.datetime | None
    stream: str | None
    session_id: str | None = None
    seq: int | None = None
    library: str | None = None
    version: str | None = None

    @property
    def sequenced(self) -> bool:
        return bool(self.session_id) and self.seq is not None and self.seq >= 1


@dataclass(frozen=True, slots=True)
class LossRow:
    """Loss and duplicates of one (day, client library, library version)."""

    day: dt.date
    library: str | None
    version: str | None
    sessions: int
    expected: int
    received: int
    lost: int
    loss_rate: float | None
    seq_conflicts: int
    events: int
    duplicates_natural: int
    duplicates_synthetic: int

    @classmethod
    def from_counts(
        cls,
        group: tuple[dt.date, str | None, str | None],
        counts: Mapping[str, int],
    ) -> LossRow:
        """A row from its group (day, library, version) and its counts (``sessions``,
        ``expected``, ``received``, ``seq_conflicts``, ``events``, ``natural``, ``synthetic``);
        ``lost`` and ``loss_rate`` follow from them."""
        lost = counts["expected"] - counts["received"]
        return cls(
            day=group[0],
            library=group[1],
            version=group[2],
            sessions=counts["sessions"],
            expected=counts["expected"],
            received=counts["received"],
            lost=lost,
            loss_rate=lost / counts["expected"] if counts["expected"] else None,
            seq_conflicts=counts["seq_conflicts"],
            events=counts["events"],
            duplicates_natural=counts["natural"],
            duplicates_synthetic=counts["synthetic"],
        )

    @property
    def duplicates(self) -> int:
        return self.duplicates_natural + self.duplicates_synthetic

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the day as an ISO date)."""
        return {
            "day": self.day.isoformat(),
            "library": self.library,
            "version": self.version,
            "sessions": self.sessions,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "loss_rate": self.loss_rate,
            "seq_conflicts": self.seq_conflicts,
            "events": self.events,
            "duplicates": self.duplicates,
            "duplicates_natural": self.duplicates_natural,
            "duplicates_synthetic": self.duplicates_synthetic,
        }

    def as_row(self, period: str = "day") -> dict[str, Any]:
        """The row of ``tally quality loss`` and ``GET /v1/quality/loss``: ``period`` (``day``
        or ``week``) names the date column, then ``COLUMNS``."""
        out = self.as_dict()
        del out["duplicates"]
        out[period] = out.pop("day")
        return {period: out[period], **{c: out[c] for c in COLUMNS}}


COLUMNS: Final = (
    "library",
    "version",
    "sessions",
    "expected",
    "received",
    "lost",
    "loss_rate",
    "seq_conflicts",
    "events",
    "duplicates_natural",
    "duplicates_synthetic",
)
"""The columns of a report row after its date (``day`` or ``week``)."""

_COUNTS: Final = ("sessions", "expected", "received", "seq_conflicts", "events")


def week_start(day: dt.date) -> dt.date:
    """The Monday of ``day``'s week (weeks start on Monday, UTC)."""
    return day - dt.timedelta(days=day.weekday())


def weekly(rows: Iterable[LossRow]) -> list[LossRow]:
    """Daily rows summed per week (``day`` is the week's Monday), per library and version.

    Every count of the daily report is additive — a session counts on one day, an event on one
    day — so a week's row is the sum of its days' rows; ``lost`` and ``loss_rate`` follow from
    the sums (``LossRow.from_counts``)."""
    totals: dict[Group, dict[str, int]] = {}
    for r in rows:
        group = (week_start(r.day), r.library, r.version)
        t = totals.setdefault(group, dict.fromkeys((*_COUNTS, "natural", "synthetic"), 0))
        for name in _COUNTS:
            t[name] += getattr(r, name)
        t["natural"] += r.duplicates_natural
        t["synthetic"] += r.duplicates_synthetic
    return [LossRow.from_counts(g, totals[g]) for g in sorted(totals, key=group_key)]


def total(rows: Iterable[LossRow]) -> dict[str, Any]:
    """The sums of ``rows`` (JSON-ready): every count, and ``lost`` and ``loss_rate`` of the
    sums."""
    sums = dict.fromkeys((*_COUNTS, "duplicates_natural", "duplicates_synthetic"), 0)
    for r in rows:
        for name in sums:
            sums[name] += getattr(r, name)
    lost = sums["expected"] - sums["received"]
    return {
        "sessions": sums["sessions"],
        "expected": sums["expected"],
        "received": sums["received"],
        "lost": lost,
        "loss_rate": lost / sums["expected"] if sums["expected"] else None,
        "seq_conflicts": sums["seq_conflicts"],
        "events": sums["events"],
        "duplicates_natural": sums["duplicates_natural"],
        "duplicates_synthetic": sums["duplicates_synthetic"],
    }


def _nulls_last(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def _ts_key(value: dt.datetime | None) -> tuple[bool, dt.datetime]:
    return (value is None, value or _EPOCH)


def group_key(group: Group) -> tuple[dt.date, tuple[bool, str], tuple[bool, str]]:
    """The report's order: by day, then library and version, nulls last."""
    day, library, version = group
    return (day, _nulls_last(library), _nulls_last(version))


def _session_attribution(rows: list[Message]) -> Group:
    first = min(
        rows,
        key=lambda m: (
            m.library is None,
            m.seq,
            _ts_key(m.received_ts),
            _nulls_last(m.library),
            _nulls_last(m.version),
        ),
    )
    return (min(m.day for m in rows), first.library, first.version)


def _event_attribution(rows: list[Message]) -> Group:
    first = min(
        rows,
        key=lambda m: (
            _ts_key(m.received_ts),
            _nulls_last(m.library),
            _nulls_last(m.version),
            m.day,
            m.fingerprint,
        ),
    )
    return (first.day, first.library, first.version)


def _duplicates(rows: list[Message]) -> tuple[int, int]:
    """(natural, synthetic) duplicates of one event's rows."""
    per_stream = Counter((m.fingerprint, m.received_ts, m.stream) for m in rows)
    deliveries: dict[tuple[str, dt.datetime | None], int] = {}
    for (fingerprint, received, _stream), n in per_stream.items():
        key = (fingerprint, received)
        deliveries[key] = max(deliveries.get(key, 0), n)
    copies: Counter[str] = Counter()
    for (fingerprint, _received), n in deliveries.items():
        copies[fingerprint] += n
    natural = sum(n - 1 for n in copies.values())
    return natural, len(copies) - 1


def loss_report(messages: Iterable[Message]) -> list[LossRow]:
    """Loss and duplicates per (day, library, version), ordered by day, library, version."""
    by_session: dict[str, list[Message]] = defaultdict(list)
    by_event: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        by_event[m.event_id].append(m)
        if m.sequenced:
            assert m.session_id is not None
            by_session[m.session_id].append(m)

    zero = {"sessions": 0, "expected": 0, "received": 0, "seq_conflicts": 0}
    zero |= {"events": 0, "natural": 0, "synthetic": 0}
    totals: dict[Group, dict[str, int]] = defaultdict(lambda: dict(zero))
    for rows in by_session.values():
        ids_by_seq: dict[int, set[str]] = defaultdict(set)
        for m in rows:
            assert m.seq is not None
            ids_by_seq[m.seq].add(m.event_id)
        t = totals[_session_attribution(rows)]
        t["sessions"] += 1
        t["expected"] += max(ids_by_seq)
        t["received"] += len(ids_by_seq)
        t["seq_conflicts"] += sum(1 for ids in ids_by_seq.values() if len(ids) > 1)
    for rows in by_event.values():
        natural, synthetic = _duplicates(rows)
        t = totals[_event_attribution(rows)]
        t["events"] += 1
        t["natural"] += natural
        t["synthetic"] += synthetic

    return [LossRow.from_counts(group, totals[group]) for group in sorted(totals, key=group_key)]
