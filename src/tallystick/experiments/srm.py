"""Sample-ratio mismatch: does the observed split of units match the configured weights?

A chi-square goodness-of-fit test per experiment (or per dimension slice): with ``o_i`` the
units seen in variation ``i``, ``N = Σ o_i`` and the expected ``e_i = N·w_i / Σ w``,
``X² = Σ (o_i − e_i)² / e_i`` over the variations with a positive weight, and the p-value
``P(χ²_{k−1} ≥ X²)`` with ``k`` the number of variations (gbstats' ``check_srm``; scipy's
``chisquare``). A p-value below the threshold (0.001 by default, as GrowthBook) flags the
experiment: the assignment or the exposure logging is broken and the effects cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from tallystick.experiments.moments import BoolArray, FloatArray

DEFAULT_SRM_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Per experiment (leading axes of the counts): the statistic, p-value and the flag."""

    chi2: FloatArray
    p_value: FloatArray
    threshold: float
    flagged: BoolArray
    observed: FloatArray
    expected: FloatArray


def srm_check(
    units: ArrayLike, weights: ArrayLike, *, threshold: float = DEFAULT_SRM_THRESHOLD
) -> SRMResult:
    """Chi-square test of ``units`` (shape ``(..., k)``) against ``weights`` (broadcastable).

    No units at all gives p = 1 (nothing to flag).
    """
    o = np.asarray(units, dtype=np.float64)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), o.shape)
    if o.ndim == 0 or o.shape[-1] < 2:
        raise ValueError("srm_check needs the units of at least two variations on the last axis")
    if np.any(w < 0) or np.any(o < 0):
        raise ValueError("units and weights must not be negative")
    total = o.sum(axis=-1, keepdims=True)
    w_total = w.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = w / w_total * total
        terms = np.where(w > 0, (o - e) ** 2 / e, 0.0)
    x2 = np.where(total[..., 0] > 0, terms.sum(axis=-1), 0.0)
    p = np.where(total[..., 0] > 0, special.chdtrc(o.shape[-1] - 1, x2), 1.0)
    return SRMResult(
        chi2=x2, p_value=p, threshold=threshold, flagged=p < threshold, observed=o, expected=e
    )
