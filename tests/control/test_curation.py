"""Curation rules: every operator on hand-made events, missing fields, kinds that never
compare, and parse errors that say what to write."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.control.curation import OPS, Rule, RuleError, drops, parse_rule

EVENT: dict[str, Any] = {
    "name": "page.view",
    "app": {"environment": "prod", "version": "4.2.0"},
    "page": {"url": "https://portal.example/projects?id=7"},
    "data": {"trigger": "monitor", "duration_ms": 250, "ratio": 0.5, "ok": True, "a.b": "dotted"},
}

# (field, op, value, matches EVENT)
CASES = [
    ("app.environment", "equals", "prod", True),
    ("app.environment", "equals", "staging", False),
    ("app.environment", "not_equals", "staging", True),
    ("app.environment", "not_equals", "prod", False),
    ("app.environment", "in", ["staging", "prod"], True),
    ("app.environment", "in", ["staging"], False),
    ("app.environment", "not_in", ["staging"], True),
    ("app.environment", "not_in", ["prod"], False),
    ("page.url", "contains", "projects", True),
    ("page.url", "contains", "datasets", False),
    ("data.trigger", "equals", "monitor", True),
    ("data.duration_ms", "greater_than", 100, True),
    ("data.duration_ms", "greater_than", 250, False),
    ("data.duration_ms", "greater_than_or_equals", 250, True),
    ("data.duration_ms", "less_than", 250.5, True),
    ("data.duration_ms", "less_than_or_equals", 249, False),
    ("data.duration_ms", "equals", 250.0, True),  # 250 and 250.0 are the same number
    ("data.ratio", "less_than", 1, True),
    ("data.duration_ms", "equals", "250", False),  # a text is not a number
    ("data.duration_ms", "greater_than", "1", False),  # nor compared with one
    ("data.ok", "equals", True, True),
    ("data.ok", "equals", 1, False),  # a boolean is not a number
    ("app.version", "greater_than", "4.1.9", True),  # text compares as text
    ("data.a.b", "equals", "dotted", True),  # a data key with a dot
    ("data.missing", "equals", "x", False),
    ("data.missing", "not_equals", "x", True),
    ("data.missing", "in", ["x"], False),
    ("data.missing", "not_in", ["x"], True),
    ("data.missing", "contains", "x", False),
    ("data.missing", "less_than", 5, False),
    ("session.id", "equals", "s", False),
]


@pytest.mark.parametrize(("field", "op", "value", "matches"), CASES)
def test_each_operator(field: str, op: str, value: Any, matches: bool) -> None:
    rule = parse_rule({"field": field, "op": op, "value": value})
    assert rule.matches(EVENT) is matches


def test_any_matching_rule_drops_the_event() -> None:
    keep_all = [parse_rule({"field": "app.environment", "op": "equals", "value": "dev"})]
    assert not drops(keep_all, EVENT)
    assert drops(
        [*keep_all, parse_rule({"field": "data.trigger", "op": "equals", "value": "monitor"})],
        EVENT,
    )
    assert not drops([], EVENT)


@given(
    st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
    st.lists(st.text(max_size=5), min_size=1),
)
def test_negations_are_exact_opposites(found: Any, values: list[str]) -> None:
    event = {"data": {"x": found}}
    for op, negated, value in (("equals", "not_equals", values[0]), ("in", "not_in", values)):
        assert Rule("data.x", op, value).matches(event) is not Rule(
            "data.x", negated, tuple(values) if op == "in" else value
        ).matches(event)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("data.x=1", "a rule is a mapping"),
        ({"field": "data.x", "op": "equals"}, "needs value"),
        ({"field": "data.x", "op": "equal", "value": 1}, "unknown op 'equal': use one of equals"),
        ({"field": "data.x", "op": "in", "value": "a"}, "in takes a non-empty list"),
        ({"field": "data.x", "op": "not_in", "value": []}, "not_in takes a non-empty list"),
        ({"field": "data.x", "op": "equals", "value": [1]}, "equals takes one value"),
        ({"field": "data.x", "op": "less_than", "value": None}, "compares with a number or a text"),
        ({"field": "", "op": "equals", "value": 1}, "dotted path"),
        ({"field": "data.x", "op": "equals", "value": 1, "when": 2}, "not when"),
        ({"field": "data.x", "op": "less_than", "value": float("nan")}, "finite number"),
    ],
)
def test_bad_rules_say_what_to_write(raw: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(raw)


def test_every_operator_is_covered() -> None:
    assert {op for _, op, _, _ in CASES} == set(OPS)
