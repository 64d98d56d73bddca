"""Experiments in the control plane: stored, audited, and their flag rules written on start and
removed on stop, in one transaction with the experiment (SQLite and Postgres)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from tallystick.control import experiments as ex
from tallystick.control import flags
from tallystick.control.definitions import DefinitionError
from tallystick.control.store import Conflict, ControlStore, NotFound
from tallystick.flags.evaluate import parse_ruleset
from tallystick.flags.hashing import assign_variation

T0 = dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 10, 15, 17, tzinfo=dt.UTC)

DOC: dict[str, Any] = {
    "key": "signin-dialog",
    "name": "Sign-in dialog: e-mail pre-filled",
    "hypothesis": "Pre-filling the e-mail lowers the bounce rate",
    "owner": "ux-lead@research-portal.eu",
    "unit": "user.anonymous_id",
    "variations": [
        {"key": "a", "name": "Control: empty e-mail field"},
        {"key": "b", "name": "E-mail pre-filled"},
    ],
    "metrics": {"primary": ["bounce_rate"], "guardrails": ["signin_latency"]},
}


def doc(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(DOC), **changes}


def rules(store: ControlStore, flag: str = "signin-dialog", env: str = "prod") -> list[Any]:
    f = flags.get_ruleset(store)["flags"].get(flag)
    if f is None:
        return []
    return list(f["environments"].get(env, {}).get("rules", []))


def test_put_get_list_and_audit(store: ControlStore) -> None:
    assert ex.list_experiments(store) == []
    v0 = store.version()
    change = ex.put_experiment(store, DOC, "alice")
    assert change.action == "create"
    assert change.changes == ("+ experiment signin-dialog (draft)",)
    assert change.version == store.version() == v0 + 1
    assert change.flags == ()  # a draft touches no flag
    stored = ex.get_experiment(store, "signin-dialog")
    assert stored.experiment.status == "draft"
    assert stored.experiment.unit == "user.anonymous_id"
    assert stored.version == v0 + 1
    assert stored.updated_by == "alice"
    assert stored.created_at == stored.updated_at
    assert [s.key for s in ex.list_experiments(store)] == ["signin-dialog"]
    (entry,) = store.audit_log(kind="experiments")
    assert (entry.action, entry.name, entry.actor, entry.before) == (
        "create",
        "signin-dialog",
        "alice",
        None,
    )
    assert entry.after == stored.experiment.to_dict()
    assert flags.get_ruleset(store)["flags"] == {}

    again = ex.put_experiment(store, DOC, "bob")
    assert again.action == "unchanged"
    assert again.version is None
    assert store.version() == v0 + 1

    updated = ex.put_experiment(store, doc(mde=0.1, teams=["ux"]), "bob")
    assert updated.action == "update"
    assert updated.changes == ('~ teams: [] → ["ux"]', "~ mde: 0.05 → 0.1")
    assert ex.get_experiment(store, "signin-dialog").updated_by == "bob"
    assert [e.action for e in store.audit_log(kind="experiments")] == ["update", "create"]

    summary = ex.list_experiments(store)[0].summary()
    assert summary["metrics"] == {
        "primary": ["bounce_rate"],
        "secondary": [],
        "guardrails": ["signin_latency"],
    }
    assert summary["variations"][1] == {"key": "b", "name": "E-mail pre-filled", "weight": 0.5}


def test_unknown_experiment_is_a_key_error_with_a_hint(store: ControlStore) -> None:
    with pytest.raises(KeyError, match="none yet"):
        ex.get_experiment(store, "signin")
    ex.put_experiment(store, DOC, "alice")
    with pytest.raises(ex.UnknownExperiment) as info:
        ex.get_experiment(store, "signin-dialgo")
    assert isinstance(info.value, NotFound)
    assert str(info.value) == (
        "no experiment 'signin-dialgo'; did you mean 'signin-dialog'? "
        "(`tally experiments list` shows the experiments)"
    )
    for call in (ex.start_experiment, ex.stop_experiment, ex.delete_experiment):
        with pytest.raises(ex.UnknownExperiment):
            call(store, "nope", "alice")


def test_an_invalid_definition_names_the_field_and_writes_nothing(store: ControlStore) -> None:
    with pytest.raises(DefinitionError) as info:
        ex.put_experiment(store, doc(weights=[0.7, 0.7]), "alice")
    assert info.value.where == "weights"
    with pytest.raises(DefinitionError) as info:
        ex.put_experiments(store, [DOC, doc(key="other", unit="account")], "alice")
    assert info.value.where == "[1].unit"
    assert ex.list_experiments(store) == []
    assert store.version() == 0


def test_start_writes_the_rule_and_stop_removes_it(store: ControlStore) -> None:
    ex.put_experiment(store, DOC, "alice")
    v = store.version()
    started = ex.start_experiment(store, "signin-dialog", "alice", at=T0)
    assert started.action == "start"
    assert started.version == store.version() == v + 1
    assert started.flags == ("dev", "prod")  # the first ruleset: both environments written
    assert "created flag 'signin-dialog' (string, default \"a\": the control's value)" in (
        started.notes
    )
    e = ex.get_experiment(store, "signin-dialog").experiment
    assert (e.status, e.start, e.stop) == ("running", T0, None)
    ruleset = flags.get_ruleset(store)
    flag = ruleset["flags"]["signin-dialog"]
    assert (flag["type"], flag["default"]) == ("string", "a")
    (rule,) = flag["environments"]["prod"]["rules"]
    assert rule["id"] == "experiment-signin-dialog"
    assert {k: rule["experiment"][k] for k in e.flag_rule()["experiment"]} == (
        e.flag_rule()["experiment"]
    )
    # the SDK's document for prod is at the new version, and assigns like GrowthBook
    prod = flags.get_environment(store, "prod")
    assert prod.version == v + 1
    compiled = parse_ruleset(prod.document).compile("prod")
    for i in range(200):
        unit = f"anon-{i}"
        got = compiled.evaluate("signin-dialog", {"anonymous_id": unit})
        assert got.variation_key == "ab"[assign_variation(unit, "signin-dialog", 2)]
        assert got.exposure
    # the audit log says so, all under the one version
    log = store.audit_log(limit=10)
    assert {(a.kind, a.name) for a in log if a.version == v + 1} == {
        ("experiments", "signin-dialog"),
        ("flags", "prod"),
        ("flags", "dev"),
    }

    # starting again changes nothing
    assert ex.start_experiment(store, "signin-dialog", "alice").action == "unchanged"
    assert store.version() == v + 1

    stopped = ex.stop_experiment(store, "signin-dialog", "bob", at=T1)
    assert stopped.action == "stop"
    assert stopped.flags == ("prod",)
    assert "flag signin-dialog: rule experiment-signin-dialog removed from prod" in stopped.changes
    e = ex.get_experiment(store, "signin-dialog").experiment
    assert (e.status, e.start, e.stop) == ("stopped", T0, T1)
    assert rules(store) == []
    assert "signin-dialog" in flags.get_ruleset(store)["flags"]  # the flag stays: the default
    assert ex.stop_experiment(store, "signin-dialog", "bob").action == "unchanged"

    with pytest.raises(Conflict, match="cannot be restarted") as info:
        ex.start_experiment(store, "signin-dialog", "alice")
    assert "new key" in str(info.value)
    assert ex.get_experiment(store, "signin-dialog").experiment.status == "stopped"


def test_start_keeps_a_planned_start(store: ControlStore) -> None:
    ex.put_experiment(store, doc(start="2026-09-30T00:00:00Z"), "alice")
    ex.start_experiment(store, "signin-dialog", "alice", at=T0)
    e = ex.get_experiment(store, "signin-dialog").experiment
    assert e.start == dt.datetime(2026, 9, 30, tzinfo=dt.UTC)


def test_stopping_a_draft_is_refused(store: ControlStore) -> None:
    ex.put_experiment(store, DOC, "alice")
    with pytest.raises(Conflict, match="draft, not running"):
        ex.stop_experiment(store, "signin-dialog", "alice")


def test_the_rule_joins_an_existing_flag(store: ControlStore) -> None:
    flags.put_ruleset(
        store,
        {
            "segments": {"staff": {"attribute": "email", "op": "regex", "value": "@uni\\.eu$"}},
            "flags": {
                "dialog": {
                    "type": "string",
                    "default": "a",
                    "environments": {
                        "prod": {
                            "rules": [
                                {"id": "staff", "condition": {"segment": "staff"}, "value": "b"}
                            ]
                        }
                    },
                }
            },
        },
        "alice",
    )
    ex.put_experiment(
        store,
        doc(flag="dialog", targeting={"attribute": "country", "op": "in", "value": ["DE"]}),
        "alice",
    )
    change = ex.start_experiment(store, "signin-dialog", "alice", at=T0)
    assert change.flags == ("prod",)
    assert [r["id"] for r in rules(store, "dialog")] == ["staff", "experiment-signin-dialog"]
    compiled = parse_ruleset(flags.get_environment(store, "prod").document).compile("prod")
    staff = compiled.evaluate("dialog", {"anonymous_id": "x", "email": "a@uni.eu", "country": "DE"})
    assert (staff.reason, staff.value) == ("targeted", "b")
    outside = compiled.evaluate("dialog", {"anonymous_id": "x", "country": "FR"})
    assert outside.reason == "default"
    inside = compiled.evaluate("dialog", {"anonymous_id": "x", "country": "DE"})
    assert inside.reason == "experiment"


def test_a_flag_that_cannot_serve_the_variations_is_refused_writing_nothing(
    store: ControlStore,
) -> None:
    flags.put_ruleset(
        store, {"flags": {"signin-dialog": {"type": "boolean", "default": False}}}, "alice"
    )
    ex.put_experiment(store, DOC, "alice")
    v = store.version()
    with pytest.raises(Conflict, match="keeps its type") as info:
        ex.start_experiment(store, "signin-dialog", "alice")
    assert "is not a boolean" in str(info.value)
    assert ex.get_experiment(store, "signin-dialog").experiment.status == "draft"
    assert store.version() == v
    assert rules(store) == []
    # boolean variations fit
    ex.put_experiment(
        store,
        doc(variations=[{"key": "off", "value": False}, {"key": "on", "value": True}]),
        "alice",
    )
    ex.start_experiment(store, "signin-dialog", "alice")
    assert [r["id"] for r in rules(store)] == ["experiment-signin-dialog"]


def test_a_rule_after_a_catch_all_or_in_an_unknown_environment_is_refused(
    store: ControlStore,
) -> None:
    flags.put_ruleset(
        store,
        {
            "flags": {
                "signin-dialog": {
                    "type": "string",
                    "default": "a",
                    "environments": {"prod": {"rules": [{"id": "everyone", "value": "b"}]}},
                }
            }
        },
        "alice",
    )
    ex.put_experiments(store, [DOC, doc(key="staging-test", environment="staging")], "alice")
    with pytest.raises(Conflict, match="'everyone' serving every unit"):
        ex.start_experiment(store, "signin-dialog", "alice")
    with pytest.raises(Conflict, match="environment 'staging', which the flags ruleset"):
        ex.start_experiment(store, "staging-test", "alice")


def test_apply_keeps_the_status_and_updates_a_running_rule(store: ControlStore) -> None:
    created = ex.put_experiment(store, doc(status="running"), "alice")  # new + running: started
    assert created.action == "create"
    assert created.stored is not None
    assert created.stored.experiment.start is not None
    assert [r["id"] for r in rules(store)] == ["experiment-signin-dialog"]
    change = ex.put_experiment(store, doc(weights=[0.2, 0.8], status="draft"), "alice")
    assert change.action == "update"
    assert any("status stays running" in n for n in change.notes)
    assert any("mixes units" in n for n in change.notes)
    assert change.flags == ("prod",)
    assert rules(store)[0]["experiment"]["weights"] == [0.2, 0.8]
    e = ex.get_experiment(store, "signin-dialog").experiment
    assert e.status == "running"
    assert e.start == created.stored.experiment.start

    # moving it to another flag moves the rule, in one version
    v = store.version()
    moved = ex.put_experiment(store, doc(weights=[0.2, 0.8], flag="dialog-2"), "alice")
    assert moved.version == store.version() == v + 1
    assert rules(store) == []
    assert [r["id"] for r in rules(store, "dialog-2")] == ["experiment-signin-dialog"]


def test_a_list_is_all_or_nothing(store: ControlStore) -> None:
    flags.put_ruleset(
        store, {"flags": {"bool-flag": {"type": "boolean", "default": False}}}, "alice"
    )
    v = store.version()
    with pytest.raises(Conflict):
        ex.put_experiments(
            store, [DOC, doc(key="second", flag="bool-flag", status="running")], "alice"
        )
    assert ex.list_experiments(store) == []
    assert store.version() == v
    changes = ex.put_experiments(store, [DOC, doc(key="second")], "alice")
    assert [c.action for c in changes] == ["create", "create"]
    assert changes[0].version == changes[1].version == store.version() == v + 1


def test_delete_removes_a_running_experiments_rule(store: ControlStore) -> None:
    ex.put_experiment(store, DOC, "alice")
    ex.start_experiment(store, "signin-dialog", "alice")
    deleted = ex.delete_experiment(store, "signin-dialog", "carol")
    assert deleted.action == "delete"
    assert deleted.stored is None
    assert deleted.flags == ("prod",)
    assert rules(store) == []
    assert ex.list_experiments(store) == []
    entry = store.audit_log(kind="experiments", limit=1)[0]
    assert (entry.action, entry.actor, entry.after) == ("delete", "carol", None)
    assert entry.before is not None
    assert entry.before["status"] == "running"


def test_starting_a_running_experiment_puts_back_a_missing_rule(store: ControlStore) -> None:
    ex.put_experiment(store, DOC, "alice")
    ex.start_experiment(store, "signin-dialog", "alice", at=T0)
    ruleset = flags.get_ruleset(store)
    ruleset["flags"]["signin-dialog"]["environments"]["prod"]["rules"] = []
    flags.put_ruleset(store, ruleset, "bob")  # someone applies a ruleset without the rule
    assert rules(store) == []
    again = ex.start_experiment(store, "signin-dialog", "alice", at=T1)
    assert again.action == "start"
    assert again.flags == ("prod",)
    assert [r["id"] for r in rules(store)] == ["experiment-signin-dialog"]
    assert ex.get_experiment(store, "signin-dialog").experiment.start == T0  # kept
