"""Percentiles of a numeric field on both engines against the reference, numpy and hand-computed
numbers."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrics.harness import check
from tallystick.metrics.analyses.percentile import Percentile
from tallystick.metrics.params import MetricError, Scope
from tallystick.metrics.registry import build

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str | dt.datetime, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"p{_n:06d}",
        "name": name,
        "client_ts": ts if isinstance(ts, dt.datetime) else dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


def _values() -> list[float | int]:
    """Forty numbers: integers and floats, negatives, a repeat, spread over several scales."""
    rnd = random.Random(20260105)
    out: list[float | int] = []
    for i in range(40):
        if i % 3 == 0:
            out.append(rnd.randint(-50, 5000))
        else:
            out.append(round(rnd.lognormvariate(5, 1.5), 3))
    out[7] = out[3]  # a repeated value
    return out


VALUES = _values()
_WEEK = dt.datetime(2026, 1, 5, 2, tzinfo=dt.UTC)  # Monday
_USERS = ["u1", "u2", None, "u3", ""]  # anonymous events count too

# Weeks start on Monday: 2025-12-29, 2026-01-05, -12, -19.
ROWS = [
    ev("load", _WEEK + dt.timedelta(hours=4 * i), _USERS[i % 5], data={"ms": v})
    for i, v in enumerate(VALUES)
]
ROWS += [
    # Sunday 23:30 at -02:00 is Monday 01:30Z: the week of 2026-01-05.
    ev("load", "2026-01-04T23:30:00-02:00", "u4", data={"ms": 999.5}),
    # Monday 00:30 at +01:00 is Sunday 23:30Z: the only value of the week of 2025-12-29.
    ev("load", "2026-01-05T00:30:00+01:00", "u4", data={"ms": 250}),
    # Not numbers: ignored, but the events exist.
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": "12"}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": True}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": False}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": None}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": [1, 2]}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"ms": ""}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1", data={"other": 5}),
    ev("load", "2026-01-06T10:00:00+00:00", "u1"),  # no data at all
    ev("click", "2026-01-06T10:00:00+00:00", "u1", data={"ms": 1e6}),  # another event
    # The week of 01-12 has only non-numeric values.
    ev("load", "2026-01-13T10:00:00+00:00", "u1", data={"ms": "7"}),
    ev("load", "2026-01-14T10:00:00+00:00", None, data={"ms": True}),
]
# A later-received copy of the first load with a huge value: ignored.
ROWS.append({**ROWS[0], "received_ts": _RECEIVED + dt.timedelta(days=1), "data": {"ms": 1e9}})

RANGE = {"from": "2026-01-01", "to": "2026-01-25"}
PS = (50.0, 90.0, 99.0, 99.9)


def test_weekly_percentiles_match_numpy(tmp_path: Path) -> None:
    rows = check(
        tmp_path, ROWS, "percentile", event="load", field="data.ms", p="50,90,99,99.9", **RANGE
    )
    assert [r["period"] for r in rows] == [
        D("2025-12-29"),
        D("2026-01-05"),
        D("2026-01-12"),
        D("2026-01-19"),
    ]
    assert [r["count"] for r in rows] == [1, 41, 0, 0]
    # A single value is every percentile.
    assert rows[0] == {
        "period": D("2025-12-29"),
        "count": 1,
        **dict.fromkeys(["p50", "p90", "p99", "p99.9"], 250.0),
    }
    week = [float(v) for v in VALUES] + [999.5]
    expected = np.percentile(week, PS, method="linear")
    got = [rows[1][k] for k in ("p50", "p90", "p99", "p99.9")]
    assert all(isinstance(v, float) for v in got)
    assert got == pytest.approx(list(expected), rel=1e-12)
    # Periods without numeric values (only strings and booleans, or nothing at all).
    for row in rows[2:]:
        assert [row[k] for k in ("p50", "p90", "p99", "p99.9")] == [None] * 4


def test_extreme_percentiles_are_min_and_max(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "percentile",
        event="load",
        field="data.ms",
        p=[0, 100, 25],
        grain="month",
        **{"from": "2026-01-05", "to": "2026-01-11"},
    )
    week = [float(v) for v in VALUES] + [999.5]
    assert rows == [
        {
            "period": D("2026-01-01"),
            "count": 41,
            "p0": min(week),
            "p100": max(week),
            "p25": pytest.approx(float(np.percentile(week, 25)), rel=1e-12),
        }
    ]


# A small hand-computed fixture around the month edge, with a breakdown.
SMALL = [
    ev("load", "2026-01-10T10:00:00+00:00", "u1", data={"ms": 10, "region": "eu"}),
    ev("load", "2026-01-11T10:00:00+00:00", "u2", data={"ms": 20, "region": "eu"}),
    ev("load", "2026-01-12T10:00:00+00:00", "u1", data={"ms": 40.0, "region": "eu"}),
    ev("load", "2026-01-12T11:00:00+00:00", None, data={"ms": 100, "region": "us"}),
    ev("load", "2026-01-13T10:00:00+00:00", "", data={"ms": "fast", "region": "ap"}),
    # Saturday 2026-01-31 23:30 at -01:00 is 2026-02-01 00:30Z: February.
    ev("load", "2026-01-31T23:30:00-01:00", "u3", data={"ms": 7, "region": "eu"}),
    ev("load", "2026-01-20T10:00:00+00:00", "u3", data={"ms": 3.5}),
    ev("load", "2026-01-21T10:00:00+00:00", "u3", data={"ms": True}),
]
SMALL.append({**SMALL[1], "received_ts": _RECEIVED + dt.timedelta(days=1), "data": {"ms": 1000}})


def _table(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["period"], r["breakdown"], r["count"], r["p50"], r["p90"]) for r in rows]


def test_monthly_breakdown(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        SMALL,
        "percentile",
        event="load",
        field="data.ms",
        p="50,90",
        grain="month",
        breakdown="data.region",
        **{"from": "2026-01-01", "to": "2026-02-28"},
    )
    assert _table(rows) == [
        (D("2026-01-01"), "ap", 0, None, None),  # only a string, on an anonymous event
        # [10, 20, 40]: p90 rank 1.8 -> 20 + 0.8 * 20
        (D("2026-01-01"), "eu", 3, 20.0, pytest.approx(36.0)),
        (D("2026-01-01"), "us", 1, 100.0, 100.0),  # anonymous events count
        (D("2026-01-01"), None, 1, 3.5, 3.5),
        (D("2026-02-01"), "ap", 0, None, None),
        (D("2026-02-01"), "eu", 1, 7.0, 7.0),  # 2026-01-31T23:30-01:00 is February
        (D("2026-02-01"), "us", 0, None, None),
        (D("2026-02-01"), None, 0, None, None),
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["data.region=eu"], (3, 20.0)),
        (["data.region!=eu"], (2, 51.75)),  # 100 and 3.5 ("fast" and true are not numbers)
        (["data.region in us,ap"], (1, 100.0)),
        (["user.id!=u1"], (3, 20.0)),  # 20, 100, 3.5
    ],
)
def test_filters(tmp_path: Path, where: list[str], expected: tuple[int, float]) -> None:
    rows = check(
        tmp_path,
        SMALL,
        "percentile",
        event="load",
        field="data.ms",
        p=50,
        grain="month",
        where=where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["count"], r["p50"]) for r in rows] == [expected]


def test_unit_is_ignored(tmp_path: Path) -> None:
    params: dict[str, Any] = {"event": "load", "field": "data.ms", "p": 50, "grain": "month"}
    params |= {"from": "2026-01-01", "to": "2026-01-31"}
    rows = check(tmp_path, SMALL, "percentile", unit="session.id", **params)
    assert rows == [{"period": D("2026-01-01"), "count": 5, "p50": 20.0}]


def test_numeric_columns(tmp_path: Path) -> None:
    rows = [
        ev("load", "2026-01-05T10:00:00+00:00", "u1", session_seq=s, sample_rate=r)
        for s, r in [(1, 0.5), (2, 0.25), (3, None), (4, 1.0), (None, 0.125)]
    ]
    common: dict[str, Any] = {"event": "load", "p": "50,90", "grain": "month"}
    common |= {"from": "2026-01-01", "to": "2026-01-31"}
    seq = check(tmp_path / "seq", rows, "percentile", field="session.seq", **common)
    assert seq == [{"period": D("2026-01-01"), "count": 4, "p50": 2.5, "p90": pytest.approx(3.7)}]
    rate = check(tmp_path / "rate", rows, "percentile", field="sample.rate", **common)
    assert rate == [
        {"period": D("2026-01-01"), "count": 4, "p50": 0.375, "p90": pytest.approx(0.85)}
    ]


def test_empty_lake(tmp_path: Path) -> None:
    params: dict[str, Any] = {"event": "load", "field": "data.ms", "p": "50", "grain": "month"}
    params |= {"from": "2026-01-01", "to": "2026-02-10"}
    assert check(tmp_path, [], "percentile", **params) == [
        {"period": D("2026-01-01"), "count": 0, "p50": None},
        {"period": D("2026-02-01"), "count": 0, "p50": None},
    ]
    assert check(tmp_path, [], "percentile", breakdown="data.region", **params) == []


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("user.id", "holds string values"),
        ("client_ts", "holds timestamp values"),
        ("data", "holds json values"),
        ("nope", "is not a field"),
        ("data.bad key", "not a valid data key"),
        ("data.", "not a valid data key"),
    ],
)
def test_bad_field(field: str, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        build("percentile", {"event": "load", "field": field, "p": "50", **RANGE})


def test_bad_percentiles() -> None:
    with pytest.raises(MetricError, match="not a number"):
        build("percentile", {"event": "load", "field": "data.ms", "p": "median", **RANGE})
    scope = Scope(D("2026-01-01"), D("2026-01-31"))
    with pytest.raises(MetricError, match="at least one percentile"):
        Percentile(event="load", field="data.ms", percentiles=(), grain="week", scope=scope)
    with pytest.raises(MetricError, match="outside"):
        Percentile(event="load", field="data.ms", percentiles=(100.5,), grain="week", scope=scope)
    with pytest.raises(MetricError, match="only once"):
        Percentile(
            event="load", field="data.ms", percentiles=(50.0, 50.0), grain="week", scope=scope
        )
    with pytest.raises(MetricError, match="event name"):
        Percentile(event=" ", field="data.ms", percentiles=(50.0,), grain="week", scope=scope)
