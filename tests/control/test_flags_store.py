"""The flags ruleset in the control plane: stored per environment, validated, audited."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tallystick.control import flags
from tallystick.control.definitions import DefinitionError
from tallystick.control.store import ControlStore, NotFound
from tallystick.flags.evaluate import parse_ruleset

RULESET: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "segments": {"staff": {"attribute": "email", "op": "regex", "value": "@example\\.org$"}},
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "dev": {"rules": [{"id": "everyone", "value": True}]},
                "prod": {
                    "rules": [{"id": "staff", "condition": {"segment": "staff"}, "value": True}]
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
                            "experiment": {
                                "variations": [
                                    {"key": "A", "value": "A"},
                                    {"key": "B", "value": "B"},
                                ]
                            },
                        }
                    ]
                }
            },
        },
    },
}


def test_put_stores_each_environment_and_audits(store: ControlStore) -> None:
    assert flags.get_ruleset(store)["flags"] == {}
    before = store.version()
    applied = flags.put_ruleset(store, RULESET, "alice")
    assert applied.changed == ("dev", "prod")
    assert applied.removed == ()
    assert applied.version == store.version() == before + 1
    prod = flags.get_environment(store, "prod")
    assert prod.version == applied.version
    assert prod.updated_by == "alice"
    assert prod.document["environments"] == ["prod"]
    assert set(prod.document["flags"]["new-signin"]["environments"]) == {"prod"}
    assert prod.document["flags"]["signin-dialog"]["environments"]["prod"]["rules"][0]["id"] == "ab"
    compiled = parse_ruleset(prod.document).compile("prod")
    assert compiled.evaluate("new-signin", {"email": "a@example.org"}).value is True
    dev = parse_ruleset(flags.get_environment(store, "dev").document).compile("dev")
    assert dev.evaluate("signin-dialog", {"id": "u"}).reason == "default"
    whole = flags.get_ruleset(store)
    assert parse_ruleset(whole).to_dict() == whole
    assert whole["flags"] == parse_ruleset(RULESET).to_dict()["flags"]
    log = store.audit_log(kind="flags")
    assert sorted(e.name for e in log) == ["dev", "prod"]
    assert {e.version for e in log} == {applied.version}
    assert all(e.actor == "alice" and e.action == "create" for e in log)


def test_only_changed_environments_move(store: ControlStore) -> None:
    first = flags.put_ruleset(store, RULESET, "alice")
    again = flags.put_ruleset(store, RULESET, "bob")
    assert again.changed == ()
    assert again.version is None
    assert store.version() == first.version
    changed = copy.deepcopy(RULESET)
    changed["flags"]["new-signin"]["environments"]["dev"]["rules"][0]["value"] = False
    third = flags.put_ruleset(store, changed, "bob")
    assert third.changed == ("dev",)
    assert flags.get_environment(store, "prod").version == first.version
    assert flags.get_environment(store, "dev").version == third.version
    assert flags.environment_version(store, "dev") == third.version
    entry = store.audit_log(kind="flags", limit=1)[0]
    assert (entry.name, entry.action, entry.actor) == ("dev", "update", "bob")
    only_prod = {**copy.deepcopy(RULESET), "environments": ["prod"]}
    del only_prod["flags"]["new-signin"]["environments"]["dev"]
    fourth = flags.put_ruleset(store, only_prod, "carol")
    assert fourth.removed == ("dev",)
    with pytest.raises(NotFound, match="environments are prod"):
        flags.get_environment(store, "dev")
    assert flags.environment_version(store, "dev") is None


def test_invalid_rulesets_are_refused_with_the_place(store: ControlStore) -> None:
    bad = copy.deepcopy(RULESET)
    bad["flags"]["new-signin"]["environments"]["prod"]["rules"][0]["value"] = "yes"
    with pytest.raises(DefinitionError) as caught:
        flags.put_ruleset(store, bad, "alice")
    assert caught.value.where == "flags.new-signin.environments.prod.rules[0].value"
    with pytest.raises(DefinitionError, match="flgs"):
        flags.put_ruleset(store, {"flgs": {}}, "alice")
    assert store.audit_log(kind="flags") == []
    empty = flags.get_environment(store, "prod")
    assert (empty.version, empty.document["flags"], empty.etag) == (0, {}, '"flags-prod-0"')
    with pytest.raises(NotFound, match="none was applied yet"):
        flags.get_environment(store, "staging")


def test_a_sent_version_is_ignored(store: ControlStore) -> None:
    applied = flags.put_ruleset(store, {**RULESET, "version": 999}, "alice")
    assert flags.get_environment(store, "prod").document["version"] == applied.version != 999


def test_the_active_flags_header_and_etags() -> None:
    from tallystick.flags.evaluate import Evaluation

    evaluations = {
        "b-exp": Evaluation("b-exp", "x", "experiment", variation_key="B v2"),
        "a-on": Evaluation("a-on", True, "targeted"),
        "ramp": Evaluation("ramp", 0.5, "rollout"),
        "json": Evaluation("json", {"k": 1}, "targeted"),
        "off": Evaluation("off", False, "default"),
        "dead": Evaluation("dead", False, "killed"),
    }
    assert flags.active_header(evaluations) == "a-on=true,b-exp=B%20v2,ramp=0.5"
    assert flags.evaluation_dict(evaluations["b-exp"]) == {
        "value": "x",
        "reason": "experiment",
        "variation_key": "B v2",
    }
    assert flags.etag_matches('"a", W/"flags-prod-3"', '"flags-prod-3"')
    assert flags.etag_matches("*", '"flags-prod-3"')
    assert not flags.etag_matches('"flags-prod-2"', '"flags-prod-3"')
    assert not flags.etag_matches(None, '"flags-prod-3"')


def test_diff_lists_what_changes() -> None:
    before = parse_ruleset(RULESET).to_dict()
    after = copy.deepcopy(RULESET)
    after["flags"]["new-signin"]["killed"] = True
    after["flags"]["new-signin"]["environments"]["dev"]["enabled"] = False
    del after["flags"]["signin-dialog"]
    after["flags"]["banner"] = {"type": "json", "default": {}}
    after["environments"] = ["dev", "prod", "staging"]
    after["segments"]["beta"] = {"attribute": "beta", "op": "equals", "value": True}
    assert flags.diff(before, parse_ruleset(after).to_dict()) == [
        "+ environment staging",
        "+ segment beta",
        "+ flag banner (json)",
        "~ flag new-signin: KILLED, dev disabled",
        "- flag signin-dialog",
    ]
    assert flags.diff(before, before) == []


def test_the_flags_need_takes_any_key() -> None:
    from tallystick.admin.access import Credential, decide, need_of
    from tallystick.collect.requests import Refused
    from tallystick.control.keys import Keyed
    from tallystick.control.principal import OPEN, Principal

    assert need_of("/v1/flags/ruleset", "GET") == "flags"
    assert need_of("/v1/flags/evaluate", "POST") == "flags"
    writer = Principal("write", "key:1:shop")
    some_keys = Keyed(write=True)
    assert decide("flags", Credential(True, writer), lambda: some_keys, "GET", None) == writer
    assert decide("flags", Credential(), lambda: Keyed(), "POST", None) == OPEN
    for credential in (Credential(), Credential(True), Credential(True, revoked=True)):
        with pytest.raises(Refused) as refused:
            decide("flags", credential, lambda: some_keys, "GET", None)
        assert refused.value.status == 401
