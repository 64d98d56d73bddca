"""Seeded raw-data cases for the statistics tests: per-unit values, and their sufficient stats.

Each case is one metric in a control and a treatment: mean (log-normal revenue-like values),
binomial (conversions), ratio (bounced sessions / sessions per user) and the CUPED variants
(a pre-exposure covariate correlated with the metric). The tests feed the same numbers to
Tallystick's engine (as sufficient statistics) and to the reference implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tallystick.experiments import MetricStats

Kind = Literal["mean", "binomial", "ratio", "cuped_mean", "cuped_binomial"]
KINDS: tuple[Kind, ...] = ("mean", "binomial", "ratio", "cuped_mean", "cuped_binomial")
F = NDArray[np.float64]


@dataclass(frozen=True)
class Arm:
    """One variation's per-unit values: metric ``y``, denominator ``d``, covariate ``x``."""

    y: F
    d: F | None
    x: F | None

    @property
    def n(self) -> int:
        return int(self.y.size)


@dataclass(frozen=True)
class Case:
    kind: Kind
    control: Arm
    treatment: Arm

    @property
    def binomial(self) -> bool:
        return self.kind in ("binomial", "cuped_binomial")


def make_arm(rng: np.random.Generator, kind: Kind, n: int, lift: float) -> Arm:
    if kind == "mean":
        return Arm(rng.lognormal(1.0, 0.8, n) * (1 + lift), None, None)
    if kind == "binomial":
        return Arm((rng.random(n) < 0.12 * (1 + lift)).astype(np.float64), None, None)
    if kind == "ratio":  # sessions per user, bounced sessions among them
        d = 1.0 + rng.poisson(2.0, n)
        y = rng.binomial(d.astype(np.int64), min(0.4 * (1 + lift), 0.95)).astype(np.float64)
        return Arm(y, d.astype(np.float64), None)
    if kind == "cuped_mean":
        x = rng.lognormal(1.0, 0.6, n)
        y = 0.8 * x + rng.normal(0.0, 1.0, n) + 1 + lift
        return Arm(y, None, x)
    # cuped_binomial: converted before exposure makes conversion after it likelier
    x = (rng.random(n) < 0.3).astype(np.float64)
    y = (rng.random(n) < np.where(x > 0, 0.35, 0.08) * (1 + lift)).astype(np.float64)
    return Arm(y, None, x)


def make_case(rng: np.random.Generator, kind: Kind) -> Case:
    n_a, n_b = (int(v) for v in rng.integers(40, 4000, 2))
    lift = float(rng.choice([0.0, 0.03, -0.05, 0.1]))
    return Case(kind, make_arm(rng, kind, n_a, 0.0), make_arm(rng, kind, n_b, lift))


def make_cases(seed: int, per_kind: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [make_case(rng, kind) for kind in KINDS for _ in range(per_kind)]


def arm_stats(arm: Arm, binomial: bool) -> dict[str, float]:
    """The sufficient statistics of one arm, named as gbstats' SQL columns."""
    out = {"n": float(arm.n), "sum": float(arm.y.sum()), "sum_squares": float(arm.y @ arm.y)}
    if arm.d is not None:
        out["denominator_sum"] = float(arm.d.sum())
        out["denominator_sum_squares"] = float(arm.d @ arm.d)
        out["main_denominator_sum_product"] = float(arm.y @ arm.d)
    if arm.x is not None:
        out["covariate_sum"] = float(arm.x.sum())
        out["covariate_sum_squares"] = float(arm.x @ arm.x)
        out["main_covariate_sum_product"] = float(arm.y @ arm.x)
    return out


def batch(cases: list[Case], *, binomial_as_mean: bool = False) -> tuple[MetricStats, MetricStats]:
    """Control and treatment statistics of all cases as one batch (shape ``(len(cases),)``).

    ``binomial_as_mean`` treats 0/1 metrics with the sample variance (n − 1), as the references
    that know no proportion statistic do.
    """
    out = []
    for side in ("control", "treatment"):
        rows = [arm_stats(getattr(c, side), c.binomial) for c in cases]
        cols = {
            k: np.array([r.get(k, np.nan) for r in rows])
            for k in (
                "n",
                "sum",
                "sum_squares",
                "denominator_sum",
                "denominator_sum_squares",
                "main_denominator_sum_product",
                "covariate_sum",
                "covariate_sum_squares",
                "main_covariate_sum_product",
            )
        }
        binomial = np.array([c.binomial and not binomial_as_mean for c in cases])
        cov_bin = np.array([c.kind == "cuped_binomial" and not binomial_as_mean for c in cases])
        out.append(
            MetricStats.of(
                cols["n"],
                cols["sum"],
                cols["sum_squares"],
                binomial=binomial,
                denominator_sum=cols["denominator_sum"],
                denominator_sum_squares=cols["denominator_sum_squares"],
                main_denominator_sum_product=cols["main_denominator_sum_product"],
                covariate_sum=cols["covariate_sum"],
                covariate_sum_squares=cols["covariate_sum_squares"],
                main_covariate_sum_product=cols["main_covariate_sum_product"],
                covariate_binomial=cov_bin,
            )
        )
    return out[0], out[1]
