"""Differentially private releases (privacy.dp): the noise has the Laplace distribution of the
sensitivity and epsilon asked for, over many draws of the mechanism and over many whole releases
of a real lake; each unit's contribution is bounded in the SQL, on both engines; what cannot be
released privately is refused with a message saying why; OpenDP is loaded only by a release."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from metrics.lakerows import write_rows
from tallystick.config import Settings
from tallystick.control.dp_ledger import Ledger
from tallystick.control.store import ControlStore
from tallystick.metrics.api import open_engine, run
from tallystick.metrics.engines import Engine
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import build
from tallystick.privacy import dp

# -- the mechanism ---------------------------------------------------------------------------------

DRAWS = 4000


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
@pytest.mark.parametrize("sensitivity", [1, 12])
def test_the_noise_is_laplace_of_scale_sensitivity_over_epsilon(
    epsilon: float, sensitivity: int
) -> None:
    true = np.arange(DRAWS, dtype=float) % 37  # fixed true values, any
    noise = dp.laplace(list(true), sensitivity, epsilon)
    b = sensitivity / epsilon
    assert noise.scale == pytest.approx(b, rel=1e-12)
    residual = np.array(noise.values) - true
    assert stats.kstest(residual, "laplace", args=(0, b)).pvalue > 1e-5
    # Laplace(b): mean 0, variance 2b^2 (the sample variance's sd is ~3.5% here)
    assert abs(residual.mean()) < 5 * math.sqrt(2) * b / math.sqrt(DRAWS)
    assert residual.var() == pytest.approx(2 * b * b, rel=0.15)
    # a larger scale than asked for would be the wrong distribution too
    assert stats.kstest(residual, "laplace", args=(0, 1.5 * b)).pvalue < 0.001


def test_the_noise_is_fresh_on_every_draw() -> None:
    first = dp.laplace([10.0] * 50, 1, 1.0).values
    second = dp.laplace([10.0] * 50, 1, 1.0).values
    assert first != second
    assert len(set(first)) == 50


def test_published_values_are_whole_and_never_negative() -> None:
    assert [dp.publish(v) for v in (-3.2, -0.4, 0.49, 0.5, 2.5, 7.8)] == [0, 0, 0, 1, 3, 8]


# -- lakes -----------------------------------------------------------------------------------------

_n = 0


def ev(name: str, day: dt.date, user: str | None, **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"dp{_n:07d}",
        "name": name,
        "client_ts": dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC),
        "user_id": user,
        **cols,
    }


MONDAY = dt.date(2026, 1, 5)


def _settings(root: Path, budget: float = 1e9) -> Settings:
    return Settings(data=root, min_free_bytes=0, dp_budget_epsilon=budget)


@pytest.fixture(scope="module")
def bounded_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 10 weeks from MONDAY: ``heavy`` sends 100 ``save`` events in week 1 and logs in
    every week; u1..u5 save once in week 2 and log in in weeks 1 and 2; anonymous events too."""
    data = tmp_path_factory.mktemp("dp") / "data"
    rows = [ev("save", MONDAY, "heavy") for _ in range(100)]
    rows += [ev("save", MONDAY + dt.timedelta(days=8), f"u{i}") for i in range(1, 6)]
    rows += [ev("save", MONDAY + dt.timedelta(days=9), None) for _ in range(7)]
    rows += [ev("login", MONDAY + dt.timedelta(weeks=w), "heavy") for w in range(10)]
    rows += [
        ev("login", MONDAY + dt.timedelta(weeks=w), f"u{i}") for i in range(1, 6) for w in (0, 1)
    ]
    rows += [ev("login", MONDAY + dt.timedelta(days=3), None)]
    write_rows(data / "lake", rows)
    return data


RANGE = {"from": MONDAY.isoformat(), "to": (MONDAY + dt.timedelta(weeks=10, days=-1)).isoformat()}


def _bounded(name: str, params: dict[str, Any]) -> dp.Bounded:
    rest, request = dp.split(name, {**RANGE, **params})
    assert request is not None
    return dp.bound(build(name, rest), request)


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def engine(request: pytest.FixtureRequest, bounded_lake: Path) -> Engine:
    return open_engine(bounded_lake, request.param)


def test_a_units_events_count_at_most_k_times(engine: Engine) -> None:
    bounded = _bounded("count", {"event": "save", "dp_epsilon": 1, "dp_max_events_per_user": 3})
    rows = run(bounded, engine).rows
    assert [r["period"] for r in rows] == [MONDAY + dt.timedelta(weeks=w) for w in range(10)]
    # heavy's 100 events count 3 times, each of u1..u5 once; anonymous events not at all
    assert [r["events"] for r in rows] == [3, 5, 0, 0, 0, 0, 0, 0, 0, 0]
    assert [r["units"] for r in rows] == [1, 5, 0, 0, 0, 0, 0, 0, 0, 0]
    assert bounded.sensitivity == 3 + 10
    exact = run(build("count", {**RANGE, "event": "save"}), engine).rows
    assert exact[0]["events"] == 100
    assert exact[1]["events"] == 12  # the anonymous ones included


def test_a_unit_counts_in_at_most_p_periods(engine: Engine) -> None:
    bounded = _bounded("active", {"active": "login", "dp_epsilon": 1, "dp_max_periods_per_user": 2})
    rows = run(bounded, engine).rows
    counts = [r["active_users"] for r in rows]
    # u1..u5 were active in weeks 1 and 2 only (2 periods: all kept); heavy in all 10, kept in 2
    assert sum(counts) == 5 * 2 + 2
    assert counts[0] >= 5
    assert counts[1] >= 5
    assert bounded.sensitivity == 2
    unbounded = _bounded("active", {"active": "login", "dp_epsilon": 1})
    assert unbounded.sensitivity == 10  # every period by default
    assert [r["active_users"] for r in run(unbounded, engine).rows] == [6, 6] + [1] * 8


def test_the_period_bound_is_at_most_the_number_of_periods() -> None:
    bounded = _bounded("count", {"event": "save", "dp_epsilon": 1, "dp_max_periods_per_user": 500})
    assert bounded.bounds() == {"max_events_per_user": 10, "max_periods_per_user": 10}
    assert bounded.sensitivity == 20


# -- whole releases ----------------------------------------------------------------------------

USERS, DAYS = 50, 60


@pytest.fixture(scope="module")
def busy_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 users, each logging in once a day for 60 days (50 active users every day)."""
    data = tmp_path_factory.mktemp("dp-busy") / "data"
    rows = [
        ev("login", MONDAY + dt.timedelta(days=d), f"user{u}")
        for d in range(DAYS)
        for u in range(USERS)
    ]
    write_rows(data / "lake", rows, files=1)
    return data


@pytest.fixture
def ledger(busy_lake: Path) -> Iterator[Ledger]:
    settings = _settings(busy_lake)
    with ControlStore.for_settings(settings) as store:
        yield Ledger.of(store, settings)


def test_many_releases_carry_rounded_laplace_noise(busy_lake: Path, ledger: Ledger) -> None:
    engine = open_engine(busy_lake)
    params = {
        "from": MONDAY.isoformat(),
        "to": (MONDAY + dt.timedelta(days=DAYS - 1)).isoformat(),
        "grain": "day",
        "active": "login",
    }
    epsilon = 30.0  # sensitivity 60 (one unit in every day): scale 2
    residuals: list[int] = []
    releases = 34
    before = ledger.budget(dp.LAKE).spent
    for _ in range(releases):
        made = dp.release(
            build("active", params),
            dp.Request(epsilon),
            lambda a: run(a, engine),
            ledger,
            "test",
        )
        assert made.dp["sensitivity"] == DAYS
        assert made.dp["scale"] == pytest.approx(2.0)
        residuals += [r["active_users"] - USERS for r in made.rows]
    assert len(residuals) == releases * DAYS >= 2000
    assert ledger.budget(dp.LAKE).spent == pytest.approx(before + releases * epsilon)
    # released = round(50 + Laplace(2)): P(k) = F(k + 1/2) - F(k - 1/2), tails lumped
    b = 2.0
    ks = np.arange(-6, 7)
    cdf = stats.laplace(0, b).cdf
    expected = [cdf(-5.5)] + [cdf(k + 0.5) - cdf(k - 0.5) for k in ks[1:-1]] + [1 - cdf(5.5)]
    r = np.array(residuals)
    observed = [np.sum(r <= -6)] + [np.sum(r == k) for k in ks[1:-1]] + [np.sum(r >= 6)]
    expected_counts = np.array(expected) * len(r)
    assert stats.chisquare(observed, expected_counts).pvalue > 1e-5
    assert r.var() == pytest.approx(2 * b * b + 1 / 12, rel=0.15)


def test_a_release_reports_its_noise_and_spending(bounded_lake: Path) -> None:
    settings = _settings(bounded_lake, budget=5.0)
    engine = open_engine(bounded_lake)
    analysis = build("count", {**RANGE, "event": "save"})
    with ControlStore.for_settings(settings) as store:
        ledger = Ledger.of(store, settings)
        spent = ledger.budget(dp.LAKE).spent
        made = dp.release(
            analysis, dp.Request(0.5, max_events_per_user=4), lambda a: run(a, engine), ledger, "t"
        )
        entry = ledger.releases(dp.LAKE, limit=1)[0]
    block = made.dp
    assert block["epsilon"] == 0.5
    assert block["sensitivity"] == 4 + 10
    assert block["scale"] == pytest.approx(28.0)
    assert block["interval95"] == pytest.approx(28.0 * math.log(20))
    assert block["spent"] == pytest.approx(spent + 0.5)
    assert block["remaining"] == pytest.approx(5.0 - spent - 0.5)
    assert block["release"] == entry.id
    assert entry.analysis == "count"
    assert entry.params["event"] == "save"
    assert entry.params["max_events_per_user"] == 4
    assert all(isinstance(r["events"], int) and r["events"] >= 0 for r in made.rows)
    assert [r["period"] for r in made.rows] == [MONDAY + dt.timedelta(weeks=w) for w in range(10)]


# -- what cannot be released -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("funnel", {"steps": "a,b", "dp_epsilon": 1}, "made of count and active"),
        ("count", {"event": "e", "dp_max_events_per_user": 3}, "add dp_epsilon"),
        ("count", {"event": "e", "dp_epsilon": 0}, "above 0"),
        ("count", {"event": "e", "dp_epsilon": "-1"}, "above 0"),
        ("count", {"event": "e", "dp_epsilon": "lots"}, "above 0"),
        ("count", {"event": "e", "dp_epsilon": "inf"}, "above 0"),
        ("count", {"event": "e", "dp_epsilon": True}, "above 0"),
        ("count", {"event": "e", "dp_epsilon": 1, "dp_max_events_per_user": 0}, "at least 1"),
        ("count", {"event": "e", "dp_epsilon": 1, "dp_max_periods_per_user": "x"}, "at least 1"),
        ("active", {"active": "a", "dp_epsilon": 1, "dp_max_events_per_user": 2}, "once per"),
    ],
)
def test_wrong_requests_are_refused(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        dp.split(name, params)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("count", {"event": "e", "breakdown": "app.environment"}, "no breakdown"),
        ("active", {"active": "a", "stickiness": True}, "not of stickiness"),
    ],
)
def test_what_would_leak_is_refused(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        dp.bound(build(name, params), dp.Request(1.0))


def test_no_request_without_dp_parameters() -> None:
    params, request = dp.split("count", {"event": "e", "date-from": "2026-01-01"})
    assert request is None
    assert params == {"event": "e", "from": "2026-01-01"}
    assert not dp.requested(params)
    assert dp.requested({"dp-epsilon": "1"})


def test_opendp_is_loaded_by_a_release_only() -> None:
    code = (
        "import sys\n"
        "import tallystick.collect.app, tallystick.query.app, tallystick.cli\n"
        "from tallystick.privacy import dp\n"
        "assert 'opendp' not in sys.modules, 'imported too early'\n"
        "dp.laplace([1.0], 1, 1.0)\n"
        "assert 'opendp' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
