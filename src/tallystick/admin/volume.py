"""How many events each stream stored lately, from the lake's ``stream`` column.

An event is counted once per stream that stored it (an event routed to two streams counts in
both; an event sent twice counts once, on the day of its first received copy), by the UTC day it
happened (``client_ts``, the lake's partition). Only the partitions of the window are read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import duckdb

from tallystick.store.lake import EVENTS, Lake
from tallystick.store.reader import retry_io

WINDOWS: Final = (7, 28)
"""The windows counted, in days ending today (UTC)."""


@dataclass(frozen=True, slots=True)
class Volume:
    last_7_days: int = 0
    last_28_days: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"last_7_days": self.last_7_days, "last_28_days": self.last_28_days}


def window_start(today: dt.date, days: int) -> dt.date:
    return today - dt.timedelta(days=days - 1)


def stream_volumes(lake: Lake, today: dt.date) -> dict[str | None, Volume]:
    """Events per stream (``None``: copies stored before streams existed) over the last 7 and 28
    days, today included (and events dated after today, at most a day ahead)."""
    first = window_start(today, max(WINDOWS))
    week = window_start(today, min(WINDOWS))

    def attempt() -> dict[str | None, Volume]:
        files = [
            path for day, paths in lake.partitions(EVENTS).items() if day >= first for path in paths
        ]
        if not files:
            return {}
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            listing = ", ".join("'" + p.replace("'", "''") + "'" for p in lake.absolute(files))
            source = f"read_parquet([{listing}], union_by_name = true)"
            columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            stream = "stream" if "stream" in columns else "CAST(NULL AS VARCHAR)"
            rows = con.execute(
                f"""
                WITH copies AS (
                    SELECT {stream} AS stream, event_id, name,
                           arg_min(CAST(client_ts AS DATE), received_ts) AS day
                    FROM {source}
                    WHERE CAST(client_ts AS DATE) >= ?
                    GROUP BY ALL
                )
                SELECT stream, count(*) FILTER (WHERE day >= ?), count(*)
                FROM copies GROUP BY stream
                """,
                [first, week],
            ).fetchall()
        finally:
            con.close()
        return {row[0]: Volume(int(row[1]), int(row[2])) for row in rows}

    return retry_io(attempt)
