"""store.health: what the lake holds and how data arrived, against hand-computed fixtures."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.lakerows import write_rows
from tallystick.store.failed import FailedEvent
from tallystick.store.health import (
    DayCount,
    EventCount,
    Failure,
    Health,
    Summary,
    health,
    spool_counts,
    summary,
)
from tallystick.store.lake import Lake
from tallystick.store.loader import QUARANTINE
from tallystick.store.reader import with_retry

D = dt.date.fromisoformat


def T(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _event(
    event_id: str, name: str, client: str, received: str, data: object = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "name": name,
        "client_ts": T(client),
        "received_ts": T(received),
        "user_id": "u1",
        "data": data,
    }


# The range asked for below is 2026-03-01 .. 2026-03-05.
EVENTS = [
    _event("a1", "login", "2026-03-01T10:00", "2026-03-01T10:00:05"),  # 03-01
    _event("a2", "login", "2026-03-01T23:59", "2026-03-02T00:00:01"),  # 03-02: after midnight
    _event("a3", "commit", "2026-02-20T12:00", "2026-03-02T12:00"),  # 03-02: a backfill
    _event("a1", "login", "2026-03-01T10:00", "2026-03-04T08:00"),  # copy of a1: not again
    _event("a1", "login", "2026-02-28T09:00", "2026-03-04T09:00"),  # copy, another partition
    _event("a4", "login", "2026-02-27T08:00", "2026-02-27T08:00:01"),  # first copy before range
    _event("a4", "login", "2026-02-27T08:00", "2026-03-03T08:00"),  # ... so never in range
    _event("a1", "logout", "2026-03-03T07:00", "2026-03-03T07:00:02"),  # same id, other name
    _event("a6", "login", "2026-03-06T00:30", "2026-03-06T00:30:01"),  # after the range
]
RECEIVED = {"2026-03-01": 1, "2026-03-02": 2, "2026-03-03": 1}
# by client_ts of the kept copy: a1 and a2 on 03-01, a1/logout on 03-03 (a3, a4, a6 outside)
OCCURRED = {"2026-03-01": 2, "2026-03-03": 1}


def _failed(code: str, received: str, message: str = "m") -> FailedEvent:
    return FailedEvent(T(received), "http", code, message, "{}")


FAILED = [
    _failed("invalid_field", "2026-03-02T08:00", "first"),
    _failed("invalid_field", "2026-03-02T09:00", "latest"),
    _failed("invalid_field", "2026-03-02T07:00", "earliest"),
    _failed("malformed_json", "2026-03-03T23:59:59", "not json"),
    _failed("missing_field", "2026-02-28T12:00"),  # before the range
    _failed("missing_field", "2026-03-05T00:00", "no name"),
    _failed("unknown_field", "2026-03-06T00:00"),  # after the range
]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = write_rows(tmp_path / "lake", EVENTS)
    lake.write_failed(FAILED[:4], "f-0")
    lake.write_failed(FAILED[4:], "f-1")
    return lake


def test_days_are_zero_filled_and_count_each_event_once_on_its_first_arrival(
    lake: Lake, tmp_path: Path
) -> None:
    got = health(lake, tmp_path / "spool", D("2026-03-01"), D("2026-03-05"))
    assert got.days == tuple(
        DayCount(
            D(f"2026-03-0{n}"),
            RECEIVED.get(f"2026-03-0{n}", 0),
            {2: 3, 3: 1, 5: 1}.get(n, 0),
            OCCURRED.get(f"2026-03-0{n}", 0),
        )
        for n in range(1, 6)
    )
    assert got.failed_by_reason == (
        Failure("invalid_field", 3, "latest", T("2026-03-02T09:00")),
        Failure("malformed_json", 1, "not json", T("2026-03-03T23:59:59")),
        Failure("missing_field", 1, "no name", T("2026-03-05T00:00")),
    )
    assert got.latest_event == T("2026-03-06T00:30")
    assert got.latest_received == T("2026-03-06T00:30:01")
    assert (got.spool_backlog, got.quarantined) == (0, 0)


def test_received_counts_agree_with_the_deduplicating_events_view(
    lake: Lake, tmp_path: Path
) -> None:
    def per_day(con: Any) -> dict[dt.date, int]:
        rows = con.execute(
            "SELECT CAST(received_ts AS DATE), count(*) FROM events GROUP BY 1"
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def happened(con: Any) -> dict[dt.date, int]:
        rows = con.execute("SELECT CAST(client_ts AS DATE), count(*) FROM events GROUP BY 1")
        return {r[0]: r[1] for r in rows.fetchall()}

    expected = with_retry(lake, per_day)
    got = health(lake, tmp_path, D("2026-02-01"), D("2026-03-31"))
    assert {d.day: d.received for d in got.days if d.received} == expected
    assert {d.day: d.occurred for d in got.days if d.occurred} == with_retry(lake, happened)
    assert sum(d.failed for d in got.days) == len(FAILED)


@pytest.mark.parametrize(
    ("first", "last", "received", "failed"),
    [
        ("2026-03-02", "2026-03-02", [2], [3]),
        ("2026-03-04", "2026-03-04", [0], [0]),
        ("2026-03-06", "2026-03-07", [1, 0], [1, 0]),
        ("2026-01-01", "2026-01-02", [0, 0], [0, 0]),
    ],
)
def test_one_day_and_ranges_outside_the_data(
    lake: Lake, tmp_path: Path, first: str, last: str, received: list[int], failed: list[int]
) -> None:
    got = health(lake, tmp_path, D(first), D(last))
    assert [d.received for d in got.days] == received
    assert [d.failed for d in got.days] == failed
    assert got.days[0].day == D(first)
    assert sum(f.count for f in got.failed_by_reason) == sum(failed)


def test_an_empty_lake(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    got = health(lake, tmp_path / "no-spool", D("2026-03-01"), D("2026-03-02"))
    assert got == Health(
        D("2026-03-01"),
        D("2026-03-02"),
        (DayCount(D("2026-03-01"), 0, 0), DayCount(D("2026-03-02"), 0, 0)),
        (),
        None,
        None,
        0,
        0,
    )
    assert summary(lake) == Summary(None, None, None, None, (), ())


def test_a_backwards_range_is_refused(lake: Lake, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="before"):
        health(lake, tmp_path, D("2026-03-02"), D("2026-03-01"))


def test_spool_counts_ready_segments_and_quarantined_ones(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    assert spool_counts(spool) == (0, 0)
    spool.mkdir()
    for name in ("1.ready", "2.ready", "3.open"):
        (spool / name).write_bytes(b"")
    assert spool_counts(spool) == (2, 0)
    (spool / QUARANTINE).mkdir()
    (spool / QUARANTINE / "0.ready").write_bytes(b"")
    assert spool_counts(spool) == (2, 1)
    got = health(Lake(tmp_path / "lake"), spool, D("2026-03-01"), D("2026-03-01"))
    assert (got.spool_backlog, got.quarantined) == (2, 1)


# -- summary ------------------------------------------------------------------------------------


def test_summary_names_counts_days_and_recent_data_keys(tmp_path: Path) -> None:
    rows = [
        _event("e1", "b.old", "2026-01-01T10:00", "2026-01-01T10:00", {"old_key": 1}),
        _event("e2", "a.two", "2026-01-02T10:00", "2026-01-02T10:00", {"a": 1}),
        _event("e2", "a.two", "2026-01-02T10:00", "2026-01-05T10:00", {"a": 1}),  # a copy
        _event("e3", "c.one", "2026-01-03T10:00", "2026-01-03T11:00", {"b": "x", "c": {"d": 1}}),
        _event("e4", "b.two", "2026-01-04T10:00", "2026-01-04T10:00", "[1, 2]"),
        _event("e5", "b.two", "2026-01-04T12:00", "2026-01-04T12:30", "not json"),
        _event("e6", "a.two", "2026-01-04T11:00", "2026-01-04T11:00", {"a": 2, "bad key": 1}),
        _event("e7", "b.old", "2026-01-04T09:00", "2026-01-04T09:00"),  # no data
    ]
    lake = write_rows(tmp_path / "lake", rows, files=3)
    assert summary(lake) == Summary(
        data_as_of=T("2026-01-05T10:00"),
        latest_event=T("2026-01-04T12:00"),
        first_day=D("2026-01-01"),
        last_day=D("2026-01-04"),
        events=(
            EventCount("a.two", 3),  # copies included
            EventCount("b.old", 2),
            EventCount("b.two", 2),
            EventCount("c.one", 1),
        ),
        data_keys=("data.a", "data.b", "data.c"),  # not old_key: 2026-01-01 is not recent
    )
    assert summary(lake, key_partitions=4).data_keys == (
        "data.a",
        "data.b",
        "data.c",
        "data.old_key",
    )
