"""Flags: the ruleset model (clear errors), the kill switch, environments, ordered rules,
rollouts and experiments; values, reasons and exposures; and flags that GrowthBook can express
evaluate to the same values and variations as the ``growthbook`` SDK."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from growthbook import GrowthBook
from hypothesis import given, settings
from hypothesis import strategies as st

from tallystick.flags.errors import RulesetError
from tallystick.flags.evaluate import Evaluation, Reason, compile_ruleset, parse_ruleset
from tallystick.flags.hashing import hash_unit

SIGNIN: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "segments": {
        "staff": {"attribute": "email", "op": "regex", "value": r"@example\.org$"},
        "dach": {"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
    },
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "description": "the one-step sign-in dialog",
            "environments": {
                "dev": {"rules": [{"id": "everyone", "value": True}]},
                "prod": {
                    "rules": [
                        {"id": "staff", "condition": {"segment": "staff"}, "value": True},
                        {
                            "id": "old-apps",
                            "condition": {
                                "attribute": "app_version",
                                "op": "semver_lt",
                                "value": "2.3.0",
                            },
                            "value": False,
                        },
                        {"id": "ramp", "value": True, "rollout": {"coverage": 0.25}},
                    ]
                },
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "condition": {"not": {"segment": "staff"}},
                            "experiment": {
                                "key": "signin-dialog",
                                "variations": [
                                    {"key": "A", "value": "A"},
                                    {"key": "B", "value": "B"},
                                ],
                                "weights": [0.5, 0.5],
                                "coverage": 0.8,
                            },
                        }
                    ]
                }
            },
        },
        "checkout-copy": {
            "type": "json",
            "default": {"title": "Pay", "steps": 3},
            "killed": True,
            "environments": {"prod": {"rules": [{"value": {"title": "Buy now", "steps": 2}}]}},
        },
        "max-items": {
            "type": "number",
            "default": 10,
            "environments": {
                "prod": {"enabled": False, "rules": [{"value": 20}]},
                "dev": {"rules": [{"id": "off", "enabled": False, "value": 99}]},
            },
        },
    },
}


@pytest.fixture(scope="module")
def prod() -> Any:
    return compile_ruleset(SIGNIN, "prod")


def test_the_kill_switch_wins_over_everything(prod: Any) -> None:
    for env in ("dev", "prod"):
        e = compile_ruleset(SIGNIN, env).evaluate("checkout-copy", {"id": "u1"})
        assert e.value == {"title": "Pay", "steps": 3}
        assert e.reason == Reason.KILLED
        assert e.exposure is False
    doc = copy.deepcopy(SIGNIN)
    doc["flags"]["signin-dialog"]["killed"] = True
    killed = compile_ruleset(doc, "prod")
    for i in range(200):
        e = killed.evaluate("signin-dialog", {"id": f"u{i}"})
        assert (e.value, e.reason, e.experiment, e.exposure) == ("A", "killed", None, False)


def test_environments_have_their_own_rules(prod: Any) -> None:
    dev = compile_ruleset(SIGNIN, "dev")
    assert dev.evaluate("new-signin", {}).value is True
    assert dev.evaluate("new-signin", {}).reason == Reason.TARGETED
    # a flag without rules in an environment: its default
    assert dev.evaluate("signin-dialog", {"id": "u1"}) == Evaluation(
        "signin-dialog", "A", "default"
    )
    # turned off in prod: the default, reason disabled
    assert prod.evaluate("max-items", {}) == Evaluation("max-items", 10, "disabled")
    # a disabled rule is skipped
    assert dev.evaluate("max-items", {}) == Evaluation("max-items", 10, "default")
    with pytest.raises(RulesetError, match="unknown environment 'staging'"):
        parse_ruleset(SIGNIN).compile("staging")


def test_rules_apply_in_order(prod: Any) -> None:
    staff_old_app = {"id": "u1", "email": "a@example.org", "app_version": "2.0.0"}
    e = prod.evaluate("new-signin", staff_old_app)
    assert (e.value, e.reason, e.rule) == (True, "targeted", "staff")
    e = prod.evaluate("new-signin", {**staff_old_app, "email": "a@mail.org"})
    assert (e.value, e.reason, e.rule) == (False, "targeted", "old-apps")


def test_a_rollout_reaches_its_share_of_units(prod: Any) -> None:
    units = [{"id": f"user-{i}", "app_version": "2.4.0"} for i in range(10_000)]
    results = [prod.evaluate("new-signin", u) for u in units]
    rolled = [e for e in results if e.reason == Reason.ROLLOUT]
    assert 0.23 < len(rolled) / len(units) < 0.27
    assert all(e.value is True and e.rule == "ramp" and not e.exposure for e in rolled)
    others = [e for e in results if e.reason != Reason.ROLLOUT]
    assert all(e.value is False and e.reason == "default" for e in others)
    # exactly the units whose hash (seed: the flag's key) is below the coverage
    for u, e in zip(units[:500], results[:500], strict=True):
        assert (e.reason == "rollout") is (hash_unit("new-signin", u["id"]) < 0.25)


def test_an_experiment_assignment_is_an_exposure(prod: Any) -> None:
    seen = {"A": 0, "B": 0, None: 0}
    for i in range(4000):
        e = prod.evaluate("signin-dialog", {"id": f"user-{i}", "email": "x@mail.org"})
        if e.reason == Reason.EXPERIMENT:
            assert e.experiment == "signin-dialog"
            assert e.variation_key == e.value
            assert e.variation == "AB".index(e.value)
            assert (e.hash_attribute, e.unit) == ("id", f"user-{i}")
            assert e.bucket == hash_unit("signin-dialog", f"user-{i}")
            assert e.exposure is True
            assert e.rule == "ab"
            seen[e.variation_key] += 1
        else:  # outside the 80 % coverage: the next rule, here the default
            assert (e.value, e.reason, e.exposure) == ("A", "default", False)
            seen[None] += 1
    assert 0.18 < seen[None] / 4000 < 0.22
    assert abs(seen["A"] - seen["B"]) < 200
    # the same unit always gets the same variation
    again = prod.evaluate("signin-dialog", {"id": "user-7", "email": "x@mail.org"})
    assert again == prod.evaluate("signin-dialog", {"id": "user-7", "email": "x@mail.org"})


def test_units_without_the_hash_attribute_skip_rollouts_and_experiments(prod: Any) -> None:
    for attrs in ({}, {"id": ""}, {"id": None}, {"id": True}, {"id": 0}, {"id": ["u1"]}):
        assert prod.evaluate("signin-dialog", attrs).reason == Reason.DEFAULT
        assert prod.evaluate("new-signin", {**attrs, "app_version": "3.0.0"}).reason == "default"
    # a number identifies a unit as JavaScript writes it
    e = prod.evaluate("signin-dialog", {"id": 12345})
    if e.reason == "experiment":
        assert e.unit == "12345"


def test_an_unknown_flag_gives_the_callers_default(prod: Any) -> None:
    assert prod.evaluate("nope", {"id": "u1"}, default=7) == Evaluation("nope", 7, "unknown")
    assert prod.value("nope", {}, "x") == "x"
    assert prod.value("max-items", {}, 0) == 10
    assert "nope" not in prod
    assert "new-signin" in prod
    assert prod.flag_type("checkout-copy") == "json"
    assert prod.flag_type("nope") is None


def test_evaluate_all_and_json(prod: Any) -> None:
    everything = prod.evaluate_all({"id": "user-3", "email": "x@mail.org"})
    assert set(everything) == set(SIGNIN["flags"])
    encoded = msgspec.json.decode(msgspec.json.encode(everything))
    assert encoded["checkout-copy"]["reason"] == "killed"
    assert encoded["max-items"] == {
        "flag": "max-items", "value": 10, "reason": "disabled", "rule": None,
        "experiment": None, "variation": None, "variation_key": None, "hash_attribute": None,
        "unit": None, "bucket": None, "exposure": False,
    }  # fmt: skip


def test_a_ruleset_round_trips() -> None:
    parsed = parse_ruleset(SIGNIN)
    assert parse_ruleset(parsed.to_dict()) == parsed
    assert parse_ruleset({**SIGNIN, "version": 12}).to_dict()["version"] == 12
    assert parse_ruleset(msgspec.json.decode(msgspec.json.encode(parsed.to_dict()))) == parsed


def test_namespaces_keep_experiments_apart() -> None:
    def exp(key: str, start: float, end: float) -> dict[str, Any]:
        return {
            "type": "string",
            "default": "off",
            "environments": {"prod": {"rules": [{"experiment": {
                "key": key,
                "variations": [{"value": "a"}, {"value": "b"}],
                "namespace": {"id": "checkout", "range": [start, end]},
            }}]}},
        }  # fmt: skip

    ruleset = compile_ruleset(
        {"flags": {"x": exp("exp-x", 0, 0.4), "y": exp("exp-y", 0.4, 1)}}, "prod"
    )
    both = in_x = 0
    for i in range(3000):
        ex = ruleset.evaluate("x", {"id": f"u{i}"})
        ey = ruleset.evaluate("y", {"id": f"u{i}"})
        both += ex.exposure and ey.exposure
        in_x += ex.exposure
        assert ex.exposure or ey.exposure
    assert both == 0
    assert 0.37 < in_x / 3000 < 0.43


def test_the_documented_ruleset_is_valid_and_evaluates_as_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "flags.md").read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block is not None
    flags = compile_ruleset(json.loads(block.group(1)), "prod")
    e = flags.evaluate("signin-dialog", {"id": "user-0", "email": "ada@mail.org"})
    assert (e.value, e.reason, e.variation_key, e.exposure) == ("B", "experiment", "B", True)
    staff = flags.evaluate("signin-dialog", {"id": "user-0", "email": "ada@example.org"})
    assert staff.reason == "default"


# -- invalid rulesets ----------------------------------------------------------------------------


def flag(**kw: Any) -> dict[str, Any]:
    return {"flags": {"f": {"type": "boolean", "default": False, **kw}}}


def rules(*rs: Any, kind: str = "boolean", default: Any = False) -> dict[str, Any]:
    return {"flags": {"f": {"type": kind, "default": default, "environments": {
        "prod": {"rules": list(rs)}}}}}  # fmt: skip


def exp_rule(**kw: Any) -> dict[str, Any]:
    return {"experiment": {"variations": [{"value": False}, {"value": True}], **kw}}


INVALID: list[tuple[Any, str, str]] = [
    ([], "", "a ruleset is an object"),
    ({"flag": {}}, "", "unknown key(s) ['flag']"),
    ({"environments": []}, "environments", "non-empty list"),
    ({"environments": ["prod", "prod"]}, "environments", "listed twice"),
    ({"environments": ["pr od"]}, "environments[0]", "environment 'pr od'"),
    ({"flags": {"a b": {}}}, "flags.a b", "flag key 'a b'"),
    ({"flags": {"f": {"default": 1}}}, "flags.f.type", "type is one of"),
    ({"flags": {"f": {"type": "boolean"}}}, "flags.f", "needs a default"),
    ({"flags": {"f": {"type": "boolean", "default": 0}}}, "flags.f.default", "not a boolean"),
    ({"flags": {"f": {"type": "number", "default": True}}}, "flags.f.default", "not a number"),
    ({"flags": {"f": {"type": "string", "default": 1}}}, "flags.f.default", "not a string"),
    (
        {"flags": {"f": {"type": "json", "default": {"a": float("nan")}}}},
        "flags.f.default.a",
        "not a JSON number",
    ),
    (flag(killed="yes"), "flags.f.killed", "true or false"),
    (flag(environments={"staging": {}}), "flags.f.environments.staging", "unknown environment"),
    (
        flag(environments={"prod": {"enabled": 1}}),
        "flags.f.environments.prod.enabled",
        "true or false",
    ),
    (flag(environments={"prod": {"rules": {}}}), "flags.f.environments.prod.rules", "is a list"),
    (rules({}), "flags.f.environments.prod.rules[0]", "needs a value"),
    (rules({"value": 1}), "flags.f.environments.prod.rules[0].value", "not a boolean"),
    (
        rules({"value": True, "then": 1}),
        "flags.f.environments.prod.rules[0]",
        "unknown key(s) ['then']",
    ),
    (
        rules({"id": "a", "value": True}, {"id": "a", "value": False}),
        "flags.f.environments.prod.rules[1].id",
        "used twice",
    ),
    (
        rules({"value": True, "condition": {"segment": "x"}}),
        "flags.f.environments.prod.rules[0].condition.segment",
        "unknown segment 'x'",
    ),
    (
        rules({"value": True, "condition": {"attribute": "a", "op": "gt", "value": "1"}}),
        "flags.f.environments.prod.rules[0].condition.value",
        "compares numbers",
    ),
    (
        rules({"value": True, "rollout": {}}),
        "flags.f.environments.prod.rules[0].rollout",
        "needs a coverage",
    ),
    (
        rules({"value": True, "rollout": {"coverage": 25}}),
        "flags.f.environments.prod.rules[0].rollout.coverage",
        "from 0 to 1",
    ),
    (
        rules({"value": True, "rollout": {"coverage": 0.5, "hash_version": 3}}),
        "flags.f.environments.prod.rules[0].rollout.hash_version",
        "1 or 2",
    ),
    (
        rules({"value": True, "experiment": {}}),
        "flags.f.environments.prod.rules[0]",
        "either a value",
    ),
    (
        rules(exp_rule(variations=[{"value": True}])),
        "flags.f.environments.prod.rules[0].experiment.variations",
        "2 or more",
    ),
    (
        rules(exp_rule(variations=[{"value": True}, {"value": "B"}])),
        "flags.f.environments.prod.rules[0].experiment.variations[1].value",
        "not a boolean",
    ),
    (
        rules(exp_rule(variations=[{"key": "a", "value": True}, {"key": "a", "value": False}])),
        "flags.f.environments.prod.rules[0].experiment.variations[1].key",
        "used twice",
    ),
    (
        rules(exp_rule(weights=[0.7, 0.7])),
        "flags.f.environments.prod.rules[0].experiment.weights",
        "summing to 1",
    ),
    (
        rules(exp_rule(weights=[1.0])),
        "flags.f.environments.prod.rules[0].experiment.weights",
        "one per variation",
    ),
    (
        rules(exp_rule(coverage=-0.1)),
        "flags.f.environments.prod.rules[0].experiment.coverage",
        "from 0 to 1",
    ),
    (
        rules(exp_rule(namespace={"id": "n", "range": [0.5, 0.2]})),
        "flags.f.environments.prod.rules[0].experiment.namespace.range",
        "start < end",
    ),
    (
        rules(exp_rule(namespace={"id": "n"})),
        "flags.f.environments.prod.rules[0].experiment.namespace.range",
        "start < end",
    ),
    (
        rules(exp_rule(hash_attribute="")),
        "flags.f.environments.prod.rules[0].experiment.hash_attribute",
        "attribute name",
    ),
    (
        rules(exp_rule(seed="")),
        "flags.f.environments.prod.rules[0].experiment.seed",
        "non-empty",
    ),
    (
        rules(exp_rule(arms=2)),
        "flags.f.environments.prod.rules[0].experiment",
        "unknown key(s) ['arms']",
    ),
    ({"segments": {"a": {"segment": "a"}}}, "segments.a", "reference each other"),
    ({"version": "3"}, "version", "is an integer"),
]


@pytest.mark.parametrize(("doc", "path", "message"), INVALID)
def test_invalid_rulesets_say_where_and_why(doc: Any, path: str, message: str) -> None:
    with pytest.raises(RulesetError) as info:
        parse_ruleset(doc)
    assert info.value.path == path
    assert message in info.value.message


# -- the growthbook SDK on the same flags ---------------------------------------------------------

GB_OPS = {"equals": "$eq", "in": "$in", "not_in": "$nin", "gt": "$gt", "lt": "$lt",
          "regex": "$regex", "semver_gte": "$vgte"}  # fmt: skip


def gb_condition(doc: dict[str, Any], segments: dict[str, Any]) -> dict[str, Any]:
    if "segment" in doc:
        return gb_condition(segments[doc["segment"]], segments)
    if "and" in doc:
        return {"$and": [gb_condition(x, segments) for x in doc["and"]]}
    if "or" in doc:
        return {"$or": [gb_condition(x, segments) for x in doc["or"]]}
    if "not" in doc:
        return {"$not": gb_condition(doc["not"], segments)}
    return {doc["attribute"]: {GB_OPS[doc["op"]]: doc["value"]}}


def to_growthbook(doc: dict[str, Any], env: str) -> dict[str, Any]:
    """The same flags as a GrowthBook features payload."""
    features: dict[str, Any] = {}
    segments = doc.get("segments", {})
    for key, f in doc["flags"].items():
        gb_rules: list[dict[str, Any]] = []
        for rule in f.get("environments", {}).get(env, {}).get("rules", []):
            gr: dict[str, Any] = {}
            if "condition" in rule:
                gr["condition"] = gb_condition(rule["condition"], segments)
            if "experiment" in rule:
                e = rule["experiment"]
                gr.update(
                    key=e.get("key", key),
                    variations=[v["value"] for v in e["variations"]],
                    coverage=e.get("coverage", 1),
                    hashAttribute=e.get("hash_attribute", "id"),
                    hashVersion=e.get("hash_version", 2),
                )
                if "weights" in e:
                    gr["weights"] = e["weights"]
                if "seed" in e:
                    gr["seed"] = e["seed"]
                if "namespace" in e:
                    gr["namespace"] = [e["namespace"]["id"], *e["namespace"]["range"]]
            else:
                gr["force"] = rule["value"]
                if "rollout" in rule:
                    ro = rule["rollout"]
                    gr.update(
                        coverage=ro["coverage"],
                        hashAttribute=ro.get("hash_attribute", "id"),
                        hashVersion=ro.get("hash_version", 2),
                    )
                    if "seed" in ro:
                        gr["seed"] = ro["seed"]
            gb_rules.append(gr)
        features[key] = {"defaultValue": f["default"], "rules": gb_rules}
    return features


GROWTHBOOK_COMPARABLE: dict[str, Any] = {
    "segments": SIGNIN["segments"],
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {"prod": {"rules": [
                {"condition": {"segment": "staff"}, "value": True},
                {"condition": {"and": [{"segment": "dach"}, {"attribute": "app_version", "op": "semver_gte", "value": "2.3.0"}]}, "value": True},  # noqa: E501
                {"value": True, "rollout": {"coverage": 0.3}},
                {"value": False, "rollout": {"coverage": 0.5, "seed": "s2", "hash_version": 1, "hash_attribute": "device"}},  # noqa: E501
            ]}},
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {"prod": {"rules": [
                {"condition": {"attribute": "plan", "op": "not_in", "value": ["enterprise"]},
                 "experiment": {"key": "signin-dialog", "variations": [{"value": "A"}, {"value": "B"}, {"value": "C"}], "weights": [0.2, 0.3, 0.5], "coverage": 0.7}},  # noqa: E501
                {"experiment": {"key": "fallback", "seed": "fb", "hash_version": 1, "hash_attribute": "device", "variations": [{"value": "X"}, {"value": "Y"}], "namespace": {"id": "layer", "range": [0.1, 0.6]}}},  # noqa: E501
            ]}},
        },
        "limits": {
            "type": "json",
            "default": {"n": 1},
            "environments": {"prod": {"rules": [
                {"condition": {"or": [{"attribute": "age", "op": "gt", "value": 30}, {"attribute": "email", "op": "regex", "value": "^b"}]}, "value": {"n": 2}},  # noqa: E501
                {"condition": {"attribute": "country", "op": "equals", "value": "FR"}, "experiment": {"variations": [{"value": {"n": 3}}, {"value": {"n": 4}}]}},  # noqa: E501
            ]}},
        },
    },
}  # fmt: skip

users = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.text(max_size=12),
            st.integers(-5, 10**6),
            st.none(),
            st.booleans(),
            st.builds("user-{}".format, st.integers(0, 10**6)),
        ),
        "device": st.text(max_size=8),
        "email": st.sampled_from(["a@example.org", "b@mail.com", "c@mail.com"]),
        "country": st.sampled_from(["DE", "FR", "US", "CH"]),
        "app_version": st.sampled_from(["2.2.9", "2.3.0", "2.10.1", "3.0.0-rc.1"]),
        "plan": st.sampled_from(["free", "pro", "enterprise"]),
        "age": st.integers(10, 60),
    }
)


@settings(max_examples=150)
@given(users)
def test_flags_evaluate_as_the_growthbook_sdk_does(user: dict[str, Any]) -> None:
    ours = compile_ruleset(GROWTHBOOK_COMPARABLE, "prod")
    gb = GrowthBook(attributes=user, features=to_growthbook(GROWTHBOOK_COMPARABLE, "prod"))
    for key in GROWTHBOOK_COMPARABLE["flags"]:
        theirs, e = gb.eval_feature(key), ours.evaluate(key, user)
        assert e.value == theirs.value, (key, user, e, theirs)
        in_experiment = theirs.source == "experiment"
        assert e.exposure is in_experiment
        if in_experiment:
            assert theirs.experimentResult is not None
            assert e.variation == theirs.experimentResult.variationId
            assert e.bucket == theirs.experimentResult.bucket


def test_many_units_evaluate_as_the_growthbook_sdk_does() -> None:
    ours = compile_ruleset(GROWTHBOOK_COMPARABLE, "prod")
    gb = GrowthBook(features=to_growthbook(GROWTHBOOK_COMPARABLE, "prod"))
    rng = random.Random(3)
    sources: dict[str, int] = {}
    for i in range(3000):
        user = {
            "id": f"user-{i}",
            "device": f"d{rng.getrandbits(32):x}",
            "email": rng.choice(["a@example.org", "b@mail.com", "c@mail.com"]),
            "country": rng.choice(["DE", "FR", "US", "CH"]),
            "app_version": rng.choice(["2.2.9", "2.3.0", "2.10.1"]),
            "plan": rng.choice(["free", "pro", "enterprise"]),
            "age": rng.randint(10, 60),
        }
        gb.set_attributes(user)
        for key in GROWTHBOOK_COMPARABLE["flags"]:
            theirs, e = gb.eval_feature(key), ours.evaluate(key, user)
            assert (e.value, e.exposure) == (theirs.value, theirs.source == "experiment"), user
            sources[theirs.source] = sources.get(theirs.source, 0) + 1
    assert set(sources) == {"force", "experiment", "defaultValue"}
