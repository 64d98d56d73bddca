"""The experiment statistics engine: pure, vectorised functions over sufficient statistics.

See docs/experiment-statistics.md for the methods, their formulas and when to use each.
"""

from tallystick.experiments.analysis import ExperimentAnalysis, analyze
from tallystick.experiments.corrections import adjust_p_values, ci_alpha
from tallystick.experiments.definition import (
    Experiment,
    ExperimentError,
    MetricRef,
    Variation,
    parse_experiment,
)
from tallystick.experiments.moments import MetricStats, cuped_theta
from tallystick.experiments.power import (
    binomial_variance,
    minimum_detectable_effect,
    power,
    sample_size,
)
from tallystick.experiments.srm import SRMResult, srm_check
from tallystick.experiments.stats import (
    Comparison,
    Effect,
    GaussianPrior,
    Status,
    bayesian,
    frequentist,
    sequential,
)

__all__ = [
    "Comparison",
    "Effect",
    "Experiment",
    "ExperimentAnalysis",
    "ExperimentError",
    "GaussianPrior",
    "MetricRef",
    "MetricStats",
    "SRMResult",
    "Status",
    "Variation",
    "adjust_p_values",
    "analyze",
    "bayesian",
    "binomial_variance",
    "ci_alpha",
    "cuped_theta",
    "frequentist",
    "minimum_detectable_effect",
    "parse_experiment",
    "power",
    "sample_size",
    "sequential",
    "srm_check",
]
