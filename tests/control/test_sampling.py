"""Sampling decisions: the issue's acceptance figures over 100,000 sessions, the same decisions
in another process and in DuckDB's SQL, nesting for any two rates."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.control.sampling import (
    SamplingError,
    check_rate,
    check_unit,
    keep,
    keeps_event,
    threshold,
    unit_id,
)

_RNG = random.Random(5)
SESSIONS = [str(uuid.UUID(int=_RNG.getrandbits(128))) for _ in range(100_000)]


def _kept(rate: float) -> set[str]:
    return {s for s in SESSIONS if keep("session", s, rate)}


def test_a_ten_percent_stream_keeps_ten_percent_and_a_five_percent_one_a_subset() -> None:
    ten, five = _kept(0.10), _kept(0.05)
    assert abs(len(ten) / len(SESSIONS) - 0.10) <= 0.005
    assert abs(len(five) / len(SESSIONS) - 0.05) <= 0.005
    assert five <= ten


def test_the_same_sessions_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json, sys; from tallystick.control.sampling import keep; "
        "ids = json.load(sys.stdin); print(json.dumps([keep('session', s, 0.1) for s in ids]))"
    )
    sample = SESSIONS[:5000]
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(out.stdout) == [keep("session", s, 0.1) for s in sample]


def test_duckdb_sql_makes_the_same_decisions() -> None:
    sample = SESSIONS[:20_000]
    con = duckdb.connect()
    con.execute("CREATE TABLE s AS SELECT unnest(?::VARCHAR[]) AS id", [sample])
    rows = con.execute(
        "SELECT id FROM s WHERE ('0x' || left(sha256('session:' || id), 16))::UBIGINT < ?",
        [threshold(0.1)],
    ).fetchall()
    assert {r[0] for r in rows} == {s for s in sample if keep("session", s, 0.1)}


@given(
    st.text(min_size=1, max_size=40),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
)
def test_samples_nest_and_the_ends_are_exact(unit: str, a: float, b: float) -> None:
    low, high = sorted((a, b))
    if keep("user", unit, low):
        assert keep("user", unit, high)
    assert keep("user", unit, 1.0)
    assert not keep("user", unit, 0.0)


def test_unit_types_decide_independently() -> None:
    as_sessions, as_users = _kept(0.1), {s for s in SESSIONS if keep("user", s, 0.1)}
    overlap = len(as_sessions & as_users) / len(SESSIONS)
    assert abs(overlap - 0.01) < 0.002  # 10 % of 10 %, as for independent draws


@pytest.mark.parametrize(
    ("event", "unit", "expected"),
    [
        ({"session": {"id": "s-1"}}, "session", "s-1"),
        ({"user": {"id": "u-1", "anonymous_id": "a-1"}}, "user", "u-1"),
        ({"user": {"id": "", "anonymous_id": "a-1"}}, "user", "a-1"),
        ({"user": {"anonymous_id": "a-1"}}, "user", "a-1"),
        ({"page": {"pageview_id": "pv-1"}}, "pageview", "pv-1"),
        ({"session": None}, "session", None),
        ({}, "user", None),
    ],
)
def test_unit_ids_come_from_the_monoschema(
    event: dict[str, object], unit: str, expected: str | None
) -> None:
    assert unit_id(event, check_unit(unit)) == expected


def test_an_event_without_its_units_id_is_kept() -> None:
    assert keeps_event({"name": "x"}, "session", 0.0)
    assert not keeps_event({"session": {"id": SESSIONS[0]}}, "session", 0.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_rate(1.5), "from 0 to 1"),
        (lambda: check_rate(True), "from 0 to 1"),
        (lambda: check_rate(-0.1), "from 0 to 1"),
        (lambda: check_unit("device"), "events carry no device id"),
        (lambda: check_unit("visit"), "use one of session, user, pageview"),
    ],
)
def test_bad_units_and_rates_say_what_to_use(call: object, message: str) -> None:
    with pytest.raises(SamplingError, match=message):
        call()  # type: ignore[operator]
