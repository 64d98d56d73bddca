"""Active units and stickiness on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.analyses.active import Active, Stickiness
from tallystick.metrics.params import MetricError, Scope
from tallystick.metrics.registry import build

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"a{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


# Weeks start on Monday: 2025-12-29, 2026-01-05, -12, -19, -26, 2026-02-02.
ROWS = [
    # Sunday 23:30 at -02:00 is Monday 01:30Z: the week of 2026-01-05.
    ev("login", "2026-01-04T23:30:00-02:00", "u1", data={"site": "a"}),
    # Monday 00:30 at +01:00 is Sunday 23:30Z: the week of 2025-12-29.
    ev("view", "2026-01-05T00:30:00+01:00", "u2", data={"site": "b"}),
    ev("login", "2026-01-06T10:00:00+00:00", "u1", data={"site": "b"}),  # u1 with a second site
    ev("view", "2026-01-07T10:00:00+00:00", None, data={"site": "c"}),  # site c: anonymous only
    ev("login", "2026-01-08T10:00:00+00:00", "", data={"site": "a"}),  # empty user: anonymous
    ev("other", "2026-01-08T11:00:00+00:00", "u3", data={"site": "d"}),  # not an active action
    ev("login", "2026-01-09T12:00:00+00:00", "u2", data={"site": "a"}),
    ev("view", "2026-01-13T12:00:00+00:00", "u4"),  # no site
    # Saturday 2026-01-31 23:30 at -01:00 is Sunday 2026-02-01 00:30Z: February, week of 01-26.
    ev("login", "2026-01-31T23:30:00-01:00", "u3"),
]
# A later-received copy of the second login (same event_id and name) with other content: ignored.
ROWS.append(
    {
        **ROWS[2],
        "received_ts": _RECEIVED + dt.timedelta(days=1),
        "user_id": "u9",
        "client_ts": dt.datetime(2026, 1, 20, 10, tzinfo=dt.UTC),
        "data": {"site": "z"},
    }
)

RANGE = {"from": "2026-01-01", "to": "2026-02-08"}


def test_weekly_active_users(tmp_path: Path) -> None:
    rows = check(tmp_path, ROWS, "active", active="login,view", grain="week", **RANGE)
    assert rows == [
        {"period": D("2025-12-29"), "active_users": 1},  # u2 (Monday 00:30+01:00)
        {"period": D("2026-01-05"), "active_users": 2},  # u1, u2; anonymous events not
        {"period": D("2026-01-12"), "active_users": 1},  # u4
        {"period": D("2026-01-19"), "active_users": 0},  # the ignored copy would be here
        {"period": D("2026-01-26"), "active_users": 1},  # u3 (Saturday 23:30-01:00)
        {"period": D("2026-02-02"), "active_users": 0},
    ]


def test_daily_active_users_around_midnight(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "active",
        active="login,view",
        grain="day",
        **{"from": "2026-01-04", "to": "2026-01-06"},
    )
    assert [(r["period"], r["active_users"]) for r in rows] == [
        (D("2026-01-04"), 1),  # u2
        (D("2026-01-05"), 1),  # u1
        (D("2026-01-06"), 1),  # u1
    ]


def test_monthly_breakdown_includes_anonymous_only_values(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "active",
        active="login,view",
        grain="month",
        breakdown="data.site",
        **{"from": "2026-01-01", "to": "2026-02-28"},
    )
    got = [(r["period"], r["breakdown"], r["active_users"]) for r in rows]
    assert got == [
        (D("2026-01-01"), "a", 2),  # u1, u2 (and an anonymous event)
        (D("2026-01-01"), "b", 2),  # u2, u1: a unit counts under every value it had
        (D("2026-01-01"), "c", 0),  # only an anonymous event carries site c
        (D("2026-01-01"), None, 1),  # u4
        (D("2026-02-01"), "a", 0),
        (D("2026-02-01"), "b", 0),
        (D("2026-02-01"), "c", 0),
        (D("2026-02-01"), None, 1),  # u3, 2026-01-31T23:30-01:00 is February
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["data.site=a"], 2),  # u1, u2
        (["data.site!=a"], 3),  # u2, u1 (site b) and u4 (no site: != matches missing)
        (["data.site in c"], 0),  # anonymous only
        (["data.site in b,c", "user.id!=u2"], 1),  # u1
    ],
)
def test_filters(tmp_path: Path, where: list[str], expected: int) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "active",
        active="login,view",
        grain="month",
        where=where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [r["active_users"] for r in rows] == [expected]


def test_empty_lake(tmp_path: Path) -> None:
    assert check(tmp_path, [], "active", active="login", grain="month", **RANGE) == [
        {"period": D("2026-01-01"), "active_users": 0},
        {"period": D("2026-02-01"), "active_users": 0},
    ]
    assert check(tmp_path, [], "active", active="login", breakdown="data.site", **RANGE) == []


# Stickiness fixture: Dec 2025 empty, January and the start of February.
STICKY = [
    ev("login", "2026-01-20T10:00:00+00:00", "u3", data={"site": "a"}),
    ev("login", "2026-01-29T10:00:00+00:00", None, data={"site": "c"}),  # anonymous only
    ev("login", "2026-01-30T10:00:00+00:00", "u1", data={"site": "a"}),
    ev("login", "2026-01-30T12:00:00+00:00", "u1", data={"site": "a"}),  # same day again
    ev("login", "2026-01-31T10:00:00+00:00", "u2", data={"site": "b"}),
    ev("login", "2026-01-31T23:30:00-01:00", "u1", data={"site": "a"}),  # 2026-02-01 00:30Z
    ev("login", "2026-02-03T08:00:00+00:00", "u1", data={"site": "a"}),
    ev("login", "2026-02-04T01:00:00+02:00", "u4"),  # 2026-02-03 23:00Z, no site
    ev("login", "2026-02-04T10:00:00+00:00", "u5", data={"site": "a"}),  # after the range
    ev("view", "2026-02-02T10:00:00+00:00", "u6", data={"site": "a"}),  # not active
]
# A later copy of u2's login moved into January 26 with another user: ignored.
STICKY.append(
    {
        **STICKY[4],
        "received_ts": _RECEIVED + dt.timedelta(days=2),
        "client_ts": dt.datetime(2026, 1, 26, 9, tzinfo=dt.UTC),
        "user_id": "u7",
    }
)


def _sticky(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["period"],
            *([r["breakdown"]] if "breakdown" in r else []),
            r["dau_mean"],
            r["mau"],
            r["stickiness"],
        )
        for r in rows
    ]


def test_stickiness_with_partial_and_empty_months(tmp_path: Path) -> None:
    rows = check(
        tmp_path, STICKY, "stickiness", active="login", **{"from": "2025-12-20", "to": "2026-02-03"}
    )
    assert _sticky(rows) == [
        (D("2025-12-01"), 0.0, 0, None),  # 12 days in range, nobody active
        # 31 days: u3 on the 20th, u1 on the 30th, u2 on the 31st (anonymous not counted).
        (D("2026-01-01"), pytest.approx(3 / 31), 3, pytest.approx(1 / 31)),
        # 3 days: u1 on the 1st; u1 and u4 on the 3rd.
        (D("2026-02-01"), 1.0, 2, 0.5),
    ]


def test_stickiness_month_partially_inside_the_range(tmp_path: Path) -> None:
    rows = check(
        tmp_path, STICKY, "stickiness", active="login", **{"from": "2026-01-25", "to": "2026-02-03"}
    )
    assert _sticky(rows) == [
        # Only January 25..31 (7 days) count: u1 on the 30th, u2 on the 31st; u3 is before.
        (D("2026-01-01"), pytest.approx(2 / 7), 2, pytest.approx(1 / 7)),
        (D("2026-02-01"), 1.0, 2, 0.5),
    ]


def test_stickiness_breakdown(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        STICKY,
        "stickiness",
        active="login",
        breakdown="data.site",
        **{"from": "2026-01-25", "to": "2026-02-03"},
    )
    assert _sticky(rows) == [
        (D("2026-01-01"), "a", pytest.approx(1 / 7), 1, pytest.approx(1 / 7)),
        (D("2026-01-01"), "b", pytest.approx(1 / 7), 1, pytest.approx(1 / 7)),
        (D("2026-01-01"), "c", 0.0, 0, None),  # anonymous only
        (D("2026-01-01"), None, 0.0, 0, None),
        (D("2026-02-01"), "a", pytest.approx(2 / 3), 1, pytest.approx(2 / 3)),
        (D("2026-02-01"), "b", 0.0, 0, None),
        (D("2026-02-01"), "c", 0.0, 0, None),
        (D("2026-02-01"), None, pytest.approx(1 / 3), 1, pytest.approx(1 / 3)),
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # January 25..31 (7 days), then February 1..3 (3 days): (dau_mean, mau) per month.
        (["data.site=a"], [(1 / 7, 1), (2 / 3, 1)]),
        (["data.site!=b"], [(1 / 7, 1), (1.0, 2)]),
        (["data.site in a,b"], [(2 / 7, 2), (2 / 3, 1)]),
    ],
)
def test_stickiness_filters(
    tmp_path: Path, where: list[str], expected: list[tuple[float, int]]
) -> None:
    rows = check(
        tmp_path,
        STICKY,
        "stickiness",
        active="login",
        where=where,
        **{"from": "2026-01-25", "to": "2026-02-03"},
    )
    assert [(r["dau_mean"], r["mau"]) for r in rows] == [(pytest.approx(d), m) for d, m in expected]


def test_registry_builds_stickiness_from_active() -> None:
    analysis = build("active", {"active": "login", "stickiness": "true", **RANGE})
    assert isinstance(analysis, Stickiness)
    assert analysis.active == ("login",)


@pytest.mark.parametrize("name", ["active", "stickiness"])
def test_unit_event_is_refused(name: str) -> None:
    with pytest.raises(MetricError, match="unit"):
        build(name, {"active": "login", "unit": "event", **RANGE})


def test_bad_parameters() -> None:
    scope = Scope(D("2026-01-01"), D("2026-01-31"))
    with pytest.raises(MetricError, match="active action"):
        Active(active=(), grain="week", scope=scope)
    with pytest.raises(MetricError, match="grain"):
        Active(active=("login",), grain="year", scope=scope)  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="active action"):
        Stickiness(active=(), scope=scope)
