"""Experiment definitions: the document a team writes (YAML or JSON), validated and normalised.

An experiment names its hypothesis, owner, unit of randomisation, variations and their weights,
the flag whose *experiment rule* serves it (see ``docs/flags.md``) and the catalog metrics it is
judged on (primary, secondary, guardrails), with the design of its analysis (minimum detectable
effect, alpha, power, sequential testing, multiple-comparison correction)::

    key: signin-dialog
    hypothesis: Pre-filling the e-mail from the institution's SSO lowers the bounce rate
    owner: ux-lead@research-portal.eu
    unit: user.anonymous_id
    variations: [{key: a, name: "Control: empty e-mail field"}, {key: b, name: Pre-filled}]
    metrics: {primary: [bounce_rate], guardrails: [signin_latency]}

:func:`parse_experiment` validates a document (raising :class:`ExperimentError` naming the
field), :meth:`Experiment.to_dict` gives the normalised document back (``parse_experiment(
e.to_dict()) == e``) and :meth:`Experiment.flag_rule` the flags experiment rule that assigns its
units (GrowthBook-compatible hashing, seed = the experiment's key). This module is pure: the
control plane (:mod:`tallystick.control.experiments`) stores definitions and writes the rule into
the flags ruleset when an experiment starts. See ``docs/experiments.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

from tallystick.flags.conditions import check_json, parse_condition
from tallystick.flags.errors import RulesetError
from tallystick.flags.evaluate import _name

__all__ = [
    "ALERT_RULES",
    "CORRECTIONS",
    "DEFAULT_ALERTS",
    "METRIC_KINDS",
    "ROLES",
    "STATUSES",
    "UNITS",
    "UNIT_ALIASES",
    "Experiment",
    "ExperimentAlert",
    "ExperimentError",
    "MetricRef",
    "Role",
    "Status",
    "Unit",
    "Variation",
    "parse_experiment",
    "rule_id",
]

Unit: TypeAlias = Literal["user.id", "user.anonymous_id", "session.id"]
Status: TypeAlias = Literal["draft", "running", "stopped"]
Role: TypeAlias = Literal["primary", "secondary", "guardrail"]
Correction: TypeAlias = Literal["holm", "bh"]

UNITS: Final[tuple[Unit, ...]] = ("user.id", "user.anonymous_id", "session.id")
UNIT_ALIASES: Final[dict[str, Unit]] = {
    "user": "user.id",
    "device": "user.anonymous_id",
    "session": "session.id",
}
#: the unit → the attribute the flags engine hashes (the SDK's unit attributes)
HASH_ATTRIBUTES: Final[dict[Unit, str]] = {
    "user.id": "id",
    "user.anonymous_id": "anonymous_id",
    "session.id": "session_id",
}
STATUSES: Final[tuple[Status, ...]] = ("draft", "running", "stopped")
ROLES: Final[tuple[Role, ...]] = ("primary", "secondary", "guardrail")
#: the ``metrics`` mapping's keys, in order, and the role of their metrics
METRIC_SECTIONS: Final[dict[str, Role]] = {
    "primary": "primary",
    "secondary": "secondary",
    "guardrails": "guardrail",
}
METRIC_KINDS: Final = ("conversion", "mean", "ratio")
CORRECTIONS: Final = ("holm", "bh", "none")
#: a catalog metric's name (``tallystick.metrics.catalog``)
_METRIC_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
RULE_PREFIX: Final = "experiment-"
#: the longest key whose rule id (``experiment-KEY``) is still a valid flags rule id
MAX_KEY_LENGTH: Final = 200 - len(RULE_PREFIX)
WEIGHT_TOLERANCE: Final = 1e-6

_FIELDS: Final = (
    "key", "name", "hypothesis", "owner", "teams", "flag", "environment", "unit", "variations",
    "weights", "coverage", "targeting", "namespace", "status", "start", "stop", "metrics", "mde",
    "alpha", "power", "planned_sample_size", "sequential", "correction", "alerts",
)  # fmt: skip
#: the alert rules an experiment can have (``quality.experiment_alerts``)
ALERT_RULES: Final = ("experiment_srm", "experiment_guardrail")
#: exposed units (all variations) below which an alert rule stays quiet: too few to judge
DEFAULT_ALERT_MIN_UNITS: Final = 100


class ExperimentError(ValueError):
    """An invalid experiment definition: ``path`` names the field (``variations[1].key``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True, slots=True)
class Variation:
    key: str
    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class MetricRef:
    """A catalog metric the experiment is judged on, with optional overrides of its analysis."""

    metric: str
    role: Role
    kind: str | None = None
    inverse: bool | None = None
    cuped_days: int | None = None

    def to_value(self) -> str | dict[str, Any]:
        """The metric's item in the document: its name, or a mapping when it has overrides."""
        if self.kind is None and self.inverse is None and self.cuped_days is None:
            return self.metric
        d: dict[str, Any] = {"metric": self.metric}
        if self.kind is not None:
            d["kind"] = self.kind
        if self.inverse is not None:
            d["inverse"] = self.inverse
        if self.cuped_days is not None:
            d["cuped_days"] = self.cuped_days
        return d


@dataclass(frozen=True, slots=True)
class ExperimentAlert:
    """An alert rule watching a running experiment (``quality.experiment_alerts``):
    ``experiment_srm`` fires when the readout's sample-ratio check is flagged,
    ``experiment_guardrail`` when a guardrail metric's verdict is ``worse`` in a treatment; both
    only once ``min_units`` units (all variations) are exposed."""

    rule: str
    min_units: int = DEFAULT_ALERT_MIN_UNITS

    def as_dict(self) -> dict[str, Any]:
        """Every setting written out: what is stored is what is evaluated."""
        return {"rule": self.rule, "min_units": self.min_units}


#: the alerts of a definition that does not list any: both rules, with their defaults
DEFAULT_ALERTS: Final = tuple(ExperimentAlert(rule) for rule in ALERT_RULES)


def rule_id(key: str) -> str:
    """The id of the flags rule that serves experiment ``key``."""
    return RULE_PREFIX + key


def format_time(t: dt.datetime) -> str:
    """``2026-10-01T09:30:00Z`` (UTC, microseconds only when there are any)."""
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Experiment:
    key: str
    name: str
    hypothesis: str
    owner: str
    teams: tuple[str, ...]
    flag: str
    environment: str
    unit: Unit
    variations: tuple[Variation, ...]
    weights: tuple[float, ...]
    coverage: float
    targeting: dict[str, Any] | None
    namespace: tuple[str, float, float] | None
    status: Status
    start: dt.datetime | None
    stop: dt.datetime | None
    #: primary first, then secondary, then guardrails (document order within each)
    metrics: tuple[MetricRef, ...]
    mde: float
    alpha: float
    power: float
    planned_sample_size: int | None
    sequential: bool
    correction: Correction | None
    #: the alert rules watching it while it runs (``alerts: []``: none)
    alerts: tuple[ExperimentAlert, ...] = DEFAULT_ALERTS

    def to_dict(self) -> dict[str, Any]:
        """The normalised document (JSON-ready): ``parse_experiment(e.to_dict()) == e``."""
        metrics: dict[str, list[str | dict[str, Any]]] = {}
        for section, role in METRIC_SECTIONS.items():
            items = [m.to_value() for m in self.metrics if m.role == role]
            if items or section == "primary":
                metrics[section] = items
        return {
            "key": self.key,
            "name": self.name,
            "hypothesis": self.hypothesis,
            "owner": self.owner,
            "teams": list(self.teams),
            "flag": self.flag,
            "environment": self.environment,
            "unit": self.unit,
            "variations": [
                {"key": v.key, "name": v.name, "value": v.value} for v in self.variations
            ],
            "weights": list(self.weights),
            "coverage": self.coverage,
            "targeting": self.targeting,
            "namespace": None if self.namespace is None else list(self.namespace),
            "status": self.status,
            "start": None if self.start is None else format_time(self.start),
            "stop": None if self.stop is None else format_time(self.stop),
            "metrics": metrics,
            "mde": self.mde,
            "alpha": self.alpha,
            "power": self.power,
            "planned_sample_size": self.planned_sample_size,
            "sequential": self.sequential,
            "correction": "none" if self.correction is None else self.correction,
            "alerts": [a.as_dict() for a in self.alerts],
        }

    def hash_attribute(self) -> str:
        """The attribute the flags engine hashes: ``id``, ``anonymous_id`` or ``session_id``."""
        return HASH_ATTRIBUTES[self.unit]

    def rule_id(self) -> str:
        """``experiment-KEY``: the id of the flags rule that serves this experiment."""
        return rule_id(self.key)

    def flag_type(self) -> str:
        """The flags type that holds every variation's value (for creating the flag)."""
        values = [v.value for v in self.variations]
        if all(isinstance(x, bool) for x in values):
            return "boolean"
        if all(isinstance(x, str) for x in values):
            return "string"
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
            return "number"
        return "json"

    def flag_rule(self) -> dict[str, Any]:
        """The flags rule assigning this experiment's units (``parse_ruleset`` accepts it)."""
        experiment: dict[str, Any] = {
            "key": self.key,
            "variations": [{"key": v.key, "value": v.value} for v in self.variations],
            "weights": list(self.weights),
            "coverage": self.coverage,
            "hash_attribute": self.hash_attribute(),
        }
        if self.namespace is not None:
            nid, start, end = self.namespace
            experiment["namespace"] = {"id": nid, "range": [start, end]}
        rule: dict[str, Any] = {"id": self.rule_id()}
        if self.targeting is not None:
            rule["condition"] = self.targeting
        rule["experiment"] = experiment
        return rule

    def metric_names(self, role: Role | None = None) -> list[str]:
        """The metrics' names (of one role, or all)."""
        return [m.metric for m in self.metrics if role is None or m.role == role]


# -- parsing -----------------------------------------------------------------------------------


def _flags_name(value: Any, path: str, what: str) -> str:
    try:
        return _name(value, path, what)
    except RulesetError as e:
        raise ExperimentError(e.path, e.message) from None


def _text(d: Mapping[str, Any], key: str, *, required: bool, default: str | None = None) -> str:
    value = d.get(key)
    if value is None:
        if required:
            raise ExperimentError(key, f"an experiment needs a {key} (a non-empty string)")
        return cast(str, default)
    if not isinstance(value, str) or not value.strip():
        raise ExperimentError(key, f"{key} is a non-empty string, not {value!r}")
    return value


def _number(
    d: Mapping[str, Any], key: str, default: float, low: float, high: float, *, closed: bool
) -> float:
    value = d.get(key)
    if value is None:
        return default
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and low < value and (value <= high if closed else value < high)
    if not ok:
        bound = f" {'≤' if closed else '<'} {high:g}" if math.isfinite(high) else ""
        raise ExperimentError(key, f"{key} is a number with {low:g} < {key}{bound}, not {value!r}")
    return float(value)


def _bool(d: Mapping[str, Any], key: str, path: str | None = None) -> bool | None:
    value = d.get(key)
    if value is not None and not isinstance(value, bool):
        raise ExperimentError(path or key, f"{key} is true or false, not {value!r}")
    return value


def _time(value: Any, path: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ExperimentError(
                path, f"{value!r} is not an ISO-8601 date-time (like 2026-10-01T09:00:00Z)"
            ) from None
    else:
        raise ExperimentError(path, f"{path} is an ISO-8601 date-time, not {value!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # a time without an offset is UTC
    return t.astimezone(dt.UTC)


def _default(d: Mapping[str, Any], key: str, default: Any) -> Any:
    value = d.get(key)
    return default if value is None else value


def _unit(value: Any) -> Unit:
    if value in UNITS:
        return cast(Unit, value)
    if value in UNIT_ALIASES:
        return UNIT_ALIASES[value]
    raise ExperimentError(
        "unit",
        f"unit is one of {', '.join(UNITS)} (or {', '.join(UNIT_ALIASES)}), not {value!r}",
    )


def _variations(value: Any) -> tuple[Variation, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise ExperimentError(
            "variations", "an experiment has a list of 2 or more variations, the control first"
        )
    out: list[Variation] = []
    for i, item in enumerate(value):
        path = f"variations[{i}]"
        if isinstance(item, str):
            item = {"key": item}
        if not isinstance(item, dict):
            raise ExperimentError(
                path, f"a variation is a key or {{key, name, value}}, not {item!r}"
            )
        extra = set(item) - {"key", "name", "value"}
        if extra:
            raise ExperimentError(
                path,
                f"unknown key(s) {sorted(map(str, extra))!r} in a variation (key, name, value)",
            )
        key = _flags_name(item.get("key"), f"{path}.key", "variation key")
        if any(v.key == key for v in out):
            raise ExperimentError(f"{path}.key", f"variation key {key!r} is used twice")
        name = item.get("name")
        if name is None:
            name = key
        elif not isinstance(name, str) or not name.strip():
            raise ExperimentError(f"{path}.name", f"a variation's name is a string, not {name!r}")
        v = item.get("value", key)
        if v is None:
            raise ExperimentError(f"{path}.value", "a variation's value is not null")
        try:
            check_json(v, f"{path}.value")
        except RulesetError as e:
            raise ExperimentError(e.path, e.message) from None
        out.append(Variation(key, name, v))
    return tuple(out)


def _weights(value: Any, n: int) -> tuple[float, ...]:
    if value is None:
        return tuple([1 / n] * n)
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(
        isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
        for w in value
    )
    if not ok or abs(math.fsum(value) - 1) > WEIGHT_TOLERANCE:
        raise ExperimentError(
            "weights",
            f"weights are {n} numbers ≥ 0 (one per variation, in their order) summing to 1, "
            f"not {value!r}",
        )
    return tuple(float(w) for w in value)


def _namespace(value: Any) -> tuple[str, float, float] | None:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"id", "range"}
        and isinstance(value["range"], list)
    ):
        value = [value["id"], *value["range"]]  # the flags form {id, range: [start, end]}
    if not isinstance(value, list) or len(value) != 3:
        raise ExperimentError(
            "namespace", f"a namespace is [id, start, end] with 0 ≤ start < end ≤ 1, not {value!r}"
        )
    nid = _flags_name(value[0], "namespace[0]", "namespace id")
    start, end = value[1], value[2]
    if (
        not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (start, end))
        or not 0 <= start < end <= 1
    ):
        raise ExperimentError(
            "namespace", f"a namespace's range is 0 ≤ start < end ≤ 1, not [{start!r}, {end!r}]"
        )
    return (nid, float(start), float(end))


def _targeting(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return parse_condition(value, "targeting").to_dict()
    except RulesetError as e:
        raise ExperimentError(e.path, e.message) from None


def _metric(item: Any, path: str, role: Role) -> MetricRef:
    if isinstance(item, str):
        item = {"metric": item}
    if not isinstance(item, dict):
        raise ExperimentError(
            path,
            "a metric is a catalog metric's name or {metric, kind, inverse, cuped_days}, "
            f"not {item!r}",
        )
    extra = set(item) - {"metric", "kind", "inverse", "cuped_days"}
    if extra:
        raise ExperimentError(
            path,
            f"unknown key(s) {sorted(map(str, extra))!r} in a metric "
            "(metric, kind, inverse, cuped_days)",
        )
    name = item.get("metric")
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ExperimentError(
            f"{path}.metric",
            f"a catalog metric's name (lowercase letters, digits and _, starting with a letter), "
            f"not {name!r}",
        )
    kind = item.get("kind")
    if kind is not None and kind not in METRIC_KINDS:
        raise ExperimentError(
            f"{path}.kind", f"kind is one of {', '.join(METRIC_KINDS)}, not {kind!r}"
        )
    inverse = _bool(item, "inverse", f"{path}.inverse")
    cuped = item.get("cuped_days")
    if cuped is not None and (isinstance(cuped, bool) or not isinstance(cuped, int) or cuped < 0):
        raise ExperimentError(
            f"{path}.cuped_days",
            f"cuped_days is a whole number of days ≥ 0 (0: no CUPED), not {cuped!r}",
        )
    return MetricRef(name, role, kind, inverse, cuped)


def _alert(item: Any, path: str) -> ExperimentAlert:
    if isinstance(item, str):
        item = {"rule": item}
    if not isinstance(item, dict):
        raise ExperimentError(
            path, f"an alert is {{rule, min_units}} (or a rule's name), not {item!r}"
        )
    extra = set(item) - {"rule", "min_units"}
    if extra:
        raise ExperimentError(
            path, f"unknown key(s) {sorted(map(str, extra))!r} in an alert (rule, min_units)"
        )
    rule = item.get("rule")
    if rule not in ALERT_RULES:
        raise ExperimentError(
            f"{path}.rule", f"an alert's rule is one of {', '.join(ALERT_RULES)}, not {rule!r}"
        )
    least = item.get("min_units")
    if least is None:
        least = DEFAULT_ALERT_MIN_UNITS
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise ExperimentError(
            f"{path}.min_units",
            f"min_units is a whole number of exposed units ≥ 0 (all variations), not {least!r}",
        )
    return ExperimentAlert(rule, least)


def _alerts(value: Any) -> tuple[ExperimentAlert, ...]:
    """``alerts``: absent or null → both rules with their defaults; ``[]`` → none."""
    if value is None:
        return DEFAULT_ALERTS
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        raise ExperimentError(
            "alerts",
            "alerts is a list of rules such as [{rule: experiment_srm, min_units: 100}, "
            "experiment_guardrail] ([] for none)",
        )
    out: list[ExperimentAlert] = []
    for i, item in enumerate(value):
        alert = _alert(item, f"alerts[{i}]")
        if any(a.rule == alert.rule for a in out):
            raise ExperimentError(f"alerts[{i}]", f"rule {alert.rule!r} is listed twice")
        out.append(alert)
    return tuple(out)


def _metrics(value: Any) -> tuple[MetricRef, ...]:
    if not isinstance(value, dict):
        raise ExperimentError(
            "metrics",
            "metrics is a mapping {primary: [...], secondary: [...], guardrails: [...]} "
            "with at least one primary metric",
        )
    extra = set(value) - set(METRIC_SECTIONS)
    if extra:
        raise ExperimentError(
            "metrics",
            f"unknown key(s) {sorted(map(str, extra))!r} in metrics "
            f"(expected {', '.join(METRIC_SECTIONS)})",
        )
    out: list[MetricRef] = []
    for section, role in METRIC_SECTIONS.items():
        items = value.get(section)
        if items is None:
            items = []
        if isinstance(items, str | dict):
            items = [items]
        if not isinstance(items, list):
            raise ExperimentError(f"metrics.{section}", f"{section} is a list of metrics")
        for i, item in enumerate(items):
            ref = _metric(item, f"metrics.{section}[{i}]", role)
            if any(m.metric == ref.metric for m in out):
                raise ExperimentError(
                    f"metrics.{section}[{i}]", f"metric {ref.metric!r} is listed twice"
                )
            out.append(ref)
    if not any(m.role == "primary" for m in out):
        raise ExperimentError("metrics.primary", "an experiment needs at least one primary metric")
    return tuple(out)


def parse_experiment(doc: Any) -> Experiment:
    """Validate an experiment document; raises :class:`ExperimentError` naming the field."""
    if not isinstance(doc, dict):
        raise ExperimentError("", f"an experiment is a mapping, not {type(doc).__name__}")
    extra = set(doc) - set(_FIELDS)
    if extra:
        raise ExperimentError(
            "",
            f"unknown key(s) {sorted(map(str, extra))!r} in an experiment "
            f"(expected {', '.join(_FIELDS)})",
        )
    key = _flags_name(doc.get("key"), "key", "experiment key")
    if len(key) > MAX_KEY_LENGTH:
        raise ExperimentError(
            "key",
            f"an experiment key has at most {MAX_KEY_LENGTH} characters (its flags rule id "
            f"is {RULE_PREFIX}KEY)",
        )
    teams = doc.get("teams")
    if teams is None:
        teams = []
    if isinstance(teams, str):
        teams = [teams]
    if not isinstance(teams, list) or not all(isinstance(t, str) and t.strip() for t in teams):
        raise ExperimentError("teams", f"teams is a list of team names, not {teams!r}")
    variations = _variations(doc.get("variations"))
    status = doc.get("status", "draft")
    if status is None:
        status = "draft"
    if status not in STATUSES:
        raise ExperimentError("status", f"status is one of {', '.join(STATUSES)}, not {status!r}")
    start, stop = _time(doc.get("start"), "start"), _time(doc.get("stop"), "stop")
    if start is not None and stop is not None and stop < start:
        raise ExperimentError(
            "stop", f"stop ({format_time(stop)}) is before start ({format_time(start)})"
        )
    planned = doc.get("planned_sample_size")
    if planned is not None and (
        isinstance(planned, bool) or not isinstance(planned, int) or planned < 1
    ):
        raise ExperimentError(
            "planned_sample_size",
            f"planned_sample_size is a whole number of units ≥ 1 (all variations), not {planned!r}",
        )
    correction = doc.get("correction")
    if correction is None:
        correction = "holm"
    if correction not in CORRECTIONS:
        raise ExperimentError(
            "correction", f"correction is one of {', '.join(CORRECTIONS)}, not {correction!r}"
        )
    return Experiment(
        key=key,
        name=_text(doc, "name", required=False, default=key),
        hypothesis=_text(doc, "hypothesis", required=True),
        owner=_text(doc, "owner", required=True),
        teams=tuple(teams),
        flag=_flags_name(_default(doc, "flag", key), "flag", "flag key"),
        environment=_flags_name(_default(doc, "environment", "prod"), "environment", "environment"),
        unit=_unit(_default(doc, "unit", "user.id")),
        variations=variations,
        weights=_weights(doc.get("weights"), len(variations)),
        coverage=_number(doc, "coverage", 1.0, 0, 1, closed=True),
        targeting=_targeting(doc.get("targeting")),
        namespace=_namespace(doc.get("namespace")),
        status=cast(Status, status),
        start=start,
        stop=stop,
        metrics=_metrics(doc.get("metrics")),
        mde=_number(doc, "mde", 0.05, 0, math.inf, closed=False),
        alpha=_number(doc, "alpha", 0.05, 0, 1, closed=False),
        power=_number(doc, "power", 0.8, 0, 1, closed=False),
        planned_sample_size=planned,
        sequential=bool(_bool(doc, "sequential")),
        correction=None if correction == "none" else cast(Correction, correction),
        alerts=_alerts(doc.get("alerts")),
    )
