"""Read the lake with DuckDB: de-duplicated events and the failed-events store.

Every query and export goes through the ``events`` view defined here, which keeps the first
received copy of each event (same ``event_id`` and ``name``; of copies received together — one
per stream — the fullest): re-sent and re-imported events count exactly once.

Given an ``Exclusion`` (``metrics.exclusion``), ``events`` also leaves out what analyses leave
out — the copies of hidden (private) streams, bots unless included, and quarantined events
(every copy of one) — with the same SQL the analysis engines apply, and ``messages`` the
copies of hidden streams; ``raw_events`` always holds every stored copy.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

import duckdb
import pyarrow as pa

from tallystick.store.lake import (
    DECLINED,
    DECLINED_SCHEMA,
    EVENT_SCHEMA,
    EVENTS,
    FAILED,
    FAILED_SCHEMA,
    MESSAGES,
    MESSAGES_SCHEMA,
    Lake,
)
from tallystick.store.ledger import MESSAGES_SQL

if TYPE_CHECKING:
    from tallystick.metrics.exclusion import Exclusion

T = TypeVar("T")

IO_RETRY_SECONDS: Final = 15.0
"""How long a read is tried again while the files it listed keep changing under it."""
#: among copies of an event received together (one per stream), the one with the fewest empty
#: columns first: a stream's `keep` list may have narrowed another copy
_MISSING: Final = " + ".join(
    f"({f.name} IS NULL)::INTEGER"
    for f in EVENT_SCHEMA
    if f.name not in ("event_id", "name", "client_ts", "received_ts", "schema_version", "stream")
)


def _source(con: duckdb.DuckDBPyConnection, lake: Lake, kind: str, schema: pa.Schema) -> str:
    if lake.files(kind):
        glob = lake.glob(kind).replace("'", "''")
        return f"read_parquet('{glob}', union_by_name = true)"
    name = f"_empty_{kind}"
    con.register(name, schema.empty_table())
    return name


def connect(lake: Lake, exclusion: Exclusion | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``events`` (de-duplicated; without what
    ``exclusion`` leaves out, when given), ``raw_events`` (every stored copy),
    ``failed_events``, ``declined_events`` (counts of events streams were routed but did not
    store) and ``messages`` (the delivery ledger: one row per stored copy as it arrived, never
    de-duplicated; see ``store.ledger``)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # no bar on a command's stderr
    con.execute(
        f"CREATE VIEW _stored_events AS SELECT * FROM {_source(con, lake, EVENTS, EVENT_SCHEMA)}"
    )
    con.execute(f"CREATE VIEW raw_events AS {_complete(con, '_stored_events', EVENT_SCHEMA)}")
    counted = "raw_events"
    if exclusion is not None:
        con.execute(f"CREATE VIEW _counted_events AS {excluding_sql('raw_events', exclusion)}")
        counted = "_counted_events"
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM {counted} "
        "QUALIFY row_number() OVER "
        f"(PARTITION BY event_id, name ORDER BY received_ts, client_ts, {_MISSING}) = 1"
    )
    con.execute(
        f"CREATE VIEW failed_events AS SELECT * FROM {_source(con, lake, FAILED, FAILED_SCHEMA)}"
    )
    declined = _source(con, lake, DECLINED, DECLINED_SCHEMA)
    con.execute(f"CREATE VIEW declined_events AS SELECT * FROM {declined}")
    hidden = exclusion.hidden_streams if exclusion is not None else frozenset()
    ledger = "_ledger" if hidden else "messages"
    if lake.files(MESSAGES):
        con.execute(
            f"CREATE VIEW {ledger} AS SELECT * FROM {_source(con, lake, MESSAGES, MESSAGES_SCHEMA)}"
        )
    else:  # a lake written before the ledger: what its stored copies still show
        con.execute(f"CREATE VIEW {ledger} AS {MESSAGES_SQL}")
    if hidden:  # the copies stored for hidden streams are not shown, as in ``events``
        from tallystick.metrics.exclusion import visible
        from tallystick.metrics.sql import render

        con.execute(
            f"CREATE VIEW messages AS SELECT * FROM {ledger} "
            f"WHERE {render(visible(hidden), 'duckdb')}"
        )
    return con


def excluding_sql(relation: str, exclusion: Exclusion) -> str:
    """A DuckDB SELECT of the rows of ``relation`` (with the lake's columns) that
    ``exclusion`` keeps."""
    from sqlglot import exp

    from tallystick.metrics.exclusion import apply
    from tallystick.metrics.sql import render

    return "SELECT * FROM " + render(apply(exp.to_table(relation), exclusion), "duckdb")


def _complete(con: duckdb.DuckDBPyConnection, view: str, schema: pa.Schema) -> str:
    """A SELECT of every column of ``schema`` from ``view``: columns that the files behind it
    do not have yet (written by an older version) read as NULL; extra columns are kept."""
    present = {str(r[0]) for r in con.execute(f"DESCRIBE {view}").fetchall()}
    missing = [
        f"CAST(NULL AS {_DUCKDB_TYPES[str(f.type)]}) AS {f.name}"
        for f in schema
        if f.name not in present
    ]
    return "SELECT *" + "".join(", " + m for m in missing) + f" FROM {view}"


_DUCKDB_TYPES: Final = {
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int64": "BIGINT",
    "int16": "SMALLINT",
    "double": "DOUBLE",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "map<string, string>": "MAP(VARCHAR, VARCHAR)",
}


def retrying(attempt: Callable[[], T], transient: Callable[[Exception], bool]) -> T:
    """Run ``attempt``, again while it fails with an error ``transient`` accepts, for up to
    ``IO_RETRY_SECONDS`` (waits growing from 50 ms to 0.5 s), then let the error through.

    A file a query listed may be gone by the time it is read: compaction merged it, or a purge,
    retention or user deletion rewrote its partition (``store.purge``) — the latter go through
    many partitions in a row, so a query may need several listings before one holds still.
    ``attempt`` must list the files anew each time.
    """
    deadline = time.monotonic() + IO_RETRY_SECONDS
    wait = 0.05
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + wait > deadline:
                raise
        time.sleep(wait)
        wait = min(wait * 2, 0.5)


def retry_io(attempt: Callable[[], T]) -> T:
    """Run ``attempt``, again when DuckDB could not read a file that was just replaced
    (``retrying``)."""
    return retrying(attempt, lambda exc: isinstance(exc, duckdb.IOException))


def with_retry(
    lake: Lake,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    exclusion: Exclusion | None = None,
) -> T:
    """Run ``work`` on a fresh connection to the lake (``connect(lake, exclusion)``), retrying
    when files changed mid-read."""

    def attempt() -> T:
        con = connect(lake, exclusion)
        try:
            return work(con)
        finally:
            con.close()

    return retry_io(attempt)


def count_events(lake: Lake) -> int:
    def work(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    return with_retry(lake, work)


def _sql_list(paths: Iterable[str]) -> str:
    return ", ".join("'" + p.replace("'", "''") + "'" for p in paths)


def existing_events(
    lake: Lake, keys: Sequence[tuple[str, str]], days: Iterable[dt.date]
) -> set[tuple[str, str]]:
    """Which of ``keys`` (``event_id``, ``name``) are already stored in the lake partitions of
    ``days``.

    Reads only the ``event_id`` and ``name`` columns of those partitions' files, so the cost
    does not grow with the length of the lake's history.
    """
    wanted = sorted(set(days))

    def attempt() -> set[tuple[str, str]]:
        partitions = lake.partitions()
        files = [p for day in wanted for p in partitions.get(day, [])]
        if not files or not keys:
            return set()
        con = duckdb.connect(":memory:")
        try:
            candidates = pa.table(
                {
                    "event_id": pa.array([k[0] for k in keys], pa.string()),
                    "name": pa.array([k[1] for k in keys], pa.string()),
                }
            )
            con.register("candidates", candidates)
            rows = con.execute(
                "SELECT DISTINCT s.event_id, s.name FROM read_parquet("
                f"[{_sql_list(lake.absolute(files))}], union_by_name = true) AS s "
                "SEMI JOIN candidates AS c ON s.event_id = c.event_id AND s.name = c.name"
            ).fetchall()
            return {(str(r[0]), str(r[1])) for r in rows}
        finally:
            con.close()

    return retry_io(attempt)
