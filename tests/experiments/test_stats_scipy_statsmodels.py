"""Agreement with scipy and statsmodels on the same inputs, to 1e-6.

- Welch's t-test: scipy ``ttest_ind(equal_var=False)`` (statistic, p-value, interval) and
  statsmodels ``ttest_ind(usevar="unequal")`` (p-value, degrees of freedom) on the raw values;
- two proportions: statsmodels ``test_proportions_2indep`` / ``confint_proportions_2indep`` with
  ``method="wald"`` against the z-test (``use_t=False``) on proportion statistics;
- Holm and Benjamini–Hochberg: statsmodels ``multipletests``;
- power and sample size: statsmodels ``NormalIndPower``;
- SRM: scipy ``chisquare``.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats_cases import batch, make_cases
from tallystick.experiments import (
    MetricStats,
    adjust_p_values,
    binomial_variance,
    frequentist,
    minimum_detectable_effect,
    power,
    sample_size,
    srm_check,
)

pytest.importorskip("statsmodels")
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
from statsmodels.stats.power import NormalIndPower  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)
from statsmodels.stats.proportion import (
    test_proportions_2indep as proportions_2indep,  # not collected as a test
)
from statsmodels.stats.weightstats import ttest_ind  # type: ignore[import-untyped]

RTOL, ATOL = 1e-6, 1e-12


def close(actual: object, desired: object, err_msg: str = "") -> None:
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL, err_msg=err_msg)  # type: ignore[call-overload]


MEAN_CASES = [c for c in make_cases(seed=31, per_kind=10) if c.kind in ("mean", "binomial")]


def test_welch_t_matches_scipy_and_statsmodels() -> None:
    control, treatment = batch(MEAN_CASES, binomial_as_mean=True)  # raw-data tests: n − 1
    res = frequentist(control, treatment, alpha=0.05, cuped=False)
    for i, case in enumerate(MEAN_CASES):
        b, a = case.treatment.y, case.control.y
        ref = sps.ttest_ind(b, a, equal_var=False)
        ci = ref.confidence_interval(0.95)
        close(res.absolute.estimate[i], b.mean() - a.mean())
        close(res.absolute.estimate[i] / res.absolute.se[i], ref.statistic)
        close(res.absolute.p_value[i], ref.pvalue)
        close([res.absolute.ci_low[i], res.absolute.ci_high[i]], ci)
        _, sm_p, sm_df = ttest_ind(b, a, usevar="unequal")
        close(res.absolute.p_value[i], sm_p)
        close(res.dof[i], sm_df)


def test_two_proportions_z_matches_statsmodels_wald() -> None:
    rng = np.random.default_rng(5)
    n = rng.integers(200, 50_000, size=(2, 40)).astype(np.float64)
    conv = rng.binomial(n.astype(np.int64), [[0.1], [0.11]]).astype(np.float64)
    control = MetricStats.of(n[0], conv[0], binomial=True)
    treatment = MetricStats.of(n[1], conv[1], binomial=True)
    res = frequentist(control, treatment, use_t=False)
    assert res.method == "z"
    for i in range(n.shape[1]):
        args = (conv[1, i], n[1, i], conv[0, i], n[0, i])
        ref = proportions_2indep(*args, method="wald", compare="diff")
        low, high = confint_proportions_2indep(*args, method="wald", compare="diff")
        close(res.absolute.p_value[i], ref.pvalue)
        np.testing.assert_allclose([res.absolute.ci_low[i], res.absolute.ci_high[i]], [low, high])


def test_pooled_proportions_ztest_differs_by_design() -> None:
    """statsmodels' ``proportions_ztest`` uses the pooled rate under H0 for the standard error;
    Tallystick (like gbstats) uses each arm's own rate (the Wald form), which also gives the
    interval. The two p-values differ slightly at experiment sizes and converge as n grows."""
    n = np.array([[2_000.0, 200_000.0], [2_000.0, 200_000.0]])
    conv = np.array([[200.0, 20_000.0], [236.0, 20_600.0]])
    res = frequentist(
        MetricStats.of(n[0], conv[0], binomial=True),
        MetricStats.of(n[1], conv[1], binomial=True),
        use_t=False,
    )
    pooled = [proportions_ztest(conv[::-1, i], n[::-1, i])[1] for i in range(2)]
    gaps = np.abs(res.absolute.p_value - np.array(pooled))
    assert gaps[0] > 1e-4  # visibly different at 2,000 units per arm
    assert gaps[1] < gaps[0] / 10


@pytest.mark.parametrize(("ours", "theirs"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_match_multipletests(
    ours: str, theirs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # multipletests runs a full gc.collect() on every call (~0.3 s in a test process)
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(11)
    families = np.concatenate([rng.random((20, 12)) ** 3, rng.random((5, 12))])
    families[0, :4] = [0.001, 0.001, 0.04, 0.04]  # ties
    adjusted = adjust_p_values(families, ours)  # type: ignore[arg-type]
    for row, adj in zip(families, adjusted, strict=True):
        close(adj, multipletests(row, method=theirs)[1])


def test_corrections_skip_undefined_p_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adj = adjust_p_values(p, "holm")
    assert np.isnan(adj[1])
    np.testing.assert_allclose(adj[[0, 2, 3]], multipletests(p[[0, 2, 3]], method="holm")[1])


def test_power_and_sample_size_match_normal_ind_power() -> None:
    ref = NormalIndPower()
    variance = binomial_variance(0.12)
    sd = float(np.sqrt(variance))
    for effect, weights, alpha in [(0.012, (0.5, 0.5), 0.05), (0.006, (0.3, 0.7), 0.01)]:
        ratio = weights[1] / weights[0]
        n = sample_size(effect, variance, alpha=alpha, power=0.8, weights=weights)
        nobs1 = ref.solve_power(effect / sd, alpha=alpha, power=0.8, ratio=ratio)
        np.testing.assert_allclose(n * weights[0], nobs1, rtol=1e-6)
        for total in (1_000.0, 20_000.0):
            ours = power(effect, variance, total, alpha=alpha, weights=weights)
            theirs = ref.power(effect / sd, total * weights[0], alpha, ratio=ratio)
            close(ours, theirs)
            mde = minimum_detectable_effect(variance, total, alpha=alpha, weights=weights)
            np.testing.assert_allclose(
                power(mde, variance, total, alpha=alpha, weights=weights), 0.8
            )
            # statsmodels solves for the effect size with a looser root finder: its answer has a
            # power of 0.8 ± 5e-7, so the two agree to ~1e-4 relative, ours being the exact root.
            es = ref.solve_power(None, total * weights[0], alpha, 0.8, ratio=ratio)
            np.testing.assert_allclose(mde, es * sd, rtol=1e-4)


def test_sample_size_is_vectorised_and_uses_the_smallest_arm() -> None:
    n = sample_size(np.array([0.01, 0.02]), binomial_variance(0.1), weights=(0.5, 0.25, 0.25))
    two = sample_size(np.array([0.01, 0.02]), binomial_variance(0.1), weights=(2 / 3, 1 / 3))
    # 3 arms (½, ¼, ¼): control vs a ¼ arm needs n_c = 2·n_t as 2 arms (⅔, ⅓) do, for 4·n_t
    # units in all instead of 3·n_t.
    np.testing.assert_allclose(n, two * 4 / 3, rtol=1e-9)
    assert n[0] == pytest.approx(4 * n[1], rel=1e-3)


def test_srm_matches_scipy_chisquare() -> None:
    units = np.array([[5_000.0, 5_210.0], [3_000.0, 3_020.0], [1_000.0, 1_400.0]])
    w = np.array([0.5, 0.5])
    ours = srm_check(units, w)
    for i in range(3):
        ref = sps.chisquare(units[i], units[i].sum() * w)
        close(ours.chi2[i], ref.statistic)
        close(ours.p_value[i], ref.pvalue)
    assert list(ours.flagged) == [False, False, True]
