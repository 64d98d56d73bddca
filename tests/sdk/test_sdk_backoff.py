"""Backoff with full jitter and Retry-After parsing (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.sdk.backoff import MAX_RETRY_AFTER, backoff_cap, backoff_delay, parse_retry_after


def _bound(attempt: int, base: float, maximum: float) -> float:
    if attempt > 1000:
        return maximum
    return min(maximum, base * 2.0**attempt)


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
    maximum=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_is_within_zero_and_the_cap(
    attempt: int, base: float, maximum: float, r: float
) -> None:
    delay = backoff_delay(attempt, base, maximum, rand=lambda: r)
    assert 0.0 <= delay <= _bound(attempt, base, maximum)


@given(
    attempt=st.integers(min_value=0, max_value=64),
    base=st.floats(min_value=1e-3, max_value=10.0),
    maximum=st.floats(min_value=1e-3, max_value=100.0),
)
def test_default_randomness_stays_within_the_cap(attempt: int, base: float, maximum: float) -> None:
    assert 0.0 <= backoff_delay(attempt, base, maximum) <= _bound(attempt, base, maximum)


def test_cap_doubles_until_the_maximum() -> None:
    assert [backoff_cap(n, 0.5, 30.0) for n in range(8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert backoff_cap(10_000, 0.5, 30.0) == 30.0
    assert backoff_cap(3, 0.0, 30.0) == 0.0


def test_full_jitter_spans_the_range() -> None:
    assert backoff_delay(2, 1.0, 30.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, 1.0, 30.0, rand=lambda: 0.5) == 2.0
    assert backoff_delay(2, 1.0, 30.0, rand=lambda: 0.999) == pytest.approx(3.996)


def test_negative_attempt_is_an_error() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_cap(-1, 1.0, 2.0)


NOW = dt.datetime(2026, 11, 2, 14, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("0", 0.0),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("1e9", MAX_RETRY_AFTER),
        ("Mon, 02 Nov 2026 14:00:10 GMT", 10.0),
        ("Mon, 02 Nov 2026 13:00:00 GMT", 0.0),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected
