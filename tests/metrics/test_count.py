"""Event counts on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.analyses.count import Count
from tallystick.metrics.params import MetricError, Scope
from tallystick.metrics.registry import build

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"c{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


# Weeks start on Monday: 2025-12-29, 2026-01-05, -12, -19, -26, 2026-02-02.
ROWS = [
    # Sunday 23:30 at -02:00 is Monday 01:30Z: the week of 2026-01-05.
    ev("upload", "2026-01-04T23:30:00-02:00", "u1", data={"kind": "img"}),
    ev("upload", "2026-01-05T09:00:00+00:00", "u1", data={"kind": "doc"}),
    ev("upload", "2026-01-06T10:00:00+00:00", None, data={"kind": "vid"}),  # vid: anonymous only
    ev("upload", "2026-01-06T11:00:00+00:00", "", data={"kind": "img"}),  # empty user: anonymous
    # Monday 00:30 at +01:00 is Sunday 23:30Z: the week of 2025-12-29.
    ev("upload", "2026-01-05T00:30:00+01:00", "u2", data={"kind": "doc"}),
    # Saturday 2026-01-31 23:30 at -01:00 is 2026-02-01 00:30Z: February, week of 01-26.
    ev("upload", "2026-01-31T23:30:00-01:00", "u3"),
    ev("download", "2026-01-07T10:00:00+00:00", "u4", data={"kind": "zzz"}),  # another event
]
# A later-received copy of the doc upload, moved into the week of 01-12 with other content.
ROWS.append(
    {
        **ROWS[1],
        "received_ts": _RECEIVED + dt.timedelta(days=1),
        "client_ts": dt.datetime(2026, 1, 14, 10, tzinfo=dt.UTC),
        "user_id": "u9",
        "data": {"kind": "xxx"},
    }
)

RANGE = {"from": "2026-01-01", "to": "2026-02-08"}


def test_weekly_counts(tmp_path: Path) -> None:
    rows = check(tmp_path, ROWS, "count", event="upload", grain="week", **RANGE)
    assert rows == [
        {"period": D("2025-12-29"), "events": 1, "units": 1},  # u2
        {"period": D("2026-01-05"), "events": 4, "units": 1},  # u1 twice, two anonymous
        {"period": D("2026-01-12"), "events": 0, "units": 0},  # the copy is ignored
        {"period": D("2026-01-19"), "events": 0, "units": 0},
        {"period": D("2026-01-26"), "events": 1, "units": 1},  # u3
        {"period": D("2026-02-02"), "events": 0, "units": 0},
    ]


def test_daily_counts_around_midnight(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "count",
        event="upload",
        grain="day",
        **{"from": "2026-01-04", "to": "2026-01-06"},
    )
    assert [(r["period"], r["events"], r["units"]) for r in rows] == [
        (D("2026-01-04"), 1, 1),
        (D("2026-01-05"), 2, 1),
        (D("2026-01-06"), 2, 0),
    ]


def test_monthly_breakdown_includes_anonymous_only_values(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "count",
        event="upload",
        grain="month",
        breakdown="data.kind",
        **{"from": "2026-01-01", "to": "2026-02-28"},
    )
    got = [(r["period"], r["breakdown"], r["events"], r["units"]) for r in rows]
    assert got == [
        (D("2026-01-01"), "doc", 2, 2),
        (D("2026-01-01"), "img", 2, 1),
        (D("2026-01-01"), "vid", 1, 0),  # only an anonymous event
        (D("2026-01-01"), None, 0, 0),
        (D("2026-02-01"), "doc", 0, 0),
        (D("2026-02-01"), "img", 0, 0),
        (D("2026-02-01"), "vid", 0, 0),
        (D("2026-02-01"), None, 1, 1),  # 2026-01-31T23:30-01:00 is February
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["data.kind=img"], (2, 1)),
        (["data.kind!=img"], (3, 2)),  # doc (u1), vid (anonymous), doc (u2)
        (["data.kind in img,vid"], (3, 1)),
        (["user.id!=u1"], (3, 1)),  # missing and empty users match !=
        (["user.id in u1,u2", "data.kind=doc"], (2, 2)),
    ],
)
def test_filters(tmp_path: Path, where: list[str], expected: tuple[int, int]) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "count",
        event="upload",
        grain="month",
        where=where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["events"], r["units"]) for r in rows] == [expected]


def test_another_unit(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "count",
        event="upload",
        grain="month",
        unit="data.kind",
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    # Units are the kinds now, so the anonymous-user upload of kind vid counts as a unit.
    assert rows == [{"period": D("2026-01-01"), "events": 5, "units": 3}]


def test_empty_lake(tmp_path: Path) -> None:
    assert check(tmp_path, [], "count", event="upload", grain="month", **RANGE) == [
        {"period": D("2026-01-01"), "events": 0, "units": 0},
        {"period": D("2026-02-01"), "events": 0, "units": 0},
    ]
    assert check(tmp_path, [], "count", event="upload", breakdown="data.kind", **RANGE) == []


def test_bad_parameters() -> None:
    with pytest.raises(MetricError, match="unit"):
        build("count", {"event": "upload", "unit": "event", **RANGE})
    with pytest.raises(MetricError, match="event"):
        build("count", {"event": " ", **RANGE})
    scope = Scope(D("2026-01-01"), D("2026-01-31"))
    with pytest.raises(MetricError, match="event name"):
        Count(event="", grain="week", scope=scope)
    with pytest.raises(MetricError, match="grain"):
        Count(event="upload", grain="hour", scope=scope)  # type: ignore[arg-type]
