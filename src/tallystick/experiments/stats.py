"""Two-sample comparisons of a metric between a control and a treatment, vectorised.

Every function takes the control's and the treatment's :class:`MetricStats` (same shape) and
returns results of that shape. Three families, with gbstats 0.8.0's formulas:

- :func:`frequentist` — Welch's unequal-variance t-test (Welch–Satterthwaite degrees of
  freedom), or a z-test with ``use_t=False``; absolute effect ``Δ = μ_B − μ_A`` with variance
  ``σ²_B/n_B + σ²_A/n_A``, relative effect ``Δ / μ_A`` with the delta-method variance
  ``σ²_B/(μ_A² n_B) + σ²_A μ_B²/(μ_A⁴ n_A)`` (μ the unadjusted means);
- :func:`sequential` — the same estimates with always-valid intervals and p-values (the
  Gaussian-mixture confidence sequence of Waudby-Smith et al., gbstats' ``SequentialTwoSidedTTest``
  with its tuning parameter, default 5,000);
- :func:`bayesian` — a Gaussian posterior for the effect (flat prior by default, or a proper
  Gaussian prior on the relative effect), chance to win and risk (gbstats'
  ``EffectBayesianABTest``).

Where a comparison is undefined the values are NaN and ``status`` says why (see
:class:`Status`); gbstats returns zeros and p = 1 there instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from tallystick.experiments.moments import (
    BoolArray,
    FloatArray,
    MetricStats,
    Moments,
    adjusted_moments,
    cuped_theta,
)

DEFAULT_SEQUENTIAL_TUNING = 5000.0
NDArrayInt8 = np.ndarray[tuple[int, ...], np.dtype[np.int8]]


class Status(enum.IntEnum):
    """Why a comparison has no result (0: it has one)."""

    OK = 0
    NO_UNITS = 1  # a variation has no units
    ZERO_VARIANCE = 2  # a variation's variance is 0 (or n ≤ 1): nothing to test
    BASELINE_ZERO = (
        3  # the control's mean is 0: the relative effect is undefined (absolute is fine)
    )


@dataclass(frozen=True, slots=True)
class Effect:
    """One effect scale (absolute or relative) of a batch of comparisons; arrays of one shape.

    Frequentist results fill ``p_value`` and leave ``chance_to_win`` and the risks NaN; Bayesian
    results fill those and leave ``p_value`` NaN. ``estimate`` is the point estimate (the
    posterior mean for Bayesian results), ``se`` its standard error (posterior standard
    deviation), ``ci_low``/``ci_high`` the interval at the given level.
    """

    estimate: FloatArray
    se: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray
    chance_to_win: FloatArray
    risk_control: FloatArray  # expected loss of choosing control (gbstats' risk[0])
    risk_treatment: FloatArray  # expected loss of choosing treatment (gbstats' risk[1])


@dataclass(frozen=True, slots=True)
class Comparison:
    """Control-vs-treatment results for a batch of metric × variation cells.

    ``method`` is ``"welch-t"``, ``"z"``, ``"sequential"`` or ``"bayesian"``. Means are
    unadjusted (what the variations measured); ``theta`` is the CUPED coefficient (0 where CUPED
    did not apply); ``dof`` the Welch–Satterthwaite degrees of freedom (inf for the z and
    sequential tests, NaN for Bayesian).
    """

    method: str
    alpha: FloatArray
    control_n: FloatArray
    treatment_n: FloatArray
    control_mean: FloatArray
    treatment_mean: FloatArray
    theta: FloatArray
    dof: FloatArray
    absolute: Effect
    relative: Effect
    status: NDArrayInt8

    @property
    def shape(self) -> tuple[int, ...]:
        return self.control_n.shape


class _Pair(NamedTuple):
    a: Moments
    b: Moments
    theta: FloatArray
    abs_est: FloatArray
    abs_var: FloatArray
    rel_est: FloatArray
    rel_var: FloatArray
    status: NDArrayInt8


def _pair(control: MetricStats, treatment: MetricStats, cuped: bool) -> _Pair:
    if control.shape != treatment.shape:
        raise ValueError(f"control {control.shape} and treatment {treatment.shape} differ in shape")
    theta = cuped_theta(control, treatment) if cuped else np.zeros(control.shape)
    a = adjusted_moments(control, theta)
    b = adjusted_moments(treatment, theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        abs_est = b.mean - a.mean
        abs_var = b.variance / b.n + a.variance / a.n
        mu_a = a.unadjusted_mean
        rel_est = abs_est / mu_a
        rel_var = b.variance / (mu_a**2 * b.n) + a.variance * b.unadjusted_mean**2 / (mu_a**4 * a.n)
    status = np.zeros(control.shape, dtype=np.int8)
    status[(a.mean == 0) | (mu_a == 0)] = Status.BASELINE_ZERO
    status[(a.variance <= 0) | (b.variance <= 0)] = Status.ZERO_VARIANCE
    status[(a.n <= 0) | (b.n <= 0)] = Status.NO_UNITS
    return _Pair(a, b, theta, abs_est, abs_var, rel_est, rel_var, status)


def _valid(status: NDArrayInt8) -> tuple[BoolArray, BoolArray]:
    """(absolute defined, relative defined)."""
    return (status == Status.OK) | (status == Status.BASELINE_ZERO), status == Status.OK


def _nan_like(x: FloatArray) -> FloatArray:
    return np.full(x.shape, np.nan)


def welch_dof(a: Moments, b: Moments) -> FloatArray:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    with np.errstate(divide="ignore", invalid="ignore"):
        va, vb = a.variance / a.n, b.variance / b.n
        return (va + vb) ** 2 / (vb**2 / (b.n - 1) + va**2 / (a.n - 1))


def _alpha(alpha: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    arr = np.broadcast_to(np.asarray(alpha, dtype=np.float64), shape)
    if np.any((arr <= 0) | (arr >= 1)):
        raise ValueError("alpha must be in (0, 1)")
    return arr


def frequentist(
    control: MetricStats,
    treatment: MetricStats,
    *,
    alpha: ArrayLike = 0.05,
    cuped: bool = True,
    use_t: bool = True,
) -> Comparison:
    """Two-sided fixed-horizon test of treatment vs control (Welch t, or z with ``use_t=False``).

    ``alpha`` may be an array (e.g. per-family levels from
    :func:`tallystick.experiments.corrections.ci_alpha`). CUPED applies to cells that carry a
    covariate unless ``cuped=False``.
    """
    p = _pair(control, treatment, cuped)
    alpha_ = _alpha(alpha, control.shape)
    dof = welch_dof(p.a, p.b) if use_t else np.full(control.shape, np.inf)
    abs_ok, rel_ok = _valid(p.status)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = special.stdtrit(dof, 1 - alpha_ / 2) if use_t else special.ndtri(1 - alpha_ / 2)

        def effect(est: FloatArray, var: FloatArray, ok: BoolArray) -> Effect:
            se = np.sqrt(var)
            stat = np.abs(est / se)
            pv = 2 * special.stdtr(dof, -stat) if use_t else 2 * special.ndtr(-stat)
            nan = _nan_like(est)
            return Effect(
                estimate=np.where(ok, est, np.nan),
                se=np.where(ok, se, np.nan),
                ci_low=np.where(ok, est - crit * se, np.nan),
                ci_high=np.where(ok, est + crit * se, np.nan),
                p_value=np.where(ok, pv, np.nan),
                chance_to_win=nan,
                risk_control=nan,
                risk_treatment=nan,
            )

        absolute = effect(p.abs_est, p.abs_var, abs_ok)
        relative = effect(p.rel_est, p.rel_var, rel_ok)
    return Comparison(
        method="welch-t" if use_t else "z",
        alpha=alpha_,
        control_n=control.n,
        treatment_n=treatment.n,
        control_mean=p.a.unadjusted_mean,
        treatment_mean=p.b.unadjusted_mean,
        theta=p.theta,
        dof=np.where(abs_ok, dof, np.nan),
        absolute=absolute,
        relative=relative,
        status=p.status,
    )


def sequential_rho(alpha: ArrayLike, tuning: ArrayLike = DEFAULT_SEQUENTIAL_TUNING) -> FloatArray:
    """The mixture's ρ for a sample size ``tuning`` where the sequence is tightest (eq. 161)."""
    a = np.asarray(alpha, dtype=np.float64)
    return np.asarray(
        np.sqrt((-2 * np.log(a) + np.log(-2 * np.log(a) + 1)) / np.asarray(tuning, np.float64))
    )


def sequential(
    control: MetricStats,
    treatment: MetricStats,
    *,
    alpha: ArrayLike = 0.05,
    tuning: ArrayLike = DEFAULT_SEQUENTIAL_TUNING,
    cuped: bool = True,
) -> Comparison:
    """Always-valid two-sided test: safe to look at after every batch of data.

    With ``N = n_A + n_B``, ``s² = N·Var(Δ̂)`` and ρ from :func:`sequential_rho`, the interval is
    ``Δ̂ ± s·sqrt(2(Nρ² + 1)·ln(sqrt(Nρ² + 1)/α) / (Nρ)²)`` (Waudby-Smith et al. 2023, eq. 9) and
    the p-value ``min(1, 1/e)`` with the e-value
    ``e = exp(ρ²·N·z² / (2(Nρ² + 1))) / sqrt(Nρ² + 1)``, ``z = Δ̂ / se(Δ̂)`` (eq. 155) — exactly
    gbstats' ``SequentialTwoSidedTTest``. ``tuning`` is the total sample size at which the
    interval is narrowest (gbstats' "sequential tuning parameter").
    """
    p = _pair(control, treatment, cuped)
    alpha_ = _alpha(alpha, control.shape)
    big_n = control.n + treatment.n
    rho = sequential_rho(alpha_, tuning)
    abs_ok, rel_ok = _valid(p.status)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nr2p1 = big_n * rho**2 + 1
        half = np.sqrt(2 * nr2p1 * np.log(np.sqrt(nr2p1) / alpha_) / (big_n * rho) ** 2)

        def effect(est: FloatArray, var: FloatArray, ok: BoolArray) -> Effect:
            se = np.sqrt(var)
            width = np.sqrt(var * big_n) * half
            st2 = est**2 * big_n / var
            log_e = rho**2 * st2 / (2 * nr2p1) - 0.5 * np.log(nr2p1)
            pv = np.minimum(np.exp(-log_e), 1.0)
            nan = _nan_like(est)
            return Effect(
                estimate=np.where(ok, est, np.nan),
                se=np.where(ok, se, np.nan),
                ci_low=np.where(ok, est - width, np.nan),
                ci_high=np.where(ok, est + width, np.nan),
                p_value=np.where(ok, pv, np.nan),
                chance_to_win=nan,
                risk_control=nan,
                risk_treatment=nan,
            )

        absolute = effect(p.abs_est, p.abs_var, abs_ok)
        relative = effect(p.rel_est, p.rel_var, rel_ok)
    return Comparison(
        method="sequential",
        alpha=alpha_,
        control_n=control.n,
        treatment_n=treatment.n,
        control_mean=p.a.unadjusted_mean,
        treatment_mean=p.b.unadjusted_mean,
        theta=p.theta,
        dof=np.where(abs_ok, np.inf, np.nan),
        absolute=absolute,
        relative=relative,
        status=p.status,
    )


@dataclass(frozen=True, slots=True)
class GaussianPrior:
    """A Gaussian prior on the **relative** effect (gbstats' ``prior_type="relative"``).

    ``proper=False`` (the default, as in GrowthBook) is the flat prior: the posterior is the
    data's normal likelihood. Arrays broadcast against the cells.
    """

    mean: ArrayLike = 0.0
    variance: ArrayLike = 0.01  # GrowthBook's default prior standard deviation 0.1
    proper: ArrayLike = False


def _risk(mu: FloatArray, sd: FloatArray) -> tuple[FloatArray, FloatArray]:
    """gbstats' risk: (P(Δ>0)·E[Δ | Δ>0], −P(Δ<0)·E[Δ | Δ<0]) for Δ ~ N(mu, sd²), closed form."""
    z = mu / sd
    pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    return mu * special.ndtr(z) + sd * pdf, sd * pdf - mu * special.ndtr(-z)


def bayesian(
    control: MetricStats,
    treatment: MetricStats,
    *,
    alpha: ArrayLike = 0.05,
    prior: GaussianPrior | None = None,
    inverse: ArrayLike = False,
    cuped: bool = True,
) -> Comparison:
    """Gaussian posterior of the effect: estimate, credible interval, chance to win and risk.

    Likelihood ``Δ̂ ~ N(Δ, Var(Δ̂))`` with the frequentist variances (delta method for the
    relative effect); with a proper prior ``N(m, v)`` on the relative effect (rescaled by the
    control mean for the absolute effect) the posterior precision is ``1/Var + 1/v`` and the mean
    the precision-weighted average. Chance to win is ``P(Δ > 0)`` (``P(Δ < 0)`` for an
    ``inverse`` metric where lower is better, such as bounce rate); risk is the expected loss
    ``E[max(−Δ, 0)]`` of shipping the treatment and ``E[max(Δ, 0)]`` of keeping control
    (swapped for inverse metrics). The credible interval is the central ``1 − alpha`` one.
    """
    prior = prior or GaussianPrior()
    p = _pair(control, treatment, cuped)
    alpha_ = _alpha(alpha, control.shape)
    inv = np.broadcast_to(np.asarray(inverse, dtype=np.bool_), control.shape)
    proper = np.broadcast_to(np.asarray(prior.proper, dtype=np.bool_), control.shape)
    pm = np.broadcast_to(np.asarray(prior.mean, dtype=np.float64), control.shape)
    pv = np.broadcast_to(np.asarray(prior.variance, dtype=np.float64), control.shape)
    abs_ok, rel_ok = _valid(p.status)
    mu_a = p.a.unadjusted_mean
    z = special.ndtri(1 - alpha_ / 2)
    with np.errstate(divide="ignore", invalid="ignore"):

        def effect(
            est: FloatArray, var: FloatArray, ok: BoolArray, m: FloatArray, v: FloatArray
        ) -> Effect:
            prec = 1 / var + np.where(proper, 1 / v, 0.0)
            mean = np.where(proper, (est / var + m / v) / prec, est)
            sd = np.sqrt(1 / prec)
            win = special.ndtr(mean / sd)
            r_ctrl, r_trt = _risk(mean, sd)
            nan = np.full(est.shape, np.nan)
            return Effect(
                estimate=np.where(ok, mean, np.nan),
                se=np.where(ok, sd, np.nan),
                ci_low=np.where(ok, mean - z * sd, np.nan),
                ci_high=np.where(ok, mean + z * sd, np.nan),
                p_value=nan,
                chance_to_win=np.where(ok, np.where(inv, 1 - win, win), np.nan),
                risk_control=np.where(ok, np.where(inv, r_trt, r_ctrl), np.nan),
                risk_treatment=np.where(ok, np.where(inv, r_ctrl, r_trt), np.nan),
            )

        absolute = effect(p.abs_est, p.abs_var, abs_ok, pm * np.abs(mu_a), pv * mu_a**2)
        relative = effect(p.rel_est, p.rel_var, rel_ok, pm, pv)
    return Comparison(
        method="bayesian",
        alpha=alpha_,
        control_n=control.n,
        treatment_n=treatment.n,
        control_mean=p.a.unadjusted_mean,
        treatment_mean=p.b.unadjusted_mean,
        theta=p.theta,
        dof=np.full(control.shape, np.nan),
        absolute=absolute,
        relative=relative,
        status=p.status,
    )
