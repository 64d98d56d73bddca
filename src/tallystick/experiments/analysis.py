"""One experiment's analysis: every metric × treatment against the control, in one pass.

:func:`analyze` takes the metrics' sufficient statistics with the variations on the last axis
(control first), the units per variation and the configured weights, and returns per metric ×
treatment the effect with its interval and p-value (fixed-horizon Welch t, or the always-valid
sequential test), the Bayesian chance to win and risk, the multiple-comparison adjusted
p-values, and the experiment's sample-ratio-mismatch check. :meth:`ExperimentAnalysis.records`
flattens it into a structured numpy array, one row per metric × treatment, for the CLI, HTTP
and dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tallystick.experiments.corrections import Method, adjust_p_values, ci_alpha
from tallystick.experiments.moments import MetricStats
from tallystick.experiments.srm import DEFAULT_SRM_THRESHOLD, SRMResult, srm_check
from tallystick.experiments.stats import (
    DEFAULT_SEQUENTIAL_TUNING,
    Comparison,
    Effect,
    GaussianPrior,
    Status,
    bayesian,
    frequentist,
    sequential,
)

Scale = Literal["relative", "absolute"]

RECORD_DTYPE = np.dtype(
    [
        ("metric", np.int64),
        ("variation", np.int64),
        ("control_n", np.float64),
        ("treatment_n", np.float64),
        ("control_mean", np.float64),
        ("treatment_mean", np.float64),
        ("effect", np.float64),
        ("ci_low", np.float64),
        ("ci_high", np.float64),
        ("alpha", np.float64),
        ("p_value", np.float64),
        ("p_value_adjusted", np.float64),
        ("chance_to_win", np.float64),
        ("risk_control", np.float64),
        ("risk_treatment", np.float64),
        ("status", np.int8),
        ("srm_p_value", np.float64),
        ("srm_flagged", np.bool_),
    ]
)


@dataclass(frozen=True, slots=True)
class ExperimentAnalysis:
    """Results of shape ``(metrics, variations − 1)``; ``srm`` is per experiment."""

    scale: Scale
    frequentist: Comparison
    bayesian: Comparison
    p_value_adjusted: NDArray[np.float64]
    correction: Method | None
    srm: SRMResult

    def effect(self, comparison: Comparison) -> Effect:
        return comparison.relative if self.scale == "relative" else comparison.absolute

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready rows (see :func:`rows`)."""
        return rows(self)

    def records(self) -> NDArray[np.void]:
        """One row per metric × treatment (variation numbers from 1), as a structured array."""
        f, b = self.effect(self.frequentist), self.effect(self.bayesian)
        m, v = f.estimate.shape
        out = np.empty(m * v, dtype=RECORD_DTYPE)
        grid_m, grid_v = np.meshgrid(np.arange(m), np.arange(1, v + 1), indexing="ij")
        out["metric"], out["variation"] = grid_m.ravel(), grid_v.ravel()
        c = self.frequentist
        out["control_n"], out["treatment_n"] = c.control_n.ravel(), c.treatment_n.ravel()
        out["control_mean"] = c.control_mean.ravel()
        out["treatment_mean"] = c.treatment_mean.ravel()
        out["effect"], out["ci_low"], out["ci_high"] = (
            f.estimate.ravel(),
            f.ci_low.ravel(),
            f.ci_high.ravel(),
        )
        out["alpha"] = c.alpha.ravel()
        out["p_value"], out["p_value_adjusted"] = f.p_value.ravel(), self.p_value_adjusted.ravel()
        out["chance_to_win"] = b.chance_to_win.ravel()
        out["risk_control"], out["risk_treatment"] = (
            b.risk_control.ravel(),
            b.risk_treatment.ravel(),
        )
        out["status"] = c.status.ravel()
        out["srm_p_value"] = float(np.asarray(self.srm.p_value).reshape(-1)[0])
        out["srm_flagged"] = bool(np.asarray(self.srm.flagged).reshape(-1)[0])
        return out


def _num(x: Any) -> float | None:
    v = float(x)
    return None if np.isnan(v) else v


def rows(analysis: ExperimentAnalysis) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN → None), one per metric × treatment, with the issue's field names:
    ``effect``, ``ci`` ([low, high]), ``p_value``, ``chance_to_win``, ``risk`` and ``srm``."""
    out = []
    for r in analysis.records():
        out.append(
            {
                "metric": int(r["metric"]),
                "variation": int(r["variation"]),
                "scale": analysis.scale,
                "method": analysis.frequentist.method,
                "control": {"n": _num(r["control_n"]), "mean": _num(r["control_mean"])},
                "treatment": {"n": _num(r["treatment_n"]), "mean": _num(r["treatment_mean"])},
                "effect": _num(r["effect"]),
                "ci": [_num(r["ci_low"]), _num(r["ci_high"])],
                "alpha": _num(r["alpha"]),
                "p_value": _num(r["p_value"]),
                "p_value_adjusted": _num(r["p_value_adjusted"]),
                "correction": analysis.correction,
                "chance_to_win": _num(r["chance_to_win"]),
                "risk": {
                    "control": _num(r["risk_control"]),
                    "treatment": _num(r["risk_treatment"]),
                },
                "status": Status(int(r["status"])).name.lower(),
                "srm": {
                    "p_value": _num(r["srm_p_value"]),
                    "flagged": bool(r["srm_flagged"]),
                    "threshold": analysis.srm.threshold,
                },
            }
        )
    return out


def analyze(
    stats: MetricStats,
    units: ArrayLike,
    weights: ArrayLike,
    *,
    alpha: float = 0.05,
    scale: Scale = "relative",
    sequential_testing: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
    cuped: bool = True,
    prior: GaussianPrior | None = None,
    inverse: ArrayLike = False,
    correction: Method | None = "holm",
    adjust_intervals: bool = False,
    srm_threshold: float = DEFAULT_SRM_THRESHOLD,
) -> ExperimentAnalysis:
    """Analyse every metric (axis 0 of ``stats``) and treatment (axis 1, from 1) vs control (0).

    ``units`` are the exposed units per variation (shape ``(variations,)``) for the SRM check,
    ``weights`` the configured split. ``inverse`` (per metric, shape ``(metrics,)`` or scalar)
    marks metrics where lower is better (bounce rate). The correction runs over the family of
    all metric × treatment p-values on the chosen ``scale``; with ``adjust_intervals`` the
    frequentist intervals are recomputed at :func:`ci_alpha`'s level.
    """
    if len(stats.shape) != 2 or stats.shape[1] < 2:
        raise ValueError("stats: shape (metrics, variations) with the control first")
    control, treatment = stats[:, :1], stats[:, 1:]
    shape = treatment.shape
    control = control[:, np.zeros(shape[1], dtype=np.intp)]
    inv = np.broadcast_to(np.asarray(inverse, dtype=np.bool_).reshape(-1, 1), shape)

    def run(level: ArrayLike) -> Comparison:
        if sequential_testing:
            return sequential(
                control, treatment, alpha=level, tuning=sequential_tuning, cuped=cuped
            )
        return frequentist(control, treatment, alpha=level, cuped=cuped)

    freq = run(alpha)
    p = (freq.relative if scale == "relative" else freq.absolute).p_value
    if correction is None:
        p_adj = p.copy()
    else:
        flat = p.reshape(1, -1)
        p_adj = adjust_p_values(flat, correction).reshape(shape)
        if adjust_intervals:
            freq = run(
                np.broadcast_to(ci_alpha(flat, correction, alpha), (1, p.size)).reshape(shape)
            )
    bayes = bayesian(control, treatment, alpha=alpha, prior=prior, inverse=inv, cuped=cuped)
    srm = srm_check(units, weights, threshold=srm_threshold)
    return ExperimentAnalysis(scale, freq, bayes, p_adj, correction, srm)
