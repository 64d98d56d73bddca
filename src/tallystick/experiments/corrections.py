"""Multiple-comparison corrections over a family of p-values, vectorised along the last axis.

- **Holm** (step-down Bonferroni) controls the family-wise error rate: the probability of any
  false positive among the family. Adjusted ``p̃_(i) = max_{j≤i} min(1, (m − j + 1)·p_(j))``.
- **Benjamini–Hochberg** controls the false discovery rate: the expected share of false
  positives among the significant results. Adjusted ``p̃_(i) = min_{j≥i} min(1, m·p_(j)/j)``.

Both match statsmodels' ``multipletests(method="holm" | "fdr_bh")``. NaN p-values (undefined
comparisons) are left out of the family and stay NaN.

Intervals: :func:`ci_alpha` gives the level at which to recompute the confidence intervals so
they agree with the correction — Bonferroni ``α/m`` for Holm (simultaneous intervals; Holm has
no exact interval counterpart, so these are slightly conservative), and the
Benjamini–Yekutieli false-coverage-rate level ``R·α/m`` for BH (``R`` = number of rejections;
``α/m`` when nothing is rejected).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from tallystick.experiments.moments import FloatArray

Method = Literal["holm", "bh"]


def adjust_p_values(p_values: ArrayLike, method: Method) -> FloatArray:
    """Adjusted p-values (same shape); families are the slices along the last axis."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim == 0:
        return p.copy()
    nan = np.isnan(p)
    m = (~nan).sum(axis=-1, keepdims=True).astype(np.float64)
    filled = np.where(nan, np.inf, p)  # NaN sorts last as +inf
    order = np.argsort(filled, axis=-1, kind="stable")
    ps = np.take_along_axis(filled, order, axis=-1)
    rank = np.arange(1, p.shape[-1] + 1, dtype=np.float64)
    if method == "holm":
        with np.errstate(invalid="ignore"):
            scaled = np.minimum((m - rank + 1) * ps, 1.0)
        scaled = np.where(np.isinf(ps), -np.inf, scaled)
        adj = np.maximum.accumulate(scaled, axis=-1)
    elif method == "bh":
        with np.errstate(invalid="ignore"):
            scaled = np.minimum(m * ps / rank, 1.0)
        scaled = np.where(np.isinf(ps), np.inf, scaled)
        adj = np.flip(np.minimum.accumulate(np.flip(scaled, axis=-1), axis=-1), axis=-1)
    else:
        raise ValueError(f"unknown correction {method!r}: use 'holm' or 'bh'")
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    return np.where(nan, np.nan, out)


def ci_alpha(p_values: ArrayLike, method: Method, alpha: float = 0.05) -> FloatArray:
    """Per-family level for intervals consistent with the correction (shape ``(..., 1)``).

    Pass the result as ``alpha=`` to :func:`tallystick.experiments.stats.frequentist` (it
    broadcasts over the family's comparisons).
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = np.maximum((~np.isnan(p)).sum(axis=-1, keepdims=True), 1).astype(np.float64)
    if method == "holm":
        return np.asarray(alpha / m)
    if method == "bh":
        rejected = (adjust_p_values(p, "bh") <= alpha).sum(axis=-1, keepdims=True)
        return np.asarray(np.maximum(rejected, 1) * alpha / m)
    raise ValueError(f"unknown correction {method!r}: use 'holm' or 'bh'")
