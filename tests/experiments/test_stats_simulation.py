"""Simulated experiments (numpy, seeded, vectorised): error rates, peeking, CUPED, SRM.

Every test simulates thousands of experiments at once and analyses them in one call; the
seeds are fixed, so the outcomes are reproducible. The acceptance bounds are the issue's:
A/A false-positive rate within [4 %, 6 %] at α = 5 % over ≥ 2,000 experiments; with a look
after every batch the sequential test stays ≤ 5 %; CUPED reduces the variance on correlated
pre-period data; SRM flags a skewed split and not a fair one.
"""

from __future__ import annotations

import numpy as np
import pytest

from tallystick.experiments import MetricStats, bayesian, frequentist, sequential, srm_check

EXPERIMENTS = 4_000


def _stats(values: np.ndarray) -> MetricStats:
    """Per-arm statistics of raw values shaped (experiments, units)."""
    return MetricStats.of(values.shape[-1], values.sum(-1), (values * values).sum(-1))


def aa_batch(kind: str, rng: np.random.Generator, n: int = 400) -> tuple[MetricStats, MetricStats]:
    size = (EXPERIMENTS, n)
    if kind == "mean":  # skewed, revenue-like
        return _stats(rng.lognormal(0, 0.8, size)), _stats(rng.lognormal(0, 0.8, size))
    if kind == "binomial":
        conv = rng.binomial(n, 0.1, size=(2, EXPERIMENTS)).astype(np.float64)
        return (
            MetricStats.of(n, conv[0], binomial=True),
            MetricStats.of(n, conv[1], binomial=True),
        )
    # ratio: bounced sessions / sessions per user
    out = []
    for _ in range(2):
        d = 1.0 + rng.poisson(1.5, size)
        y = rng.binomial(d.astype(np.int64), 0.35).astype(np.float64)
        out.append(
            MetricStats.of(
                n,
                y.sum(-1),
                (y * y).sum(-1),
                denominator_sum=d.sum(-1),
                denominator_sum_squares=(d * d).sum(-1),
                main_denominator_sum_product=(y * d).sum(-1),
            )
        )
    return out[0], out[1]


@pytest.mark.parametrize("kind", ["mean", "binomial", "ratio"])
def test_aa_false_positive_rate_is_nominal(kind: str) -> None:
    rng = np.random.default_rng({"mean": 1, "binomial": 2, "ratio": 3}[kind])
    control, treatment = aa_batch(kind, rng)
    res = frequentist(control, treatment, alpha=0.05)
    for effect in (res.absolute, res.relative):
        rate = float(np.mean(effect.p_value < 0.05))
        assert 0.04 <= rate <= 0.06, (kind, rate)
        coverage = float(np.mean((effect.ci_low <= 0) & (effect.ci_high >= 0)))
        assert 0.94 <= coverage <= 0.96, (kind, coverage)
    # The Bayesian decision "chance to win above 97.5 % or below 2.5 %" has the same error rate
    # under the flat prior.
    ctw = bayesian(control, treatment).relative.chance_to_win
    assert 0.04 <= float(np.mean((ctw > 0.975) | (ctw < 0.025))) <= 0.06


def peeking_batches(rng: np.random.Generator, looks: int, per_look: int) -> tuple[MetricStats, ...]:
    """Cumulative statistics after each look, shape (experiments, looks), A/A conversions."""
    arms = []
    for _ in range(2):
        conv = rng.binomial(per_look, 0.1, size=(EXPERIMENTS // 2, looks)).astype(np.float64)
        n = per_look * np.arange(1, looks + 1, dtype=np.float64)
        arms.append(MetricStats.of(n, conv.cumsum(axis=1), binomial=True))
    return tuple(arms)


def test_sequential_keeps_the_error_rate_under_peeking() -> None:
    rng = np.random.default_rng(42)
    control, treatment = peeking_batches(rng, looks=20, per_look=250)
    seq = sequential(control, treatment, alpha=0.05)
    ever = np.any(seq.relative.p_value < 0.05, axis=1)
    assert float(ever.mean()) <= 0.05
    # the intervals are valid at every look at once
    covered = np.all((seq.absolute.ci_low <= 0) & (seq.absolute.ci_high >= 0), axis=1)
    assert float(covered.mean()) >= 0.95
    # the fixed-horizon test peeked at the same 20 looks is badly wrong: that is the point
    naive = frequentist(control, treatment, alpha=0.05)
    assert float(np.any(naive.relative.p_value < 0.05, axis=1).mean()) > 0.15


def test_sequential_still_detects_a_real_effect() -> None:
    rng = np.random.default_rng(43)
    looks, per_look = 20, 500
    n = per_look * np.arange(1, looks + 1, dtype=np.float64)
    conv = [
        rng.binomial(per_look, p, size=(500, looks)).astype(np.float64).cumsum(axis=1)
        for p in (0.10, 0.12)
    ]
    seq = sequential(
        MetricStats.of(n, conv[0], binomial=True), MetricStats.of(n, conv[1], binomial=True)
    )
    assert float(np.any(seq.relative.p_value < 0.05, axis=1).mean()) > 0.8


def test_cuped_reduces_variance_on_correlated_pre_period_data() -> None:
    rng = np.random.default_rng(9)
    n, effect = 500, 0.1
    x = rng.normal(10, 1, size=(2, EXPERIMENTS // 2, n))  # pre-exposure value
    y = 0.8 * x + rng.normal(0, 0.6, size=x.shape)  # correlation 0.8
    y[1] += effect
    arms = [
        MetricStats.of(
            n,
            y[i].sum(-1),
            (y[i] ** 2).sum(-1),
            covariate_sum=x[i].sum(-1),
            covariate_sum_squares=(x[i] ** 2).sum(-1),
            main_covariate_sum_product=(x[i] * y[i]).sum(-1),
        )
        for i in range(2)
    ]
    plain = frequentist(arms[0], arms[1], cuped=False).absolute
    adjusted = frequentist(arms[0], arms[1]).absolute
    # the estimator's spread over the experiments, and its estimated standard error, both shrink
    # by about sqrt(1 − ρ²) = 0.6
    spread = float(np.std(adjusted.estimate) / np.std(plain.estimate))
    assert 0.5 < spread < 0.7
    se_ratio = float(np.median(adjusted.se / plain.se))
    assert 0.55 < se_ratio < 0.65
    # unbiased, and the standard error is right (coverage of the true effect)
    assert abs(float(np.mean(adjusted.estimate)) - effect) < 0.005
    covered = (adjusted.ci_low <= effect) & (adjusted.ci_high >= effect)
    assert 0.93 <= float(covered.mean()) <= 0.97
    # and more power for the same data
    assert float(np.mean(adjusted.p_value < 0.05)) > float(np.mean(plain.p_value < 0.05)) + 0.2


def test_srm_flags_a_skewed_split_and_not_a_fair_one() -> None:
    rng = np.random.default_rng(3)
    fair = rng.multinomial(40_000, [0.5, 0.5], size=EXPERIMENTS)
    assert float(srm_check(fair, [0.5, 0.5]).flagged.mean()) <= 0.004  # nominal 0.1 %
    three = rng.multinomial(30_000, [0.2, 0.4, 0.4], size=EXPERIMENTS)
    assert float(srm_check(three, [1, 2, 2]).flagged.mean()) <= 0.004
    # 5 % of the treatment's exposures lost (a logging bug)
    lossy = rng.multinomial(80_000, np.array([0.5, 0.475]) / 0.975, size=EXPERIMENTS)
    assert float(srm_check(lossy, [0.5, 0.5]).flagged.mean()) >= 0.99
