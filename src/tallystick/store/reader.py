"""Read the lake with DuckDB: de-duplicated events and the failed-events store.

Every query and export goes through the ``events`` view defined here, which keeps the first
received copy of each ``event_id``: re-sent and re-imported events count exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

import duckdb
import pyarrow as pa

from tallystick.store.lake import EVENT_SCHEMA, EVENTS, FAILED, FAILED_SCHEMA, Lake

T = TypeVar("T")

_RETRIES: Final = 5


def _source(con: duckdb.DuckDBPyConnection, lake: Lake, kind: str, schema: pa.Schema) -> str:
    if lake.files(kind):
        glob = lake.glob(kind).replace("'", "''")
        return f"read_parquet('{glob}', union_by_name = true)"
    name = f"_empty_{kind}"
    con.register(name, schema.empty_table())
    return name


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``events`` (de-duplicated), ``raw_events``
    (every stored copy) and ``failed_events``."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW raw_events AS SELECT * FROM {_source(con, lake, EVENTS, EVENT_SCHEMA)}"
    )
    con.execute(
        "CREATE VIEW events AS SELECT * FROM raw_events "
        "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY received_ts, name) = 1"
    )
    con.execute(
        f"CREATE VIEW failed_events AS SELECT * FROM {_source(con, lake, FAILED, FAILED_SCHEMA)}"
    )
    return con


def with_retry(lake: Lake, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Run ``work`` on a fresh connection, retrying when compaction replaced files mid-read."""
    for attempt in range(_RETRIES):
        con = connect(lake)
        try:
            return work(con)
        except duckdb.IOException:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        finally:
            con.close()
    raise AssertionError("unreachable")


def count_events(lake: Lake) -> int:
    def work(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    return with_retry(lake, work)
