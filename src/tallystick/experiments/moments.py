"""Sufficient statistics of a metric per variation, and the moments derived from them.

Everything here is array-valued: one :class:`MetricStats` holds any number of metric ×
variation cells (any common shape), so a thousand analyses are a handful of numpy operations.
The column names follow the sufficient statistics GrowthBook's gbstats reads from SQL
(``main_sum``, ``main_sum_squares``, ``denominator_sum``, ``main_denominator_sum_product``,
``covariate_sum``, ``main_covariate_sum_product`` …), so the engine's SQL can produce the same
columns.

Conventions (gbstats 0.8.0's, so the results agree with it):

- a *mean* metric's variance is the sample variance ``(Σx² − (Σx)²/n) / (n − 1)``; a *binomial*
  metric's is ``p(1 − p)`` with ``p = Σx / n`` (the population form, as gbstats'
  ``ProportionStatistic``);
- a *ratio* metric (``Σm / Σd`` over units, e.g. bounced sessions / sessions) has the
  delta-method variance of the ratio of means
  ``var(m)/d̄² − 2 cov(m, d) m̄/d̄³ + m̄² var(d)/d̄⁴``;
- a metric with a pre-exposure *covariate* (CUPED) has the mean ``ȳ − θ x̄`` and the variance
  ``var(y) + θ² var(x) − 2θ cov(y, x)``, θ computed per comparison from the pooled control +
  treatment statistics (see :func:`cuped_theta`).

Cells without a denominator (or without a covariate) carry NaN in those columns; a batch may mix
mean, binomial, ratio and CUPED metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def _f(x: ArrayLike | None, shape: tuple[int, ...]) -> FloatArray:
    if x is None:
        return np.full(shape, np.nan)
    return np.broadcast_to(np.asarray(x, dtype=np.float64), shape)


def _b(x: ArrayLike, shape: tuple[int, ...]) -> BoolArray:
    return np.broadcast_to(np.asarray(x, dtype=np.bool_), shape)


@dataclass(frozen=True, slots=True)
class MetricStats:
    """Sufficient statistics per metric × variation cell; all arrays share one shape.

    Build it with :meth:`of`. ``n`` is the number of units (users, sessions, devices) exposed;
    ``sum``/``sum_squares`` are over the units' metric values (for a binomial metric the values
    are 0/1 and ``sum_squares`` equals ``sum``). Ratio metrics add the denominator's sum, sum of
    squares and the cross product ``Σ m·d`` over units; CUPED adds the pre-exposure covariate's
    sum, sum of squares and the cross product ``Σ y·x`` over units.
    """

    n: FloatArray
    sum: FloatArray
    sum_squares: FloatArray
    binomial: BoolArray
    denominator_sum: FloatArray
    denominator_sum_squares: FloatArray
    main_denominator_sum_product: FloatArray
    denominator_binomial: BoolArray
    covariate_sum: FloatArray
    covariate_sum_squares: FloatArray
    main_covariate_sum_product: FloatArray
    covariate_binomial: BoolArray

    @classmethod
    def of(
        cls,
        n: ArrayLike,
        sum: ArrayLike,
        sum_squares: ArrayLike | None = None,
        *,
        binomial: ArrayLike = False,
        denominator_sum: ArrayLike | None = None,
        denominator_sum_squares: ArrayLike | None = None,
        main_denominator_sum_product: ArrayLike | None = None,
        denominator_binomial: ArrayLike = False,
        covariate_sum: ArrayLike | None = None,
        covariate_sum_squares: ArrayLike | None = None,
        main_covariate_sum_product: ArrayLike | None = None,
        covariate_binomial: ArrayLike = False,
    ) -> MetricStats:
        """Broadcast the given statistics to one shape (float64); absent parts become NaN.

        ``sum_squares`` may be omitted for a binomial metric (it equals ``sum``); likewise the
        denominator's and the covariate's sums of squares when they are binomial.
        """
        parts = [n, sum, sum_squares, binomial, denominator_sum, denominator_sum_squares]
        parts += [main_denominator_sum_product, denominator_binomial, covariate_sum]
        parts += [covariate_sum_squares, main_covariate_sum_product, covariate_binomial]
        shape = np.broadcast_shapes(*(np.shape(p) for p in parts if p is not None))
        bin_ = _b(binomial, shape)
        s = _f(sum, shape)
        if sum_squares is None:
            if not bin_.all():
                raise ValueError("sum_squares is required for a mean (non-binomial) metric")
            sum_squares = s
        d_bin = _b(denominator_binomial, shape)
        d_sum = _f(denominator_sum, shape)
        if denominator_sum_squares is None and denominator_sum is not None and d_bin.all():
            denominator_sum_squares = d_sum
        c_bin = _b(covariate_binomial, shape)
        c_sum = _f(covariate_sum, shape)
        if covariate_sum_squares is None and covariate_sum is not None and c_bin.all():
            covariate_sum_squares = c_sum
        return cls(
            n=_f(n, shape),
            sum=s,
            sum_squares=_f(sum_squares, shape),
            binomial=bin_,
            denominator_sum=d_sum,
            denominator_sum_squares=_f(denominator_sum_squares, shape),
            main_denominator_sum_product=_f(main_denominator_sum_product, shape),
            denominator_binomial=d_bin,
            covariate_sum=c_sum,
            covariate_sum_squares=_f(covariate_sum_squares, shape),
            main_covariate_sum_product=_f(main_covariate_sum_product, shape),
            covariate_binomial=c_bin,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return self.n.shape

    @property
    def is_ratio(self) -> BoolArray:
        """Cells whose metric is a ratio (a denominator is given)."""
        return ~np.isnan(self.denominator_sum)

    @property
    def has_covariate(self) -> BoolArray:
        """Cells with a pre-exposure covariate (CUPED applies unless the metric is a ratio)."""
        return ~np.isnan(self.covariate_sum) & ~self.is_ratio

    def __getitem__(self, index: Any) -> MetricStats:
        """The cells at ``index`` (numpy indexing on every array), e.g. ``stats[..., 1:]``."""
        return MetricStats(**{name: getattr(self, name)[index] for name in self.__slots__})


def _mean(n: FloatArray, s: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, s / n, 0.0)


def _variance(n: FloatArray, s: FloatArray, ss: FloatArray, binomial: BoolArray) -> FloatArray:
    """gbstats' variance: sample variance for means, p(1 − p) for proportions; 0 when n ≤ 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(n > 0, s / n, 0.0)
        sample = (ss - s * s / n) / (n - 1)
        return np.where(binomial, m * (1 - m), np.where(n > 1, sample, 0.0))


def _covariance(n: FloatArray, s1: FloatArray, s2: FloatArray, sp: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 1, (sp - s1 * s2 / n) / (n - 1), 0.0)


class Moments(NamedTuple):
    """The per-cell quantities a test needs (all arrays of the cells' shape)."""

    n: FloatArray
    mean: FloatArray  # CUPED-adjusted where θ ≠ 0
    unadjusted_mean: FloatArray
    variance: FloatArray  # per-unit variance of the (adjusted / ratio) metric


def base_moments(stats: MetricStats) -> Moments:
    """Mean and per-unit variance of each cell without CUPED (ratios by the delta method)."""
    n = stats.n
    m_mean = _mean(n, stats.sum)
    m_var = _variance(n, stats.sum, stats.sum_squares, stats.binomial)
    ratio = stats.is_ratio
    d_sum = np.where(ratio, stats.denominator_sum, 0.0)
    d_mean = _mean(n, d_sum)
    d_var = _variance(
        n, d_sum, np.where(ratio, stats.denominator_sum_squares, 0.0), stats.denominator_binomial
    )
    cov = _covariance(n, stats.sum, d_sum, np.where(ratio, stats.main_denominator_sum_product, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r_mean = np.where(d_sum != 0, stats.sum / d_sum, 0.0)
        r_var = m_var / d_mean**2 - 2 * cov * m_mean / d_mean**3 + m_mean**2 * d_var / d_mean**4
    r_var = np.where((d_mean == 0) | (n <= 1), 0.0, r_var)
    mean = np.where(ratio, r_mean, m_mean)
    return Moments(n, mean, mean, np.where(ratio, r_var, m_var))


def cuped_theta(control: MetricStats, treatment: MetricStats) -> FloatArray:
    """θ = cov(y, x) / var(x) over the pooled control + treatment units (``compute_theta``).

    0 where a cell has no covariate, is a ratio metric, or the pooled metric or covariate has no
    variance (the comparison then runs unadjusted).
    """
    a, b = control, treatment
    n = a.n + b.n
    y_s, y_ss = a.sum + b.sum, a.sum_squares + b.sum_squares
    x_s, x_ss = a.covariate_sum + b.covariate_sum, a.covariate_sum_squares + b.covariate_sum_squares
    y_var = _variance(n, y_s, y_ss, a.binomial)
    x_var = _variance(n, x_s, x_ss, a.covariate_binomial)
    cov = _covariance(n, y_s, x_s, a.main_covariate_sum_product + b.main_covariate_sum_product)
    ok = a.has_covariate & b.has_covariate & (x_var != 0) & (y_var != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, cov / np.where(ok, x_var, 1.0), 0.0)


def adjusted_moments(stats: MetricStats, theta: FloatArray) -> Moments:
    """The cells' moments with the CUPED adjustment θ applied (θ = 0: unadjusted)."""
    base = base_moments(stats)
    use = theta != 0
    x_s = np.where(use, stats.covariate_sum, 0.0)
    x_mean = _mean(stats.n, x_s)
    x_var = _variance(
        stats.n, x_s, np.where(use, stats.covariate_sum_squares, 0.0), stats.covariate_binomial
    )
    cov = _covariance(stats.n, stats.sum, x_s, np.where(use, stats.main_covariate_sum_product, 0.0))
    mean = np.where(use, base.mean - theta * x_mean, base.mean)
    var = base.variance + theta**2 * x_var - 2 * theta * cov
    var = np.where(use, np.where(stats.n <= 1, 0.0, var), base.variance)
    return Moments(stats.n, mean, base.unadjusted_mean, var)
