"""Judging alert rules (pure) against hand-computed cases, what an evaluation announces, and the
SQL measurements of keys and failed-event names against a plain-Python reference."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality.alertgen import table
from tallystick.control.definitions import Alert, parse_stream
from tallystick.quality.alert_rules import (
    RateCounts,
    VolumeCounts,
    judge,
    notice,
)
from tallystick.quality.alert_sql import EVENTS_TABLE, FAILED_NAMES_SQL, attributed, keys

VOLUME = Alert("volume", drop=0.5, spike=1.0, weeks=4, min_events=20)


@pytest.mark.parametrize(
    ("alert", "current", "weeks", "fired", "expected", "says"),
    [
        (VOLUME, 100, (100, 100, 100, 100), False, 100, "0 % above the mean of the same 24 h"),
        (VOLUME, 49, (100, 90, 110, 100), True, 100, "51 % below the mean"),
        (VOLUME, 50, (100, 100, 100, 100), False, 100, "50 % below"),  # not *below* half
        (VOLUME, 0, (100, 100, 100, 100), True, 100, "0 events in the last 24 h: 100 % below"),
        (VOLUME, 201, (100, 100, 100, 100), True, 100, "101 % above"),
        (VOLUME, 200, (100, 100, 100, 100), False, 100, "100 % above"),
        (
            Alert("volume", drop=0.5, spike=None, weeks=4),
            1000,
            (100, 100, 100, 100),
            False,
            100,
            "900 % above",
        ),
        (
            Alert("volume", drop=None, spike=0.5, weeks=4),
            1,
            (100, 100, 100, 100),
            False,
            100,
            "99 % below",
        ),
        # weeks without data are no baseline: the mean is of the others
        (
            VOLUME,
            39,
            (None, 100, None, 60),
            True,
            80,
            "51.2 % below the mean of the same 24 h on the same weekday over 2 earlier weeks (80)",
        ),
        (
            VOLUME,
            40,
            (None, None, None, 60),
            False,
            None,
            "not enough baseline to judge: 1 of the 4 earlier weeks have data, 2 needed",
        ),
        (Alert("volume", drop=0.5, weeks=1), 10, (60,), True, 60, "over 1 earlier week (60)"),
        (VOLUME, 0, (10, 10, 12, 10), False, 10.5, "baseline too small to judge"),
        (
            Alert("volume", window_hours=1.5, drop=0.5, weeks=2),
            5,
            (30, 31),
            True,
            30.5,
            "5 events in the last 1.5 h: 83.6 % below the mean of the same 1.5 h on the same "
            "weekday over 2 earlier weeks (30.5); the rule fires below 50 % down",
        ),
    ],
)
def test_volume_verdicts(
    alert: Alert,
    current: int,
    weeks: tuple[int | None, ...],
    fired: bool,
    expected: float | None,
    says: str,
) -> None:
    verdict = judge(alert, VolumeCounts(current, weeks))
    assert verdict.fired is fired
    assert verdict.value == current
    assert verdict.expected == expected
    assert says in verdict.message


FAILED = Alert("failed_rate", max_rate=0.01, min_events=20)


@pytest.mark.parametrize(
    ("alert", "counts", "fired", "says"),
    [
        (
            FAILED,
            RateCounts(1, 100, (("failed", 1), ("stored", 99))),
            False,
            "1 % of 100 events (stored + failed) in the last 24 h: 1 event failed "
            "(failed 1, stored 99); within the limit of 1 %",
        ),
        (
            FAILED,
            RateCounts(2, 100, (("failed", 2), ("stored", 98))),
            True,
            "2 % of 100 events (stored + failed) in the last 24 h: 2 events failed "
            "(failed 2, stored 98); above the limit of 1 %",
        ),
        (FAILED, RateCounts(5, 19), False, "only 19 events (stored + failed) in the last 24 h"),
        (FAILED, RateCounts(0, 0), False, "only 0 events (stored + failed)"),
        (
            Alert("keys", keys=(("user.id", "any"),), max_rate=0.0),
            RateCounts(1, 1000, (("user.id missing", 1), ("user.id not any", 0))),
            True,
            "0.1 % of 1,000 events in the last 24 h: 1 event lacks or mistypes a key "
            "(user.id missing 1); above the limit of 0 %",
        ),
        (
            Alert("loss_rate", window_hours=6, max_rate=0.02),
            RateCounts(3, 120, (("sessions", 9),)),
            True,
            "2.5 % of 120 messages expected in the last 6 h: 3 messages were lost (sessions 9)",
        ),
    ],
)
def test_rate_verdicts(alert: Alert, counts: RateCounts, fired: bool, says: str) -> None:
    verdict = judge(alert, counts)
    assert verdict.fired is fired
    assert verdict.value == (counts.part / counts.whole if counts.whole else None)
    assert verdict.expected == alert.max_rate
    assert says in verdict.message


@pytest.mark.parametrize(
    ("previous", "fired", "announced"),
    [
        (None, False, None),  # a new rule, quiet: nothing to say
        (None, True, "fired"),
        (False, True, "fired"),
        (True, True, None),  # still firing: nobody is paged again
        (True, False, "resolved"),
        (False, False, None),
    ],
)
def test_what_an_evaluation_announces(
    previous: bool | None, fired: bool, announced: str | None
) -> None:
    assert notice(previous, fired) == announced


# -- keys and failed-event names in SQL, against Python ---------------------------------------

AT = dt.datetime(2026, 3, 30, 12, tzinfo=dt.UTC)
TYPES = ("any", "string", "number", "integer", "boolean", "object", "array")
VALUES = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(-(2**63), 2**64 - 1),  # beyond 64 bits DuckDB reads a JSON number as DOUBLE
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["b", "c"]), st.integers(), max_size=2),
)
_ABSENT = object()


def _python_value(data: Any, field: str) -> Any:
    """The value at ``data.<key>``: the key with dots as written, else nested keys."""
    key = field.removeprefix("data.")
    if isinstance(data, dict) and key in data:
        return data[key]
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _python_ok(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        "any": True,
        "string": isinstance(value, str),
        "integer": number and isinstance(value, int),
        "number": number,
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }[kind]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


EVENT = st.fixed_dictionaries(
    {},
    optional={
        "k": VALUES,
        "a": st.one_of(VALUES, st.fixed_dictionaries({}, optional={"b": VALUES})),
        "a.b": VALUES,
    },
)


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(st.one_of(st.none(), EVENT), min_size=1, max_size=12),
    k_type=st.sampled_from(TYPES),
    ab_type=st.sampled_from(TYPES),
    user_ids=st.lists(st.sampled_from([None, "", "u1"]), min_size=12, max_size=12),
)
def test_keys_counts_what_python_counts(
    con: duckdb.DuckDBPyConnection,
    events: list[dict[str, Any] | None],
    k_type: str,
    ab_type: str,
    user_ids: list[str | None],
) -> None:
    fields = (("data.k", k_type), ("data.a.b", ab_type), ("user.id", "string"))
    alert = Alert("keys", keys=fields, max_rate=0.05)
    rows = [
        {
            "event_id": f"e{i}",
            "name": "project.commit",
            "client_ts": AT - dt.timedelta(hours=1),
            "received_ts": AT - dt.timedelta(hours=1),
            "stream": "s",
            "user_id": user_ids[i],
            "data": data,
        }
        for i, data in enumerate(events)
    ]
    cursor = con.cursor()
    try:
        cursor.register(EVENTS_TABLE, table(rows))
        got = keys(cursor, "s", alert, AT)
    finally:
        cursor.close()

    def missing(row: dict[str, Any], field: str) -> bool:
        if field == "user.id":
            return not row["user_id"]
        value = _python_value(row["data"], field)
        return value is _ABSENT or value is None

    def wrong(row: dict[str, Any], field: str, kind: str) -> bool:
        if field == "user.id":  # a typed column: the schema checked it
            return False
        return not missing(row, field) and not _python_ok(_python_value(row["data"], field), kind)

    bad = sum(any(missing(r, f) or wrong(r, f, k) for f, k in fields) for r in rows)
    assert (got.part, got.whole) == (bad, len(rows))
    detail = dict(got.detail)
    for field, kind in fields:
        assert detail[f"{field} missing"] == sum(missing(r, field) for r in rows)
        if field != "user.id":
            assert detail[f"{field} not {kind}"] == sum(wrong(r, field, kind) for r in rows)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ('{"name": "project.commit", "client_ts": 1}', "project.commit"),
        ('{"data": {"name": "inner"}, "name": "project.commit"}', "project.commit"),
        ('[{"name": "signin.open"}, {"name": "project.commit"}]', "signin.open"),
        ('{"name": "project.commit", "data": {"x": "cut sho', "project.commit"),  # truncated
        ('{"data": {"name": "inner"}, "name": "project.commit", "x', "inner"),  # approximation
        ("not json at all", None),
        ('{"event_id": "x"}', None),
        ('{"name": ""}', None),
        ('{"name": 5}', "5"),
        ("[]", None),
    ],
)
def test_the_event_name_of_a_failed_record(
    con: duckdb.DuckDBPyConnection, raw: str, name: str | None
) -> None:
    cursor = con.cursor()
    try:
        failed = pa.table(
            {"received_ts": pa.array([AT - dt.timedelta(hours=1)], pa.timestamp("us", "UTC"))}
        ).append_column("raw", pa.array([raw]))
        cursor.register("failed_events", failed)
        got = dict(cursor.execute(FAILED_NAMES_SQL, [AT - dt.timedelta(hours=2), AT]).fetchall())
    finally:
        cursor.close()
    assert got == {name: 1}


@pytest.mark.parametrize(
    ("events", "claimed"),
    [
        (["project.*"], 3 + 4),
        (["project.commit"], 3),
        (["signin.open", "project.delete"], 5 + 4),
        (["*"], 3 + 4 + 5 + 6 + 7),  # every name, and the records without one
        (["projects.*"], 0),
    ],
)
def test_failed_records_are_claimed_by_the_streams_routes(events: list[str], claimed: int) -> None:
    names: dict[str | None, int] = {
        "project.commit": 3,
        "project.delete": 4,
        "signin.open": 5,
        "Bad Name": 6,
        None: 7,
    }
    assert attributed(parse_stream({"name": "s", "events": events}), names) == claimed


def test_keys_reads_each_event_once_and_only_the_window(con: duckdb.DuckDBPyConnection) -> None:
    alert = Alert("keys", window_hours=2, keys=(("data.k", "any"),), max_rate=0.05)

    def row(event_id: str, hours_ago: float, data: Any, stream: str = "s") -> dict[str, Any]:
        at = AT - dt.timedelta(hours=hours_ago)
        return {
            "event_id": event_id,
            "name": "n",
            "client_ts": at,
            "received_ts": at,
            "stream": stream,
            "data": data,
        }

    rows = [
        row("a", 1, {}),  # missing
        row("a", 0.5, {"k": 1}),  # a later copy of a: not counted again
        row("b", 1.5, {"k": 1}),
        row("c", 3, {}),  # before the window
        row("d", 0, {}),  # at the end of the window: not in it
        row("e", 1, {}, stream="other"),
    ]
    cursor = con.cursor()
    try:
        cursor.register(EVENTS_TABLE, table(rows))
        got = keys(cursor, "s", alert, AT)
    finally:
        cursor.close()
    assert (got.part, got.whole) == (1, 2)
    assert json.dumps(got.detail) == '[["data.k missing", 1], ["data.k not any", 0]]'
