"""Curation rules: conditions on an event's fields that drop it from a stream.

A rule is ``{field, op, value}``: ``field`` a dotted path of the monoschema (``app.environment``,
``page.url``) or ``data.<key>``; ``op`` one of ``OPS``. An event is dropped when any of the
stream's rules matches it. A field the event lacks holds no value: ``equals``, ``in``,
``contains`` and the comparisons never match it, ``not_equals`` and ``not_in`` always do.
Comparisons take numbers (ints and floats alike, booleans never) or, when both sides are text,
compare text; a value of another kind never matches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

OPS: Final = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "greater_than",
    "greater_than_or_equals",
    "less_than",
    "less_than_or_equals",
)
_LISTS: Final = frozenset({"in", "not_in"})
_ORDERED: Final = frozenset(
    {"greater_than", "greater_than_or_equals", "less_than", "less_than_or_equals"}
)
_MISSING: Final = object()


class RuleError(ValueError):
    """A rule that cannot be used, with what to write instead."""


@dataclass(frozen=True, slots=True)
class Rule:
    field: str
    op: str
    value: Any

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether this rule drops ``event``."""
        found = lookup(event, self.field)
        if found is _MISSING or found is None:
            return self.op in ("not_equals", "not_in")
        op, value = self.op, self.value
        if op == "equals":
            return _same(found, value)
        if op == "not_equals":
            return not _same(found, value)
        if op == "in":
            return any(_same(found, v) for v in value)
        if op == "not_in":
            return not any(_same(found, v) for v in value)
        if op == "contains":
            return isinstance(found, str) and str(value) in found
        return _compare(op, found, value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(found: Any, value: Any) -> bool:
    if _number(found) and _number(value):
        return bool(found == value)
    return type(found) is type(value) and bool(found == value)


def _compare(op: str, found: Any, value: Any) -> bool:
    if not (
        (_number(found) and _number(value)) or (isinstance(found, str) and isinstance(value, str))
    ):
        return False
    if op == "greater_than":
        return bool(found > value)
    if op == "greater_than_or_equals":
        return bool(found >= value)
    if op == "less_than":
        return bool(found < value)
    return bool(found <= value)


def lookup(event: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``data.<key>`` may itself contain dots), or ``_MISSING``."""
    if path.startswith("data."):
        data = event.get("data")
        if not isinstance(data, Mapping):
            return _MISSING
        key = path[len("data.") :]
        return data.get(key, _MISSING) if key in data else _nested(data, key.split("."))
    return _nested(event, path.split("."))


def _nested(node: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def parse_rule(raw: Any) -> Rule:
    """A rule from configuration (``{"field": …, "op": …, "value": …}``), or a RuleError."""
    if not isinstance(raw, Mapping):
        raise RuleError(
            f"a rule is a mapping of field, op and value, such as "
            f"{{field: data.trigger, op: equals, value: monitor}}; got {raw!r}"
        )
    unknown = sorted(set(raw) - {"field", "op", "value"})
    if unknown:
        raise RuleError(f"a rule takes field, op and value, not {', '.join(unknown)}")
    missing = [k for k in ("field", "op", "value") if k not in raw]
    if missing:
        raise RuleError(f"the rule needs {' and '.join(missing)}")
    field, op, value = raw["field"], raw["op"], raw["value"]
    if not isinstance(field, str) or not field or field.startswith(".") or field.endswith("."):
        raise RuleError(f"field must be a dotted path such as app.environment, got {field!r}")
    if op not in OPS:
        raise RuleError(f"unknown op {op!r}: use one of {', '.join(OPS)}")
    if op in _LISTS:
        if not isinstance(value, list) or not value:
            raise RuleError(f"{op} takes a non-empty list of values, such as [prod, staging]")
        return Rule(field, op, tuple(value))
    if isinstance(value, list | dict):
        raise RuleError(f"{op} takes one value, not a {type(value).__name__}")
    if op in _ORDERED and not (_number(value) or isinstance(value, str)):
        raise RuleError(f"{op} compares with a number or a text, got {value!r}")
    if _number(value) and isinstance(value, float) and not math.isfinite(value):
        raise RuleError(f"{op} takes a finite number, got {value!r}")
    return Rule(field, op, value)


def drops(rules: Sequence[Rule], event: Mapping[str, Any]) -> bool:
    """Whether any of ``rules`` drops ``event``."""
    return any(rule.matches(event) for rule in rules)
