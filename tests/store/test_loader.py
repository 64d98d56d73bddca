"""The loader: spool → Parquet, idempotent after a crash, compaction keeps each event once."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pyarrow.parquet as pq

from support import make_event
from tallystick.config import Settings
from tallystick.store import spool
from tallystick.store.lake import EVENTS, MESSAGES, Lake
from tallystick.store.loader import Loader
from tallystick.store.reader import connect, count_events
from tallystick.store.spool import SpoolWriter


def _spool(settings: Settings, events: list[dict[str, object]]) -> None:
    writer = SpoolWriter(settings.spool_dir, rotate_seconds=60)
    writer.start()
    writer.append_sync(
        [spool.frame(spool.EVENTS, 1_700_000_000_000_000, msgspec.json.encode(events))]
    )
    writer.close()


def test_reloading_the_same_segment_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    events = [make_event() for _ in range(50)]
    _spool(settings, events)
    [segment] = list(settings.spool_dir.glob("*.ready"))
    keep = tmp_path / "copy"
    shutil.copy(segment, keep)
    loader = Loader(settings)
    assert loader.load_once().events == 50
    assert list(settings.spool_dir.glob("*.ready")) == []
    # A crash after writing Parquet but before deleting the segment: it is loaded again.
    shutil.copy(keep, segment)
    assert loader.load_once().events == 50
    lake = Lake(settings.lake_dir)
    assert len(lake.files(EVENTS)) == 1  # the same file name was replaced
    assert count_events(lake) == 50


def test_compaction_merges_and_dedupes(settings: Settings) -> None:
    lake = Lake(settings.lake_dir)
    loader = Loader(settings)
    first = [make_event(client_ts="2026-03-01T10:00:00Z") for _ in range(10)]
    for i in range(5):
        batch = first if i == 0 else [*first[:2], make_event(client_ts="2026-03-01T11:00:00Z")]
        _spool(settings, batch)
        loader.load_once()
    assert len(lake.files(EVENTS)) == 5
    con = connect(lake)
    raw = con.execute("SELECT count(*) FROM raw_events").fetchone()
    assert raw is not None
    assert raw[0] == 10 + 4 * 3
    assert count_events(lake) == 14
    assert len(lake.files(MESSAGES)) == 5  # the delivery ledger: one file per load
    assert loader.compact(min_files=2) == 5 + 5
    files = lake.files(EVENTS)
    assert len(files) == 1
    assert "compact-" in files[0]
    table = pq.read_table(lake.absolute(files)[0])
    assert table.num_rows == 14
    assert count_events(lake) == 14
    # the ledger's files are merged too, every copy kept: retries stay countable
    ledger = lake.files(MESSAGES)
    assert len(ledger) == 1
    assert pq.read_table(lake.absolute(ledger)[0]).num_rows == 10 + 4 * 3


def test_a_lake_without_a_ledger_gets_one_from_its_event_files(settings: Settings) -> None:
    lake = Lake(settings.lake_dir)
    loader = Loader(settings)
    events = [make_event(session={"id": "s1", "seq": n}) for n in (1, 2, 4)]
    _spool(settings, events)
    loader.load_once()
    for path in lake.files(MESSAGES):  # as written by a version before the ledger
        lake.storage.delete(path)
    assert loader.backfill_ledger() == 3
    assert loader.backfill_ledger() == 0  # once only
    rows = connect(lake).execute("SELECT seq FROM messages ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [1, 2, 4]


def test_failed_frames_go_to_the_failed_store(settings: Settings) -> None:
    import datetime as dt

    from tallystick.store.failed import FailedEvent

    record = FailedEvent(
        dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "http",
        "malformed_json",
        "the request body is not valid JSON.",
        "[{",
        False,
    )
    writer = SpoolWriter(settings.spool_dir)
    writer.start()
    writer.append_sync([spool.frame(spool.FAILED, 1, msgspec.json.encode([record]))])
    writer.close()
    Loader(settings).load_once()
    con = connect(Lake(settings.lake_dir))
    assert con.execute("SELECT error_code, raw FROM failed_events").fetchall() == [
        ("malformed_json", "[{")
    ]


def test_events_are_partitioned_by_utc_date_of_client_ts(settings: Settings) -> None:
    _spool(
        settings,
        [
            make_event(client_ts="2026-03-01T23:30:00-02:00"),
            make_event(client_ts="2026-03-01T23:30:00Z"),
        ],
    )
    Loader(settings).load_once()
    assert sorted(Lake(settings.lake_dir).partitions()) == [
        __import__("datetime").date(2026, 3, 1),
        __import__("datetime").date(2026, 3, 2),
    ]


def test_a_damaged_segment_is_set_aside_and_the_rest_loads(settings: Settings) -> None:
    good = [make_event() for _ in range(3)]
    _spool(settings, good)
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    damaged = settings.spool_dir / "0-damaged-000001.ready"
    damaged.write_bytes(spool.frame(spool.EVENTS, 1, b'[{"event_id": '))  # intact CRC, bad JSON
    stats = Loader(settings).load_once()
    assert stats.quarantined == 1
    assert stats.events == 3
    assert (settings.spool_dir / "quarantine" / damaged.name).exists()
    assert count_events(Lake(settings.lake_dir)) == 3
