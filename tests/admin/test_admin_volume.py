"""Each stream's events over the last 7 and 28 days, from a real lake of Parquet files, against
hand-counted answers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq

from metrics.lakerows import to_table
from tallystick.admin.volume import Volume, stream_volumes
from tallystick.store.lake import Lake

TODAY = dt.date(2026, 3, 28)
RECEIVED = dt.datetime(2026, 3, 29, tzinfo=dt.UTC)


def row(event_id: str, day: str, stream: str | None, late: int = 0) -> dict[str, object]:
    return {
        "event_id": event_id,
        "name": "project.commit",
        "client_ts": dt.datetime.fromisoformat(f"{day}T10:00:00+00:00"),
        "received_ts": RECEIVED + dt.timedelta(seconds=late),
        "stream": stream,
    }


ROWS = [
    row("e1", "2026-03-28", "product"),
    row("e1", "2026-03-28", "web"),  # routed to two streams: counts in both
    row("e2", "2026-03-22", "product"),  # the first day of the 7-day window
    row("e2", "2026-03-22", "product", late=5),  # sent again: counts once
    row("e3", "2026-03-21", "product"),  # only in the 28 days
    row("e4", "2026-03-01", "product"),  # the first day of the 28-day window
    row("e5", "2026-02-28", "product"),  # before both windows
    row("e6", "2026-03-29", "product"),  # a day ahead of the server's today
    row("e7", "2026-03-25", "unrouted"),
]


def test_volumes_per_stream(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_events(to_table(ROWS), "batch")
    # a file written before streams existed has no stream column
    lake.write_events(to_table([row("e8", "2026-03-27", None)]).drop_columns(["stream"]), "old")
    assert (
        "stream"
        not in pq.read_schema(lake.absolute(lake.partitions()[dt.date(2026, 3, 27)])[0]).names
    )
    assert stream_volumes(lake, TODAY) == {
        "product": Volume(last_7_days=3, last_28_days=5),
        "web": Volume(1, 1),
        "unrouted": Volume(1, 1),
        None: Volume(1, 1),
    }


def test_only_old_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_events(to_table([row("e1", "2026-03-20", None)]).drop_columns(["stream"]), "old")
    assert stream_volumes(lake, TODAY) == {None: Volume(0, 1)}


def test_an_empty_lake_or_window(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    assert stream_volumes(lake, TODAY) == {}
    lake.write_events(to_table([row("e1", "2026-01-01", "product")]), "january")
    assert stream_volumes(lake, TODAY) == {}
