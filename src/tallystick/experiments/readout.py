"""An experiment's readout: its metrics per variation against the control, from the lake.

:func:`readout` reads a stored experiment (or a definition), turns its catalog metrics into
experiment metrics (:mod:`~tallystick.experiments.catalog_metrics`), runs one
:class:`~tallystick.experiments.sql.ExperimentQuery` over the exposures from the experiment's
start to its stop (or now), analyses the statistics (:func:`~tallystick.experiments.analysis.
analyze`: the definition's alpha, sequential testing and correction; ``inverse`` from the
catalog's ``direction`` or the experiment's override) and returns a JSON-ready document: the
exposed units per variation, the sample-ratio-mismatch check, the planned sample size and the
progress towards it, per metric and variation the effect with its interval, p-values, chance to
win and a verdict (better / worse / inconclusive, lower-is-better aware), the units newly
exposed per day, and warnings a reader must see before trusting the numbers.

``tally experiments analyze`` prints it and ``GET /v1/experiments/{key}/results`` serves it;
docs/experiments.md (Results) describes every field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from tallystick.experiments.analysis import ExperimentAnalysis, analyze
from tallystick.experiments.catalog_metrics import to_experiment_metric
from tallystick.experiments.definition import Experiment, MetricRef, format_time
from tallystick.experiments.moments import MetricStats, base_moments
from tallystick.experiments.power import sample_size
from tallystick.experiments.sql import EXPOSURE_EVENT, ExperimentData, ExperimentQuery, Metric
from tallystick.experiments.srm import DEFAULT_SRM_THRESHOLD, srm_check
from tallystick.experiments.stats import Status
from tallystick.metrics.catalog import Catalog, MetricDef
from tallystick.metrics.engines import Engine
from tallystick.metrics.params import MetricError

if TYPE_CHECKING:
    from tallystick.control.experiments import StoredExperiment
    from tallystick.control.quarantine import Rule

Verdict = Literal["better", "worse", "inconclusive"]
_PLACEHOLDER_METRIC: Final = "__exposures__"


@dataclass(frozen=True, slots=True)
class _Planned:
    """One experiment metric ready to query, or the reason it cannot be."""

    ref: MetricRef
    definition: MetricDef | None
    metric: Metric | None
    inverse: bool
    error: str | None = None


def _num(x: Any) -> float | None:
    v = float(x)
    return None if math.isnan(v) or math.isinf(v) else v


def _plan(experiment: Experiment, catalog: Catalog) -> list[_Planned]:
    out: list[_Planned] = []
    seen: set[str] = set()
    for ref in experiment.metrics:
        if ref.metric in seen:  # one metric in two roles: analysed once, in its first role
            continue
        seen.add(ref.metric)
        try:
            definition = catalog.find(ref.metric)
        except MetricError as exc:
            out.append(_Planned(ref, None, None, bool(ref.inverse), str(exc)))
            continue
        try:
            metric, inverse = to_experiment_metric(definition, ref)
        except MetricError as exc:
            out.append(_Planned(ref, definition, None, bool(ref.inverse), str(exc)))
            continue
        out.append(_Planned(ref, definition, metric, inverse))
    return out


def window(experiment: Experiment, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime]:
    """The exposures read: from the start (None: not started) to the stop, or ``now``."""
    end = now if experiment.stop is None else min(experiment.stop, now)
    if experiment.start is not None and end < experiment.start:
        end = experiment.start
    return experiment.start, end


def planned_sample_size(
    experiment: Experiment, stats: MetricStats | None, index: int | None
) -> int | None:
    """The definition's planned sample size, else the total units for ``experiment.power``
    at the relative ``mde`` on metric ``index`` (the first primary metric), with the control's
    observed mean and per-unit variance as the baseline (None: no baseline yet)."""
    if experiment.planned_sample_size is not None:
        return experiment.planned_sample_size
    if stats is None or index is None:
        return None
    moments = base_moments(stats[index : index + 1, 0:1])
    mean, variance = float(moments.mean[0, 0]), float(moments.variance[0, 0])
    weights = [w for w in experiment.weights if w > 0]
    if moments.n[0, 0] < 2 or mean == 0 or variance <= 0 or len(weights) < 2:
        return None
    n = float(
        sample_size(
            experiment.mde * abs(mean),
            variance,
            alpha=experiment.alpha,
            power=experiment.power,
            weights=weights,
        )
    )
    return math.ceil(n) if math.isfinite(n) else None


def verdict(effect: float | None, significant: bool, inverse: bool, status: str) -> Verdict:
    """``better`` / ``worse`` for a significant effect in the good / bad direction (lower is
    good when ``inverse``), else ``inconclusive``."""
    if not significant or status != "ok" or effect is None or effect == 0:
        return "inconclusive"
    return "better" if (effect > 0) != inverse else "worse"


def _metric_rows(
    planned: _Planned,
    i: int,
    variations: Sequence[str],
    analysis: ExperimentAnalysis,
    alpha: float,
) -> list[dict[str, Any]]:
    f, b = analysis.frequentist, analysis.bayesian
    rows: list[dict[str, Any]] = [
        {
            "variation": variations[0],
            "control": True,
            "n": int(f.control_n[i, 0]),
            "mean": _num(f.control_mean[i, 0]),
        }
    ]
    for j in range(len(variations) - 1):
        p = _num(f.relative.p_value[i, j])
        p_adj = _num(analysis.p_value_adjusted[i, j])
        status = Status(int(f.status[i, j])).name.lower()
        effect = _num(f.relative.estimate[i, j])
        significant = p_adj is not None and p_adj < alpha and status == "ok"
        rows.append(
            {
                "variation": variations[j + 1],
                "control": False,
                "n": int(f.treatment_n[i, j]),
                "mean": _num(f.treatment_mean[i, j]),
                "effect": effect,
                "ci": [_num(f.relative.ci_low[i, j]), _num(f.relative.ci_high[i, j])],
                "absolute_effect": _num(f.absolute.estimate[i, j]),
                "absolute_ci": [_num(f.absolute.ci_low[i, j]), _num(f.absolute.ci_high[i, j])],
                "p_value": p,
                "p_value_adjusted": p_adj,
                "chance_to_win": _num(b.relative.chance_to_win[i, j]),
                "risk": {
                    "control": _num(b.relative.risk_control[i, j]),
                    "treatment": _num(b.relative.risk_treatment[i, j]),
                },
                "status": status,
                "significant": significant,
                "verdict": verdict(effect, significant, planned.inverse, status),
            }
        )
    return rows


def _share(x: float) -> str:
    return f"{x:.0%}" if x >= 0.1 else f"{x:.1%}"


def _warnings(
    experiment: Experiment,
    data: ExperimentData,
    srm: dict[str, Any],
    planned: int | None,
    exposed: int,
    now: dt.datetime,
    problems: Sequence[_Planned],
) -> list[str]:
    key = experiment.key
    out: list[str] = []
    if experiment.start is None:
        out.append(
            f"the experiment has not started (status {experiment.status}): "
            f"`tally experiments start {key}` starts it; any exposures below come from tests"
        )
    elif experiment.start > now:
        out.append(f"the experiment starts at {format_time(experiment.start)}: nothing to read yet")
    if srm["flagged"]:
        seen = ", ".join(f"{k} {v}" for k, v in srm["observed"].items())
        want = ", ".join(f"{k} {v:.1f}" for k, v in srm["expected"].items())
        out.append(
            f"sample ratio mismatch (p = {srm['p_value']:.2g} < {srm['threshold']:g}): units "
            f"per variation {seen}, expected {want} — something assigns or logs exposures "
            "unevenly, so every effect may be biased; find the cause before reading the results"
        )
    if data.multiple_variations:
        out.append(
            f"{data.multiple_variations} unit(s) were exposed to two or more variations and are "
            "left out — a changed ruleset, or a unit attribute that is not stable (check the "
            "experiment's unit and hash attribute)"
        )
    if data.other_variations:
        out.append(
            f"{data.other_variations} unit(s) were exposed only to variations the experiment "
            "does not list; they are left out"
        )
    if exposed == 0 and (experiment.start is None or experiment.start <= now):
        out.append(
            f"no units exposed yet: units count from their first {EXPOSURE_EVENT} event "
            f"for {key!r} (the SDK logs it when it evaluates the flag {experiment.flag!r})"
        )
    if planned is not None and exposed < planned and not experiment.sequential and exposed:
        out.append(
            f"{exposed} of {planned} planned units exposed ({_share(exposed / planned)}): with a "
            "fixed-horizon test, do not stop or decide before the planned sample size is "
            "reached — peeking inflates false positives (or set sequential: true for "
            "always-valid intervals)"
        )
    for p in problems:
        out.append(f"metric {p.ref.metric} ({p.ref.role}) is left out: {p.error}")
    return out


def readout(
    experiment: StoredExperiment | Experiment,
    catalog: Catalog,
    engine: Engine,
    rules: tuple[Rule, ...] | None = None,
    *,
    now: dt.datetime | None = None,
    hidden: frozenset[str] = frozenset(),
    include_bots: bool = False,
    srm_threshold: float = DEFAULT_SRM_THRESHOLD,
) -> dict[str, Any]:
    """The readout of ``experiment`` (a stored experiment, or a definition: version null) as
    of ``now`` (default: the current time), its metrics from ``catalog``, run on ``engine``.

    Bots (unless ``include_bots``), what the quarantine ``rules`` match (default: the engine's
    rules in force) and the rows of the ``hidden`` streams are left out. A metric the catalog
    lacks, or cannot be computed per unit, is reported (``error`` and a warning) and the rest
    analysed. Raises MetricError (``QueryFailed``) when the engine fails.
    """
    if isinstance(experiment, Experiment):
        e, version = experiment, None
    else:
        e, version = experiment.experiment, experiment.version
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    start, end = window(e, at)
    plans = _plan(e, catalog)
    ok = [p for p in plans if p.metric is not None]
    metrics = tuple(p.metric for p in ok if p.metric is not None)
    placeholder = Metric(_PLACEHOLDER_METRIC, "mean", EXPOSURE_EVENT)
    query = ExperimentQuery(
        e.key,
        tuple(v.key for v in e.variations),
        metrics or (placeholder,),
        unit=e.unit,
        start=start,
        end=end,
        include_bots=include_bots,
    )
    data = _run(query, engine, rules, hidden)
    variations = query.variations
    units = data.units
    srm_result = srm_check(units, e.weights, threshold=srm_threshold)
    srm = {
        "p_value": float(srm_result.p_value),
        "flagged": bool(srm_result.flagged),
        "threshold": srm_threshold,
        "expected": {v: float(x) for v, x in zip(variations, srm_result.expected, strict=True)},
        "observed": {v: int(x) for v, x in zip(variations, units, strict=True)},
    }
    analysis = None
    if metrics:
        analysis = analyze(
            data.stats,
            units=units,
            weights=e.weights,
            alpha=e.alpha,
            sequential_testing=e.sequential,
            inverse=[p.inverse for p in ok],
            correction=e.correction,
            srm_threshold=srm_threshold,
        )
    primary = next((n for n, p in enumerate(ok) if p.ref.role == "primary"), None)
    planned = planned_sample_size(e, data.stats if metrics else None, primary)
    exposed = int(units.sum())
    index = {p.ref.metric: n for n, p in enumerate(ok)}
    metric_docs: list[dict[str, Any]] = []
    for p in plans:
        doc: dict[str, Any] = {
            "metric": p.ref.metric,
            "title": None if p.definition is None else p.definition.title,
            "role": p.ref.role,
            "kind": None if p.metric is None else p.metric.kind,
            "inverse": p.inverse,
        }
        if p.metric is None or analysis is None:
            doc["error"] = p.error
            doc["variations"] = []
        else:
            doc["variations"] = _metric_rows(p, index[p.ref.metric], variations, analysis, e.alpha)
        metric_docs.append(doc)
    problems = [p for p in plans if p.metric is None]
    return {
        "experiment": e.to_dict(),
        "version": version,
        "analysed_at": format_time(at),
        "window": {
            "start": None if start is None else format_time(start),
            "end": format_time(end),
        },
        "unit": e.unit,
        "variations": [
            {
                "key": v.key,
                "name": v.name,
                "weight": w,
                "units": int(n),
                "control": j == 0,
            }
            for j, (v, w, n) in enumerate(zip(e.variations, e.weights, units, strict=True))
        ],
        "multiple_variations": data.multiple_variations,
        "srm": srm,
        "planned_sample_size": planned,
        "progress": None if not planned else exposed / planned,
        "sequential": e.sequential,
        "correction": "none" if e.correction is None else e.correction,
        "alpha": e.alpha,
        "metrics": metric_docs,
        "exposures": [
            {"day": day.isoformat(), **{v: int(c) for v, c in zip(variations, counts, strict=True)}}
            for day, counts in data.daily
        ],
        "warnings": _warnings(e, data, srm, planned, exposed, at, problems),
    }


def _run(
    query: ExperimentQuery,
    engine: Engine,
    rules: tuple[Rule, ...] | None,
    hidden: frozenset[str],
) -> ExperimentData:
    """``query.run``, an engine's error as QueryFailed (as ``metrics.api.run`` does), a file
    replaced under a DuckDB read tried again."""
    from tallystick.metrics.api import guarded

    return guarded(
        lambda: query.run(engine, rules, hidden),
        f"{engine.name} could not run the readout of experiment {query.experiment}",
    )


__all__ = ["planned_sample_size", "readout", "verdict", "window"]
