"""Attribute conditions: parsed once (with clear errors), compiled to plain Python predicates.

A condition is JSON:

- a comparison ``{"attribute": "country", "op": "in", "value": ["DE", "NL"]}``;
- ``{"and": [c, …]}`` (true when empty), ``{"or": [c, …]}`` (false when empty), ``{"not": c}``;
- ``{"segment": "beta-testers"}``: a saved segment, a named condition defined once in the
  ruleset's ``segments`` and referenced by id.

Operators (:data:`OPERATORS`): ``equals``/``not_equals`` (JSON equality: ``1 == 1.0`` but
``true != 1`` and ``"1" != 1``), ``in``/``not_in`` (a list of strings, numbers or booleans; a list
attribute matches when any element is in it), ``contains``/``not_contains`` (a substring of a
string attribute, or an element of a list attribute), ``gt``/``gte``/``lt``/``lte`` (numbers
only), ``semver_eq``/``semver_gt``/``semver_gte``/``semver_lt``/``semver_lte`` (version strings,
SemVer 2.0 precedence), ``regex``/``not_regex`` (Python ``re.search``), ``exists``
(``true``: the attribute is present and not null).

An attribute is a key of the attributes mapping; a dotted name (``"account.plan"``) walks into
nested objects. A missing attribute, or one of the wrong type, never matches a positive operator;
each ``not_*`` operator is the exact negation of its positive twin.

:func:`parse_condition` validates a definition into a small immutable tree (``to_dict`` gives
the definition back); :func:`compile_condition` turns a tree into a closure over precomputed
values (sets, compiled regular expressions, version keys), so evaluating it is a few dictionary
lookups.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, TypeAlias

from tallystick.flags.errors import ConditionError

__all__ = [
    "OPERATORS",
    "All",
    "Any_",
    "Compare",
    "Condition",
    "Not",
    "Predicate",
    "SegmentRef",
    "check_json",
    "compile_condition",
    "parse_condition",
    "parse_segments",
    "semver_key",
]

Attributes: TypeAlias = Mapping[str, Any]
Predicate: TypeAlias = Callable[[Attributes], bool]

#: operator → the kind of value it takes
OPERATORS: Final[dict[str, str]] = {
    "equals": "any",
    "not_equals": "any",
    "in": "list",
    "not_in": "list",
    "contains": "scalar",
    "not_contains": "scalar",
    "gt": "number",
    "gte": "number",
    "lt": "number",
    "lte": "number",
    "semver_eq": "version",
    "semver_gt": "version",
    "semver_gte": "version",
    "semver_lt": "version",
    "semver_lte": "version",
    "regex": "regex",
    "not_regex": "regex",
    "exists": "bool",
}
NEGATIONS: Final = {
    "not_equals": "equals",
    "not_in": "in",
    "not_contains": "contains",
    "not_regex": "regex",
}
COMPARE_KEYS: Final = frozenset({"attribute", "op", "value"})
MAX_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class Compare:
    attribute: str
    op: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "op": self.op, "value": self.value}


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"and": [c.to_dict() for c in self.items]}


@dataclass(frozen=True, slots=True)
class Any_:
    items: tuple[Condition, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"or": [c.to_dict() for c in self.items]}


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def to_dict(self) -> dict[str, Any]:
        return {"not": self.item.to_dict()}


@dataclass(frozen=True, slots=True)
class SegmentRef:
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.id}


Condition: TypeAlias = Compare | All | Any_ | Not | SegmentRef


# -- versions ----------------------------------------------------------------------------------

_VERSION = re.compile(
    r"[vV]?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

VersionKey: TypeAlias = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


@lru_cache(maxsize=4096)
def semver_key(version: str) -> VersionKey | None:
    """A sort key with SemVer 2.0 precedence, or ``None`` when ``version`` is not a version.

    ``MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]``, an optional leading ``v``; missing parts are
    0 (``1.2`` = ``1.2.0``). A pre-release sorts before its release (``1.0.0-rc.1 < 1.0.0``);
    pre-release identifiers compare numerically when numeric (``rc.9 < rc.10``), numeric before
    alphanumeric, a shorter list first when one is a prefix of the other. Build metadata is
    ignored.
    """
    m = _VERSION.fullmatch(version)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    ids: tuple[tuple[int, int | str], ...] = ()
    if pre is not None:
        ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (int(major), int(minor or 0), int(patch or 0), 0 if pre is not None else 1, ids)


# -- parsing -----------------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_json(value: Any, path: str, depth: int = 0) -> None:
    """Raise :class:`ConditionError` unless ``value`` is a JSON value (finite numbers)."""
    if depth > MAX_DEPTH:
        raise ConditionError(path, "value nested too deeply")
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConditionError(path, f"{value!r} is not a JSON number")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            check_json(v, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConditionError(path, f"object key {k!r} is not a string")
            check_json(v, f"{path}.{k}", depth + 1)
        return
    raise ConditionError(path, f"{type(value).__name__} is not a JSON value")


def _check_value(op: str, value: Any, path: str) -> Any:
    kind = OPERATORS[op]
    where = f"{path}.value"
    if kind == "any":
        check_json(value, where)
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise ConditionError(where, f"{op} takes a list of strings, numbers or booleans")
        for i, v in enumerate(value):
            if not isinstance(v, str | int | float) or (
                isinstance(v, float) and not math.isfinite(v)
            ):
                raise ConditionError(
                    f"{where}[{i}]", f"{v!r} is not a string, a number or a boolean"
                )
        return list(value)
    if kind == "scalar":
        if not isinstance(value, str | int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ConditionError(where, f"{op} takes a string, a number or a boolean")
        return value
    if kind == "number":
        if not _is_number(value) or not math.isfinite(value):
            raise ConditionError(where, f"{op} compares numbers: {value!r} is not a number")
        return value
    if kind == "version":
        if not isinstance(value, str) or semver_key(value) is None:
            raise ConditionError(
                where, f"{value!r} is not a version (MAJOR[.MINOR[.PATCH]][-PRE][+BUILD])"
            )
        return value
    if kind == "regex":
        if not isinstance(value, str):
            raise ConditionError(where, f"{op} takes a regular expression (a string)")
        try:
            re.compile(value)
        except re.error as e:
            raise ConditionError(where, f"invalid regular expression {value!r}: {e}") from None
        return value
    if not isinstance(value, bool):  # exists
        raise ConditionError(where, "exists takes true or false")
    return value


def parse_condition(
    doc: Any, path: str = "condition", segments: Iterable[str] | None = None, _depth: int = 0
) -> Condition:
    """Validate a condition definition; ``segments`` are the ids a ``segment`` may reference
    (``None``: any id, checked when the ruleset is compiled). Raises :class:`ConditionError`."""
    if _depth > MAX_DEPTH:
        raise ConditionError(path, f"conditions nest more than {MAX_DEPTH} deep")
    if not isinstance(doc, dict):
        raise ConditionError(
            path,
            f"a condition is an object (attribute/op/value, and, or, not, segment), "
            f"not {type(doc).__name__}",
        )
    keys = set(doc)
    if "attribute" in keys or "op" in keys:
        extra = keys - COMPARE_KEYS
        if extra:
            raise ConditionError(path, f"unknown key(s) {sorted(extra)!r} in a comparison")
        attribute = doc.get("attribute")
        if not isinstance(attribute, str) or not attribute or "" in attribute.split("."):
            raise ConditionError(f"{path}.attribute", "an attribute name (a non-empty string)")
        op = doc.get("op")
        if op not in OPERATORS:
            raise ConditionError(
                f"{path}.op", f"unknown operator {op!r} (expected one of {', '.join(OPERATORS)})"
            )
        if "value" not in doc:
            if op != "exists":
                raise ConditionError(path, f"{op} needs a value")
            return Compare(attribute, op, True)
        return Compare(attribute, op, _check_value(op, doc["value"], path))
    if len(keys) != 1:
        raise ConditionError(
            path,
            f"a condition has exactly one of attribute/op/value, and, or, not, segment; "
            f"got {sorted(map(str, keys))!r}",
        )
    (key,) = keys
    body = doc[key]
    if key in ("and", "or"):
        if not isinstance(body, list):
            raise ConditionError(f"{path}.{key}", f"{key} takes a list of conditions")
        items = tuple(
            parse_condition(c, f"{path}.{key}[{i}]", segments, _depth + 1)
            for i, c in enumerate(body)
        )
        return All(items) if key == "and" else Any_(items)
    if key == "not":
        return Not(parse_condition(body, f"{path}.not", segments, _depth + 1))
    if key == "segment":
        if not isinstance(body, str) or not body:
            raise ConditionError(f"{path}.segment", "a segment id (a non-empty string)")
        if segments is not None and body not in segments:
            raise ConditionError(f"{path}.segment", f"unknown segment {body!r}")
        return SegmentRef(body)
    raise ConditionError(
        path, f"unknown key {key!r} (expected attribute/op/value, and, or, not or segment)"
    )


def _references(c: Condition) -> Iterable[str]:
    if isinstance(c, SegmentRef):
        yield c.id
    elif isinstance(c, All | Any_):
        for item in c.items:
            yield from _references(item)
    elif isinstance(c, Not):
        yield from _references(c.item)


def parse_segments(doc: Any, path: str = "segments") -> dict[str, Condition]:
    """Validate the saved segments ``{id: condition}``: references known, no cycles."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConditionError(path, "segments is an object of id → condition")
    ids = set(doc)
    out: dict[str, Condition] = {}
    for sid, cond in doc.items():
        if not isinstance(sid, str) or not sid:
            raise ConditionError(path, f"segment id {sid!r} is not a non-empty string")
        out[sid] = parse_condition(cond, f"{path}.{sid}", ids)
    state: dict[str, int] = {}  # 1: visiting, 2: done

    def visit(sid: str, trail: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            cycle = " → ".join([*trail[trail.index(sid) :], sid])
            raise ConditionError(f"{path}.{sid}", f"segments reference each other: {cycle}")
        state[sid] = 1
        for ref in _references(out[sid]):
            visit(ref, [*trail, sid])
        state[sid] = 2

    for sid in out:
        visit(sid, [])
    return out


# -- compiling ---------------------------------------------------------------------------------


def _getter(attribute: str) -> Callable[[Attributes], Any]:
    if "." not in attribute:
        return lambda a: a.get(attribute)
    parts = tuple(attribute.split("."))

    def get(a: Attributes) -> Any:
        cur: Any = a
        for p in parts:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(p)
        return cur

    return get


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``), never a boolean for a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def _scalar_sets(values: Iterable[Any]) -> tuple[frozenset[str], frozenset[float], frozenset[bool]]:
    strs = frozenset(v for v in values if isinstance(v, str))
    nums = frozenset(v for v in values if _is_number(v))
    bools = frozenset(v for v in values if isinstance(v, bool))
    return strs, nums, bools


def _compile_compare(c: Compare) -> Predicate:
    get = _getter(c.attribute)
    op, value = c.op, c.value
    if op in NEGATIONS:
        positive = _compile_compare(Compare(c.attribute, NEGATIONS[op], value))
        return lambda a: not positive(a)
    if op == "equals":
        if isinstance(value, str):
            return lambda a: get(a) == value
        if isinstance(value, bool):
            return lambda a: get(a) is value
        if _is_number(value):

            def eq_number(a: Attributes) -> bool:
                x = get(a)
                return x == value and _is_number(x)

            return eq_number
        if value is None:
            return lambda a: get(a) is None
        return lambda a: json_equal(get(a), value)
    if op == "in":
        strs, nums, bools = _scalar_sets(value)

        def member(x: Any) -> bool:
            t = type(x)
            if t is str:
                return x in strs
            if t is bool:
                return x in bools
            if t is int or t is float:
                return x in nums
            return False

        def is_in(a: Attributes) -> bool:
            x = get(a)
            if type(x) is str:
                return x in strs
            if isinstance(x, list | tuple):
                return any(member(e) for e in x)
            return member(x)

        return is_in
    if op == "contains":

        def contains(a: Attributes) -> bool:
            x = get(a)
            if isinstance(x, str):
                return isinstance(value, str) and value in x
            if isinstance(x, list | tuple):
                return any(json_equal(e, value) for e in x)
            return False

        return contains
    if op in ("gt", "gte", "lt", "lte"):
        return _compile_order(get, op, value)
    if op.startswith("semver_"):
        return _compile_semver(get, op, value)
    if op == "regex":
        search = re.compile(value).search

        def matches(a: Attributes) -> bool:
            x = get(a)
            return type(x) is str and search(x) is not None

        return matches
    if op == "exists":
        if value:
            return lambda a: get(a) is not None
        return lambda a: get(a) is None
    raise AssertionError(op)  # pragma: no cover - parse_condition rejects it


def _compile_order(get: Callable[[Attributes], Any], op: str, v: float) -> Predicate:
    def number(a: Attributes) -> Any:
        x = get(a)
        t = type(x)
        return x if t is int or t is float else None

    if op == "gt":
        return lambda a: (x := number(a)) is not None and x > v
    if op == "gte":
        return lambda a: (x := number(a)) is not None and x >= v
    if op == "lt":
        return lambda a: (x := number(a)) is not None and x < v
    return lambda a: (x := number(a)) is not None and x <= v


def _compile_semver(get: Callable[[Attributes], Any], op: str, version: str) -> Predicate:
    k = semver_key(version)
    assert k is not None  # parse_condition checked it

    def key(a: Attributes) -> VersionKey | None:
        x = get(a)
        return semver_key(x) if type(x) is str else None

    if op == "semver_eq":
        return lambda a: key(a) == k
    if op == "semver_gt":
        return lambda a: (x := key(a)) is not None and x > k
    if op == "semver_gte":
        return lambda a: (x := key(a)) is not None and x >= k
    if op == "semver_lt":
        return lambda a: (x := key(a)) is not None and x < k
    return lambda a: (x := key(a)) is not None and x <= k


def compile_condition(
    cond: Condition,
    segments: Mapping[str, Condition] | None = None,
    _compiled: dict[str, Predicate] | None = None,
) -> Predicate:
    """A predicate over an attributes mapping. Segments are compiled once and shared."""
    compiled = {} if _compiled is None else _compiled
    seg = segments or {}

    def build(c: Condition) -> Predicate:
        if isinstance(c, Compare):
            return _compile_compare(c)
        if isinstance(c, All):
            parts = tuple(build(i) for i in c.items)
            if len(parts) == 1:
                return parts[0]
            if len(parts) == 2:
                p0, p1 = parts
                return lambda a: p0(a) and p1(a)
            return lambda a: all(p(a) for p in parts)
        if isinstance(c, Any_):
            parts = tuple(build(i) for i in c.items)
            if len(parts) == 1:
                return parts[0]
            if len(parts) == 2:
                p0, p1 = parts
                return lambda a: p0(a) or p1(a)
            return lambda a: any(p(a) for p in parts)
        if isinstance(c, Not):
            inner = build(c.item)
            return lambda a: not inner(a)
        if c.id not in compiled:
            if c.id not in seg:
                raise ConditionError(f"segment {c.id!r}", "unknown segment")
            compiled[c.id] = build(seg[c.id])
        return compiled[c.id]

    return build(cond)
