"""The lake: plain Parquet files partitioned by date, written atomically.

Layout under the lake root::

    events/date=YYYY-MM-DD/<name>.parquet    accepted events, flat columns (see schema.FIELDS)
                                             and the stream each copy was stored for
    failed/date=YYYY-MM-DD/<name>.parquet    rejected events with their reasons
    declined/date=YYYY-MM-DD/<name>.parquet  counts of events streams declined, and why
    messages/date=YYYY-MM-DD/<name>.parquet  the delivery ledger: every stored copy as it arrived,
                                             never de-duplicated (see store.ledger)

Files are written to a temporary name, fsync'd, then renamed into place, so a reader never sees
a half-written file. ``Storage`` is the seam where an fsspec/S3 implementation can follow.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, Protocol

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick.schema import FIELDS, SCHEMA_VERSION, Event
from tallystick.store.durable import TMP_SUFFIX, replace_durably
from tallystick.store.failed import FailedEvent
from tallystick.store.ledger import MESSAGES_SCHEMA, ledger_table

__all__ = ["MESSAGES_SCHEMA"]

EVENTS: Final = "events"
FAILED: Final = "failed"
DECLINED: Final = "declined"
MESSAGES: Final = "messages"

_TS = pa.timestamp("us", tz="UTC")
_ARROW_TYPES: Final = {
    "string": pa.string(),
    "timestamp": _TS,
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "map": pa.map_(pa.string(), pa.string()),
    "json": pa.string(),
}

EVENT_SCHEMA: Final = pa.schema(
    [pa.field(f.column, _ARROW_TYPES[f.kind], nullable=not f.required) for f in FIELDS]
    + [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("stream", pa.string()),
    ]
)
"""The lake's columns: the monoschema's flat fields, then ``schema_version`` and ``stream`` (the
stream this copy was stored for; an event routed to two streams is stored once per stream, and
files written before streams existed have no ``stream``)."""

FAILED_SCHEMA: Final = pa.schema(
    [
        pa.field("received_ts", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("error_code", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
        pa.field("raw_truncated", pa.bool_(), nullable=False),
        pa.field("index", pa.int64()),
        pa.field("event_id", pa.string()),
        pa.field("origin", pa.string()),
    ]
)

DECLINED_SCHEMA: Final = pa.schema(
    [
        pa.field("received_ts", _TS, nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)
"""Events a stream was routed but did not store, counted per request (see
``control.controls.DECLINED`` for the reasons)."""

_json_encode = msgspec.json.Encoder().encode


class Storage(Protocol):
    """Where lake files live. ``LocalStorage`` is the default; remote stores implement the same."""

    def write_table(self, path: str, table: pa.Table) -> None: ...
    def list_files(self, prefix: str) -> list[str]: ...
    def delete(self, path: str) -> None: ...
    def size(self, path: str) -> int: ...
    def version(self, path: str) -> str:
        """Changes whenever the file at ``path`` is written again ("" once it is gone)."""
        ...


class LocalStorage:
    """A directory on a local disk: atomic, durable writes by write-fsync-rename-fsync(dir)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _abs(self, path: str) -> Path:
        return self.root / path

    def write_table(self, path: str, table: pa.Table) -> None:
        replace_durably(
            self._abs(path),
            lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=256 * 1024),
        )

    def list_files(self, prefix: str) -> list[str]:
        base = self._abs(prefix)
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*.parquet")
            if not p.name.startswith(".")
        )

    def delete(self, path: str) -> None:
        self._abs(path).unlink(missing_ok=True)

    def size(self, path: str) -> int:
        return self._abs(path).stat().st_size

    def version(self, path: str) -> str:
        # Files are replaced by rename, never rewritten in place: a new write, a new mtime.
        try:
            st = self._abs(path).stat()
        except FileNotFoundError:
            return ""
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"

    def remove_stale_temporaries(self, older_than_seconds: float = 3600.0) -> int:
        """Delete temporaries left by a writer that died mid-write."""
        now = dt.datetime.now().timestamp()
        removed = 0
        for p in self.root.rglob(f".*{TMP_SUFFIX}"):
            try:
                if now - p.stat().st_mtime > older_than_seconds:
                    p.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _utc(ts: dt.datetime | None) -> dt.datetime | None:
    return None if ts is None else ts.astimezone(dt.UTC)


def events_to_table(
    events: Sequence[Event],
    received_ts: Sequence[dt.datetime],
    streams: Sequence[str | None] | None = None,
) -> pa.Table:
    """Flatten validated events into the lake's columns (see ``schema.FIELDS``); ``streams``
    gives each event's stream (default: none)."""
    n = len(events)
    cols: dict[str, list[object]] = {
        "event_id": [str(e.event_id) for e in events],
        "name": [e.name for e in events],
        "client_ts": [_utc(e.client_ts) for e in events],
        "sent_ts": [_utc(e.sent_ts) for e in events],
        "received_ts": [_utc(t) for t in received_ts],
    }
    apps = [e.app for e in events]
    cols["app_id"] = [a.id if a else None for a in apps]
    cols["app_version"] = [a.version if a else None for a in apps]
    cols["app_environment"] = [a.environment if a else None for a in apps]
    cols["app_instance"] = [a.instance if a else None for a in apps]
    clients = [e.client for e in events]
    cols["client_library"] = [c.library if c else None for c in clients]
    cols["client_library_version"] = [c.library_version if c else None for c in clients]
    cols["client_platform"] = [c.platform if c else None for c in clients]
    users = [e.user for e in events]
    cols["user_id"] = [u.id if u else None for u in users]
    cols["user_anonymous_id"] = [u.anonymous_id if u else None for u in users]
    cols["user_is_logged_in"] = [u.is_logged_in if u else None for u in users]
    sessions = [e.session for e in events]
    cols["session_id"] = [s.id if s else None for s in sessions]
    cols["session_seq"] = [s.seq if s else None for s in sessions]
    pages = [e.page for e in events]
    cols["page_pageview_id"] = [p.pageview_id if p else None for p in pages]
    cols["page_url"] = [p.url if p else None for p in pages]
    cols["page_referrer"] = [p.referrer if p else None for p in pages]
    cols["agent_user_agent"] = [e.agent.user_agent if e.agent else None for e in events]
    cols["locale"] = [e.locale for e in events]
    cols["experiments"] = [list(e.experiments.items()) if e.experiments else None for e in events]
    cols["sample_unit"] = [e.sample.unit if e.sample else None for e in events]
    cols["sample_rate"] = [e.sample.rate if e.sample else None for e in events]
    cols["data"] = [_json_encode(e.data).decode() if e.data else None for e in events]
    cols["schema_version"] = [SCHEMA_VERSION] * n
    cols["stream"] = list(streams) if streams is not None else [None] * n
    # server-set columns (enrichment) start empty
    arrays = [
        pa.array(cols[f.name], type=f.type) if f.name in cols else pa.nulls(n, f.type)
        for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """``table`` (read from a lake file of any age) with exactly the lake's current columns:
    columns added since it was written are filled with nulls."""
    for f in EVENT_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


def failed_to_table(failed: Sequence[FailedEvent]) -> pa.Table:
    cols = {name: [getattr(f, name) for f in failed] for name in FAILED_SCHEMA.names}
    cols["received_ts"] = [_utc(t) for t in cols["received_ts"]]
    return pa.Table.from_pydict(cols, schema=FAILED_SCHEMA)


def _dates(table: pa.Table, column: str) -> pa.Array:
    return pc.cast(table[column], pa.date32())


def split_by_date(table: pa.Table, column: str) -> dict[dt.date, pa.Table]:
    """Split a table into one table per UTC date of ``column``."""
    if table.num_rows == 0:
        return {}
    dates = _dates(table, column)
    out: dict[dt.date, pa.Table] = {}
    for value in pc.unique(dates).to_pylist():
        mask = pc.equal(dates, pa.scalar(value, pa.date32()))
        out[value] = table.filter(mask)
    return out


def partition_path(kind: str, day: dt.date) -> str:
    return f"{kind}/date={day.isoformat()}"


class Lake:
    """The lake of one data directory."""

    def __init__(self, root: Path, storage: Storage | None = None) -> None:
        self.root = root
        self.storage: Storage = storage or LocalStorage(root)

    def write(self, kind: str, table: pa.Table, name: str) -> list[str]:
        """Write ``table`` split into date partitions as ``<name>.parquet``; return the paths.

        Writing the same name again replaces the file, which makes re-loading idempotent.
        """
        column = "client_ts" if kind == EVENTS else "received_ts"
        written = []
        for day, part in sorted(split_by_date(table, column).items()):
            path = f"{partition_path(kind, day)}/{name}.parquet"
            self.storage.write_table(path, part)
            written.append(path)
        return written

    def write_events(self, table: pa.Table, name: str) -> list[str]:
        """Write events, and their rows of the delivery ledger first (``store.ledger``): a
        crash in between leaves a ledger row that the next load writes again, never an event
        the ledger does not know."""
        written = self.write(MESSAGES, ledger_table(conform(table)), name) if table.num_rows else []
        return written + self.write(EVENTS, table, name)

    def write_failed(self, failed: Sequence[FailedEvent], name: str) -> list[str]:
        return self.write(FAILED, failed_to_table(failed), name) if failed else []

    def write_declined(self, rows: Sequence[dict[str, object]], name: str) -> list[str]:
        """Write declined-event counts (``received_ts``, ``stream``, ``reason``, ``name``,
        ``count``)."""
        if not rows:
            return []
        columns = {f: [r[f] for r in rows] for f in DECLINED_SCHEMA.names}
        return self.write(DECLINED, pa.Table.from_pydict(columns, schema=DECLINED_SCHEMA), name)

    def files(self, kind: str = EVENTS) -> list[str]:
        return self.storage.list_files(kind)

    def partitions(self, kind: str = EVENTS) -> dict[dt.date, list[str]]:
        parts: dict[dt.date, list[str]] = defaultdict(list)
        for path in self.files(kind):
            segment = path.split("/")[1]
            parts[dt.date.fromisoformat(segment.removeprefix("date="))].append(path)
        return dict(parts)

    def stamp(
        self, kind: str = EVENTS, day_from: dt.date | None = None, day_to: dt.date | None = None
    ) -> tuple[tuple[str, str], ...]:
        """The files of ``kind`` dated ``day_from``..``day_to`` (``None``: unbounded), each with
        its version: while the stamp is unchanged, so is every answer computed from them."""
        return tuple(
            (path, self.storage.version(path))
            for day, paths in sorted(self.partitions(kind).items())
            if (day_from is None or day >= day_from) and (day_to is None or day <= day_to)
            for path in paths
        )

    def glob(self, kind: str = EVENTS) -> str:
        """A glob for engines that read the lake directly (DuckDB ``read_parquet``)."""
        return str(self.root / kind / "*" / "*.parquet")

    def absolute(self, paths: Iterable[str]) -> list[str]:
        return [str(self.root / p) for p in paths]
