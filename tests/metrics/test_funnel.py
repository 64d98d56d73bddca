"""Funnels on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import build

_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    """A lake row; ids ``e000001, e000002, ...`` and receive times increase with each call."""
    global _n
    _n += 1
    return {
        "event_id": f"e{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


def later_copy(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``row`` (same event_id and name) received a day later: never kept."""
    return {**row, "received_ts": row["received_ts"] + dt.timedelta(days=1), **changes}


def span(date_from: str, date_to: str) -> dict[str, str]:
    return {"from": date_from, "to": date_to}


def summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["users"],
            r["conversion_from_previous"],
            r["conversion_from_start"],
            r["median_seconds_from_previous"],
        )
        for r in rows
    ]


def test_conversions_medians_duplicates_anonymous_and_order(tmp_path: Path) -> None:
    u2_open = ev("open", "2026-01-05T09:30:00+00:00", "u2")
    u1_pay = ev("pay", "2026-01-05T10:20:00+00:00", "u1")
    rows = [
        # u1: open -> pay (20 min) -> done (30 min): the whole funnel.
        ev("open", "2026-01-05T10:00:00+00:00", "u1"),
        u1_pay,
        ev("done", "2026-01-05T10:50:00+00:00", "u1"),
        # A later copy of u1's pay for another user: ignored.
        later_copy(u1_pay, user_id="u9"),
        # u2: pay *before* open does not convert.
        ev("pay", "2026-01-05T09:00:00+00:00", "u2"),
        u2_open,
        # A later copy of u2's open, earlier in time: ignored (the first received copy wins).
        later_copy(u2_open, client_ts=dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)),
        # u3: the first attempt's pay would be 65 minutes late; the second attempt converts
        # in 55 minutes.
        ev("open", "2026-01-05T10:00:00+00:00", "u3"),
        ev("open", "2026-01-05T10:10:00+00:00", "u3"),
        ev("pay", "2026-01-05T11:05:00+00:00", "u3"),
        # Anonymous events (missing or empty unit) never count.
        ev("open", "2026-01-05T10:00:00+00:00", None),
        ev("pay", "2026-01-05T10:01:00+00:00", None),
        ev("open", "2026-01-05T10:00:00+00:00", ""),
        ev("pay", "2026-01-05T10:01:00+00:00", ""),
    ]
    got = check(
        tmp_path,
        rows,
        "funnel",
        steps="open,pay,done",
        window="1h",
        **span("2026-01-05", "2026-01-05"),
    )
    assert [(r["step"], r["name"]) for r in got] == [(1, "open"), (2, "pay"), (3, "done")]
    assert summary(got) == [
        (3, 1.0, 1.0, None),
        (2, 2 / 3, 2 / 3, 2250.0),  # median of 1200 s and 3300 s
        (1, 0.5, 1 / 3, 1800.0),
    ]


def test_window_edge_is_inclusive_to_the_microsecond(tmp_path: Path) -> None:
    rows = [
        ev("open", "2026-01-05T10:00:00+00:00", "u1"),
        ev("pay", "2026-01-05T11:00:00+00:00", "u1"),  # exactly at t1 + 1h: counts
        ev("open", "2026-01-05T10:00:00+00:00", "u2"),
        ev("pay", "2026-01-05T11:00:00.000001+00:00", "u2"),  # one microsecond late
        ev("open", "2026-01-05T10:00:00+00:00", "u3"),
        ev("pay", "2026-01-05T11:00:01+00:00", "u3"),  # one second late
        # Written at +02:00 it is the same instant as u1's: exactly on the edge.
        ev("open", "2026-01-05T12:00:00+02:00", "u4"),
        ev("pay", "2026-01-05T11:00:00+00:00", "u4"),
    ]
    got = check(
        tmp_path, rows, "funnel", steps="open,pay", window="1h", **span("2026-01-05", "2026-01-05")
    )
    assert summary(got) == [(4, 1.0, 1.0, None), (2, 0.5, 0.5, 3600.0)]


def test_equal_timestamps_convert_whatever_the_ids(tmp_path: Path) -> None:
    at = "2026-01-05T10:00:00+00:00"
    rows = [
        # u1: pay's id sorts before open's, at the same instant: converts in 0 s.
        ev("open", at, "u1", event_id="z1"),
        ev("pay", at, "u1", event_id="a1"),
        # u2: open, pay, open, all at one instant: a, b, a is reached (two distinct opens).
        ev("open", at, "u2", event_id="z2"),
        ev("pay", at, "u2", event_id="m2"),
        ev("open", at, "u2", event_id="a2"),
        # u3: one open only: it cannot serve as both step 1 and step 3.
        ev("open", at, "u3", event_id="a3"),
        ev("pay", at, "u3", event_id="b3"),
    ]
    two = check(
        tmp_path / "two",
        rows,
        "funnel",
        steps="open,pay",
        window="1m",
        **span("2026-01-05", "2026-01-05"),
    )
    assert summary(two) == [(3, 1.0, 1.0, None), (3, 1.0, 1.0, 0.0)]
    three = check(
        tmp_path / "three",
        rows,
        "funnel",
        steps="open,pay,open",
        window="1m",
        **span("2026-01-05", "2026-01-05"),
    )
    assert summary(three) == [(3, 1.0, 1.0, None), (3, 1.0, 1.0, 0.0), (1, 1 / 3, 1 / 3, 0.0)]


def test_repeated_step_names_use_each_event_once(tmp_path: Path) -> None:
    rows = [
        # u1: open, pay, open: the first open is used by step 1, the second serves step 3.
        ev("open", "2026-01-05T10:00:00+00:00", "u1"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u1"),
        ev("open", "2026-01-05T10:20:00+00:00", "u1"),
        # u2: open, open, pay: no open after the pay, whichever attempt.
        ev("open", "2026-01-05T10:00:00+00:00", "u2"),
        ev("open", "2026-01-05T10:05:00+00:00", "u2"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u2"),
        # u3: open, pay, pay: the second pay (the first is used) is step 4.
        ev("open", "2026-01-05T10:00:00+00:00", "u3"),
        ev("pay", "2026-01-05T10:30:00+00:00", "u3"),
        ev("pay", "2026-01-05T10:40:00+00:00", "u3"),
    ]
    aba = check(
        tmp_path / "aba",
        rows,
        "funnel",
        steps="open,pay,open",
        window="1h",
        **span("2026-01-05", "2026-01-05"),
    )
    assert [r["users"] for r in aba] == [3, 3, 1]
    assert [r["median_seconds_from_previous"] for r in aba] == [None, 600.0, 600.0]
    abb = check(
        tmp_path / "abb",
        rows,
        "funnel",
        steps="open,pay,pay",
        window="1h",
        **span("2026-01-05", "2026-01-05"),
    )
    assert [r["users"] for r in abb] == [3, 3, 1]
    assert [r["median_seconds_from_previous"] for r in abb] == [None, 600.0, 600.0]


def test_later_steps_after_date_to_and_offsets_near_midnight(tmp_path: Path) -> None:
    rows = [
        # u1 starts at 23:30Z on the last day and pays after midnight, within the hour.
        ev("open", "2026-01-05T23:30:00+00:00", "u1"),
        ev("pay", "2026-01-06T00:10:00+00:00", "u1"),
        # u2's open is 23:30Z on 2026-01-05 (written on the 6th at +01:00): in range.
        ev("open", "2026-01-06T00:30:00+01:00", "u2"),
        ev("pay", "2026-01-06T00:20:00+00:00", "u2"),
        # u3's open is 01:30Z on 2026-01-06 (written on the 5th at -02:00): out of range, so
        # u3 has no attempt at all, its pay notwithstanding.
        ev("open", "2026-01-05T23:30:00-02:00", "u3"),
        ev("pay", "2026-01-06T01:40:00+00:00", "u3"),
        # u4 opened before the range; that open starts no attempt either.
        ev("open", "2026-01-04T23:59:59+00:00", "u4"),
        ev("pay", "2026-01-05T00:00:10+00:00", "u4"),
    ]
    got = check(
        tmp_path, rows, "funnel", steps="open,pay", window="1h", **span("2026-01-05", "2026-01-05")
    )
    assert summary(got) == [(2, 1.0, 1.0, None), (2, 1.0, 1.0, 2700.0)]  # 2400 s and 3000 s


def test_one_day_window_reads_the_next_day(tmp_path: Path) -> None:
    rows = [
        ev("open", "2026-01-05T23:59:00+00:00", "u1"),
        ev("pay", "2026-01-06T23:58:00+00:00", "u1"),  # 23 h 59 min later: in the window
        ev("open", "2026-01-05T00:00:00+00:00", "u2"),
        ev("pay", "2026-01-06T00:00:01+00:00", "u2"),  # one second late
    ]
    got = check(
        tmp_path, rows, "funnel", steps="open,pay", window="1d", **span("2026-01-05", "2026-01-05")
    )
    assert summary(got) == [(2, 1.0, 1.0, None), (1, 0.5, 0.5, 86340.0)]


def test_breakdown_is_taken_from_the_counted_attempt(tmp_path: Path) -> None:
    rows = [
        # u1: the site-x attempt stops at step 1, the later site-y attempt reaches step 2: y.
        ev("open", "2026-01-05T10:00:00+00:00", "u1", app_instance="x"),
        ev("open", "2026-01-05T12:00:00+00:00", "u1", app_instance="y"),
        ev("pay", "2026-01-05T12:30:00+00:00", "u1", app_instance="z"),
        # u2: both attempts reach step 2; the earlier one (site x) is counted.
        ev("open", "2026-01-05T10:00:00+00:00", "u2", app_instance="x"),
        ev("open", "2026-01-05T10:05:00+00:00", "u2", app_instance="y"),
        ev("pay", "2026-01-05T10:30:00+00:00", "u2"),
        # u3: site x, step 1 only; u4: no site, step 1 only.
        ev("open", "2026-01-05T10:00:00+00:00", "u3", app_instance="x"),
        ev("open", "2026-01-05T10:00:00+00:00", "u4"),
        # Anonymous: its site (w) is not reported.
        ev("open", "2026-01-05T10:00:00+00:00", None, app_instance="w"),
    ]
    got = check(
        tmp_path,
        rows,
        "funnel",
        steps="open,pay",
        window="1h",
        breakdown="app.instance",
        **span("2026-01-05", "2026-01-05"),
    )
    assert [
        (r["breakdown"], r["step"], r["users"], r["conversion_from_previous"]) for r in got
    ] == [
        ("x", 1, 2, 1.0),
        ("x", 2, 1, 0.5),
        ("y", 1, 1, 1.0),
        ("y", 2, 1, 1.0),
        (None, 1, 1, 1.0),
        (None, 2, 0, 0.0),
    ]
    assert [r["median_seconds_from_previous"] for r in got if r["step"] == 2] == [
        1800.0,
        1800.0,
        None,
    ]


def test_filters_apply_to_every_step(tmp_path: Path) -> None:
    rows = [
        ev("open", "2026-01-05T10:00:00+00:00", "u1", app_environment="prod"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u1", app_environment="test"),
        ev("open", "2026-01-05T10:00:00+00:00", "u2", app_environment="prod"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u2", app_environment="prod"),
    ]
    got = check(
        tmp_path,
        rows,
        "funnel",
        steps="open,pay",
        window="1h",
        where=["app.environment=prod"],
        **span("2026-01-05", "2026-01-05"),
    )
    assert [r["users"] for r in got] == [2, 1]


def test_session_unit(tmp_path: Path) -> None:
    rows = [
        ev("open", "2026-01-05T10:00:00+00:00", "u1", session_id="s1"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u1", session_id="s2"),
        ev("open", "2026-01-05T10:00:00+00:00", None, session_id="s3"),
        ev("pay", "2026-01-05T10:10:00+00:00", "u9", session_id="s3"),
    ]
    got = check(
        tmp_path,
        rows,
        "funnel",
        steps="open,pay",
        window="1h",
        unit="session.id",
        **span("2026-01-05", "2026-01-05"),
    )
    assert [r["users"] for r in got] == [2, 1]


def test_no_attempts(tmp_path: Path) -> None:
    rows = [ev("pay", "2026-01-05T10:00:00+00:00", "u1", app_instance="x")]
    got = check(
        tmp_path / "a", rows, "funnel", steps="open,pay", **span("2026-01-05", "2026-01-05")
    )
    assert summary(got) == [(0, None, None, None), (0, None, None, None)]
    split = check(
        tmp_path / "b",
        rows,
        "funnel",
        steps="open,pay",
        breakdown="app.instance",
        **span("2026-01-05", "2026-01-05"),
    )
    assert split == []


def test_single_step(tmp_path: Path) -> None:
    rows = [ev("open", "2026-01-05T10:00:00+00:00", u) for u in ("u1", "u2", "u2")]
    got = check(tmp_path, rows, "funnel", steps="open", **span("2026-01-05", "2026-01-05"))
    assert summary(got) == [(2, 1.0, 1.0, None)]


def test_funnel_over_an_empty_read(tmp_path: Path) -> None:
    rows = [ev("open", "2026-02-05T10:00:00+00:00", "u1")]
    got = check(tmp_path, rows, "funnel", steps="open,pay", **span("2026-01-05", "2026-01-05"))
    assert [r["users"] for r in got] == [0, 0]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": "open,pay", "unit": "event"}, "unit"),
        ({"steps": " , "}, "at least one step"),
    ],
)
def test_refused_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        build("funnel", params)


def test_read_window_extends_past_date_to() -> None:
    analysis = build(
        "funnel", {"steps": "a,b", "window": "36h", **span("2026-01-05", "2026-01-06")}
    )
    assert analysis.read_window() == (dt.date(2026, 1, 5), dt.date(2026, 1, 8))
    short = build("funnel", {"steps": "a,b", "window": "1s", **span("2026-01-05", "2026-01-06")})
    assert short.read_window() == (dt.date(2026, 1, 5), dt.date(2026, 1, 7))
