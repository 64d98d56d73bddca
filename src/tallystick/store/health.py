"""What the lake holds and how data is arriving: the figures behind ``GET /v1/meta``,
``GET /v1/health`` and the spool counts of ``tally status``.

Everything is read from the Parquet columns it needs, with DuckDB, listing the files anew on
each attempt (a compaction may replace them mid-read, see ``reader.retry_io``):

- ``summary`` — when data last arrived, the stored event names with their counts (copies
  included: a re-sent event is counted again, which does not matter for a picker), the first
  and last date partitions and the ``data`` keys of the most recent partitions;
- ``health`` — per UTC day, events received (de-duplicated: each ``(event_id, name)`` counts
  once, on the day its first copy arrived, as the ``events`` view keeps it) and failed-event
  records received; failures by error code; the spool backlog and quarantined segments;
- ``declined`` — per stream, the events it was routed but did not store, and why.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import duckdb

from tallystick.store import spool
from tallystick.store.lake import DECLINED, EVENTS, FAILED, Lake
from tallystick.store.loader import QUARANTINE
from tallystick.store.reader import retry_io

T = TypeVar("T")

KEY_PARTITIONS: Final = 3
"""How many of the most recent date partitions ``summary`` reads ``data`` keys from."""

_ONE_DAY: Final = dt.timedelta(days=1)
_PerDay: TypeAlias = dict[dt.date, int]
# the data keys a filter or breakdown accepts (``metrics.params.check_field``)
_DATA_KEY: Final = re.compile(r"^[A-Za-z0-9_$@-][A-Za-z0-9_.$@-]{0,127}$")


@dataclass(frozen=True, slots=True)
class EventCount:
    """How many stored events (copies included) have this name."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Summary:
    """What the lake holds."""

    data_as_of: dt.datetime | None
    """The newest ``received_ts`` of a stored event."""
    latest_event: dt.datetime | None
    """The newest ``client_ts`` of a stored event."""
    first_day: dt.date | None
    """The first event date partition."""
    last_day: dt.date | None
    events: tuple[EventCount, ...]
    """Event names, most frequent first (then by name)."""
    data_keys: tuple[str, ...]
    """``data.<key>`` names in the most recent ``KEY_PARTITIONS`` partitions, sorted."""


@dataclass(frozen=True, slots=True)
class DayCount:
    day: dt.date
    received: int
    """Stored events (de-duplicated) whose first copy was received this UTC day."""
    failed: int
    """Failed-event records received this UTC day."""
    occurred: int = 0
    """Stored events (de-duplicated) whose ``client_ts`` falls on this UTC day: when they
    happened, which differs from when they arrived for imported or late-sent events."""
    bots: int = 0
    """Of ``received``, the events the collector flagged as bots (``agent.is_bot``)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The failed-event records of one error code in a range."""

    code: str
    count: int
    example: str
    """The error message of the most recent one."""
    latest: dt.datetime


@dataclass(frozen=True, slots=True)
class Health:
    """How data arrived from ``date_from`` to ``date_to`` (inclusive UTC dates)."""

    date_from: dt.date
    date_to: dt.date
    days: tuple[DayCount, ...]
    """Every day of the range, in order, zero-filled."""
    failed_by_reason: tuple[Failure, ...]
    """Most frequent first (then by code)."""
    latest_event: dt.datetime | None
    """The newest ``client_ts`` stored (whole lake)."""
    latest_received: dt.datetime | None
    """The newest ``received_ts`` stored (whole lake)."""
    spool_backlog: int
    quarantined: int


def spool_counts(spool_dir: Path) -> tuple[int, int]:
    """``(backlog, quarantined)``: sealed spool segments waiting for the loader, and segments
    the loader set aside because it could not read them (see docs/storage.md)."""
    if not spool_dir.exists():
        return 0, 0
    backlog = sum(1 for _ in spool_dir.glob(f"*{spool.READY_SUFFIX}"))
    quarantine = spool_dir / QUARANTINE
    quarantined = sum(1 for _ in quarantine.glob("*")) if quarantine.exists() else 0
    return backlog, quarantined


def _utc(value: Any) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else None


def _files(lake: Lake, paths: Iterable[str]) -> str:
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in lake.absolute(paths))
    return f"read_parquet([{quoted}], union_by_name = true)"


def _read(work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """``work(con)`` on a fresh in-memory DuckDB in UTC, retried when files changed mid-read
    (``work`` lists the files itself, so each attempt reads the current ones)."""

    def attempt() -> T:
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")  # no bar on a command's stderr
            return work(con)
        finally:
            con.close()

    return retry_io(attempt)


def _recent(partitions: dict[dt.date, list[str]], n: int) -> list[str]:
    return [p for day in sorted(partitions)[-n:] for p in partitions[day]]


def _visible(
    con: duckdb.DuckDBPyConnection, source: str, hidden: frozenset[str], *, where: bool = True
) -> str:
    """A condition (``WHERE ...``, or ``AND ...`` when ``where`` is false) keeping the rows of
    ``source`` not stored for a ``hidden`` stream; empty when nothing is hidden or no file has
    a stream."""
    if not hidden:
        return ""
    described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    if "stream" not in {str(r[0]) for r in described}:
        return ""
    names = ", ".join("'" + h.replace("'", "''") + "'" for h in sorted(hidden))
    return f" {'WHERE' if where else 'AND'} (stream IS NULL OR stream NOT IN ({names})) "


def summary(
    lake: Lake, *, key_partitions: int = KEY_PARTITIONS, hidden: frozenset[str] = frozenset()
) -> Summary:
    """What the lake holds (see ``Summary``); an empty lake gives ``None`` and empty tuples.
    The copies stored for ``hidden`` streams (private ones the reader may not see) are left
    out: names and keys seen only there are not listed."""

    def work(con: duckdb.DuckDBPyConnection) -> Summary:
        partitions = lake.partitions(EVENTS)
        if not partitions:
            return Summary(None, None, None, None, (), ())
        source = _files(lake, (p for paths in partitions.values() for p in paths))
        names = con.execute(
            f"SELECT name, count(*) AS n, max(received_ts), max(client_ts) FROM {source} "
            f"{_visible(con, source, hidden)}GROUP BY name ORDER BY n DESC, name"
        ).fetchall()
        recent = _files(lake, _recent(partitions, key_partitions))
        keys = con.execute(
            f"SELECT DISTINCT unnest(json_keys(data)) AS k FROM {recent} "
            "WHERE data IS NOT NULL AND json_valid(data) AND json_type(data) = 'OBJECT' "
            f"{_visible(con, recent, hidden, where=False)}ORDER BY k"
        ).fetchall()
        received = [t for r in names if (t := _utc(r[2])) is not None]
        client = [t for r in names if (t := _utc(r[3])) is not None]
        return Summary(
            data_as_of=max(received, default=None),
            latest_event=max(client, default=None),
            first_day=min(partitions),
            last_day=max(partitions),
            events=tuple(EventCount(str(r[0]), int(r[1])) for r in names),
            data_keys=tuple(f"data.{k[0]}" for k in keys if _DATA_KEY.match(str(k[0]))),
        )

    return _read(work)


def health(
    lake: Lake,
    spool_dir: Path,
    date_from: dt.date,
    date_to: dt.date,
    *,
    hidden: frozenset[str] = frozenset(),
) -> Health:
    """How data arrived from ``date_from`` to ``date_to`` (see ``Health``), leaving out the
    copies stored for ``hidden`` streams (failed events belong to no stream: they stay)."""
    if date_to < date_from:
        raise ValueError(f"date_to {date_to} is before date_from {date_from}")
    lo = dt.datetime.combine(date_from, dt.time(), dt.UTC)
    hi = dt.datetime.combine(date_to + _ONE_DAY, dt.time(), dt.UTC)

    def work(
        con: duckdb.DuckDBPyConnection,
    ) -> tuple[_PerDay, _PerDay, _PerDay, _PerDay, list[Failure], Any, Any]:
        received: dict[dt.date, int] = {}
        bots: dict[dt.date, int] = {}
        occurred: dict[dt.date, int] = {}
        latest_received = latest_event = None
        event_files = lake.files(EVENTS)
        if event_files:
            # One row per (event_id, name): when its first copy arrived (the copy the events
            # view keeps), then per day of that in the range; the NULL day holds the rest.
            # The kept copy's client_ts gives the day it happened.
            source = _files(lake, event_files)
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            columns = {str(r[0]) for r in described}
            bot = "coalesce(bool_or(agent_is_bot), false)" if "agent_is_bot" in columns else "false"
            con.execute(
                "CREATE TEMP TABLE stored AS SELECT min(received_ts) AS first, "
                "max(received_ts) AS last, max(client_ts) AS latest, "
                f"arg_min(client_ts, received_ts) AS happened, {bot} AS bot FROM {source} "
                f"{_visible(con, source, hidden)}GROUP BY event_id, name"
            )
            rows = con.execute(
                "SELECT CASE WHEN first >= $lo AND first < $hi THEN CAST(first AS DATE) END, "
                "count(*), max(last), max(latest), count(*) FILTER (WHERE bot) "
                "FROM stored GROUP BY 1",
                {"lo": lo, "hi": hi},
            ).fetchall()
            received = {r[0]: int(r[1]) for r in rows if r[0] is not None}
            bots = {r[0]: int(r[4]) for r in rows if r[0] is not None}
            latest_received = max((t for r in rows if (t := _utc(r[2]))), default=None)
            latest_event = max((t for r in rows if (t := _utc(r[3]))), default=None)
            occurred = {
                r[0]: int(r[1])
                for r in con.execute(
                    "SELECT CAST(happened AS DATE), count(*) FROM stored "
                    "WHERE happened >= $lo AND happened < $hi GROUP BY 1",
                    {"lo": lo, "hi": hi},
                ).fetchall()
            }
        failed: dict[dt.date, int] = {}
        reasons: list[Failure] = []
        failed_files = [
            p
            for day, paths in lake.partitions(FAILED).items()
            if date_from <= day <= date_to
            for p in paths
        ]
        if failed_files:
            source = _files(lake, failed_files)
            where = "WHERE received_ts >= $lo AND received_ts < $hi"
            failed = {
                r[0]: int(r[1])
                for r in con.execute(
                    f"SELECT CAST(received_ts AS DATE), count(*) FROM {source} {where} GROUP BY 1",
                    {"lo": lo, "hi": hi},
                ).fetchall()
            }
            reasons = [
                Failure(str(r[0]), int(r[1]), str(r[2]), r[3].astimezone(dt.UTC))
                for r in con.execute(
                    "SELECT error_code, count(*) AS n, arg_max(error_message, received_ts), "
                    f"max(received_ts) FROM {source} {where} GROUP BY error_code "
                    "ORDER BY n DESC, error_code",
                    {"lo": lo, "hi": hi},
                ).fetchall()
            ]
        return received, occurred, bots, failed, reasons, latest_received, latest_event

    received, occurred, bots, failed, reasons, latest_received, latest_event = _read(work)
    backlog, quarantined = spool_counts(spool_dir)
    return Health(
        date_from=date_from,
        date_to=date_to,
        days=tuple(
            DayCount(
                day,
                received.get(day, 0),
                failed.get(day, 0),
                occurred.get(day, 0),
                bots.get(day, 0),
            )
            for day in _days(date_from, date_to)
        ),
        failed_by_reason=tuple(reasons),
        latest_event=latest_event,
        latest_received=latest_received,
        spool_backlog=backlog,
        quarantined=quarantined,
    )


def _days(first: dt.date, last: dt.date) -> Sequence[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def declined(lake: Lake, since: dt.date) -> dict[str, dict[str, int]]:
    """Per stream, how many events it was routed but declined since ``since`` (received, UTC),
    by reason (``control.controls.DECLINED``)."""

    def files() -> list[str]:
        return [p for day, ps in lake.partitions(DECLINED).items() if day >= since for p in ps]

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
        current = files()
        if not current:
            return {}
        rows = con.execute(
            f"SELECT stream, reason, sum(count) FROM {_files(lake, current)} "
            "WHERE received_ts >= ? GROUP BY ALL ORDER BY ALL",
            [dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)],
        ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for stream, reason, count in rows:
            out.setdefault(str(stream), {})[str(reason)] = int(count)
        return out

    return _read(work) if files() else {}
