"""Agreement with GrowthBook's gbstats 0.8.0 on the same inputs, to 1e-6.

gbstats is the reference for the frequentist (``TwoSidedTTest``), CUPED
(``RegressionAdjustedStatistic``), sequential (``SequentialTwoSidedTTest``) and Bayesian
(``EffectBayesianABTest``) results, for mean, proportion, ratio and regression-adjusted
statistics. gbstats 0.8.0 declares ``numpy<2`` and ``pandas<2`` but runs on the current ones
unchanged (no shim needed); it is installed with ``pip install --no-deps gbstats==0.8.0`` (see
tests/experiments/requirements-reference.txt) because its declared pins conflict with
Tallystick's.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from experiments.stats_cases import KINDS, Arm, Case, batch, make_cases
from tallystick.experiments import GaussianPrior, Status, bayesian, frequentist, sequential
from tallystick.experiments.moments import MetricStats
from tallystick.experiments.srm import srm_check

pytest.importorskip("gbstats", reason="pip install --no-deps gbstats==0.8.0")
from gbstats.bayesian.tests import (  # type: ignore[import-untyped]
    EffectBayesianABTest,
    EffectBayesianConfig,
)
from gbstats.bayesian.tests import GaussianPrior as GbPrior
from gbstats.frequentist.tests import (  # type: ignore[import-untyped]
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (  # type: ignore[import-untyped]
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm  # type: ignore[import-untyped]

RTOL, ATOL = 1e-6, 1e-9


def close(actual: object, desired: object, err_msg: str = "") -> None:
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL, err_msg=err_msg)  # type: ignore[call-overload]


CASES = make_cases(seed=20261122, per_kind=12)


def _base(n: int, s: float, ss: float, binomial: bool) -> Any:
    if binomial:
        return ProportionStatistic(n=n, sum=s)
    return SampleMeanStatistic(n=n, sum=s, sum_squares=ss)


def gb_stat(arm: Arm, case: Case) -> Any:
    """The gbstats statistic of one arm (a fresh object: gbstats sets θ on it in place)."""
    y = arm.y
    main = _base(arm.n, float(y.sum()), float(y @ y), case.binomial)
    if arm.d is not None:
        d = arm.d
        den = SampleMeanStatistic(n=arm.n, sum=float(d.sum()), sum_squares=float(d @ d))
        return RatioStatistic(
            n=arm.n, m_statistic=main, d_statistic=den, m_d_sum_of_products=float(y @ d)
        )
    if arm.x is not None:
        x = arm.x
        pre = _base(arm.n, float(x.sum()), float(x @ x), case.kind == "cuped_binomial")
        return RegressionAdjustedStatistic(
            n=arm.n,
            post_statistic=main,
            pre_statistic=pre,
            post_pre_sum_of_products=float(y @ x),
            theta=0,
        )
    return main


def _scale(effect: Any, relative: bool) -> Any:
    return effect.relative if relative else effect.absolute


def test_cases_cover_every_kind_and_are_valid() -> None:
    control, treatment = batch(CASES)
    res = frequentist(control, treatment)
    assert {c.kind for c in CASES} == set(KINDS)
    assert (res.status == Status.OK).all()
    cuped = np.array([c.kind.startswith("cuped") for c in CASES])
    assert (res.theta[cuped] != 0).all()
    assert (res.theta[~cuped] == 0).all()


@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
def test_frequentist_matches_two_sided_ttest(relative: bool) -> None:
    control, treatment = batch(CASES)
    res = frequentist(control, treatment, alpha=0.05)
    eff = _scale(res, relative)
    config = FrequentistConfig(difference_type="relative" if relative else "absolute", alpha=0.05)
    for i, case in enumerate(CASES):
        test = TwoSidedTTest(gb_stat(case.control, case), gb_stat(case.treatment, case), config)
        gb = test.compute_result()
        assert gb.error_message is None
        close(eff.estimate[i], gb.expected, err_msg=case.kind)
        close(eff.se[i], gb.uplift.stddev, err_msg=case.kind)
        close([eff.ci_low[i], eff.ci_high[i]], gb.ci)
        close(eff.p_value[i], gb.p_value, err_msg=case.kind)
        close(res.dof[i], test.dof)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
def test_sequential_matches_sequential_two_sided_ttest(relative: bool, alpha: float) -> None:
    control, treatment = batch(CASES)
    tuning = 5000.0 if alpha == 0.05 else 800.0
    eff = _scale(sequential(control, treatment, alpha=alpha, tuning=tuning), relative)
    config = SequentialConfig(
        difference_type="relative" if relative else "absolute",
        alpha=alpha,
        sequential_tuning_parameter=tuning,
    )
    for i, case in enumerate(CASES):
        gb = SequentialTwoSidedTTest(
            gb_stat(case.control, case), gb_stat(case.treatment, case), config
        ).compute_result()
        close(eff.estimate[i], gb.expected, err_msg=case.kind)
        close([eff.ci_low[i], eff.ci_high[i]], gb.ci)
        close(eff.p_value[i], gb.p_value, err_msg=case.kind)


PRIORS = {
    "flat": GaussianPrior(),
    "proper": GaussianPrior(mean=0.02, variance=0.05**2, proper=True),
}


@pytest.mark.parametrize("inverse", [False, True], ids=["higher-better", "lower-better"])
@pytest.mark.parametrize("prior", sorted(PRIORS))
@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
def test_bayesian_matches_effect_bayesian_ab_test(
    relative: bool, prior: str, inverse: bool
) -> None:
    control, treatment = batch(CASES)
    ours = PRIORS[prior]
    eff = _scale(bayesian(control, treatment, prior=ours, inverse=inverse), relative)
    config = EffectBayesianConfig(
        difference_type="relative" if relative else "absolute",
        inverse=inverse,
        prior_type="relative",
        prior_effect=GbPrior(
            mean=float(np.asarray(ours.mean)),
            variance=float(np.asarray(ours.variance)),
            proper=bool(ours.proper),
        ),
    )
    for i, case in enumerate(CASES):
        gb = EffectBayesianABTest(
            gb_stat(case.control, case), gb_stat(case.treatment, case), config
        ).compute_result()
        assert gb.error_message is None
        close(eff.estimate[i], gb.expected, err_msg=case.kind)
        close(eff.se[i], gb.uplift.stddev, err_msg=case.kind)
        close([eff.ci_low[i], eff.ci_high[i]], gb.ci)
        close(eff.chance_to_win[i], gb.chance_to_win)
        np.testing.assert_allclose(
            [eff.risk_control[i], eff.risk_treatment[i]], gb.risk, rtol=1e-6, atol=1e-9
        )


def test_srm_matches_check_srm() -> None:
    rng = np.random.default_rng(7)
    weights = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    units = rng.integers(0, 20_000, size=(3, 3)).astype(np.float64)
    units[0, 2] = 0
    ours = srm_check(units, weights)
    for i in range(3):
        ref = check_srm([int(u) for u in units[i]], [float(w) for w in weights[i]])
        close(ours.p_value[i], ref)


def test_baseline_zero_differs_deliberately() -> None:
    """gbstats' frequentist test returns nothing (0, [0, 0], p = 1) when the control's mean is
    0, for the absolute effect too; the absolute difference is still well defined, so Tallystick
    reports it and leaves only the relative effect undefined (NaN, status BASELINE_ZERO)."""
    control = MetricStats.of(100, 0.0, 50.0)  # mean 0, variance > 0 (values of both signs)
    treatment = MetricStats.of(100, 20.0, 80.0)
    res = frequentist(control, treatment)
    assert res.status == Status.BASELINE_ZERO
    assert np.isnan(res.relative.estimate)
    assert res.absolute.estimate == pytest.approx(0.2)
    gb = TwoSidedTTest(
        SampleMeanStatistic(n=100, sum=0.0, sum_squares=50.0),
        SampleMeanStatistic(n=100, sum=20.0, sum_squares=80.0),
        FrequentistConfig(difference_type="absolute"),
    ).compute_result()
    assert gb.expected == 0
    assert gb.p_value == 1
    # Where both are defined they agree: the same comparison with a shifted baseline.
    shifted_ours = frequentist(MetricStats.of(100, 100.0, 150.0), MetricStats.of(100, 120.0, 200.0))
    shifted_gb = TwoSidedTTest(
        SampleMeanStatistic(n=100, sum=100.0, sum_squares=150.0),
        SampleMeanStatistic(n=100, sum=120.0, sum_squares=200.0),
        FrequentistConfig(difference_type="absolute"),
    ).compute_result()
    assert float(shifted_ours.absolute.p_value) == pytest.approx(shifted_gb.p_value, rel=1e-6)


def test_undefined_comparisons_are_nan_not_zero() -> None:
    """gbstats returns zeros and p = 1 with an error message; Tallystick returns NaN and a status
    so an undefined comparison is never mistaken for a null result (and corrections skip it)."""
    control = MetricStats.of([0, 1, 100], [0, 1, 50], [0, 1, 25])  # none; one unit; constant
    treatment = MetricStats.of([10, 1, 100], [3, 1, 50], [5, 1, 50])
    res = frequentist(control, treatment)
    assert list(res.status) == [Status.NO_UNITS, Status.ZERO_VARIANCE, Status.ZERO_VARIANCE]
    assert np.isnan(res.absolute.p_value).all()


# -- property: random sufficient statistics, far from the raw-data cases ---------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def mean_arms(draw: st.DrawFn) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    """Two arms' (n, sum, sum of squares) of a mean metric with a positive variance."""
    out = []
    for _ in range(2):
        n = draw(st.integers(3, 2_000_000))
        mean = draw(st.floats(0.01, 1e4))
        sd = draw(st.floats(1e-3, 1e3)) * mean
        s = mean * n
        out.append((n, s, sd * sd * (n - 1) + s * s / n))
    return out[0], out[1]


@st.composite
def proportion_arms(draw: st.DrawFn) -> tuple[tuple[int, float], tuple[int, float]]:
    out = []
    for _ in range(2):
        n = draw(st.integers(2, 5_000_000))
        out.append((n, float(draw(st.integers(1, n - 1)))))
    return out[0], out[1]


@settings(max_examples=60, deadline=None)
@given(arms=mean_arms(), relative=st.booleans())
def test_property_mean_metrics_match_gbstats(
    arms: tuple[tuple[int, float, float], tuple[int, float, float]], relative: bool
) -> None:
    (na, sa, ssa), (nb, sb, ssb) = arms
    ours = frequentist(MetricStats.of(na, sa, ssa), MetricStats.of(nb, sb, ssb))
    eff = _scale(ours, relative)
    gb = TwoSidedTTest(
        SampleMeanStatistic(n=na, sum=sa, sum_squares=ssa),
        SampleMeanStatistic(n=nb, sum=sb, sum_squares=ssb),
        FrequentistConfig(difference_type="relative" if relative else "absolute"),
    ).compute_result()
    close(eff.estimate, gb.expected)
    close([eff.ci_low, eff.ci_high], gb.ci)
    # gbstats computes 1 − cdf: below ~1e-10 its p-value is rounding noise
    np.testing.assert_allclose(eff.p_value, gb.p_value, rtol=1e-6, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(arms=proportion_arms(), relative=st.booleans(), inverse=st.booleans())
def test_property_proportions_match_gbstats_bayesian(
    arms: tuple[tuple[int, float], tuple[int, float]], relative: bool, inverse: bool
) -> None:
    (na, sa), (nb, sb) = arms
    ours = bayesian(
        MetricStats.of(na, sa, binomial=True),
        MetricStats.of(nb, sb, binomial=True),
        inverse=inverse,
    )
    eff = _scale(ours, relative)
    with warnings.catch_warnings():
        # gbstats asks scipy's truncnorm for all four moments ("mvsk") and keeps the mean; far
        # in the tail the unused skewness warns (invalid value in power)
        warnings.simplefilter("ignore", RuntimeWarning)
        gb = EffectBayesianABTest(
            ProportionStatistic(n=na, sum=sa),
            ProportionStatistic(n=nb, sum=sb),
            EffectBayesianConfig(
                difference_type="relative" if relative else "absolute", inverse=inverse
            ),
        ).compute_result()
    close(eff.estimate, gb.expected)
    close([eff.ci_low, eff.ci_high], gb.ci)
    close(eff.chance_to_win, gb.chance_to_win)
    # risks: gbstats' truncated-normal moments lose precision far in the tail; compare where
    # they are informative
    np.testing.assert_allclose(
        [eff.risk_control, eff.risk_treatment], gb.risk, rtol=1e-5, atol=1e-9 * float(eff.se)
    )
