"""Ratios of two events on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.analyses.ratio import Ratio
from tallystick.metrics.params import MetricError, Scope
from tallystick.metrics.registry import build

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"r{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


# Weeks start on Monday: 2025-12-29, 2026-01-05, -12, -19, -26, 2026-02-02.
ROWS = [
    # Sunday 23:30 at -02:00 is Monday 01:30Z: the week of 2026-01-05.
    ev("create", "2026-01-04T23:30:00-02:00", "u1", data={"plan": "pro"}),
    ev("create", "2026-01-06T10:00:00+00:00", "u1", data={"plan": "pro"}),
    # Monday 00:30 at +01:00 is Sunday 23:30Z: the week of 2025-12-29.
    ev("create", "2026-01-05T00:30:00+01:00", "u2", data={"plan": "free"}),
    ev("share", "2026-01-07T10:00:00+00:00", "u1", data={"plan": "pro"}),
    ev("share", "2026-01-07T11:00:00+00:00", "u1", data={"plan": "pro"}),
    ev("share", "2026-01-07T12:00:00+00:00", None, data={"plan": "team"}),  # team: anonymous only
    ev("create", "2026-01-08T10:00:00+00:00", "", data={"plan": "free"}),  # empty user
    # Saturday 2026-01-31 23:30 at -01:00 is 2026-02-01 00:30Z: February, week of 01-26.
    ev("share", "2026-01-31T23:30:00-01:00", "u2"),
    ev("other", "2026-01-07T10:00:00+00:00", "u5", data={"plan": "pro"}),
]
# Same event_id as the second create but another name: a distinct event (a client bug, counted).
ROWS.append({**ev("share", "2026-01-08T09:00:00+00:00", "u3"), "event_id": ROWS[1]["event_id"]})
ROWS[-1]["data"] = {"plan": "free"}
# A later-received copy of the first share, moved into the week of 01-12 with other content.
ROWS.append(
    {
        **ROWS[3],
        "received_ts": _RECEIVED + dt.timedelta(days=1),
        "client_ts": dt.datetime(2026, 1, 13, 10, tzinfo=dt.UTC),
        "user_id": "u9",
        "data": {"plan": "xxx"},
    }
)

RANGE = {"from": "2026-01-01", "to": "2026-02-08"}


def _table(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["period"],
            *([r["breakdown"]] if "breakdown" in r else []),
            r["numerator"],
            r["denominator"],
            r["ratio"],
        )
        for r in rows
    ]


def test_weekly_users(tmp_path: Path) -> None:
    rows = check(
        tmp_path, ROWS, "ratio", numerator="share", denominator="create", grain="week", **RANGE
    )
    assert _table(rows) == [
        (D("2025-12-29"), 0, 1, 0.0),  # u2 created
        (D("2026-01-05"), 2, 1, 2.0),  # shares: u1, u3 (anonymous not); creates: u1
        (D("2026-01-12"), 0, 0, None),  # the copy is ignored
        (D("2026-01-19"), 0, 0, None),
        (D("2026-01-26"), 1, 0, None),  # u2 shared, nobody created
        (D("2026-02-02"), 0, 0, None),
    ]


def test_weekly_events(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "ratio",
        numerator="share",
        denominator="create",
        grain="week",
        unit="event",
        **RANGE,
    )
    assert _table(rows) == [
        (D("2025-12-29"), 0, 1, 0.0),
        (D("2026-01-05"), 4, 3, pytest.approx(4 / 3)),  # anonymous events count
        (D("2026-01-12"), 0, 0, None),
        (D("2026-01-19"), 0, 0, None),
        (D("2026-01-26"), 1, 0, None),
        (D("2026-02-02"), 0, 0, None),
    ]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("user.id", [0, 2, 0, 0, 1, 0]),
        ("event", [0, 4, 0, 0, 1, 0]),
    ],
)
def test_numerator_equals_denominator(tmp_path: Path, unit: str, expected: list[int]) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "ratio",
        numerator="share",
        denominator="share",
        grain="week",
        unit=unit,
        **RANGE,
    )
    assert [r["numerator"] for r in rows] == expected
    assert [r["denominator"] for r in rows] == expected
    assert [r["ratio"] for r in rows] == [1.0 if n else None for n in expected]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (
            "user.id",
            [
                (D("2026-01-01"), "free", 1, 1, 1.0),  # share u3; create u2 (and an empty user)
                (D("2026-01-01"), "pro", 1, 1, 1.0),
                (D("2026-01-01"), "team", 0, 0, None),  # only an anonymous share
                (D("2026-01-01"), None, 0, 0, None),
                (D("2026-02-01"), "free", 0, 0, None),
                (D("2026-02-01"), "pro", 0, 0, None),
                (D("2026-02-01"), "team", 0, 0, None),
                (D("2026-02-01"), None, 1, 0, None),  # 2026-01-31T23:30-01:00 is February
            ],
        ),
        (
            "event",
            [
                (D("2026-01-01"), "free", 1, 2, 0.5),
                (D("2026-01-01"), "pro", 2, 2, 1.0),
                (D("2026-01-01"), "team", 1, 0, None),
                (D("2026-01-01"), None, 0, 0, None),
                (D("2026-02-01"), "free", 0, 0, None),
                (D("2026-02-01"), "pro", 0, 0, None),
                (D("2026-02-01"), "team", 0, 0, None),
                (D("2026-02-01"), None, 1, 0, None),
            ],
        ),
    ],
)
def test_monthly_breakdown(tmp_path: Path, unit: str, expected: list[tuple[Any, ...]]) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "ratio",
        numerator="share",
        denominator="create",
        grain="month",
        unit=unit,
        breakdown="data.plan",
        **{"from": "2026-01-01", "to": "2026-02-28"},
    )
    assert _table(rows) == expected


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["data.plan=free"], (1, 2)),
        (["data.plan!=pro"], (2, 2)),  # team (anonymous), free / free, free
        (["data.plan in pro,team"], (3, 2)),
        (["user.id!=u1"], (2, 2)),  # missing and empty users match !=
    ],
)
def test_filters(tmp_path: Path, where: list[str], expected: tuple[int, int]) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "ratio",
        numerator="share",
        denominator="create",
        grain="month",
        unit="event",
        where=where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["numerator"], r["denominator"]) for r in rows] == [expected]


def test_empty_lake(tmp_path: Path) -> None:
    params: dict[str, Any] = {"numerator": "a", "denominator": "b", "grain": "month", **RANGE}
    assert _table(check(tmp_path, [], "ratio", **params)) == [
        (D("2026-01-01"), 0, 0, None),
        (D("2026-02-01"), 0, 0, None),
    ]
    assert check(tmp_path, [], "ratio", breakdown="data.plan", **params) == []


def test_bad_parameters() -> None:
    with pytest.raises(MetricError, match="denominator"):
        build("ratio", {"numerator": "share", **RANGE})
    scope = Scope(D("2026-01-01"), D("2026-01-31"))
    with pytest.raises(MetricError, match="two event names"):
        Ratio(numerator="share", denominator=" ", grain="week", scope=scope)
    with pytest.raises(MetricError, match="grain"):
        Ratio(numerator="a", denominator="b", grain="quarter", scope=scope)  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="unit"):
        build("ratio", {"numerator": "a", "denominator": "b", "unit": "nope", **RANGE})


@pytest.mark.parametrize(
    ("unit", "numerator_where", "expected"),
    [
        # Shares by a pro plan over creates: u1 (pro) shared twice; u3 (free) is filtered out.
        ("user.id", ["data.plan=pro"], (1, 2)),
        # Four creates in January, anonymous and empty users included.
        ("event", ["data.plan=pro"], (2, 4)),
        # != matches the anonymous team share and u3's free one; the denominator is untouched.
        ("event", ["data.plan!=pro"], (2, 4)),
        ("event", ["data.plan in free,team", "user.id!=u3"], (1, 4)),
    ],
)
def test_numerator_where_filters_the_numerator_only(
    tmp_path: Path, unit: str, numerator_where: list[str], expected: tuple[int, int]
) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "ratio",
        numerator="share",
        denominator="create",
        grain="month",
        unit=unit,
        numerator_where=numerator_where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["numerator"], r["denominator"]) for r in rows] == [expected]
    assert rows[0]["ratio"] == pytest.approx(expected[0] / expected[1])


def test_numerator_where_on_one_event_is_a_bounce_rate(tmp_path: Path) -> None:
    """Sessions with one page view over all sessions, counted as events (the demo's metric)."""
    sessions = [
        ev("session.end", f"2026-01-0{d}T10:00:00+00:00", f"u{d}", data={"pageviews": pages})
        for d, pages in ((1, 1), (2, 3), (3, 1), (4, 2), (5, 1))
    ]
    sessions.append(ev("session.end", "2026-01-06T10:00:00+00:00", "u6"))  # no page count
    rows = check(
        tmp_path,
        sessions,
        "ratio",
        numerator="session.end",
        denominator="session.end",
        grain="month",
        unit="event",
        numerator_where=["data.pageviews=1"],
        where=["user.id!=u5"],  # applies to both sides
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["numerator"], r["denominator"]) for r in rows] == [(2, 5)]


def test_numerator_where_is_checked() -> None:
    with pytest.raises(MetricError, match="cannot read filter"):
        build("ratio", {"numerator": "a", "denominator": "b", "numerator_where": "nope", **RANGE})
    with pytest.raises(MetricError, match="numerator_where must be a list"):
        build("ratio", {"numerator": "a", "denominator": "b", "numerator_where": 3, **RANGE})
    with pytest.raises(MetricError, match="does not take numerator_where"):
        build("count", {"event": "a", "numerator_where": ["data.x=1"], **RANGE})
