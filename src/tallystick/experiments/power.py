"""Power, sample size and minimum detectable effect for a control-vs-treatment comparison.

A two-sided z-test of the difference of means at level ``α`` with ``n`` units in total, split by
``weights`` (control first; each treatment is compared with the control). With per-unit
variance ``σ²`` (``p(1 − p)`` for a conversion, see :func:`binomial_variance`) the standard
error of the difference is ``se = σ·sqrt(1/(n·w_A) + 1/(n·w_B))`` (weights normalised to sum to
1) and the power for a true absolute effect ``δ`` is

``Φ(|δ|/se − z_{1−α/2}) + Φ(−|δ|/se − z_{1−α/2})``

(statsmodels' ``NormalIndPower``). :func:`sample_size` inverts it for ``n`` (the closed form
``n = c·σ²(z_{1−α/2} + z_{power})²/δ²`` with ``c = 1/w_A + 1/w_B``, refined by Newton's method
on the exact two-tailed power); with several treatments it returns the total that gives the
smallest arm its power. A relative minimum detectable effect ``r`` on a baseline mean ``μ`` is the
absolute ``δ = r·μ``. The normal approximation suits the sample sizes of online experiments
(hundreds of units per arm and up); it ignores the multiple-comparison and sequential
adjustments, which need more units.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from tallystick.experiments.moments import FloatArray


def binomial_variance(rate: ArrayLike) -> FloatArray:
    """Per-unit variance ``p(1 − p)`` of a conversion metric with baseline rate ``p``."""
    p = np.asarray(rate, dtype=np.float64)
    return np.asarray(p * (1 - p))


def _factor(weights: ArrayLike) -> float:
    """``max_i (1/w_A + 1/w_i)`` over the treatments, weights normalised."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 2 or np.any(w <= 0):
        raise ValueError("weights: a positive weight for the control and each treatment")
    w = w / w.sum()
    return float(np.max(1 / w[0] + 1 / w[1:]))


def power(
    effect: ArrayLike,
    variance: ArrayLike,
    n: ArrayLike,
    *,
    alpha: ArrayLike = 0.05,
    weights: ArrayLike = (0.5, 0.5),
) -> FloatArray:
    """Probability of a significant result for a true absolute ``effect`` with ``n`` units."""
    c = _factor(weights)
    d = np.abs(np.asarray(effect, dtype=np.float64))
    with np.errstate(divide="ignore"):
        se = np.sqrt(np.asarray(variance, dtype=np.float64) * c / np.asarray(n, dtype=np.float64))
    z = special.ndtri(1 - np.asarray(alpha, dtype=np.float64) / 2)
    return np.asarray(special.ndtr(d / se - z) + special.ndtr(-d / se - z))


def sample_size(
    effect: ArrayLike,
    variance: ArrayLike,
    *,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    weights: ArrayLike = (0.5, 0.5),
) -> FloatArray:
    """Total units (all variations, unrounded) for ``power`` at an absolute ``effect``.

    Round up (``np.ceil``) for a plan; ``n·w_i`` is the share of variation ``i``.
    """
    c = _factor(weights)
    d = np.abs(np.asarray(effect, dtype=np.float64))
    k = np.asarray(variance, dtype=np.float64) * c  # se² · n
    target = np.asarray(power, dtype=np.float64)
    z = special.ndtri(1 - np.asarray(alpha, dtype=np.float64) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = k * (z + special.ndtri(target)) ** 2 / d**2
        for _ in range(8):  # Newton on f(n) = power(n) − target, in u = |δ|/se = |δ|·sqrt(n/k)
            u = d * np.sqrt(n / k)
            f = special.ndtr(u - z) + special.ndtr(-u - z) - target
            dens = np.exp(-0.5 * (u - z) ** 2) - np.exp(-0.5 * (u + z) ** 2)
            du_dn = u / (2 * n)
            n = n - f / (dens / np.sqrt(2 * np.pi) * du_dn)
    return np.asarray(n)


def minimum_detectable_effect(
    variance: ArrayLike,
    n: ArrayLike,
    *,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    weights: ArrayLike = (0.5, 0.5),
) -> FloatArray:
    """Smallest absolute effect detected with ``power`` given ``n`` units in total."""
    c = _factor(weights)
    se = np.sqrt(np.asarray(variance, dtype=np.float64) * c / np.asarray(n, dtype=np.float64))
    target = np.asarray(power, dtype=np.float64)
    z = special.ndtri(1 - np.asarray(alpha, dtype=np.float64) / 2)
    u = z + special.ndtri(target)
    for _ in range(8):  # Newton in u = δ/se on Φ(u − z) + Φ(−u − z) = power
        f = special.ndtr(u - z) + special.ndtr(-u - z) - target
        dens = (np.exp(-0.5 * (u - z) ** 2) - np.exp(-0.5 * (u + z) ** 2)) / np.sqrt(2 * np.pi)
        u = u - f / dens
    return np.asarray(u * se)
