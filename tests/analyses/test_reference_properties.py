"""Hypothesis sanity properties of the plain-Python metrics reference (``reference.py``).

These check the reference against itself (invariants, metamorphic relations) and against
independent, deliberately naive re-statements (a brute-force funnel search, the standard
library's quantiles); the hand-computed fixtures live in ``test_reference.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from analyses import reference as ref
from analyses.reference import Grain, Result, Row

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
RECEIVED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
ZONES = [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=1)),
    dt.timezone(dt.timedelta(hours=-2)),
    dt.timezone(dt.timedelta(hours=14)),
    dt.timezone(dt.timedelta(hours=-12)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
]
NAMES = ["a", "b", "c"]
USERS = ["u1", "u2", "u3", "u4", None, ""]
GRAINS: list[Grain] = ["day", "week", "month"]
WINDOWS = [dt.timedelta(0), dt.timedelta(minutes=30), dt.timedelta(hours=1), dt.timedelta(days=1)]

FAST = settings(max_examples=50, deadline=None)


_MS = st.one_of(st.none(), st.integers(-5, 50), st.floats(0, 10), st.just("7"))


@st.composite
def logs(
    draw: st.DrawFn, max_size: int = 30, span_minutes: int = 45 * 24 * 60, users: bool = True
) -> list[dict[str, Any]]:
    """Random lake rows: colliding event ids, equal timestamps, offsets, anonymous users."""
    minutes = st.one_of(st.sampled_from([0, 30, 60, 61]), st.integers(0, span_minutes))
    items = draw(
        st.lists(
            st.tuples(
                minutes,
                st.sampled_from(ZONES),
                st.integers(0, max_size),
                st.sampled_from(NAMES),
                st.sampled_from(USERS if users else ["u1"]),
                st.sampled_from([None, "x", "y"]),
                st.sampled_from([None, "s-1", "s-2"]),
                st.sampled_from([None, "s1", "s2", ""]),
                _MS,
            ),
            max_size=max_size,
        )
    )
    received = draw(st.permutations(range(len(items))))
    rows: list[dict[str, Any]] = []
    for i, (minute, zone, eid, name, user, inst, session, site, ms) in enumerate(items):
        data = {k: v for k, v in (("site", site), ("ms", ms)) if v is not None}
        rows.append(
            {
                # Ids collide (duplicates) about once per ten rows on average.
                "event_id": f"e{eid % max(len(items) * 3, 1)}",
                "name": name,
                "client_ts": (BASE + dt.timedelta(minutes=minute)).astimezone(zone),
                "received_ts": RECEIVED + dt.timedelta(seconds=received[i]),
                "user_id": user,
                "app_instance": inst,
                "session_id": session,
                "data": json.dumps(data) if data else None,
            }
        )
    return rows


@st.composite
def ranges(draw: st.DrawFn) -> tuple[dt.date, dt.date]:
    start = BASE.date() + dt.timedelta(days=draw(st.integers(-3, 20)))
    return start, start + dt.timedelta(days=draw(st.integers(0, 40)))


def _everything(rows: Sequence[Row], date_from: dt.date, date_to: dt.date) -> list[Any]:
    """Every analysis over ``rows`` (for metamorphic comparisons)."""
    kw: dict[str, Any] = {"date_from": date_from, "date_to": date_to}
    out: list[Any] = []
    for grain in GRAINS:
        out += [
            ref.core(rows, ["a", "b"], ["a", "c"], grain, breakdown="app.instance", **kw),
            ref.active(rows, ["a", "c"], grain, unit="data.site", **kw),
            ref.count(rows, "a", grain, breakdown="data.site", **kw),
            ref.ratio(rows, "b", "a", grain, unit="session.id", **kw),
            ref.ratio(rows, "b", "a", grain, unit="event", **kw),
            ref.percentile(rows, "a", "data.ms", [0, 50, 90, 100], grain, **kw),
            ref.retention(rows, "a", ["b", "c"], grain, 3, breakdown="app.instance", **kw),
        ]
    out += [
        ref.stickiness(rows, ["a", "b"], **kw),
        ref.funnel(rows, ["a", "b", "c"], dt.timedelta(hours=1), breakdown="app.instance", **kw),
        ref.funnel(rows, ["a", "a"], dt.timedelta(days=1), unit="session.id", **kw),
    ]
    return out


# --------------------------------------------------------------------------------------------
# Metamorphic: duplicates, input order and time-zone notation change nothing.


@FAST
@given(rows=logs(), span=ranges(), seed=st.integers(0, 2**32 - 1))
def test_invariant_under_late_duplicates_shuffling_and_offsets(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date], seed: int
) -> None:
    expected = _everything(rows, *span)
    rng = random.Random(seed)
    changed: list[dict[str, Any]] = []
    for row in rows:
        zone = rng.choice(ZONES)
        changed.append({**row, "client_ts": row["client_ts"].astimezone(zone)})
        if rng.random() < 0.3:  # a copy received later, with different content: never kept
            late = row["received_ts"] + dt.timedelta(days=1)
            changed.append({**row, "received_ts": late, "user_id": "u-dup", "data": None})
    rng.shuffle(changed)
    assert _everything(changed, *span) == expected


# --------------------------------------------------------------------------------------------
# Funnels


def _brute_force_reach(
    rows: Sequence[Row],
    steps: Sequence[str],
    window: dt.timedelta,
    date_from: dt.date,
    date_to: dt.date,
) -> dict[str, int]:
    """Furthest step per user by trying every assignment of events to steps."""
    events: dict[str, list[tuple[str, dt.datetime, str]]] = defaultdict(list)
    for row in ref.dedupe(rows):
        if row["user_id"] and row["name"] in steps:
            ts = row["client_ts"].astimezone(dt.UTC)
            events[row["user_id"]].append((row["name"], ts, row["event_id"]))
    reach: dict[str, int] = {}
    for user, evs in events.items():
        best = 0

        def search(
            k: int, prev: dt.datetime, start: dt.datetime, used: frozenset[tuple[str, str]]
        ) -> None:
            nonlocal best
            best = max(best, k)
            for name, ts, eid in evs:  # noqa: B023 - evs is the loop's current list, on purpose
                if (
                    k < len(steps)
                    and name == steps[k]
                    and (eid, name) not in used
                    and prev <= ts <= start + window
                ):
                    search(k + 1, ts, start, used | {(eid, name)})

        starts = [e for e in evs if e[0] == steps[0] and date_from <= e[1].date() <= date_to]
        for _, ts, eid in starts:
            search(1, ts, ts, frozenset({(eid, steps[0])}))
        if starts:
            reach[user] = best
    return reach


@FAST
@given(
    rows=logs(max_size=9, span_minutes=120, users=False),
    steps=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
    window=st.sampled_from(WINDOWS),
    days=st.tuples(st.integers(0, 1), st.integers(0, 1)),
)
def test_funnel_reach_equals_brute_force(
    rows: list[dict[str, Any]],
    steps: list[str],
    window: dt.timedelta,
    days: tuple[int, int],
) -> None:
    date_from = BASE.date() + dt.timedelta(days=min(days))
    date_to = BASE.date() + dt.timedelta(days=max(days))
    result = ref.funnel(rows, steps, window, date_from=date_from, date_to=date_to)
    reach = _brute_force_reach(rows, steps, window, date_from, date_to)
    expected = [sum(1 for r in reach.values() if r >= k) for k in range(1, len(steps) + 1)]
    assert [r["users"] for r in result] == expected


@FAST
@given(
    rows=logs(),
    span=ranges(),
    steps=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
    window=st.sampled_from(WINDOWS),
)
def test_funnel_invariants(
    rows: list[dict[str, Any]],
    span: tuple[dt.date, dt.date],
    steps: list[str],
    window: dt.timedelta,
) -> None:
    kw: dict[str, Any] = {"date_from": span[0], "date_to": span[1]}
    total = ref.funnel(rows, steps, window, **kw)
    users = [r["users"] for r in total]
    assert users == sorted(users, reverse=True)
    assert [r["step"] for r in total] == list(range(1, len(steps) + 1))
    for r in total:
        for key in ("conversion_from_previous", "conversion_from_start"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0
        median = r["median_seconds_from_previous"]
        if r["step"] == 1 or r["users"] == 0:
            assert median is None
        else:
            assert 0.0 <= median <= window.total_seconds()
    # Every unit lands in exactly one breakdown group.
    split = ref.funnel(rows, steps, window, breakdown="app.instance", **kw)
    for k in range(1, len(steps) + 1):
        assert sum(r["users"] for r in split if r["step"] == k) == users[k - 1]


# --------------------------------------------------------------------------------------------
# Retention


@FAST
@given(rows=logs(), span=ranges(), grain=st.sampled_from(GRAINS), periods=st.integers(0, 4))
def test_retention_invariants(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date], grain: Grain, periods: int
) -> None:
    date_from, date_to = span
    kw: dict[str, Any] = {"date_from": date_from, "date_to": date_to}
    result = ref.retention(rows, "a", ["b", "a"], grain, periods, **kw)
    assert [r["cohort"] for r in result] == ref.periods_between(date_from, date_to, grain)
    for r in result:
        assert len(r["retained"]) == len(r["rates"]) == periods + 1
        assert r["retained"][0] == r["size"]
        assert r["rates"][0] == (1.0 if r["size"] else None)
        for k, (n, rate) in enumerate(zip(r["retained"], r["rates"], strict=True)):
            after = ref.add_periods(r["cohort"], grain, k) > date_to
            assert (n is None) == after
            if n is not None:
                assert 0 <= n <= r["size"]
                assert rate == (n / r["size"] if r["size"] else None)
    split = ref.retention(rows, "a", ["b", "a"], grain, periods, breakdown="app.instance", **kw)
    assert sum(r["size"] for r in split) == sum(r["size"] for r in result)


# --------------------------------------------------------------------------------------------
# Periodic metrics


@FAST
@given(rows=logs(), span=ranges(), grain=st.sampled_from(GRAINS))
def test_core_users_within_active_users(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date], grain: Grain
) -> None:
    kw: dict[str, Any] = {"date_from": span[0], "date_to": span[1]}
    for breakdown in (None, "app.instance"):
        result = ref.core(rows, ["a", "b"], ["a", "b", "c"], grain, breakdown=breakdown, **kw)
        for r in result:
            assert 0 <= r["users"] <= r["active_users"]
            if r["active_users"] == 0:
                assert r["share"] is None
            else:
                assert 0.0 <= r["share"] <= 1.0
    periods = ref.periods_between(span[0], span[1], grain)
    assert [r["period"] for r in result] == sorted(
        periods * 2 * len({r["breakdown"] for r in result})
    )


@FAST
@given(rows=logs(), span=ranges())
def test_totals_agree_across_grains(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date]
) -> None:
    """In-range events are counted once whatever the grain (partial edge periods included)."""
    kw: dict[str, Any] = {"date_from": span[0], "date_to": span[1]}
    totals = set()
    for grain in GRAINS:
        result = ref.count(rows, "a", grain, **kw)
        totals.add(sum(r["events"] for r in result))
        assert all(r["units"] <= r["events"] for r in result)
        per_value = ref.count(rows, "a", grain, breakdown="app.instance", **kw)
        assert sum(r["events"] for r in per_value) == sum(r["events"] for r in result)
    assert len(totals) == 1


@FAST
@given(rows=logs(), span=ranges())
def test_active_weeks_bound_their_days(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date]
) -> None:
    kw: dict[str, Any] = {"date_from": span[0], "date_to": span[1]}
    days = ref.active(rows, ["a", "b"], "day", **kw)
    for week in ref.active(rows, ["a", "b"], "week", **kw):
        daily = [
            d["active_users"]
            for d in days
            if ref.period_start(d["period"], "week") == week["period"]
        ]
        assert max(daily) <= week["active_users"] <= sum(daily)
    for month in ref.stickiness(rows, ["a", "b"], **kw):
        assert month["dau_mean"] <= month["mau"]
        assert month["stickiness"] is None or 0.0 < month["stickiness"] <= 1.0


@FAST
@given(rows=logs(), span=ranges(), grain=st.sampled_from(GRAINS))
def test_ratio_by_event_counts_events(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date], grain: Grain
) -> None:
    kw: dict[str, Any] = {"date_from": span[0], "date_to": span[1]}
    ratios = ref.ratio(rows, "b", "a", grain, unit="event", **kw)
    assert [r["numerator"] for r in ratios] == [
        r["events"] for r in ref.count(rows, "b", grain, **kw)
    ]
    assert [r["denominator"] for r in ratios] == [
        r["events"] for r in ref.count(rows, "a", grain, **kw)
    ]


# --------------------------------------------------------------------------------------------
# Percentiles


@FAST
@given(
    values=st.lists(
        st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=2,
        max_size=40,
    )
)
def test_percentile_matches_stdlib_inclusive_quantiles(values: list[float]) -> None:
    """``statistics.quantiles(method="inclusive")`` is the same R-7 linear interpolation."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    ours = [ref.percentile_linear(values, p) for p in range(1, 100)]
    scale = max(1.0, *(abs(v) for v in values))
    for a, b in zip(ours, cuts, strict=True):
        assert abs(a - b) <= 1e-9 * scale
    assert ref.percentile_linear(values, 0) == min(values)
    assert ref.percentile_linear(values, 100) == max(values)
    assert ours == sorted(ours)


@FAST
@given(rows=logs(), span=ranges(), grain=st.sampled_from(GRAINS))
def test_percentile_rows(
    rows: list[dict[str, Any]], span: tuple[dt.date, dt.date], grain: Grain
) -> None:
    result: list[Result] = ref.percentile(
        rows, "a", "data.ms", [0, 50, 100], grain, date_from=span[0], date_to=span[1]
    )
    for r in result:
        if r["count"] == 0:
            assert r["p0"] is r["p50"] is r["p100"] is None
        else:
            assert r["p0"] <= r["p50"] <= r["p100"]
