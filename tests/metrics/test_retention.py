"""Retention on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import build

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    """A lake row; ids and receive times increase with each call."""
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


def span(date_from: str, date_to: str) -> dict[str, str]:
    return {"from": date_from, "to": date_to}


def table(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["cohort"], r["size"], r["retained"], r["rates"]) for r in rows]


# Weeks of Mon 2026-01-05, 2026-01-12 and 2026-01-19; the range ends on Sunday 2026-01-25.
_U4_SIGNUP = ev("signup", "2026-01-07T09:00:00+00:00", "u4")
WEEKLY = [
    # u1: signs up on Monday 01:30Z (written on Sunday at -02:00): cohort 2026-01-05.
    ev("signup", "2026-01-04T23:30:00-02:00", "u1"),
    ev("login", "2026-01-12T10:00:00+00:00", "u1"),  # week +1
    # Sunday 23:30Z (written on Monday at +01:00): still week +1, not week +2.
    ev("login", "2026-01-19T00:30:00+01:00", "u1"),
    # u2 first signs up on Sunday 2026-01-04 23:30Z, before the range: in no cohort, even
    # though it signs up again inside it.
    ev("signup", "2026-01-05T00:30:00+01:00", "u2"),
    ev("signup", "2026-01-06T09:00:00+00:00", "u2"),
    ev("login", "2026-01-12T09:00:00+00:00", "u2"),
    # u3: cohort 2026-01-12; back the next week; a login after date_to is not counted.
    ev("signup", "2026-01-13T09:00:00+00:00", "u3"),
    ev("login", "2026-01-20T09:00:00+00:00", "u3"),
    ev("login", "2026-01-26T09:00:00+00:00", "u3"),
    # u4: cohort 2026-01-05, signs up again in week +1 (a return only if signup is one).
    _U4_SIGNUP,
    ev("signup", "2026-01-14T09:00:00+00:00", "u4"),
    # A later copy of u4's signup dated before the range: ignored.
    {
        **_U4_SIGNUP,
        "received_ts": _RECEIVED + dt.timedelta(days=9),
        "client_ts": dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
    },
    # Anonymous sign-ups never count.
    ev("signup", "2026-01-06T09:00:00+00:00", None),
    ev("signup", "2026-01-06T09:00:00+00:00", ""),
    ev("login", "2026-01-13T09:00:00+00:00", ""),
]


def test_weekly_cohorts_with_offsets_partial_weeks_and_prior_members(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        WEEKLY,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="week",
        periods=3,
        **span("2026-01-05", "2026-01-25"),
    )
    assert table(rows) == [
        (D("2026-01-05"), 2, [2, 1, 0, None], [1.0, 0.5, 0.0, None]),
        (D("2026-01-12"), 1, [1, 1, None, None], [1.0, 1.0, None, None]),
        (D("2026-01-19"), 0, [0, None, None, None], [None, None, None, None]),
    ]


def test_cohort_event_counts_as_a_return_only_when_named(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        WEEKLY,
        "retention",
        cohort_event="signup",
        return_events="signup,login",
        grain="week",
        periods=2,
        **span("2026-01-05", "2026-01-25"),
    )
    assert table(rows)[0] == (D("2026-01-05"), 2, [2, 2, 0], [1.0, 1.0, 0.0])


def test_monthly_cohorts_with_a_partial_last_period(tmp_path: Path) -> None:
    rows = [
        # u1: January cohort; back in February; its March login is after date_to.
        ev("signup", "2026-01-20T09:00:00+00:00", "u1"),
        ev("login", "2026-02-05T09:00:00+00:00", "u1"),
        ev("login", "2026-03-12T09:00:00+00:00", "u1"),
        # u2 signed up in January, but before date_from: in no cohort.
        ev("signup", "2026-01-10T09:00:00+00:00", "u2"),
        ev("login", "2026-02-05T09:00:00+00:00", "u2"),
        # u3: signs up on 2026-01-31 22:30Z (written in February at +02:00): January; its
        # login written in March at +03:00 is 2026-02-28 22:00Z: February.
        ev("signup", "2026-02-01T00:30:00+02:00", "u3"),
        ev("login", "2026-03-01T01:00:00+03:00", "u3"),
        # u4: February cohort; its login written in February at -01:00 is in March.
        ev("signup", "2026-02-28T23:00:00+00:00", "u4"),
        ev("login", "2026-02-28T23:30:00-01:00", "u4"),
    ]
    got = check(
        tmp_path,
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="month",
        periods=2,
        **span("2026-01-15", "2026-03-10"),
    )
    assert table(got) == [
        (D("2026-01-01"), 2, [2, 2, 0], [1.0, 1.0, 0.0]),
        (D("2026-02-01"), 1, [1, 1, None], [1.0, 1.0, None]),
        (D("2026-03-01"), 0, [0, None, None], [None, None, None]),
    ]


def test_daily_cohorts_and_zero_periods(tmp_path: Path) -> None:
    rows = [
        ev("signup", "2026-01-05T23:59:59.999999+00:00", "u1"),
        ev("login", "2026-01-06T00:00:00+00:00", "u1"),  # the next day, a microsecond later
        ev("login", "2026-01-05T23:59:59.999999+00:00", "u1"),  # same day: not a return
    ]
    got = check(
        tmp_path / "a",
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="day",
        periods=2,
        **span("2026-01-05", "2026-01-07"),
    )
    assert table(got) == [
        (D("2026-01-05"), 1, [1, 1, 0], [1.0, 1.0, 0.0]),
        (D("2026-01-06"), 0, [0, 0, None], [None, None, None]),
        (D("2026-01-07"), 0, [0, None, None], [None, None, None]),
    ]
    none = check(
        tmp_path / "b",
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="day",
        periods=0,
        **span("2026-01-05", "2026-01-05"),
    )
    assert table(none) == [(D("2026-01-05"), 1, [1], [1.0])]


def test_breakdown_comes_from_the_first_cohort_event(tmp_path: Path) -> None:
    rows = [
        # u1's first signup is on site a; its later one on site b does not move it.
        ev("signup", "2026-01-05T09:00:00+00:00", "u1", data={"site": "a"}),
        ev("signup", "2026-01-06T09:00:00+00:00", "u1", data={"site": "b"}),
        ev("login", "2026-01-13T09:00:00+00:00", "u1", data={"site": "b"}),
        ev("signup", "2026-01-07T09:00:00+00:00", "u2", data={"site": "b"}),
        ev("signup", "2026-01-08T09:00:00+00:00", "u3"),
        ev("login", "2026-01-12T09:00:00+00:00", "u3"),
        # Anonymous: site c is not reported.
        ev("signup", "2026-01-08T09:00:00+00:00", None, data={"site": "c"}),
    ]
    got = check(
        tmp_path,
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="week",
        periods=1,
        breakdown="data.site",
        **span("2026-01-05", "2026-01-18"),
    )
    assert [(r["cohort"], r["breakdown"], r["size"], r["retained"]) for r in got] == [
        (D("2026-01-05"), "a", 1, [1, 1]),
        (D("2026-01-05"), "b", 1, [1, 0]),
        (D("2026-01-05"), None, 1, [1, 1]),
        (D("2026-01-12"), "a", 0, [0, None]),
        (D("2026-01-12"), "b", 0, [0, None]),
        (D("2026-01-12"), None, 0, [0, None]),
    ]


def test_filters_apply_before_the_first_cohort_event(tmp_path: Path) -> None:
    rows = [
        # Filtered out, u1's December signup no longer keeps it out of January's cohort.
        ev("signup", "2025-12-20T09:00:00+00:00", "u1", app_environment="test"),
        ev("signup", "2026-01-05T09:00:00+00:00", "u1", app_environment="prod"),
        ev("login", "2026-02-02T09:00:00+00:00", "u1", app_environment="prod"),
        ev("signup", "2026-01-05T09:00:00+00:00", "u2", app_environment="prod"),
        ev("login", "2026-02-02T09:00:00+00:00", "u2", app_environment="test"),
    ]
    got = check(
        tmp_path,
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="month",
        periods=1,
        where=["app.environment!=test"],
        **span("2026-01-01", "2026-02-28"),
    )
    assert table(got)[0] == (D("2026-01-01"), 2, [2, 1], [1.0, 0.5])


def test_empty_cohorts(tmp_path: Path) -> None:
    rows = [ev("login", "2026-01-06T09:00:00+00:00", "u1", data={"site": "a"})]
    got = check(
        tmp_path / "a",
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="week",
        periods=1,
        **span("2026-01-05", "2026-01-18"),
    )
    assert table(got) == [
        (D("2026-01-05"), 0, [0, 0], [None, None]),
        (D("2026-01-12"), 0, [0, None], [None, None]),
    ]
    split = check(
        tmp_path / "b",
        rows,
        "retention",
        cohort_event="signup",
        return_events="login",
        grain="week",
        periods=1,
        breakdown="data.site",
        **span("2026-01-05", "2026-01-18"),
    )
    assert split == []


def test_refuses_the_event_unit() -> None:
    with pytest.raises(MetricError, match="unit"):
        build("retention", {"cohort_event": "a", "return_events": "b", "unit": "event"})


def test_reads_everything_up_to_date_to() -> None:
    analysis = build(
        "retention", {"cohort_event": "a", "return_events": "b", **span("2026-01-05", "2026-01-25")}
    )
    assert analysis.read_window() == (None, D("2026-01-25"))
