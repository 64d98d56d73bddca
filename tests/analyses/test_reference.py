"""Hand-computed fixtures for the plain-Python reference implementation of the metrics.

Every expected value below is written literally and derived by hand in the comments next to it.
Calendar used throughout: 2024-01-01 is a Monday, so weeks start on Jan 1, 8, 15, 22, 29 and
Feb 5; 2024 is a leap year (Feb 29 is a Thursday, Mar 1 a Friday).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

from analyses import reference as ref
from analyses.reference import Grain, Result, Row, Where

_ids = itertools.count(1)
_RECEIVED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
_DAY = "2024-01-02"  # default day for funnel cases given as bare times


def T(text: str) -> dt.datetime:
    """A timestamp from ISO text; bare times (``10:00:00``) are on ``_DAY`` in UTC."""
    if "T" not in text:
        text = f"{_DAY}T{text}Z"
    ts = dt.datetime.fromisoformat(text)
    assert ts.tzinfo is not None, text
    return ts


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def ev(name: str, ts: str | dt.datetime, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    """One lake row with a fresh ``event_id`` and a ``received_ts`` later than all before it.

    Keyword arguments are lake columns (``app_instance=...``); ``data`` may be a dict.
    """
    n = next(_ids)
    row: dict[str, Any] = {
        "event_id": f"e{n:08d}",
        "name": name,
        "client_ts": T(ts) if isinstance(ts, str) else ts,
        "received_ts": _RECEIVED + dt.timedelta(seconds=n),
        "user_id": user,
        "app_instance": None,
        "app_environment": None,
        "session_id": None,
        "data": None,
    }
    data = cols.pop("data", None)
    row["data"] = json.dumps(data) if isinstance(data, dict) else data
    row.update(cols)
    return row


def dup(row: Row, **changes: Any) -> dict[str, Any]:
    """Another copy of ``row`` (same ``event_id``) received one day later, with ``changes``."""
    copy = dict(row)
    copy["received_ts"] = row["received_ts"] + dt.timedelta(days=1)
    if isinstance(changes.get("client_ts"), str):
        changes["client_ts"] = T(changes["client_ts"])
    copy.update(changes)
    return copy


def approx_rows(rows: list[Result]) -> list[dict[str, Any]]:
    """``rows`` with floats wrapped in ``pytest.approx`` (for comparing with literals)."""
    return [
        {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows
    ]


# --------------------------------------------------------------------------------------------
# Periods


@pytest.mark.parametrize(
    ("ts", "grain", "expected"),
    [
        # Sunday 23:30 at -02:00 is Monday 01:30 UTC: the next week.
        ("2024-01-07T23:30:00-02:00", "week", "2024-01-08"),
        ("2024-01-07T23:30:00-02:00", "day", "2024-01-08"),
        # Monday 00:30 at +01:00 is Sunday 23:30 UTC: still the previous week.
        ("2024-01-08T00:30:00+01:00", "week", "2024-01-01"),
        ("2024-01-08T00:30:00+01:00", "day", "2024-01-07"),
        # Jan 31 23:30 at -01:00 is Feb 1 00:30 UTC: February.
        ("2024-01-31T23:30:00-01:00", "month", "2024-02-01"),
        # Mar 1 00:30 at +02:00 is Feb 29 22:30 UTC: February (leap day), week of Mon Feb 26.
        ("2024-03-01T00:30:00+02:00", "month", "2024-02-01"),
        ("2024-03-01T00:30:00+02:00", "week", "2024-02-26"),
        # Sunday Dec 31 2023, last microsecond: week of Mon Dec 25 2023.
        ("2023-12-31T23:59:59.999999+00:00", "week", "2023-12-25"),
        ("2024-01-01T00:00:00Z", "week", "2024-01-01"),
        ("2024-01-01T00:00:00Z", "month", "2024-01-01"),
        # +14:00 (Kiribati): Jan 1 05:00 local is Dec 31 15:00 UTC.
        ("2024-01-01T05:00:00+14:00", "month", "2023-12-01"),
    ],
)
def test_period_start(ts: str, grain: Grain, expected: str) -> None:
    assert ref.period_start(T(ts), grain) == D(expected)


def test_period_start_of_a_date_and_refusals() -> None:
    assert ref.period_start(D("2024-02-29"), "month") == D("2024-02-01")
    assert ref.period_start(D("2024-02-29"), "week") == D("2024-02-26")
    with pytest.raises(ValueError, match="time zone"):
        ref.period_start(dt.datetime(2024, 1, 1, 12), "day")
    with pytest.raises(ValueError, match="grain"):
        ref.period_start(D("2024-01-01"), "year")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("date_from", "date_to", "grain", "expected"),
    [
        # Wed Jan 3 .. Tue Jan 16 touches the weeks of Jan 1, 8 and 15.
        ("2024-01-03", "2024-01-16", "week", ["2024-01-01", "2024-01-08", "2024-01-15"]),
        ("2024-01-08", "2024-01-08", "week", ["2024-01-08"]),
        ("2024-01-31", "2024-03-01", "month", ["2024-01-01", "2024-02-01", "2024-03-01"]),
        (
            "2023-12-30",
            "2024-01-02",
            "day",
            ["2023-12-30", "2023-12-31", "2024-01-01", "2024-01-02"],
        ),
        ("2023-11-15", "2024-01-01", "month", ["2023-11-01", "2023-12-01", "2024-01-01"]),
    ],
)
def test_periods_between(date_from: str, date_to: str, grain: Grain, expected: list[str]) -> None:
    assert ref.periods_between(D(date_from), D(date_to), grain) == [D(x) for x in expected]


def test_periods_between_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError, match="before"):
        ref.periods_between(D("2024-01-02"), D("2024-01-01"), "day")


@pytest.mark.parametrize(
    ("start", "grain", "k", "expected"),
    [
        ("2023-12-01", "month", 1, "2024-01-01"),
        ("2024-01-01", "month", 13, "2025-02-01"),
        ("2024-01-29", "week", 1, "2024-02-05"),
        ("2024-02-28", "day", 2, "2024-03-01"),
    ],
)
def test_add_periods(start: str, grain: Grain, k: int, expected: str) -> None:
    assert ref.add_periods(D(start), grain, k) == D(expected)


# --------------------------------------------------------------------------------------------
# De-duplication, fields, filters


def test_dedupe_keeps_the_earliest_received_copy() -> None:
    first = ev("a", "2024-01-02T10:00:00Z", user="u1")
    earlier = dup(first, user_id="u2", received_ts=first["received_ts"] - dt.timedelta(hours=1))
    tied = dup(
        first,
        user_id="u3",
        received_ts=earlier["received_ts"],
        client_ts=first["client_ts"] + dt.timedelta(seconds=1),
    )
    other = ev("b", "2024-01-02T10:00:00Z")
    kept = ref.dedupe([first, tied, earlier, other])
    # `earlier` and `tied` share the smallest received_ts; the smaller client_ts wins.
    assert [r["user_id"] for r in kept] == ["u2", "u1"]
    assert [r["event_id"] for r in kept] == [first["event_id"], other["event_id"]]


def test_one_event_id_with_two_names_is_two_events() -> None:
    first = ev("a", "2024-01-02T10:00:00Z", user="u1")
    renamed = dup(first, name="b", received_ts=first["received_ts"] - dt.timedelta(hours=1))
    assert ref.dedupe([first, renamed]) == [first, renamed]


def test_dedupe_sees_only_what_the_analysis_reads() -> None:
    # The earliest received copy is dated outside the range: the copy inside it counts.
    inside = ev("a", "2024-01-02T10:00:00Z", user="u1")
    outside = dup(
        inside,
        client_ts=inside["client_ts"] - dt.timedelta(days=5),
        received_ts=inside["received_ts"] - dt.timedelta(hours=1),
    )
    rows = ref.count(
        [inside, outside], "a", "day", date_from=D("2024-01-02"), date_to=D("2024-01-02")
    )
    assert rows == [{"period": D("2024-01-02"), "events": 1, "units": 1}]


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        ({"user_id": "u1"}, "user.id", "u1"),
        ({"user_id": ""}, "user.id", None),
        ({"user_id": None}, "user.id", None),
        ({}, "user.id", None),
        ({"app_instance": "uni-a"}, "app.instance", "uni-a"),
        ({"session_id": "s-1"}, "session.id", "s-1"),
        ({"data": '{"site": "heidelberg"}'}, "data.site", "heidelberg"),
        ({"data": {"site": "heidelberg"}}, "data.site", "heidelberg"),
        ({"data": '{"site": ""}'}, "data.site", None),
        ({"data": '{"site": null}'}, "data.site", None),
        ({"data": None}, "data.site", None),
        ({"data": '{"other": "x"}'}, "data.site", None),
        ({"data": '{"site": 42}'}, "data.site", "42"),
        ({"data": '{"site": 1.50}'}, "data.site", "1.5"),
        ({"data": '{"site": 1e3}'}, "data.site", "1000.0"),
        ({"data": '{"site": true}'}, "data.site", "true"),
        ({"data": '{"site": [1, 2]}'}, "data.site", "[1,2]"),
    ],
)
def test_unit_value(row: Row, field: str, expected: str | None) -> None:
    assert ref.unit_value(row, field) == expected


def test_unknown_field_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown field"):
        ref.unit_value({"user_id": "u1"}, "user.name")


def _where_log() -> list[dict[str, Any]]:
    day = "2024-01-02T12:00:00Z"
    first = ev("page.view", day, user="u6", app_environment="staging")
    return [
        ev("page.view", day, user="u1", app_environment="prod", data={"plan": "pro", "seats": 3}),
        ev("page.view", day, user="u2", app_environment="staging", data={"plan": "free"}),
        ev("page.view", day, user="u3", app_environment=None),
        ev("page.view", day, user="u4", app_environment=""),
        ev("page.view", day, user="u5", app_environment="dev"),
        # u6: kept copy (received first) is staging; the later prod copy is a duplicate.
        first,
        dup(first, app_environment="prod"),
    ]


@pytest.mark.parametrize(
    ("where", "users"),
    [
        ([], ["u1", "u2", "u3", "u4", "u5", "u6"]),
        # u6 is staging: de-duplication happens before `where`.
        ([("app.environment", "=", "prod")], ["u1"]),
        # Missing (u3) and empty (u4) match `!=`.
        ([("app.environment", "!=", "prod")], ["u2", "u3", "u4", "u5", "u6"]),
        ([("app.environment", "in", ["prod", "dev"])], ["u1", "u5"]),
        ([("app.environment", "in", [])], []),
        # Missing and empty never match `=` / `in`, even against "".
        ([("app.environment", "=", "")], []),
        ([("app.environment", "!=", "prod"), ("user.id", "!=", "u2")], ["u3", "u4", "u5", "u6"]),
        ([("data.plan", "=", "pro")], ["u1"]),
        ([("data.plan", "!=", "pro")], ["u2", "u3", "u4", "u5", "u6"]),
        # Values compare as rendered text: 3 and "3" are the same.
        ([("data.seats", "=", 3)], ["u1"]),
        ([("data.seats", "=", "3")], ["u1"]),
        ([("name", "=", "page.view")], ["u1", "u2", "u3", "u4", "u5", "u6"]),
    ],
)
def test_where(where: Where, users: list[str]) -> None:
    result = ref.count(
        _where_log(),
        "page.view",
        "day",
        date_from=D("2024-01-02"),
        date_to=D("2024-01-02"),
        where=where,
        breakdown="user.id",
    )
    assert [r["breakdown"] for r in result] == users
    assert all(r["events"] == 1 for r in result)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ([("app.environment", "~", "prod")], "unknown operator"),
        ([("app.environment", "in", "prod")], "needs a list"),
    ],
)
def test_where_refuses_bad_filters(where: Where, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ref.count(
            _where_log(),
            "page.view",
            "day",
            date_from=D("2024-01-02"),
            date_to=D("2024-01-02"),
            where=where,
        )


# --------------------------------------------------------------------------------------------
# core


def _core_log() -> list[dict[str, Any]]:
    commit = ev("project.commit", "2024-01-02T11:00:00Z", user="u1")
    return [
        # Week of Jan 1.
        ev("session.start", "2024-01-02T10:00:00Z", user="u1"),
        commit,
        dup(commit, user_id="u9"),  # duplicate event_id received later: ignored, u9 never counts
        ev("session.start", "2024-01-03T09:00:00Z", user="u2"),
        ev("project.commit", "2024-01-04T09:00:00Z", user=None),  # anonymous: not a user
        ev("project.commit", "2024-01-04T09:00:00Z", user=""),  # empty id: anonymous
        ev("session.start", "2024-01-08T00:30:00+01:00", user="u3"),  # Sun Jan 7 23:30Z
        ev("project.commit", "2024-01-08T00:45:00+01:00", user="u3"),  # Sun Jan 7 23:45Z
        # Week of Jan 8.
        ev("project.commit", "2024-01-07T23:30:00-02:00", user="u2"),  # Mon Jan 8 01:30Z
        ev("session.start", "2024-01-10T12:00:00Z", user="u4"),
        ev("session.start", "2024-01-11T12:00:00Z", user="u4"),
        # Week of Jan 15: nothing.
        # Week of Jan 22.
        ev("session.start", "2024-01-22T00:00:00Z", user="u5"),
        ev("project.commit", "2024-01-29T00:30:00+01:00", user="u1"),  # Sun Jan 28 23:30Z
        ev("project.commit", "2024-01-28T23:30:00-01:00", user="u6"),  # Jan 29 00:30Z: > date_to
        ev("session.start", "2023-12-31T23:59:00Z", user="u7"),  # < date_from
        ev("page.view", "2024-01-02T10:00:00Z", user="u8"),  # neither action nor active
    ]


def test_core() -> None:
    result = ref.core(
        _core_log(),
        ["project.commit", "project.share"],
        ["session.start", "project.commit"],
        "week",
        date_from=D("2024-01-01"),
        date_to=D("2024-01-28"),
    )
    # Jan 1: active {u1, u2, u3}, commit {u1, u3}.  Jan 8: active {u2, u4}, commit {u2}.
    # Jan 15: empty.  Jan 22: active {u5, u1}, commit {u1}.  Nobody shares.
    expected = [
        ("2024-01-01", "project.commit", 2, 3, 2 / 3),
        ("2024-01-01", "project.share", 0, 3, 0.0),
        ("2024-01-08", "project.commit", 1, 2, 0.5),
        ("2024-01-08", "project.share", 0, 2, 0.0),
        ("2024-01-15", "project.commit", 0, 0, None),
        ("2024-01-15", "project.share", 0, 0, None),
        ("2024-01-22", "project.commit", 1, 2, 0.5),
        ("2024-01-22", "project.share", 0, 2, 0.0),
    ]
    assert result == approx_rows(
        [
            {"period": D(p), "action": a, "users": u, "active_users": n, "share": s}
            for p, a, u, n, s in expected
        ]
    )


def test_core_month() -> None:
    result = ref.core(
        _core_log(),
        ["project.commit"],
        ["session.start"],
        "month",
        date_from=D("2024-01-01"),
        date_to=D("2024-02-29"),
    )
    # January: commit {u1, u3, u2, u6} (u6 at Jan 29 00:30Z is now in range);
    # session.start {u1, u2, u3, u4, u5} (u7 is in December). Share 4/5; February is empty.
    assert result == [
        {
            "period": D("2024-01-01"),
            "action": "project.commit",
            "users": 4,
            "active_users": 5,
            "share": 0.8,
        },
        {
            "period": D("2024-02-01"),
            "action": "project.commit",
            "users": 0,
            "active_users": 0,
            "share": None,
        },
    ]


def test_core_with_breakdown_and_where() -> None:
    rows = [
        ev("session.start", "2024-01-02T09:00:00Z", "u1", app_instance="A", app_environment="p"),
        ev("project.commit", "2024-01-02T10:00:00Z", "u1", app_instance="A", app_environment="p"),
        ev("session.start", "2024-01-03T09:00:00Z", "u1", app_instance="B", app_environment="p"),
        ev("session.start", "2024-01-03T09:00:00Z", "u2", app_instance="B", app_environment="p"),
        ev("project.commit", "2024-01-04T09:00:00Z", "u2", app_instance="B", app_environment="p"),
        ev("project.commit", "2024-01-04T09:00:00Z", "u3", app_instance="A", app_environment="s"),
        ev("session.start", "2024-01-05T09:00:00Z", "u4", app_instance=None, app_environment="p"),
        ev("session.start", "2024-01-05T09:00:00Z", "u5", app_instance="C", app_environment="s"),
        ev("project.commit", "2024-01-09T09:00:00Z", "u2", app_instance="A", app_environment="p"),
    ]
    result = ref.core(
        rows,
        ["project.commit"],
        ["session.start", "project.commit"],
        "week",
        date_from=D("2024-01-01"),
        date_to=D("2024-01-14"),
        where=[("app.environment", "=", "p")],
        breakdown="app.instance",
    )
    # Environment s (u3, u5; so instance C) is filtered out. Values seen: A, B, None.
    # Jan 1: A active {u1} commit {u1}; B active {u1, u2} commit {u2}; None active {u4}.
    # Jan 8: A active {u2} commit {u2}; B and None empty.
    expected = [
        ("2024-01-01", "A", 1, 1, 1.0),
        ("2024-01-01", "B", 1, 2, 0.5),
        ("2024-01-01", None, 0, 1, 0.0),
        ("2024-01-08", "A", 1, 1, 1.0),
        ("2024-01-08", "B", 0, 0, None),
        ("2024-01-08", None, 0, 0, None),
    ]
    assert result == [
        {
            "period": D(p),
            "action": "project.commit",
            "users": u,
            "active_users": n,
            "share": s,
            "breakdown": b,
        }
        for p, b, u, n, s in expected
    ]


def test_core_by_instance_unit() -> None:
    rows = [
        ev("project.commit", "2024-01-02T09:00:00Z", "u1", app_instance="A"),
        ev("project.commit", "2024-01-02T09:00:00Z", "u2", app_instance="A"),
        ev("project.commit", "2024-01-02T09:00:00Z", "u3", app_instance=""),
        ev("session.start", "2024-01-02T09:00:00Z", "u3", app_instance="B"),
        ev("session.start", "2024-01-02T09:00:00Z", None, app_instance="C"),  # anonymous user
    ]
    result = ref.core(
        rows,
        ["project.commit"],
        ["session.start", "project.commit"],
        "day",
        date_from=D("2024-01-02"),
        date_to=D("2024-01-02"),
        unit="app.instance",
    )
    # Instances: commit {A}; active {A, B, C} (the unit is the instance, not the user).
    assert result == approx_rows(
        [
            {
                "period": D("2024-01-02"),
                "action": "project.commit",
                "users": 1,
                "active_users": 3,
                "share": 1 / 3,
            }
        ]
    )


# --------------------------------------------------------------------------------------------
# active and stickiness


def _active_log() -> list[dict[str, Any]]:
    return [
        ev("session.start", "2024-01-30T08:00:00Z", "u1"),
        ev("session.start", "2024-01-30T09:00:00Z", "u1"),
        ev("session.start", "2024-01-30T10:00:00Z", "u2"),
        ev("session.start", "2024-02-01T01:00:00+02:00", "u1"),  # Jan 31 23:00Z
        ev("session.start", "2024-02-01T10:00:00Z", "u3"),
        ev("session.start", "2024-02-01T11:00:00Z", None),  # anonymous
        ev("session.start", "2024-02-02T10:00:00Z", "u1"),
        ev("session.start", "2024-02-02T10:00:00Z", "u3"),
        ev("session.start", "2024-02-02T10:00:00Z", "u4"),
        ev("page.view", "2024-01-31T10:00:00Z", "u9"),  # not an active action
    ]


@pytest.mark.parametrize(
    ("grain", "expected"),
    [
        # Daily: Jan 30 {u1, u2}; Jan 31 {u1}; Feb 1 {u3}; Feb 2 {u1, u3, u4}.
        ("day", [("2024-01-30", 2), ("2024-01-31", 1), ("2024-02-01", 1), ("2024-02-02", 3)]),
        # All four days are in the week of Mon Jan 29: {u1, u2, u3, u4}.
        ("week", [("2024-01-29", 4)]),
        # January {u1, u2}; February {u1, u3, u4}.
        ("month", [("2024-01-01", 2), ("2024-02-01", 3)]),
    ],
)
def test_active(grain: Grain, expected: list[tuple[str, int]]) -> None:
    result = ref.active(
        _active_log(),
        ["session.start"],
        grain,
        date_from=D("2024-01-30"),
        date_to=D("2024-02-02"),
    )
    assert result == [{"period": D(p), "active_users": n} for p, n in expected]


def test_stickiness() -> None:
    result = ref.stickiness(
        _active_log(), ["session.start"], date_from=D("2024-01-30"), date_to=D("2024-03-01")
    )
    # January, days in range Jan 30, 31: DAU 2 and 1 -> mean 1.5; MAU {u1, u2} = 2 -> 0.75.
    # February, all 29 days: DAU 1 (Feb 1) + 3 (Feb 2) = 4 -> mean 4/29; MAU {u1, u3, u4} = 3.
    # March, day Mar 1 only: no activity -> mean 0.0, MAU 0, stickiness None.
    assert result == approx_rows(
        [
            {"period": D("2024-01-01"), "dau_mean": 1.5, "mau": 2, "stickiness": 0.75},
            {"period": D("2024-02-01"), "dau_mean": 4 / 29, "mau": 3, "stickiness": 4 / 87},
            {"period": D("2024-03-01"), "dau_mean": 0.0, "mau": 0, "stickiness": None},
        ]
    )


# --------------------------------------------------------------------------------------------
# count


def _count_log() -> list[dict[str, Any]]:
    c4 = ev("file.upload", "2024-03-01T00:30:00+02:00", "u2", data={"site": "s2"})  # Feb 29 22:30Z
    return [
        ev("file.upload", "2024-01-15T12:00:00Z", "u1", data={"site": "s1"}),
        ev("file.upload", "2024-01-20T12:00:00Z", None, data={"site": "s1"}),  # anonymous
        ev("file.upload", "2024-01-31T23:30:00-01:00", "u2", data={"site": "s2"}),  # Feb 1 00:30Z
        c4,
        dup(c4, client_ts="2024-03-05T10:00:00Z"),  # duplicate, received later: ignored
        ev("file.upload", "2024-02-01T00:30:00+01:00", "u3"),  # Jan 31 23:30Z, no data
        ev("page.view", "2024-01-15T12:00:00Z", "u9", data={"site": "s1"}),  # other event
    ]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        # Jan: 3 events (u1, anonymous, u3) by {u1, u3}; Feb: 2 events by {u2}; Mar: none.
        ("user.id", [("2024-01-01", 3, 2), ("2024-02-01", 2, 1), ("2024-03-01", 0, 0)]),
        # By site: Jan {s1} (the anonymous event has a site; u3's has none); Feb {s2}.
        ("data.site", [("2024-01-01", 3, 1), ("2024-02-01", 2, 1), ("2024-03-01", 0, 0)]),
        # No event has an instance: events still count, units never do.
        ("app.instance", [("2024-01-01", 3, 0), ("2024-02-01", 2, 0), ("2024-03-01", 0, 0)]),
    ],
)
def test_count(unit: str, expected: list[tuple[str, int, int]]) -> None:
    result = ref.count(
        _count_log(),
        "file.upload",
        "month",
        date_from=D("2024-01-01"),
        date_to=D("2024-03-31"),
        unit=unit,
    )
    assert result == [{"period": D(p), "events": e, "units": u} for p, e, u in expected]


def test_count_with_breakdown() -> None:
    result = ref.count(
        _count_log(),
        "file.upload",
        "month",
        date_from=D("2024-01-01"),
        date_to=D("2024-03-31"),
        breakdown="data.site",
    )
    # Values s1, s2, None (u3's event). Jan: s1 = u1 + anonymous (2 events, 1 user), None = u3.
    # Feb: s2 = u2 twice. March: all zero.
    expected = [
        ("2024-01-01", "s1", 2, 1),
        ("2024-01-01", "s2", 0, 0),
        ("2024-01-01", None, 1, 1),
        ("2024-02-01", "s1", 0, 0),
        ("2024-02-01", "s2", 2, 1),
        ("2024-02-01", None, 0, 0),
        ("2024-03-01", "s1", 0, 0),
        ("2024-03-01", "s2", 0, 0),
        ("2024-03-01", None, 0, 0),
    ]
    assert result == [
        {"period": D(p), "events": e, "units": u, "breakdown": b} for p, b, e, u in expected
    ]


def test_breakdown_without_events_is_empty() -> None:
    kw: dict[str, Any] = {"date_from": D("2024-01-01"), "date_to": D("2024-01-02")}
    assert ref.count([], "x", "day", breakdown="app.instance", **kw) == []
    # Without a breakdown, empty periods are reported with zeros.
    assert ref.count([], "x", "day", **kw) == [
        {"period": D("2024-01-01"), "events": 0, "units": 0},
        {"period": D("2024-01-02"), "events": 0, "units": 0},
    ]


# --------------------------------------------------------------------------------------------
# ratio


def _ratio_log() -> list[dict[str, Any]]:
    bounce = ev("page.bounce", "2024-01-02T10:05:00Z", None, session_id="s3")
    return [
        ev("page.view", "2024-01-02T10:00:00Z", "u1", session_id="s1"),
        ev("page.view", "2024-01-02T10:01:00Z", "u1", session_id="s1"),
        ev("page.view", "2024-01-02T10:02:00Z", "u2", session_id="s2"),
        ev("page.view", "2024-01-02T10:03:00Z", None, session_id="s3"),
        ev("page.bounce", "2024-01-02T10:04:00Z", "u2", session_id="s2"),
        bounce,
        dup(bounce),
        ev("page.bounce", "2024-01-03T10:00:00Z", "u1", session_id="s4"),
    ]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        # Jan 2: bounced {u2} of viewers {u1, u2}. Jan 3: a bounce, no view -> ratio None.
        ("user.id", [("2024-01-02", 1, 2, 0.5), ("2024-01-03", 1, 0, None)]),
        # Jan 2: bounced sessions {s2, s3} of {s1, s2, s3}.
        ("session.id", [("2024-01-02", 2, 3, 2 / 3), ("2024-01-03", 1, 0, None)]),
        # Jan 2: 2 bounce events (duplicate once, anonymous counts) of 4 views.
        ("event", [("2024-01-02", 2, 4, 0.5), ("2024-01-03", 1, 0, None)]),
    ],
)
def test_ratio(unit: str, expected: list[tuple[str, int, int, float | None]]) -> None:
    result = ref.ratio(
        _ratio_log(),
        "page.bounce",
        "page.view",
        "day",
        date_from=D("2024-01-02"),
        date_to=D("2024-01-03"),
        unit=unit,
    )
    assert result == approx_rows(
        [{"period": D(p), "numerator": n, "denominator": d, "ratio": r} for p, n, d, r in expected]
    )


# --------------------------------------------------------------------------------------------
# percentile


def _percentile_log() -> list[dict[str, Any]]:
    anon = ev("dialog.shown", "2024-01-02T10:00:00Z", None, data={"ms": 100})
    return [
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": 40}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": 10}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": 30.0}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": 20}),
        anon,
        dup(anon),
        # Ignored: not numbers, missing, another event.
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": "15"}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": True}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": None}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"ms": [5]}),
        ev("dialog.shown", "2024-01-02T10:00:00Z", data={"other": 5}),
        ev("dialog.shown", "2024-01-02T10:00:00Z"),
        ev("dialog.closed", "2024-01-02T10:00:00Z", data={"ms": 1}),
        # Jan 3: nothing. Jan 4: 7, and 9 at Jan 4 23:30Z.
        ev("dialog.shown", "2024-01-04T10:00:00Z", data={"ms": 7}),
        ev("dialog.shown", "2024-01-05T00:30:00+01:00", data={"ms": 9}),
    ]


def test_percentile() -> None:
    result = ref.percentile(
        _percentile_log(),
        "dialog.shown",
        "data.ms",
        [50, 90, 99],
        "day",
        date_from=D("2024-01-02"),
        date_to=D("2024-01-04"),
    )
    # Jan 2: [10, 20, 30, 40, 100], n = 5, rank r = p/100 * 4:
    #   p50 r=2 -> 30; p90 r=3.6 -> 40 + 0.6*60 = 76; p99 r=3.96 -> 40 + 0.96*60 = 97.6.
    # Jan 4: [7, 9], r = p/100: p50 -> 8; p90 -> 7 + 0.9*2 = 8.8; p99 -> 7 + 0.99*2 = 8.98.
    assert result == approx_rows(
        [
            {"period": D("2024-01-02"), "count": 5, "p50": 30.0, "p90": 76.0, "p99": 97.6},
            {"period": D("2024-01-03"), "count": 0, "p50": None, "p90": None, "p99": None},
            {"period": D("2024-01-04"), "count": 2, "p50": 8.0, "p90": 8.8, "p99": 8.98},
        ]
    )


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 0, 5.0),
        ([5.0], 100, 5.0),
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),  # r = 0.75
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # r = 1.5
        ([1.0, 2.0, 3.0, 4.0], 12.5, 1.375),  # r = 0.375
        ([-4.0, 0.0, 4.0], 75, 2.0),  # r = 1.5
    ],
)
def test_percentile_linear(values: list[float], p: float, expected: float) -> None:
    assert ref.percentile_linear(values, p) == pytest.approx(expected)


def test_percentile_keys() -> None:
    rows = [ev("x", "2024-01-02T10:00:00Z", data={"v": 1})]
    result = ref.percentile(
        rows,
        "x",
        "data.v",
        [12.5, 99.9, 100],
        "day",
        date_from=D("2024-01-02"),
        date_to=D("2024-01-02"),
    )
    assert result == [
        {"period": D("2024-01-02"), "count": 1, "p12.5": 1.0, "p99.9": 1.0, "p100": 1.0}
    ]


def test_percentile_linear_matches_numpy() -> None:
    import numpy as np

    samples = [[10.0, 20.0, 30.0, 40.0, 100.0], [7.0, 9.0], [0.1, 0.2, 0.3], [3.0] * 4]
    for values in samples:
        for p in (0, 1, 12.5, 50, 90, 99, 99.9, 100):
            expected = float(np.percentile(values, p, method="linear"))
            assert ref.percentile_linear(values, p) == expected


# --------------------------------------------------------------------------------------------
# funnel

ABC = ("signin.open", "signin.submit", "signin.success")
A, B, C = ABC
HOUR = dt.timedelta(hours=1)

# (id, steps, window, events of u1 as (name, time[, extra columns]), where, users per step).
# Bare times are on 2024-01-02 UTC; the range is 2024-01-02 .. 2024-01-02.
_FunnelEvent = tuple[str, str] | tuple[str, str, dict[str, Any]]
FUNNEL_CASES: list[
    tuple[str, Sequence[str], dt.timedelta, list[_FunnelEvent], Where, list[int]]
] = [
    ("in-order", ABC, HOUR, [(A, "10:00:00"), (B, "10:10:00"), (C, "10:20:00")], [], [1, 1, 1]),
    # B before A does not count for A -> B; C without B does not count.
    ("out-of-order", ABC, HOUR, [(B, "09:50:00"), (A, "10:00:00"), (C, "10:10:00")], [], [1, 0, 0]),
    (
        "b-before-and-after",
        ABC,
        HOUR,
        [(B, "09:50:00"), (A, "10:00:00"), (B, "10:30:00")],
        [],
        [1, 1, 0],
    ),
    # C earlier than B: C cannot follow B.
    ("c-before-b", ABC, HOUR, [(A, "10:00:00"), (C, "10:05:00"), (B, "10:10:00")], [], [1, 1, 0]),
    (
        "repeated-steps",
        ABC,
        HOUR,
        [(A, "10:00:00"), (A, "10:05:00"), (B, "10:06:00"), (B, "10:07:00"), (C, "10:08:00")],
        [],
        [1, 1, 1],
    ),
    (
        "equal-timestamps",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:00:00"), (C, "10:00:00")],
        [],
        [1, 1, 1],
    ),
    # Same instant, listed (and with event ids ordered) C, B, A: still a full conversion.
    (
        "equal-timestamps-reversed",
        ABC,
        HOUR,
        [
            (C, "10:00:00", {"event_id": "e-1"}),
            (B, "10:00:00", {"event_id": "e-2"}),
            (A, "10:00:00", {"event_id": "e-3"}),
        ],
        [],
        [1, 1, 1],
    ),
    # Same instant written with different offsets.
    (
        "equal-instants-other-offsets",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "2024-01-02T11:00:00+01:00"), (C, "2024-01-02T08:00:00-02:00")],
        [],
        [1, 1, 1],
    ),
    ("window-edge", ABC, HOUR, [(A, "10:00:00"), (B, "10:30:00"), (C, "11:00:00")], [], [1, 1, 1]),
    (
        "one-second-past",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:30:00"), (C, "11:00:01")],
        [],
        [1, 1, 0],
    ),
    (
        "one-microsecond-past",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:30:00"), (C, "11:00:00.000001")],
        [],
        [1, 1, 0],
    ),
    (
        "zero-window",
        ABC,
        dt.timedelta(0),
        [(A, "10:00:00"), (B, "10:00:00"), (C, "10:00:01")],
        [],
        [1, 1, 0],
    ),
    # The window runs from step 1, not from the previous step.
    (
        "window-from-step-1",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:50:00"), (C, "11:40:00")],
        [],
        [1, 1, 0],
    ),
    # First attempt (10:00) times out before C; the 12:00 attempt converts.
    (
        "later-attempt-converts",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:30:00"), (A, "12:00:00"), (B, "12:10:00"), (C, "12:20:00")],
        [],
        [1, 1, 1],
    ),
    # Step 1 before date_from (also: 00:30 at +01:00 is Jan 1 23:30Z): no attempt.
    (
        "start-before-range",
        ABC,
        HOUR,
        [(A, "2024-01-01T23:59:59Z"), (B, "2024-01-02T00:00:10Z"), (C, "2024-01-02T00:00:20Z")],
        [],
        [0, 0, 0],
    ),
    (
        "start-before-range-offset",
        ABC,
        HOUR,
        [(A, "2024-01-02T00:30:00+01:00"), (B, "00:00:10"), (C, "00:00:20")],
        [],
        [0, 0, 0],
    ),
    # Started on date_to; later steps after date_to still count within the window.
    (
        "finish-after-range",
        ABC,
        HOUR,
        [(A, "23:50:00"), (B, "2024-01-03T00:10:00Z"), (C, "2024-01-03T00:50:01Z")],
        [],
        [1, 1, 0],
    ),
    # An event serves one step only.
    ("a-a-single", (A, A), HOUR, [(A, "10:00:00")], [], [1, 0]),
    ("a-a-same-instant", (A, A), HOUR, [(A, "10:00:00"), (A, "10:00:00")], [], [1, 1]),
    ("a-b-a-one-a", (A, B, A), HOUR, [(A, "10:00:00"), (B, "10:00:00")], [], [1, 1, 0]),
    (
        "a-b-a",
        (A, B, A),
        HOUR,
        [(A, "10:00:00"), (B, "10:10:00"), (A, "10:20:00")],
        [],
        [1, 1, 1],
    ),
    # From 10:00: B 10:10, but the next A (12:00) is past the window and 10:00 is used.
    (
        "a-b-a-late-start",
        (A, B, A),
        HOUR,
        [(B, "09:00:00"), (A, "10:00:00"), (B, "10:10:00"), (A, "12:00:00")],
        [],
        [1, 1, 0],
    ),
    ("single-step", (A,), HOUR, [(A, "10:00:00"), (A, "11:00:00")], [], [1]),
    # `where` removes the B event, so the user stops at step 1.
    (
        "where",
        ABC,
        HOUR,
        [(A, "10:00:00"), (B, "10:10:00", {"app_environment": "staging"}), (C, "10:20:00")],
        [("app.environment", "!=", "staging")],
        [1, 0, 0],
    ),
    ("no-events", ABC, HOUR, [], [], [0, 0, 0]),
]


def _funnel_rows(events: list[_FunnelEvent], user: str | None = "u1") -> list[dict[str, Any]]:
    rows = []
    for item in events:
        extra: dict[str, Any] = item[2] if len(item) == 3 else {}
        rows.append(ev(item[0], item[1], user, **extra))
    return rows


@pytest.mark.parametrize(
    ("steps", "window", "events", "where", "users"),
    [case[1:] for case in FUNNEL_CASES],
    ids=[case[0] for case in FUNNEL_CASES],
)
def test_funnel_single_user(
    steps: Sequence[str],
    window: dt.timedelta,
    events: list[_FunnelEvent],
    where: Where,
    users: list[int],
) -> None:
    result = ref.funnel(
        _funnel_rows(events),
        steps,
        window,
        date_from=D(_DAY),
        date_to=D(_DAY),
        where=where,
    )
    assert [r["users"] for r in result] == users
    assert [r["step"] for r in result] == list(range(1, len(steps) + 1))
    assert [r["name"] for r in result] == list(steps)


def test_funnel_duplicates_are_counted_once() -> None:
    b = ev(B, "10:10:00")
    rows = [ev(A, "10:00:00"), b, dup(b, client_ts="09:00:00"), ev(C, "10:20:00")]
    # The later-received copy of B (at 09:00, before A) is dropped, so B at 10:10 converts.
    result = ref.funnel(rows, ABC, HOUR, date_from=D(_DAY), date_to=D(_DAY))
    assert [r["users"] for r in result] == [1, 1, 1]


def test_funnel_anonymous_events_never_count() -> None:
    rows = _funnel_rows([(A, "10:00:00"), (B, "10:01:00"), (C, "10:02:00")], user=None)
    rows += _funnel_rows([(A, "10:00:00"), (B, "10:01:00")], user="")
    result = ref.funnel(rows, ABC, HOUR, date_from=D(_DAY), date_to=D(_DAY))
    assert [r["users"] for r in result] == [0, 0, 0]
    # Empty funnel: conversions and medians are None.
    assert all(r["conversion_from_start"] is None for r in result)
    assert all(r["median_seconds_from_previous"] is None for r in result)


def _funnel_log() -> list[dict[str, Any]]:
    def user(uid: str | None, events: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
        return [ev(name, at, uid, app_instance=inst) for name, at, inst in events]

    return [
        # u1 (x): B +60 s, C +120 s -> step 3.
        *user("u1", [(A, "10:00:00", "x"), (B, "10:01:00", None), (C, "10:03:00", None)]),
        # u2 (y): B +300 s -> step 2.
        *user("u2", [(A, "10:00:00", "y"), (B, "10:05:00", None)]),
        # u3 (x): step 1.
        *user("u3", [(A, "11:00:00", "x")]),
        # u4 (y): B +600 s, C +1800 s -> step 3.
        *user("u4", [(A, "09:00:00", "y"), (B, "09:10:00", None), (C, "09:40:00", None)]),
        # u5: the 08:00 attempt (y) reaches step 2 (C at 12:45 is past 09:00); the 12:00
        # attempt (x) reaches step 3 with B +1800 s, C +900 s: counted as x.
        *user(
            "u5",
            [
                (A, "08:00:00", "y"),
                (B, "08:20:00", None),
                (A, "12:00:00", "x"),
                (B, "12:30:00", None),
                (C, "12:45:00", None),
            ],
        ),
        # u6: two attempts reach step 2; the earliest (13:00, y, B +600 s) is counted.
        *user(
            "u6",
            [
                (A, "13:00:00", "y"),
                (B, "13:10:00", None),
                (A, "14:00:00", "x"),
                (B, "14:02:00", None),
            ],
        ),
        # Anonymous (z): never counted, so z is not a breakdown value either.
        *user(None, [(A, "10:00:00", "z"), (B, "10:01:00", "z"), (C, "10:02:00", "z")]),
    ]


def _funnel_row(
    step: int, users: int, prev: float | None, start: float | None, median: float | None
) -> dict[str, Any]:
    return {
        "step": step,
        "name": ABC[step - 1],
        "users": users,
        "conversion_from_previous": prev,
        "conversion_from_start": start,
        "median_seconds_from_previous": median,
    }


def test_funnel_conversions_and_medians() -> None:
    result = ref.funnel(_funnel_log(), ABC, HOUR, date_from=D(_DAY), date_to=D(_DAY))
    # Furthest steps: u1 3, u2 2, u3 1, u4 3, u5 3, u6 2 -> users 6, 5, 3.
    # Step 2 gaps: u1 60, u2 300, u4 600, u5 1800, u6 600 -> median 600.
    # Step 3 gaps: u1 120, u4 1800, u5 900 -> median 900.
    assert result == approx_rows(
        [
            _funnel_row(1, 6, 1.0, 1.0, None),
            _funnel_row(2, 5, 5 / 6, 5 / 6, 600.0),
            _funnel_row(3, 3, 3 / 5, 3 / 6, 900.0),
        ]
    )


def test_funnel_breakdown_uses_the_counted_attempt() -> None:
    result = ref.funnel(
        _funnel_log(), ABC, HOUR, date_from=D(_DAY), date_to=D(_DAY), breakdown="app.instance"
    )
    # x: u1 (3), u3 (1), u5 (3) -> 3, 2, 2; step 2 gaps 60, 1800 -> 930; step 3 120, 900 -> 510.
    # y: u2 (2), u4 (3), u6 (2) -> 3, 3, 1; step 2 gaps 300, 600, 600 -> 600; step 3 1800.
    expected = [
        {**_funnel_row(1, 3, 1.0, 1.0, None), "breakdown": "x"},
        {**_funnel_row(2, 2, 2 / 3, 2 / 3, 930.0), "breakdown": "x"},
        {**_funnel_row(3, 2, 1.0, 2 / 3, 510.0), "breakdown": "x"},
        {**_funnel_row(1, 3, 1.0, 1.0, None), "breakdown": "y"},
        {**_funnel_row(2, 3, 1.0, 1.0, 600.0), "breakdown": "y"},
        {**_funnel_row(3, 1, 1 / 3, 1 / 3, 1800.0), "breakdown": "y"},
    ]
    assert result == approx_rows(expected)


def test_funnel_conversion_from_previous_is_none_after_an_empty_step() -> None:
    rows = _funnel_rows([(A, "10:00:00")])
    result = ref.funnel(rows, (A, B, C), HOUR, date_from=D(_DAY), date_to=D(_DAY))
    assert [r["conversion_from_previous"] for r in result] == [1.0, 0.0, None]
    assert [r["conversion_from_start"] for r in result] == [1.0, 0.0, 0.0]


def test_funnel_by_session() -> None:
    rows = [
        ev(A, "10:00:00", "u1", session_id="s1"),
        ev(B, "10:01:00", "u1", session_id="s2"),  # another session: s1 stops at step 1
        ev(A, "10:02:00", "u1", session_id="s2"),
        ev(B, "10:03:00", "u1", session_id="s2"),  # s2: A 10:02 -> B 10:03 (B 10:01 is before)
    ]
    result = ref.funnel(rows, (A, B), HOUR, date_from=D(_DAY), date_to=D(_DAY), unit="session.id")
    assert [r["users"] for r in result] == [2, 1]
    assert result[1]["median_seconds_from_previous"] == 60.0


# --------------------------------------------------------------------------------------------
# retention


def _retention_log() -> list[dict[str, Any]]:
    u6_signup = ev("user.signup", "2024-01-09T10:00:00Z", "u6")
    return [
        # Cohort Jan 1: u1, u2, u3, u4.
        ev("user.signup", "2024-01-02T10:00:00Z", "u1"),
        ev("session.start", "2024-01-09T10:00:00Z", "u1"),  # week +1
        ev("session.start", "2024-01-23T10:00:00Z", "u1"),  # week +3
        ev("user.signup", "2024-01-03T10:00:00Z", "u2"),
        ev("project.commit", "2024-01-16T10:00:00Z", "u2"),  # week +2 only: a gap at +1
        ev("user.signup", "2024-01-08T00:30:00+01:00", "u3"),  # Sun Jan 7 23:30Z
        ev("session.start", "2024-01-07T23:30:00-02:00", "u3"),  # Mon Jan 8 01:30Z: week +1
        ev("user.signup", "2024-01-04T10:00:00Z", "u4"),
        ev("session.start", "2024-01-04T11:00:00Z", "u4"),  # week 0: irrelevant
        ev("session.start", "2024-01-22T10:00:00Z", "u4"),  # week +3
        # u5's first signup precedes date_from: in no cohort.
        ev("user.signup", "2023-12-28T10:00:00Z", "u5"),
        ev("user.signup", "2024-01-03T10:00:00Z", "u5"),
        ev("session.start", "2024-01-09T10:00:00Z", "u5"),
        # Cohort Jan 8: u6, u7.
        u6_signup,
        dup(u6_signup, client_ts="2024-01-02T10:00:00Z"),  # duplicate: ignored
        ev("user.signup", "2024-01-10T10:00:00Z", "u6"),
        ev("session.start", "2024-01-16T10:00:00Z", "u6"),  # week +1
        ev("page.view", "2024-01-23T10:00:00Z", "u6"),  # not a return event
        ev("user.signup", "2024-01-10T10:00:00Z", "u7"),
        ev("user.signup", "2024-01-16T10:00:00Z", "u7"),  # a cohort event is not a return
        # Cohort Jan 15: u8.
        ev("user.signup", "2024-01-16T10:00:00Z", "u8"),
        ev("session.start", "2024-01-17T10:00:00Z", "u8"),  # week 0
        # Anonymous signups never form a cohort.
        ev("user.signup", "2024-01-02T10:00:00Z", None),
        ev("session.start", "2024-01-09T10:00:00Z", None),
    ]


def _ret(cohort: str, retained: list[int | None], rates: list[float | None]) -> dict[str, Any]:
    return {"cohort": D(cohort), "size": retained[0], "retained": retained, "rates": rates}


@pytest.mark.parametrize(
    ("date_to", "expected"),
    [
        # Weeks Jan 1, 8, 15; week +k after Jan 21 is None.
        # Jan 1 {u1, u2, u3, u4}: +1 {u1, u3}; +2 {u2}; +3 (Jan 22) None.
        # Jan 8 {u6, u7}: +1 {u6}; +2 (Jan 22) None.  Jan 15 {u8}: +1 None.
        (
            "2024-01-21",
            [
                _ret("2024-01-01", [4, 2, 1, None], [1.0, 0.5, 0.25, None]),
                _ret("2024-01-08", [2, 1, None, None], [1.0, 0.5, None, None]),
                _ret("2024-01-15", [1, None, None, None], [1.0, None, None, None]),
            ],
        ),
        # To Jan 28: Jan 1 +3 (Jan 22) {u4, u1}; Jan 8 +2 (Jan 22) none; Jan 15 +1 none;
        # Jan 22 is an empty cohort whose +1 (Jan 29) is after date_to.
        (
            "2024-01-28",
            [
                _ret("2024-01-01", [4, 2, 1, 2], [1.0, 0.5, 0.25, 0.5]),
                _ret("2024-01-08", [2, 1, 0, None], [1.0, 0.5, 0.0, None]),
                _ret("2024-01-15", [1, 0, None, None], [1.0, 0.0, None, None]),
                _ret("2024-01-22", [0, None, None, None], [None, None, None, None]),
            ],
        ),
        # To Jan 22: the Jan 23 session of u1 is after date_to, so Jan 1 +3 is {u4} only.
        (
            "2024-01-22",
            [
                _ret("2024-01-01", [4, 2, 1, 1], [1.0, 0.5, 0.25, 0.25]),
                _ret("2024-01-08", [2, 1, 0, None], [1.0, 0.5, 0.0, None]),
                _ret("2024-01-15", [1, 0, None, None], [1.0, 0.0, None, None]),
                _ret("2024-01-22", [0, None, None, None], [None, None, None, None]),
            ],
        ),
    ],
)
def test_retention(date_to: str, expected: list[dict[str, Any]]) -> None:
    result = ref.retention(
        _retention_log(),
        "user.signup",
        ["session.start", "project.commit"],
        "week",
        3,
        date_from=D("2024-01-01"),
        date_to=D(date_to),
    )
    assert result == expected


def test_retention_breakdown_uses_the_first_cohort_event() -> None:
    rows = [
        ev("user.signup", "2024-01-02T10:00:00Z", "u1", app_instance="a"),
        ev("user.signup", "2024-01-09T10:00:00Z", "u1", app_instance="b"),  # not first
        ev("session.start", "2024-01-10T10:00:00Z", "u1", app_instance="c"),
        ev("user.signup", "2024-01-03T10:00:00Z", "u2", app_instance="b"),
    ]
    result = ref.retention(
        rows,
        "user.signup",
        ["session.start"],
        "week",
        1,
        date_from=D("2024-01-01"),
        date_to=D("2024-01-14"),
        breakdown="app.instance",
    )
    # Cohort Jan 1: a {u1} retained in week +1; b {u2} not. Cohort Jan 8 is empty and its +1
    # (Jan 15) is after date_to.
    assert result == [
        {**_ret("2024-01-01", [1, 1], [1.0, 1.0]), "breakdown": "a"},
        {**_ret("2024-01-01", [1, 0], [1.0, 0.0]), "breakdown": "b"},
        {**_ret("2024-01-08", [0, None], [None, None]), "breakdown": "a"},
        {**_ret("2024-01-08", [0, None], [None, None]), "breakdown": "b"},
    ]


def test_retention_by_month_and_site() -> None:
    rows = [
        ev("site.created", "2024-01-31T23:30:00-01:00", "u1", data={"site": "s1"}),  # Feb 1Z
        ev("page.view", "2024-03-01T00:30:00+02:00", "u2", data={"site": "s1"}),  # Feb 29Z
        ev("page.view", "2024-03-15T10:00:00Z", "u2", data={"site": "s1"}),  # March: +1
        ev("site.created", "2024-01-15T10:00:00Z", "u3", data={"site": "s2"}),
        ev("page.view", "2024-03-01T10:00:00Z", None, data={"site": "s2"}),  # anonymous user
    ]
    result = ref.retention(
        rows,
        "site.created",
        ["page.view"],
        "month",
        2,
        date_from=D("2024-01-01"),
        date_to=D("2024-03-31"),
        unit="data.site",
    )
    # Jan {s2}: Feb none, Mar yes (the unit is the site, the user may be anonymous).
    # Feb {s1}: Mar yes (the Feb 29Z view is month 0), Apr after date_to.
    # Mar: empty, +1 and +2 after date_to.
    assert result == [
        _ret("2024-01-01", [1, 0, 1], [1.0, 0.0, 1.0]),
        _ret("2024-02-01", [1, 1, None], [1.0, 1.0, None]),
        _ret("2024-03-01", [0, None, None], [None, None, None]),
    ]
