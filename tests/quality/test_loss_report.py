"""The loss report as the CLI and the HTTP API ask for it (``quality.reports``): weeks, date
ranges, one library, the parameters' checks — against the Python reference over the same
messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality.lossgen import Log, generate
from tallystick.metrics.params import MetricError
from tallystick.quality.loss import COLUMNS, LossRow, loss_report, total, week_start, weekly
from tallystick.quality.reports import (
    ReportQuery,
    loss_body,
    loss_query,
    loss_rows,
    parse_query,
    skew_query,
)
from tallystick.store.lake import Lake, events_to_table

D = dt.date.fromisoformat


def write(root: Path, log: Log) -> Lake:
    lake = Lake(root)
    events, received, streams = log.events()
    lake.write_events(events_to_table(events, received, streams), "generated")
    return lake


@pytest.fixture(scope="module")
def log() -> Log:
    """Sessions on 2026-03-01 and 2026-03-02 (some spanning midnight): a Sunday and a Monday,
    so that the two days fall in two weeks."""
    return generate(random.Random(11), sessions=60, unsequenced=15)


@pytest.fixture(scope="module")
def lake(log: Log, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return write(tmp_path_factory.mktemp("loss") / "lake", log)


# -- weeks ---------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), sessions=st.integers(0, 10))
def test_a_week_is_the_report_of_its_days_moved_to_monday(seed: int, sessions: int) -> None:
    """Independent answer: move every message to its week's Monday and report by day."""
    messages = generate(random.Random(seed), sessions, unsequenced=3).messages()
    moved = [dataclasses.replace(m, day=week_start(m.day)) for m in messages]
    assert weekly(loss_report(messages)) == loss_report(moved)


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        ("2026-03-01", "2026-02-23"),  # a Sunday
        ("2026-03-02", "2026-03-02"),  # a Monday
        ("2026-03-08", "2026-03-02"),
        ("2027-01-01", "2026-12-28"),  # across a year
    ],
)
def test_weeks_start_on_monday(day: str, monday: str) -> None:
    assert week_start(D(day)) == D(monday)


def test_totals_add_up_and_rate_the_sums() -> None:
    rows = [
        LossRow.from_counts(
            (D("2026-03-01"), "js", "1"),
            {"sessions": 1, "expected": 4, "received": 3, "seq_conflicts": 1}
            | {"events": 5, "natural": 2, "synthetic": 1},
        ),
        LossRow.from_counts(
            (D("2026-03-02"), None, None),
            {"sessions": 2, "expected": 6, "received": 6, "seq_conflicts": 0}
            | {"events": 7, "natural": 0, "synthetic": 3},
        ),
    ]
    assert total(rows) == {
        "sessions": 3,
        "expected": 10,
        "received": 9,
        "lost": 1,
        "loss_rate": 0.1,
        "seq_conflicts": 1,
        "events": 12,
        "duplicates_natural": 2,
        "duplicates_synthetic": 4,
    }
    assert total([])["loss_rate"] is None


def test_a_row_names_its_period() -> None:
    row = LossRow.from_counts(
        (D("2026-03-02"), "js", "1"),
        {"sessions": 1, "expected": 2, "received": 1, "seq_conflicts": 0}
        | {"events": 1, "natural": 0, "synthetic": 0},
    )
    assert list(row.as_row("week")) == ["week", *COLUMNS]
    assert row.as_row("week")["week"] == "2026-03-02"
    assert row.as_row()["loss_rate"] == 0.5


# -- over a lake ---------------------------------------------------------------------------------


def _query(**params: Any) -> ReportQuery:
    return loss_query(params)


def test_the_lake_report_by_day_and_week(lake: Lake, log: Log) -> None:
    truth = log.expected_report()
    assert loss_rows(lake, _query()) == truth
    assert loss_rows(lake, _query(grain="week")) == weekly(truth)
    assert {r.day for r in weekly(truth)} == {D("2026-02-23"), D("2026-03-02")}


RANGES = [
    {"from": "2026-03-02"},
    {"to": "2026-03-01"},
    {"from": "2026-03-01", "to": "2026-03-01"},
    {"from": "2026-03-03"},
    {"from": "2026-02-01", "to": "2026-12-31"},
]


@pytest.mark.parametrize("bounds", RANGES, ids=[str(r) for r in RANGES])
def test_a_range_keeps_the_whole_report_s_rows_of_its_days(
    lake: Lake, log: Log, bounds: dict[str, str]
) -> None:
    """A session that started before the range is not counted in it, though some of its
    messages fall in it: the range cuts the report, not the messages."""
    low = D(bounds.get("from", "2000-01-01"))
    high = D(bounds.get("to", "2100-01-01"))
    expected = [r for r in log.expected_report() if low <= r.day <= high]
    assert loss_rows(lake, _query(**bounds)) == expected


def test_one_library(lake: Lake, log: Log) -> None:
    rows = loss_rows(lake, _query(library="tallystick-python"))
    assert rows == [r for r in log.expected_report() if r.library == "tallystick-python"]
    assert {r.version for r in rows} == {"0.1.0", "0.2.0"}
    assert loss_rows(lake, _query(library="nobody")) == []


def test_the_answer_repeats_the_question(lake: Lake, log: Log) -> None:
    body = loss_body(lake, _query(grain="week", to="2026-03-01", library="tallystick-js"))
    rows = [r for r in weekly(log.expected_report()) if r.library == "tallystick-js"]
    rows = [r for r in rows if r.day <= D("2026-03-01")]
    assert body == {
        "grain": "week",
        "from": None,
        "to": "2026-03-01",
        "library": "tallystick-js",
        "rows": [r.as_row("week") for r in rows],
        "totals": total(rows),
    }


def test_an_empty_lake(tmp_path: Path) -> None:
    body = loss_body(Lake(tmp_path / "lake"), _query())
    assert body["rows"] == []
    assert body["totals"]["expected"] == 0


# -- parameters ----------------------------------------------------------------------------------


def test_parameters_are_read() -> None:
    assert _query() == ReportQuery("day")
    assert _query(grain=" WEEK ", **{"from": "2026-03-01"}, to=None, library="js") == (
        ReportQuery("week", D("2026-03-01"), None, "js")
    )
    assert skew_query({}) == ReportQuery("all")
    assert skew_query({"grain": "day"}).grain == "day"


BAD: list[tuple[dict[str, object], str]] = [
    ({"grain": "month"}, "grain 'month' is not one of day, week for the loss report"),
    ({"grain": "all"}, "grain 'all' is not one of day, week for the loss report"),
    ({"from": "March"}, "from 'March' is not a date: write YYYY-MM-DD"),
    ({"to": "2026-02-30"}, "to '2026-02-30' is not a date: write YYYY-MM-DD"),
    (
        {"from": "2026-03-02", "to": "2026-03-01"},
        "to 2026-03-01 is before from 2026-03-02: give a from on or before the to",
    ),
    ({"library": " "}, "parameter 'library' is empty: give a value or leave it out"),
    ({"library": ["a", "b"]}, "parameter 'library' must be a string, got ['a', 'b']"),
    (
        {"where": "x=1", "event": "a"},
        "the loss report does not take event, where; it takes grain, from, to, library",
    ),
]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m for _, m in BAD])
def test_wrong_parameters_say_what_to_write(params: dict[str, object], message: str) -> None:
    with pytest.raises(MetricError) as caught:
        parse_query(params, ("day", "week"), "day", "loss")
    assert str(caught.value) == message
