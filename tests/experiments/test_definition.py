"""Experiment definitions: validation (errors name the field), defaults, round trip, flag rule."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tallystick.experiments.definition import (
    Experiment,
    ExperimentError,
    MetricRef,
    Variation,
    parse_experiment,
)
from tallystick.flags.evaluate import compile_ruleset, parse_ruleset
from tallystick.flags.hashing import assign_variation

MINIMAL: dict[str, Any] = {
    "key": "signin-dialog",
    "hypothesis": "Pre-filling the e-mail lowers the bounce rate",
    "owner": "ux-lead@research-portal.eu",
    "variations": ["a", "b"],
    "metrics": {"primary": ["bounce_rate"]},
}

FULL_YAML = """
key: signin-dialog
name: "Sign-in dialog: e-mail pre-filled"
hypothesis: "Pre-filling the e-mail from the institution's SSO lowers the bounce rate"
owner: ux-lead@research-portal.eu
teams: [ux, product]
flag: signin-dialog
environment: prod
unit: device
variations:
  - {key: a, name: "Control: empty e-mail field", value: a}
  - {key: b, name: "E-mail pre-filled", value: b}
weights: [0.5, 0.5]
coverage: 1.0
targeting: {attribute: country, op: in, value: [DE, NL]}
namespace: [signin, 0, 0.5]
status: running
start: 2026-10-01T09:00:00Z
stop: null
metrics:
  primary: [bounce_rate]
  secondary: [{metric: signin_completed, kind: conversion, cuped_days: 14}]
  guardrails: [{metric: signin_latency, inverse: true}]
mde: 0.05
alpha: 0.05
power: 0.8
planned_sample_size: 12000
sequential: true
correction: bh
"""


def doc(**changes: Any) -> dict[str, Any]:
    d = {**MINIMAL, **changes}
    return {k: v for k, v in d.items() if v is not ...}


def test_minimal_defaults() -> None:
    e = parse_experiment(MINIMAL)
    assert e.name == "signin-dialog"
    assert e.flag == "signin-dialog"
    assert e.environment == "prod"
    assert e.unit == "user.id"
    assert e.teams == ()
    assert e.variations == (Variation("a", "a", "a"), Variation("b", "b", "b"))
    assert e.weights == (0.5, 0.5)
    assert e.coverage == 1.0
    assert e.targeting is None
    assert e.namespace is None
    assert e.status == "draft"
    assert e.start is None
    assert e.stop is None
    assert e.metrics == (MetricRef("bounce_rate", "primary"),)
    assert (e.mde, e.alpha, e.power) == (0.05, 0.05, 0.8)
    assert e.planned_sample_size is None
    assert e.sequential is False
    assert e.correction == "holm"
    assert e.hash_attribute() == "id"


def test_full_yaml_document() -> None:
    e = parse_experiment(yaml.safe_load(FULL_YAML))
    assert e.name == "Sign-in dialog: e-mail pre-filled"
    assert e.teams == ("ux", "product")
    assert e.unit == "user.anonymous_id"  # the alias "device"
    assert e.hash_attribute() == "anonymous_id"
    assert e.variations[0] == Variation("a", "Control: empty e-mail field", "a")
    assert e.targeting == {"attribute": "country", "op": "in", "value": ["DE", "NL"]}
    assert e.namespace == ("signin", 0.0, 0.5)
    assert e.status == "running"
    assert e.start == dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)
    assert e.metrics == (
        MetricRef("bounce_rate", "primary"),
        MetricRef("signin_completed", "secondary", kind="conversion", cuped_days=14),
        MetricRef("signin_latency", "guardrail", inverse=True),
    )
    assert e.metric_names("guardrail") == ["signin_latency"]
    assert e.planned_sample_size == 12000
    assert e.sequential is True
    assert e.correction == "bh"
    d = e.to_dict()
    assert d["start"] == "2026-10-01T09:00:00Z"
    assert d["namespace"] == ["signin", 0.0, 0.5]
    assert d["metrics"] == {
        "primary": ["bounce_rate"],
        "secondary": [{"metric": "signin_completed", "kind": "conversion", "cuped_days": 14}],
        "guardrails": [{"metric": "signin_latency", "inverse": True}],
    }
    assert parse_experiment(json.loads(json.dumps(d))) == e


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"unit": "user"}, ("unit", "user.id")),
        ({"unit": "session"}, ("unit", "session.id")),
        ({"unit": "session.id"}, ("unit", "session.id")),
        ({"weights": [0.2, 0.8]}, ("weights", (0.2, 0.8))),
        ({"weights": [1, 0]}, ("weights", (1.0, 0.0))),
        ({"variations": ["a", "b", "c"]}, ("weights", (1 / 3, 1 / 3, 1 / 3))),
        ({"coverage": 0.25}, ("coverage", 0.25)),
        ({"correction": "none"}, ("correction", None)),
        ({"correction": None}, ("correction", "holm")),
        ({"start": "2026-10-01"}, ("start", dt.datetime(2026, 10, 1, tzinfo=dt.UTC))),
        (
            {"start": "2026-10-01T11:00:00+02:00"},
            ("start", dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)),
        ),
        ({"start": dt.date(2026, 10, 1)}, ("start", dt.datetime(2026, 10, 1, tzinfo=dt.UTC))),
        ({"namespace": {"id": "ns", "range": [0.5, 1]}}, ("namespace", ("ns", 0.5, 1.0))),
        ({"teams": "ux"}, ("teams", ("ux",))),
        (
            {"metrics": {"primary": "bounce_rate"}},
            ("metrics", (MetricRef("bounce_rate", "primary"),)),
        ),
        (
            {"variations": [{"key": "off", "value": False}, {"key": "on", "value": True}]},
            ("variations", (Variation("off", "off", False), Variation("on", "on", True))),
        ),
        ({"flag": "signin"}, ("flag", "signin")),
        ({"environment": "dev"}, ("environment", "dev")),
    ],
)
def test_accepted(changes: dict[str, Any], expected: tuple[str, Any]) -> None:
    e = parse_experiment(doc(**changes))
    field, value = expected
    assert getattr(e, field) == value
    assert parse_experiment(e.to_dict()) == e


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        ([1], "", "mapping"),
        (doc(extra=1), "", "unknown key(s) ['extra']"),
        (doc(key=...), "key", "experiment key None"),
        (doc(key="bad key"), "key", "letters, digits"),
        (doc(key="k" * 190), "key", "at most 189"),
        (doc(hypothesis=...), "hypothesis", "needs a hypothesis"),
        (doc(hypothesis="  "), "hypothesis", "non-empty string"),
        (doc(owner=...), "owner", "needs a owner"),
        (doc(owner=3), "owner", "non-empty string"),
        (doc(name=[]), "name", "non-empty string"),
        (doc(teams=[1]), "teams", "list of team names"),
        (doc(flag="no spaces"), "flag", "flag key"),
        (doc(unit="account"), "unit", "user.id, user.anonymous_id, session.id"),
        (doc(variations=["a"]), "variations", "2 or more"),
        (doc(variations="ab"), "variations", "2 or more"),
        (doc(variations=["a", "a"]), "variations[1].key", "used twice"),
        (doc(variations=["a", {"key": "b", "colour": 1}]), "variations[1]", "colour"),
        (doc(variations=["a", {"key": "b", "value": None}]), "variations[1].value", "not null"),
        (doc(variations=["a", {"key": "b", "value": float("nan")}]), "variations[1].value", "JSON"),
        (doc(variations=["a", {"name": "b"}]), "variations[1].key", "variation key"),
        (doc(variations=["a", 7]), "variations[1]", "a variation is"),
        (doc(weights=[0.5]), "weights", "2 numbers"),
        (doc(weights=[0.6, 0.6]), "weights", "summing to 1"),
        (doc(weights=[-0.5, 1.5]), "weights", "≥ 0"),
        (doc(weights=[True, 0]), "weights", "summing to 1"),
        (doc(coverage=0), "coverage", "0 < coverage ≤ 1"),
        (doc(coverage=1.5), "coverage", "0 < coverage ≤ 1"),
        (doc(coverage="all"), "coverage", "number"),
        (doc(targeting={"attribute": "x", "op": "nope", "value": 1}), "targeting.op", "operator"),
        (doc(targeting="country=DE"), "targeting", "a condition is an object"),
        (doc(namespace=["ns", 0.5, 0.5]), "namespace", "start < end"),
        (doc(namespace=["ns", 0.5]), "namespace", "[id, start, end]"),
        (doc(namespace=["bad id", 0, 1]), "namespace[0]", "namespace id"),
        (doc(status="paused"), "status", "draft, running, stopped"),
        (doc(start="yesterday"), "start", "ISO-8601"),
        (doc(start=5), "start", "ISO-8601"),
        (doc(start="2026-10-02", stop="2026-10-01"), "stop", "before start"),
        (doc(metrics=...), "metrics", "at least one primary"),
        (doc(metrics=["bounce_rate"]), "metrics", "mapping"),
        (doc(metrics={"primary": []}), "metrics.primary", "at least one primary"),
        (doc(metrics={"primary": ["x"], "tertiary": ["y"]}), "metrics", "tertiary"),
        (doc(metrics={"primary": ["Bounce Rate"]}), "metrics.primary[0].metric", "catalog"),
        (
            doc(metrics={"primary": [{"metric": "x", "kind": "sum"}]}),
            "metrics.primary[0].kind",
            "conversion, mean, ratio",
        ),
        (
            doc(metrics={"primary": [{"metric": "x", "inverse": "yes"}]}),
            "metrics.primary[0].inverse",
            "true or false",
        ),
        (
            doc(metrics={"primary": [{"metric": "x", "cuped_days": -1}]}),
            "metrics.primary[0].cuped_days",
            "≥ 0",
        ),
        (doc(metrics={"primary": [{"metric": "x", "lift": 1}]}), "metrics.primary[0]", "lift"),
        (
            doc(metrics={"primary": ["x"], "guardrails": ["x"]}),
            "metrics.guardrails[0]",
            "listed twice",
        ),
        (doc(metrics={"primary": 3}), "metrics.primary", "list of metrics"),
        (doc(mde=0), "mde", "0 < mde"),
        (doc(mde=float("inf")), "mde", "0 < mde"),
        (doc(alpha=1), "alpha", "0 < alpha < 1"),
        (doc(power=0), "power", "0 < power < 1"),
        (doc(planned_sample_size=0), "planned_sample_size", "≥ 1"),
        (doc(planned_sample_size=10.5), "planned_sample_size", "whole number"),
        (doc(sequential="yes"), "sequential", "true or false"),
        (doc(correction="bonferroni"), "correction", "holm, bh, none"),
    ],
)
def test_rejected(document: Any, path: str, words: str) -> None:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(document)
    assert info.value.path == path
    assert words in info.value.message
    assert isinstance(info.value, ValueError)


def _ruleset(e: Experiment, flag_type: str | None = None) -> dict[str, Any]:
    return {
        "flags": {
            e.flag: {
                "type": flag_type or e.flag_type(),
                "default": e.variations[0].value,
                "environments": {e.environment: {"rules": [e.flag_rule()]}},
            }
        }
    }


def test_flag_rule_is_a_valid_flags_rule_and_assigns_like_growthbook() -> None:
    e = parse_experiment(yaml.safe_load(FULL_YAML))
    rule = e.flag_rule()
    assert rule == {
        "id": "experiment-signin-dialog",
        "condition": {"attribute": "country", "op": "in", "value": ["DE", "NL"]},
        "experiment": {
            "key": "signin-dialog",
            "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
            "weights": [0.5, 0.5],
            "coverage": 1.0,
            "hash_attribute": "anonymous_id",
            "namespace": {"id": "signin", "range": [0.0, 0.5]},
        },
    }
    ruleset = parse_ruleset(_ruleset(e))
    assert ruleset.flags["signin-dialog"].environments["prod"].rules[0].to_dict()["id"] == (
        "experiment-signin-dialog"
    )
    flags = ruleset.compile("prod")
    seen = set()
    for i in range(400):
        unit = f"anon-{i}"
        ev = flags.evaluate("signin-dialog", {"anonymous_id": unit, "country": "DE"})
        expected = assign_variation(
            unit, "signin-dialog", 2, 1.0, [0.5, 0.5], ("signin", 0.0, 0.5), 2
        )
        if expected < 0:
            assert ev.reason == "default"
            assert not ev.exposure
        else:
            assert ev.reason == "experiment"
            assert ev.exposure
            assert ev.variation_key == ("a", "b")[expected]
            assert ev.value == ev.variation_key
            assert ev.experiment == "signin-dialog"
            assert ev.hash_attribute == "anonymous_id"
            seen.add(ev.variation_key)
        # outside the targeting nobody is exposed; the unit is the anonymous id, not the user id
        assert not flags.evaluate("signin-dialog", {"anonymous_id": unit, "country": "FR"}).exposure
        assert not flags.evaluate("signin-dialog", {"id": unit, "country": "DE"}).exposure
    assert seen == {"a", "b"}


@pytest.mark.parametrize(
    ("values", "flag_type"),
    [
        ([False, True], "boolean"),
        (["a", "b"], "string"),
        ([1, 2.5], "number"),
        ([{"x": 1}, [1]], "json"),
        (["a", 1], "json"),
    ],
)
def test_flag_type_holds_every_value(values: list[Any], flag_type: str) -> None:
    e = parse_experiment(
        doc(variations=[{"key": f"v{i}", "value": v} for i, v in enumerate(values)])
    )
    assert e.flag_type() == flag_type
    compile_ruleset(_ruleset(e), "prod")  # the flags engine accepts it


# -- round trip --------------------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_metric_names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
_text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
_json_scalar = st.one_of(
    st.booleans(), st.integers(-1000, 1000), st.text(max_size=10), st.floats(-1e6, 1e6)
)
_times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
)


@st.composite
def experiments(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(_names, min_size=2, max_size=5, unique=True))
    variations: list[Any] = []
    for k in keys:
        variations.append(
            draw(
                st.one_of(
                    st.just(k),
                    st.fixed_dictionaries(
                        {"key": st.just(k)},
                        optional={"name": _text, "value": _json_scalar},
                    ),
                )
            )
        )
    raw = draw(st.lists(st.integers(0, 100), min_size=len(keys), max_size=len(keys)))
    weights = None if sum(raw) == 0 else [w / sum(raw) for w in raw]
    if weights is not None:
        weights[-1] = 1 - sum(weights[:-1])
        if weights[-1] < 0:
            weights = None
    metric_names = draw(st.lists(_metric_names, min_size=1, max_size=6, unique=True))
    refs: list[Any] = []
    for m in metric_names:
        refs.append(
            draw(
                st.one_of(
                    st.just(m),
                    st.fixed_dictionaries(
                        {"metric": st.just(m)},
                        optional={
                            "kind": st.sampled_from(["conversion", "mean", "ratio"]),
                            "inverse": st.booleans(),
                            "cuped_days": st.integers(0, 60),
                        },
                    ),
                )
            )
        )
    cut1 = draw(st.integers(1, len(refs)))
    cut2 = draw(st.integers(cut1, len(refs)))
    start = draw(st.none() | _times)
    stop = None if start is None else draw(st.none() | st.just(start + dt.timedelta(days=3)))
    lo = draw(st.floats(0, 0.9))
    d: dict[str, Any] = {
        "key": draw(_names),
        "hypothesis": draw(_text),
        "owner": draw(_text),
        "variations": variations,
        "metrics": {
            "primary": refs[:cut1],
            "secondary": refs[cut1:cut2],
            "guardrails": refs[cut2:],
        },
    }
    optional: dict[str, Any] = {
        "name": draw(_text),
        "teams": draw(st.lists(_text, max_size=3)),
        "flag": draw(_names),
        "environment": draw(st.sampled_from(["dev", "prod"])),
        "unit": draw(st.sampled_from(["user.id", "user", "device", "session", "session.id"])),
        "weights": weights,
        "coverage": draw(st.floats(0.01, 1)),
        "targeting": draw(
            st.none()
            | st.just({"attribute": "plan", "op": "exists"})
            | st.just({"or": [{"attribute": "country", "op": "equals", "value": "DE"}]})
        ),
        "namespace": [draw(_names), lo, draw(st.floats(lo + 0.05, 1))],
        "status": draw(st.sampled_from(["draft", "running", "stopped"])),
        "start": None if start is None else start.isoformat(),
        "stop": stop,
        "mde": draw(st.floats(0.001, 2)),
        "alpha": draw(st.floats(0.001, 0.5)),
        "power": draw(st.floats(0.5, 0.99)),
        "planned_sample_size": draw(st.none() | st.integers(1, 10**9)),
        "sequential": draw(st.booleans()),
        "correction": draw(st.sampled_from(["holm", "bh", "none"])),
        "alerts": draw(
            st.none()
            | st.just([])
            | st.just(["experiment_srm"])
            | st.just([{"rule": "experiment_guardrail", "min_units": 0}, "experiment_srm"])
        ),
    }
    for k, v in optional.items():
        if draw(st.booleans()):
            d[k] = v
    return d


@settings(max_examples=100, deadline=None)
@given(experiments())
def test_round_trip(document: dict[str, Any]) -> None:
    e = parse_experiment(document)
    d = e.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-ready
    assert parse_experiment(d) == e
    assert parse_experiment(json.loads(json.dumps(d))).to_dict() == d
    assert parse_experiment(yaml.safe_load(yaml.safe_dump(d))) == e
    # every valid definition gives a rule the flags engine accepts
    compile_ruleset(_ruleset(e), e.environment)
