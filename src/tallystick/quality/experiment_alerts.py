"""Alert rules of running experiments: a sample-ratio mismatch, a guardrail made worse.

An experiment's definition lists its rules (``alerts``; both by default, see
``experiments.definition.ExperimentAlert``):

- ``experiment_srm`` fires when the readout's sample-ratio check is flagged (p below its
  threshold, 0.001) once ``min_units`` units are exposed;
- ``experiment_guardrail`` — one rule per guardrail metric and treatment — fires when that
  metric's verdict in that treatment is ``worse`` (significant in the bad direction, lower is
  better when the metric says so) once ``min_units`` units are exposed.

Each evaluation reads **one readout per running experiment** (``experiments.readout``, on
DuckDB over the lake, with the quarantine rules in force, with always-valid sequential
intervals so that evaluating often is no peeking: :func:`always_valid`), shared by its rules;
the verdicts below are pure. The runs are ``quality.alerts.AlertRun`` like the streams' rules,
recorded in ``alert_runs`` under the subject ``experiment:KEY`` (the ``stream`` column), so the same
machinery announces a change only (``fired``, ``resolved``), delivers it to the log and the
webhook and keeps the history.

A readout that fails (an engine error, a lake it cannot read) does not stop the evaluation: it
is logged, and the experiment's rules are recorded as ``not evaluated`` **keeping the state they
had** — a failure neither announces nor resolves anything. A rule that was firing and is no
longer evaluated (the experiment stopped or was deleted, the rule, guardrail or variation left
its definition) is recorded once as quiet, saying why, which resolves it.
"""

from __future__ import annotations

import logging
import math
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from tallystick.quality.alert_rules import Verdict

if TYPE_CHECKING:
    import datetime as dt

    from tallystick.control.experiments import StoredExperiment
    from tallystick.control.quarantine import Rule
    from tallystick.experiments.definition import Experiment, ExperimentAlert
    from tallystick.metrics.catalog import Catalog
    from tallystick.metrics.engines import Engine
    from tallystick.quality.alerts import AlertRun

log = logging.getLogger("tallystick.alerts")

SUBJECT_PREFIX: Final = "experiment:"
"""An experiment's rules are recorded with ``stream`` = ``experiment:KEY`` (no stream name has a
colon, so the two never meet)."""
SRM: Final = "experiment_srm"
GUARDRAIL: Final = "experiment_guardrail"


def subject(key: str) -> str:
    """What identifies experiment ``key``'s rules in the history (``experiment:KEY``)."""
    return SUBJECT_PREFIX + key


def experiment_of(stream: str) -> str | None:
    """The experiment key of a recorded run's subject, or ``None`` for a stream's run."""
    return stream[len(SUBJECT_PREFIX) :] if stream.startswith(SUBJECT_PREFIX) else None


def link(key: str) -> str:
    """The dashboard's page of experiment ``key`` (a path on the server)."""
    return "/experiments?" + urllib.parse.urlencode({"key": key})


@dataclass(frozen=True, slots=True)
class Watch:
    """One rule watching one experiment: SRM, or a guardrail metric in one treatment."""

    alert: ExperimentAlert
    metric: str | None = None
    variation: str | None = None

    @property
    def label(self) -> str:
        """``experiment_srm``, ``experiment_guardrail(signin_latency, b)``: what names the rule
        within its experiment across evaluations."""
        if self.metric is None:
            return self.alert.rule
        return f"{self.alert.rule}({self.metric}, {self.variation})"[:200]

    def spec(self, key: str) -> dict[str, Any]:
        """The rule's settings as recorded (and POSTed), with what it watches."""
        out = {**self.alert.as_dict(), "experiment": key}
        if self.metric is not None:
            out |= {"metric": self.metric, "variation": self.variation}
        return out


def watches(experiment: Experiment) -> list[Watch]:
    """The rules of ``experiment``'s definition: SRM once, a guardrail rule per guardrail
    metric and treatment (every variation but the control)."""
    out: list[Watch] = []
    for alert in experiment.alerts:
        if alert.rule == SRM:
            out.append(Watch(alert))
        elif alert.rule == GUARDRAIL:
            out.extend(
                Watch(alert, metric, v.key)
                for metric in experiment.metric_names("guardrail")
                for v in experiment.variations[1:]
            )
    return out


def watched(experiment: Experiment, at: dt.datetime) -> bool:
    """Whether ``experiment``'s rules are evaluated at ``at``: it is running and has started."""
    return experiment.status == "running" and (experiment.start is None or experiment.start <= at)


# -- verdicts (pure: a readout document in, a verdict out) -----------------------------------------


def _percent(x: float) -> str:
    return f"{x * 100:+.3g} %"


def _p(p: float) -> str:
    return f"{p:.2g}"


def _exposed(doc: Mapping[str, Any]) -> int:
    return sum(int(n) for n in doc["srm"]["observed"].values())


def _too_few(watch: Watch, exposed: int) -> Verdict | None:
    least = watch.alert.min_units
    if exposed >= least:
        return None
    return Verdict(
        False,
        None,
        None,
        f"only {exposed:,} units exposed: too few to judge (min_units {least:,})",
    )


def judge_srm(watch: Watch, doc: Mapping[str, Any]) -> Verdict:
    """Fires when the readout's SRM check is flagged and ``min_units`` units are exposed.
    ``value`` is the p-value, ``expected`` the threshold it is held against."""
    srm = doc["srm"]
    few = _too_few(watch, _exposed(doc))
    p, threshold = float(srm["p_value"]), float(srm["threshold"])
    if few is not None:
        return Verdict(False, p, threshold, few.message)
    seen = ", ".join(f"{k} {v:,}" for k, v in srm["observed"].items())
    want = ", ".join(f"{k} {v:,.1f}" for k, v in srm["expected"].items())
    split = f"units per variation {seen}; expected {want}"
    if not srm["flagged"]:
        return Verdict(False, p, threshold, f"{split}: as planned (p = {_p(p)} ≥ {threshold:g})")
    key = doc["experiment"]["key"]
    return Verdict(
        True,
        p,
        threshold,
        f"sample ratio mismatch in experiment {key}: {split} (p = {_p(p)} < {threshold:g}) — "
        "something assigns or logs exposures unevenly, so every effect may be biased; find the "
        f"cause before reading the results: {link(key)}",
    )


def _metric(doc: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return next((m for m in doc["metrics"] if m["metric"] == name), None)


def judge_guardrail(watch: Watch, doc: Mapping[str, Any]) -> Verdict:
    """Fires when the guardrail metric's verdict in the treatment is ``worse`` and
    ``min_units`` units are exposed. ``value`` is the relative effect (treatment vs control);
    ``expected`` is ``None`` (the verdict holds the interval against no change)."""
    metric = _metric(doc, watch.metric)
    if metric is None or metric.get("error"):
        why = "it is not in the readout" if metric is None else metric["error"]
        return Verdict(
            False, None, None, f"not evaluated: metric {watch.metric} is left out: {why}"
        )
    rows = metric["variations"]
    row = next((r for r in rows if r["variation"] == watch.variation and not r["control"]), None)
    if row is None:
        return Verdict(
            False, None, None, f"not evaluated: no variation {watch.variation} in the readout"
        )
    control = next(r for r in rows if r["control"])
    effect = row["effect"]
    value = None if effect is None or not math.isfinite(effect) else float(effect)
    few = _too_few(watch, _exposed(doc))
    if few is not None:
        return Verdict(False, value, None, few.message)
    title = f"guardrail {watch.metric}"
    if metric.get("title"):
        title += f" ({metric['title']}"
        title += "; lower is better)" if metric.get("inverse") else ")"
    elif metric.get("inverse"):
        title += " (lower is better)"
    low, high = row["ci"]
    if value is None:
        shown = "no effect estimate"
    else:
        interval = "" if low is None or high is None else f" [{_percent(low)}, {_percent(high)}]"
        shown = f"{_percent(value)}{interval}"
    p, p_adj = row["p_value"], row["p_value_adjusted"]
    odds = "p not computed" if p is None else f"p = {_p(p)}"
    if p_adj is not None and p is not None and p_adj != p:
        odds += f", {doc.get('correction')}-adjusted {_p(p_adj)}"
    units = f"{row['n']:,} vs {control['n']:,} units"
    status = "" if row["status"] == "ok" else f"; status {row['status']}"
    vs = f"in {watch.variation} against the control {control['variation']}"
    if row["verdict"] != "worse":
        return Verdict(
            False,
            value,
            None,
            f"{title} {vs}: {shown} ({odds}; {units}{status}): {row['verdict']}",
        )
    key = doc["experiment"]["key"]
    return Verdict(
        True,
        value,
        None,
        f"{title} is worse {vs} in experiment {key}: {shown} relative, always-valid ({odds}; alpha "
        f"{doc['alpha']:g}; {units}) — consider stopping the experiment: {link(key)}",
    )


def judge(watch: Watch, doc: Mapping[str, Any]) -> Verdict:
    if watch.alert.rule == SRM:
        return judge_srm(watch, doc)
    return judge_guardrail(watch, doc)


# -- evaluating -----------------------------------------------------------------------------------


def always_valid(item: StoredExperiment) -> StoredExperiment:
    """The experiment as the alert rules read it: with sequential (always-valid) intervals,
    whatever its own test. The rules look at every evaluation — with a fixed-horizon test each
    look would be a peek, and a guardrail with no real effect would fire by chance sooner or
    later; always-valid intervals keep the chance of a false alarm at alpha however often they
    are read. (The SRM check does not depend on the test.)"""
    e = item.experiment
    if e.sequential:
        return item
    return replace(item, experiment=replace(e, sequential=True))


def evaluate(
    experiments: Iterable[StoredExperiment],
    catalog: Catalog,
    engine: Engine,
    at: dt.datetime,
    *,
    rules: tuple[Rule, ...] | None = None,
    previous: Mapping[tuple[str, str], AlertRun] | None = None,
    scope: Sequence[str] | None = None,
) -> list[AlertRun]:
    """The alert rules of every running experiment among ``experiments`` judged at ``at``: one
    readout each (metrics from ``catalog``, on ``engine``, leaving out what the quarantine
    ``rules`` match; ``None``: the engine's). Nothing recorded, nothing delivered.

    ``previous`` (each rule's latest run, ``quality.alerts.current``) gives a failed readout's
    rules their state, and resolves the rules that were firing and are no longer evaluated —
    of every experiment, or of the experiment keys in ``scope``.
    """
    from tallystick.experiments.readout import readout
    from tallystick.quality.alerts import AlertRun

    before = previous or {}
    stored = list(experiments)
    runs: list[AlertRun] = []
    for item in stored:
        e = item.experiment
        chosen = watches(e) if watched(e, at) else []
        if not chosen:
            continue
        name = subject(e.key)
        try:
            doc = readout(always_valid(item), catalog, engine, rules, now=at)
        except Exception as exc:  # logged and recorded; the other experiments go on
            from tallystick.metrics.params import MetricError

            log.error(
                "experiment %s: the readout failed (%s: %s); its alert rules keep their state",
                e.key,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, MetricError),  # an unexpected one with its story
            )
            for w in chosen:
                last = before.get((name, w.label))
                runs.append(
                    AlertRun(
                        at,
                        name,
                        w.alert.rule,
                        w.label,
                        w.spec(e.key),
                        False if last is None else last.fired,
                        None,
                        None,
                        f"not evaluated: the readout failed ({type(exc).__name__}: {exc})",
                    )
                )
            continue
        for w in chosen:
            verdict = judge(w, doc)
            runs.append(
                AlertRun(
                    at,
                    name,
                    w.alert.rule,
                    w.label,
                    w.spec(e.key),
                    verdict.fired,
                    verdict.value,
                    verdict.expected,
                    verdict.message,
                )
            )
    runs.extend(_gone(stored, runs, before, at, scope))
    return runs


def _gone(
    stored: Sequence[StoredExperiment],
    runs: Sequence[AlertRun],
    previous: Mapping[tuple[str, str], AlertRun],
    at: dt.datetime,
    scope: Sequence[str] | None,
) -> list[AlertRun]:
    """A quiet run, saying why, for each experiment rule that was firing and is not evaluated
    now: it resolves (once; after that its latest run is quiet)."""
    import dataclasses

    by_key = {s.key: s.experiment for s in stored}
    done = {r.key for r in runs}
    out = []
    for (name, label), last in sorted(previous.items()):
        key = experiment_of(name)
        if key is None or not last.fired or (name, label) in done:
            continue
        if scope is not None and key not in scope:
            continue
        e = by_key.get(key)
        if e is None:
            why = "the experiment was deleted"
        elif e.status != "running":
            why = f"the experiment is {e.status}"
        elif not watched(e, at):
            why = "the experiment has not started"
        elif all(a.rule != last.rule for a in e.alerts):
            why = f"the rule {last.rule} was removed from the experiment's alerts"
        else:
            why = "the experiment no longer has this guardrail metric or variation"
        out.append(
            dataclasses.replace(
                last,
                at=at,
                fired=False,
                value=None,
                expected=None,
                message=f"not evaluated: {why}",
                delivery=None,
                id=None,
            )
        )
    return out


__all__ = [
    "GUARDRAIL",
    "SRM",
    "SUBJECT_PREFIX",
    "Watch",
    "evaluate",
    "experiment_of",
    "judge",
    "judge_guardrail",
    "judge_srm",
    "link",
    "subject",
    "watched",
    "watches",
]
