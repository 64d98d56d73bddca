"""Agreement with tea-tasting (``Mean``, ``RatioOfMeans``, with and without a CUPED covariate)
on aggregated statistics, to 1e-6, and the documented differences.

tea-tasting computes the same Welch t-test on the same delta-method variances, so the absolute
effect, its interval and the p-value agree for mean, ratio and CUPED metrics (its CUPED θ is
also estimated on the pooled sample). Two deliberate differences, each shown by a test below:

- the **relative** interval: tea-tasting builds it on the log scale
  (``exp(log(μ_B/μ_A) ± t·se_log)``), gbstats and Tallystick use the delta method on
  ``(μ_B − μ_A)/μ_A`` (a symmetric interval); the point estimates agree without CUPED;
- the **relative effect under CUPED**: tea-tasting divides the adjusted means centred on the
  pooled covariate mean, gbstats and Tallystick divide the adjusted difference by the
  unadjusted control mean; the absolute effects are identical.

tea-tasting knows no proportion statistic: binomial metrics go in as means with the sample
variance (``binomial_as_mean``).
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.stats_cases import Arm, Case, batch, make_cases
from tallystick.experiments import frequentist

pytest.importorskip("tea_tasting")
import tea_tasting as tt  # type: ignore[import-untyped]
from tea_tasting.aggr import Aggregates  # type: ignore[import-untyped]

RTOL, ATOL = 1e-6, 1e-12


def close(actual: object, desired: object, err_msg: str = "") -> None:
    np.testing.assert_allclose(actual, desired, rtol=RTOL, atol=ATOL, err_msg=err_msg)  # type: ignore[call-overload]


CASES = make_cases(seed=77, per_kind=6)


def aggregates(arm: Arm) -> Aggregates:
    cols = {"y": arm.y}
    if arm.d is not None:
        cols["d"] = arm.d
    if arm.x is not None:
        cols["x"] = arm.x
    names = sorted(cols)
    return Aggregates(
        count_=arm.n,
        mean_={k: float(v.mean()) for k, v in cols.items()},
        var_={k: float(v.var(ddof=1)) for k, v in cols.items()},
        cov_={
            (a, b): float(np.cov(cols[a], cols[b], ddof=1)[0, 1])
            for a in names
            for b in names
            if a < b
        },
    )


def metric(case: Case) -> tt.RatioOfMeans:
    if case.control.d is not None:
        return tt.RatioOfMeans("y", "d", equal_var=False, use_t=True)
    if case.control.x is not None:
        return tt.Mean("y", "x", equal_var=False, use_t=True)
    return tt.Mean("y", equal_var=False, use_t=True)


def test_absolute_effects_match_tea_tasting() -> None:
    control, treatment = batch(CASES, binomial_as_mean=True)
    res = frequentist(control, treatment, alpha=0.05)
    for i, case in enumerate(CASES):
        ref = metric(case).analyze_aggregates(aggregates(case.control), aggregates(case.treatment))
        msg = case.kind
        close(res.absolute.estimate[i], ref.effect_size, err_msg=msg)
        close(
            [res.absolute.ci_low[i], res.absolute.ci_high[i]],
            [ref.effect_size_ci_lower, ref.effect_size_ci_upper],
            err_msg=msg,
        )
        close(res.absolute.p_value[i], ref.pvalue, err_msg=msg)
        if not case.kind.startswith("cuped"):
            close(res.relative.estimate[i], ref.rel_effect_size)


def test_relative_interval_differs_by_design() -> None:
    """Log-scale (tea-tasting) vs delta-method (gbstats, Tallystick) relative intervals: both
    contain the estimate, the log-scale one is asymmetric, and they are close when the
    relative standard error is small."""
    cases = [c for c in CASES if c.kind == "mean"]
    control, treatment = batch(cases)
    res = frequentist(control, treatment)
    for i, case in enumerate(cases):
        ref = metric(case).analyze_aggregates(aggregates(case.control), aggregates(case.treatment))
        lo, hi = ref.rel_effect_size_ci_lower, ref.rel_effect_size_ci_upper
        est = res.relative.estimate[i]
        assert lo < est < hi
        assert res.relative.ci_low[i] < est < res.relative.ci_high[i]
        assert (hi - est) > (est - lo)  # exp() stretches the upper side
        width = res.relative.ci_high[i] - res.relative.ci_low[i]
        assert abs((hi - lo) - width) < 0.1 * width


def test_cuped_relative_effect_differs_by_design() -> None:
    cases = [c for c in CASES if c.kind == "cuped_mean"]
    control, treatment = batch(cases)
    res = frequentist(control, treatment)
    for i, case in enumerate(cases):
        ref = metric(case).analyze_aggregates(aggregates(case.control), aggregates(case.treatment))
        ours = res.absolute.estimate[i] / res.control_mean[i]
        np.testing.assert_allclose(res.relative.estimate[i], ours, rtol=1e-12)
        np.testing.assert_allclose(res.absolute.estimate[i], ref.effect_size, rtol=1e-6)
        theirs = ref.effect_size / ref.control  # tea-tasting: Δ over the adjusted control mean
        np.testing.assert_allclose(ref.rel_effect_size, theirs, rtol=1e-9)
        assert not np.isclose(res.relative.estimate[i], ref.rel_effect_size, rtol=1e-9, atol=0)
