"""Flags and their rules: parsed once, compiled per environment, evaluated locally and fast.

A *ruleset* is the JSON document an SDK caches (see ``docs/flags.md``)::

    {"environments": ["dev", "prod"],
     "segments": {"staff": {"attribute": "email", "op": "regex", "value": "@example\\\\.org$"}},
     "flags": {"new-signin": {
         "type": "boolean", "default": false, "killed": false,
         "environments": {"prod": {"enabled": true, "rules": [
             {"id": "staff", "condition": {"segment": "staff"}, "value": true},
             {"id": "ramp", "value": true, "rollout": {"coverage": 0.1}},
             {"id": "ab", "experiment": {"key": "signin-dialog", "variations": [
                 {"key": "A", "value": false}, {"key": "B", "value": true}]}}]}}}}}

Evaluating a flag for a unit's attributes:

1. the **kill switch** (``killed``) wins over everything: the flag's default value, reason
   ``killed``, in every environment;
2. a flag turned off in the environment (``enabled: false``) gives its default, ``disabled``;
3. the rules, in order; the first that applies gives the value:

   - ``{"condition"?, "value"}`` (targeting): applies when the condition matches;
   - ``{"condition"?, "value", "rollout": {"coverage", "hash_attribute"?, "seed"?,
     "hash_version"?}}``: applies when the condition matches and the unit's hash (seed: the
     flag's key) is below ``coverage``;
   - ``{"condition"?, "experiment": {"key"?, "variations", "weights"?, "coverage"?,
     "namespace"?, "hash_attribute"?, "seed"?, "hash_version"?}}``: applies when the condition
     matches, the unit is in the namespace and its hash falls in a variation's bucket range;
     the evaluation then names the variation and is an **exposure** (the SDK logs one, deduped);

   a rule whose unit attribute (``hash_attribute``, default ``id``) is missing does not apply;
4. no rule applied: the default value, ``default``.

A flag the ruleset does not know gives the caller's default, reason ``unknown``.

Assignment is GrowthBook's (:mod:`tallystick.flags.hashing`): the same unit, seed, weights,
coverage and namespace give the same variation as that SDK. Hash version 2 is the default.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import msgspec

from tallystick.flags.conditions import (
    Condition,
    Predicate,
    check_json,
    compile_condition,
    parse_condition,
    parse_segments,
)
from tallystick.flags.errors import ConditionError, RulesetError
from tallystick.flags.hashing import (
    HASH_VERSIONS,
    Namespace,
    bucket_ranges,
    hash_value_of,
    in_namespace,
    seeded_hash,
    valid_weights,
)

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "FLAG_TYPES",
    "CompiledRuleset",
    "Evaluation",
    "Experiment",
    "Flag",
    "FlagEnvironment",
    "Reason",
    "Rollout",
    "Rule",
    "Ruleset",
    "Variation",
    "compile_ruleset",
    "parse_ruleset",
]

Attributes: TypeAlias = Mapping[str, Any]

FLAG_TYPES: Final = ("boolean", "string", "number", "json")
DEFAULT_ENVIRONMENTS: Final = ("dev", "prod")
DEFAULT_HASH_VERSION: Final = 2
DEFAULT_HASH_ATTRIBUTE: Final = "id"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}")


class Reason(enum.StrEnum):
    """Why an evaluation gave its value."""

    UNKNOWN = "unknown"  #: the ruleset has no such flag: the caller's default
    KILLED = "killed"  #: the kill switch is on: the flag's default
    DISABLED = "disabled"  #: the flag is off in this environment: its default
    DEFAULT = "default"  #: no rule applied: the flag's default
    TARGETED = "targeted"  #: a rule's condition matched
    ROLLOUT = "rollout"  #: the unit is in a rule's percentage rollout
    EXPERIMENT = "experiment"  #: the unit is assigned a variation of an experiment


class Evaluation(msgspec.Struct, frozen=True, gc=False):
    """The value of a flag for one unit, and why.

    For an experiment assignment: the experiment's key, the variation's index and key, the
    unit (the hashed attribute and its value), the unit's hash (``bucket``) and
    ``exposure=True``: the SDK logs an exposure event the first time it sees this unit in this
    experiment. Values are shared with the compiled ruleset: do not mutate a JSON value.
    """

    flag: str
    value: Any
    reason: str
    rule: str | None = None
    experiment: str | None = None
    variation: int | None = None
    variation_key: str | None = None
    hash_attribute: str | None = None
    unit: str | None = None
    bucket: float | None = None
    exposure: bool = False


# -- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rollout:
    coverage: float
    hash_attribute: str = DEFAULT_HASH_ATTRIBUTE
    seed: str | None = None
    hash_version: int = DEFAULT_HASH_VERSION

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"coverage": self.coverage, "hash_attribute": self.hash_attribute}
        if self.seed is not None:
            d["seed"] = self.seed
        d["hash_version"] = self.hash_version
        return d


@dataclass(frozen=True, slots=True)
class Variation:
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class Experiment:
    key: str | None
    variations: tuple[Variation, ...]
    weights: tuple[float, ...] | None = None
    coverage: float = 1.0
    namespace: Namespace | None = None
    hash_attribute: str = DEFAULT_HASH_ATTRIBUTE
    seed: str | None = None
    hash_version: int = DEFAULT_HASH_VERSION

    def ranges(self) -> list[tuple[float, float]]:
        w = list(self.weights) if self.weights is not None else None
        return bucket_ranges(len(self.variations), self.coverage, w)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.key is not None:
            d["key"] = self.key
        d["variations"] = [{"key": v.key, "value": v.value} for v in self.variations]
        if self.weights is not None:
            d["weights"] = list(self.weights)
        d["coverage"] = self.coverage
        if self.namespace is not None:
            d["namespace"] = {
                "id": self.namespace.id,
                "range": [self.namespace.start, self.namespace.end],
            }
        d["hash_attribute"] = self.hash_attribute
        if self.seed is not None:
            d["seed"] = self.seed
        d["hash_version"] = self.hash_version
        return d


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    condition: Condition | None = None
    value: Any = None
    rollout: Rollout | None = None
    experiment: Experiment | None = None
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if not self.enabled:
            d["enabled"] = False
        if self.condition is not None:
            d["condition"] = self.condition.to_dict()
        if self.experiment is not None:
            d["experiment"] = self.experiment.to_dict()
        else:
            d["value"] = self.value
            if self.rollout is not None:
                d["rollout"] = self.rollout.to_dict()
        return d


@dataclass(frozen=True, slots=True)
class FlagEnvironment:
    enabled: bool = True
    rules: tuple[Rule, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "rules": [r.to_dict() for r in self.rules]}


@dataclass(frozen=True, slots=True)
class Flag:
    key: str
    type: str
    default: Any
    killed: bool = False
    environments: Mapping[str, FlagEnvironment] = field(default_factory=dict)
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "default": self.default}
        if self.description is not None:
            d["description"] = self.description
        d["killed"] = self.killed
        d["environments"] = {name: env.to_dict() for name, env in self.environments.items()}
        return d


@dataclass(frozen=True, slots=True)
class Ruleset:
    """A validated ruleset: every environment's rules for every flag, and the saved segments."""

    flags: Mapping[str, Flag]
    segments: Mapping[str, Condition] = field(default_factory=dict)
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    #: the control plane's revision of the ruleset (an SDK keeps the newest), when it has one
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {} if self.version is None else {"version": self.version}
        return {
            **head,
            "environments": list(self.environments),
            "segments": {sid: c.to_dict() for sid, c in self.segments.items()},
            "flags": {key: f.to_dict() for key, f in self.flags.items()},
        }

    def compile(self, environment: str) -> CompiledRuleset:
        """The evaluator for one environment."""
        if environment not in self.environments:
            raise RulesetError(
                "environment",
                f"unknown environment {environment!r} (expected one of "
                f"{', '.join(self.environments)})",
            )
        return CompiledRuleset(self, environment)


# -- parsing -----------------------------------------------------------------------------------


def _keys(doc: Any, path: str, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise RulesetError(path, f"{what} is an object, not {type(doc).__name__}")
    extra = set(doc) - allowed
    if extra:
        raise RulesetError(
            path,
            f"unknown key(s) {sorted(map(str, extra))!r} in {what} "
            f"(expected {', '.join(sorted(allowed))})",
        )
    return doc


def _name(value: Any, path: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise RulesetError(
            path,
            f"{what} {value!r} must be 1–200 letters, digits or _.:/- "
            "starting with a letter or digit",
        )
    return value


def _fraction(value: Any, path: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RulesetError(path, f"{what} is a number from 0 to 1, not {value!r}")
    return value


def _hash_version(doc: Mapping[str, Any], path: str) -> int:
    v = doc.get("hash_version", DEFAULT_HASH_VERSION)
    if isinstance(v, bool) or v not in HASH_VERSIONS:
        raise RulesetError(f"{path}.hash_version", f"hash_version is 1 or 2, not {v!r}")
    return int(v)


def _attribute(doc: Mapping[str, Any], path: str) -> str:
    a = doc.get("hash_attribute", DEFAULT_HASH_ATTRIBUTE)
    if not isinstance(a, str) or not a:
        raise RulesetError(f"{path}.hash_attribute", "hash_attribute is an attribute name")
    return a


def _seed(doc: Mapping[str, Any], path: str) -> str | None:
    s = doc.get("seed")
    if s is not None and (not isinstance(s, str) or not s):
        raise RulesetError(f"{path}.seed", "seed is a non-empty string")
    return s


def _check_type(value: Any, kind: str, path: str) -> Any:
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    else:
        try:
            check_json(value, path)
        except ConditionError as e:
            raise RulesetError(e.path, e.message) from None
        ok = True
    if not ok:
        raise RulesetError(path, f"{value!r} is not a {kind} (the flag's type)")
    return value


def _parse_rollout(doc: Any, path: str) -> Rollout:
    d = _keys(doc, path, {"coverage", "hash_attribute", "seed", "hash_version"}, "a rollout")
    if "coverage" not in d:
        raise RulesetError(path, "a rollout needs a coverage (0–1: the share of units)")
    return Rollout(
        coverage=_fraction(d["coverage"], f"{path}.coverage", "coverage"),
        hash_attribute=_attribute(d, path),
        seed=_seed(d, path),
        hash_version=_hash_version(d, path),
    )


def _parse_experiment(doc: Any, path: str, kind: str) -> Experiment:
    allowed = {
        "key", "variations", "weights", "coverage", "namespace", "hash_attribute", "seed",
        "hash_version",
    }  # fmt: skip
    d = _keys(doc, path, allowed, "an experiment")
    key = _name(d["key"], f"{path}.key", "experiment key") if "key" in d else None
    raw = d.get("variations")
    if not isinstance(raw, list) or len(raw) < 2:
        raise RulesetError(f"{path}.variations", "an experiment has a list of 2 or more variations")
    variations: list[Variation] = []
    for i, v in enumerate(raw):
        vp = f"{path}.variations[{i}]"
        vd = _keys(v, vp, {"key", "value"}, "a variation")
        if "value" not in vd:
            raise RulesetError(vp, "a variation needs a value")
        vkey = _name(vd.get("key", str(i)), f"{vp}.key", "variation key")
        if any(x.key == vkey for x in variations):
            raise RulesetError(f"{vp}.key", f"variation key {vkey!r} is used twice")
        variations.append(Variation(vkey, _check_type(vd["value"], kind, f"{vp}.value")))
    weights: tuple[float, ...] | None = None
    if d.get("weights") is not None:
        w = d["weights"]
        if not valid_weights(w, len(variations)):
            raise RulesetError(
                f"{path}.weights",
                f"weights are {len(variations)} non-negative numbers (one per variation) "
                f"summing to 1, not {w!r}",
            )
        weights = tuple(w)
    namespace: Namespace | None = None
    if d.get("namespace") is not None:
        np_ = f"{path}.namespace"
        nd = _keys(d["namespace"], np_, {"id", "range"}, "a namespace")
        nid = _name(nd.get("id"), f"{np_}.id", "namespace id")
        r = nd.get("range")
        if (
            not isinstance(r, list)
            or len(r) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in r)
            or not 0 <= r[0] < r[1] <= 1
        ):
            raise RulesetError(
                f"{np_}.range",
                f"a namespace range is [start, end] with 0 ≤ start < end ≤ 1, not {r!r}",
            )
        namespace = Namespace(nid, r[0], r[1])
    return Experiment(
        key=key,
        variations=tuple(variations),
        weights=weights,
        coverage=_fraction(d.get("coverage", 1.0), f"{path}.coverage", "coverage"),
        namespace=namespace,
        hash_attribute=_attribute(d, path),
        seed=_seed(d, path),
        hash_version=_hash_version(d, path),
    )


def _parse_rule(doc: Any, path: str, index: int, kind: str, segments: set[str]) -> Rule:
    allowed = {"id", "enabled", "condition", "value", "rollout", "experiment", "description"}
    d = _keys(doc, path, allowed, "a rule")
    rid = _name(d.get("id", str(index)), f"{path}.id", "rule id")
    enabled = d.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesetError(f"{path}.enabled", "enabled is true or false")
    condition = None
    if d.get("condition") is not None:
        condition = parse_condition(d["condition"], f"{path}.condition", segments)
    if "experiment" in d:
        if "value" in d or "rollout" in d:
            raise RulesetError(
                path, "a rule has either a value (and maybe a rollout) or an experiment"
            )
        exp = _parse_experiment(d["experiment"], f"{path}.experiment", kind)
        return Rule(rid, condition, None, None, exp, enabled)
    if "value" not in d:
        raise RulesetError(path, "a rule needs a value (or an experiment)")
    value = _check_type(d["value"], kind, f"{path}.value")
    rollout = _parse_rollout(d["rollout"], f"{path}.rollout") if "rollout" in d else None
    return Rule(rid, condition, value, rollout, None, enabled)


def _parse_flag(key: str, doc: Any, path: str, envs: tuple[str, ...], segments: set[str]) -> Flag:
    allowed = {"type", "default", "killed", "environments", "description"}
    d = _keys(doc, path, allowed, "a flag")
    kind = d.get("type")
    if kind not in FLAG_TYPES:
        raise RulesetError(
            f"{path}.type", f"a flag's type is one of {', '.join(FLAG_TYPES)}, not {kind!r}"
        )
    if "default" not in d:
        raise RulesetError(path, "a flag needs a default value")
    default = _check_type(d["default"], kind, f"{path}.default")
    killed = d.get("killed", False)
    if not isinstance(killed, bool):
        raise RulesetError(f"{path}.killed", "killed is true or false")
    description = d.get("description")
    if description is not None and not isinstance(description, str):
        raise RulesetError(f"{path}.description", "a description is a string")
    raw_envs = d.get("environments", {})
    if not isinstance(raw_envs, dict):
        raise RulesetError(f"{path}.environments", "environments is an object name → rules")
    environments: dict[str, FlagEnvironment] = {}
    for name, env in raw_envs.items():
        ep = f"{path}.environments.{name}"
        if name not in envs:
            raise RulesetError(
                ep, f"unknown environment {name!r} (the ruleset's: {', '.join(envs)})"
            )
        ed = _keys(env, ep, {"enabled", "rules"}, "a flag's environment")
        enabled = ed.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RulesetError(f"{ep}.enabled", "enabled is true or false")
        rules_doc = ed.get("rules", [])
        if not isinstance(rules_doc, list):
            raise RulesetError(f"{ep}.rules", "rules is a list")
        rules = tuple(
            _parse_rule(r, f"{ep}.rules[{i}]", i, kind, segments) for i, r in enumerate(rules_doc)
        )
        seen: set[str] = set()
        for i, r in enumerate(rules):
            if r.id in seen:
                raise RulesetError(f"{ep}.rules[{i}].id", f"rule id {r.id!r} is used twice")
            seen.add(r.id)
        environments[name] = FlagEnvironment(enabled, rules)
    return Flag(key, kind, default, killed, environments, description)


def parse_ruleset(doc: Any) -> Ruleset:
    """Validate a ruleset document; raises :class:`RulesetError` saying where and why."""
    d = _keys(doc, "", {"environments", "segments", "flags", "version"}, "a ruleset")
    envs_doc = d.get("environments", list(DEFAULT_ENVIRONMENTS))
    if not isinstance(envs_doc, list) or not envs_doc:
        raise RulesetError("environments", "environments is a non-empty list of names")
    envs = tuple(_name(e, f"environments[{i}]", "environment") for i, e in enumerate(envs_doc))
    if len(set(envs)) != len(envs):
        raise RulesetError("environments", "an environment is listed twice")
    version = d.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise RulesetError(
            "version", f"version is an integer (the ruleset's revision), not {version!r}"
        )
    segments = parse_segments(d.get("segments"))
    flags_doc = d.get("flags", {})
    if not isinstance(flags_doc, dict):
        raise RulesetError(
            "flags",
            "flags must be an object from flag key to flag definition, "
            f"not {type(flags_doc).__name__}",
        )
    flags = {
        _name(key, f"flags.{key}", "flag key"): _parse_flag(
            key, f, f"flags.{key}", envs, set(segments)
        )
        for key, f in flags_doc.items()
    }
    return Ruleset(flags, segments, envs, version)


# -- compiling ---------------------------------------------------------------------------------

Step: TypeAlias = Callable[[Attributes], "Evaluation | None"]
Evaluate: TypeAlias = Callable[[Attributes], Evaluation]


def _compile_rule(flag: Flag, rule: Rule, cond: Predicate | None) -> Step:
    key = flag.key
    if rule.experiment is None:
        hit = Evaluation(
            key, rule.value, Reason.ROLLOUT if rule.rollout else Reason.TARGETED, rule.id
        )
        if rule.rollout is None:
            if cond is None:
                return lambda a: hit
            return lambda a: hit if cond(a) else None
        ro = rule.rollout
        unit_attribute = ro.hash_attribute
        hash_ = seeded_hash(ro.seed or key, ro.hash_version)
        coverage = ro.coverage

        def rollout(a: Attributes) -> Evaluation | None:
            if cond is not None and not cond(a):
                return None
            u = a.get(unit_attribute)
            if type(u) is not str:
                u = hash_value_of(u)
            if not u or not hash_(u) < coverage:
                return None
            return hit

        return rollout
    exp = rule.experiment
    exp_key = exp.key or key
    hash_ = seeded_hash(exp.seed or exp_key, exp.hash_version)
    ranges = tuple(exp.ranges())
    variations = tuple(
        (i, v.key, v.value, r) for i, (v, r) in enumerate(zip(exp.variations, ranges, strict=True))
    )
    ns = exp.namespace
    rid, attr = rule.id, exp.hash_attribute

    def experiment(a: Attributes) -> Evaluation | None:
        if cond is not None and not cond(a):
            return None
        u = a.get(attr)
        if type(u) is not str:
            u = hash_value_of(u)
        if not u:
            return None
        if ns is not None and not in_namespace(u, ns):
            return None
        n = hash_(u)
        for i, vkey, value, (lo, hi) in variations:
            if lo <= n < hi:
                return Evaluation(
                    key, value, Reason.EXPERIMENT, rid, exp_key, i, vkey, attr, u, n, True
                )
        return None

    return experiment


def _compile_flag(
    flag: Flag, environment: str, segments: Mapping[str, Condition], cache: dict[str, Predicate]
) -> Evaluate:
    key = flag.key
    if flag.killed:
        killed = Evaluation(key, flag.default, Reason.KILLED)
        return lambda a: killed
    env = flag.environments.get(environment, FlagEnvironment())
    if not env.enabled:
        disabled = Evaluation(key, flag.default, Reason.DISABLED)
        return lambda a: disabled
    fallback = Evaluation(key, flag.default, Reason.DEFAULT)
    steps: list[Step] = []
    for rule in env.rules:
        if not rule.enabled:
            continue
        cond = (
            None if rule.condition is None else compile_condition(rule.condition, segments, cache)
        )
        steps.append(_compile_rule(flag, rule, cond))
        if cond is None and rule.experiment is None and rule.rollout is None:
            break  # an unconditional value: later rules are unreachable
    if not steps:
        return lambda a: fallback
    if len(steps) == 1:
        (only,) = steps

        def single(a: Attributes) -> Evaluation:
            e = only(a)
            return fallback if e is None else e

        return single
    if len(steps) == 2:
        first, second = steps

        def run2(a: Attributes) -> Evaluation:
            e = first(a)
            if e is None:
                e = second(a)
            return fallback if e is None else e

        return run2
    frozen = tuple(steps)

    def run(a: Attributes) -> Evaluation:
        for step in frozen:
            e = step(a)
            if e is not None:
                return e
        return fallback

    return run


class CompiledRuleset:
    """A ruleset compiled for one environment: ``evaluate(key, attributes)``.

    Compiling is done once per ruleset version (an SDK recompiles when it fetches a new one);
    evaluation allocates nothing but the result of an experiment assignment.
    """

    __slots__ = ("_flags", "environment", "ruleset")

    def __init__(self, ruleset: Ruleset, environment: str) -> None:
        self.ruleset = ruleset
        self.environment = environment
        cache: dict[str, Predicate] = {}
        self._flags: dict[str, Evaluate] = {
            key: _compile_flag(flag, environment, ruleset.segments, cache)
            for key, flag in ruleset.flags.items()
        }

    def __contains__(self, key: object) -> bool:
        return key in self._flags

    def keys(self) -> Sequence[str]:
        return list(self._flags)

    def flag_type(self, key: str) -> str | None:
        f = self.ruleset.flags.get(key)
        return None if f is None else f.type

    def evaluate(self, key: str, attributes: Attributes, default: Any = None) -> Evaluation:
        """The flag's value for a unit with these attributes (``default`` for an unknown flag)."""
        run = self._flags.get(key)
        if run is None:
            return Evaluation(key, default, Reason.UNKNOWN)
        return run(attributes)

    def value(self, key: str, attributes: Attributes, default: Any = None) -> Any:
        """Only the value."""
        run = self._flags.get(key)
        return default if run is None else run(attributes).value

    def evaluate_all(self, attributes: Attributes) -> dict[str, Evaluation]:
        """Every flag for one unit (for ``POST /v1/flags/evaluate`` and the active-flags header)."""
        return {key: run(attributes) for key, run in self._flags.items()}


def compile_ruleset(doc: Any, environment: str) -> CompiledRuleset:
    """``parse_ruleset(doc).compile(environment)``."""
    return parse_ruleset(doc).compile(environment)
