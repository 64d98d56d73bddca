"""Quarantine rules: what is accepted and how it is normalised, what is refused and with which
words, add/list/lift/purge marks with their audit rows and version bumps (SQLite and Postgres),
and the rules analyses read (never creating a database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tallystick.config import Settings
from tallystick.control.definitions import DefinitionError
from tallystick.control.quarantine import (
    AUDIT_KIND,
    ActiveRules,
    Rule,
    RulesUnavailable,
    add_rule,
    check_rule,
    get_rule,
    lift_rule,
    list_rules,
    mark_purged,
    rules_key,
)
from tallystick.control.store import Conflict, ControlStore, NotFound

UTC = dt.UTC
ACTOR = "cli:test"


@pytest.mark.parametrize(
    ("kind", "value", "field", "normalised"),
    [
        ("user", " u-1 ", None, "u-1"),
        ("session", "s 1", None, "s 1"),
        ("ip", "10.0.0.0/8", None, "10.0.0.0/8"),
        ("ip", " 203.0.113.0/24", None, "203.0.113.0/24"),
        ("ip", "2001:DB8::/32", None, "2001:db8::/32"),
        ("ip", "2001:db8:1::/48", None, "2001:db8:1::/48"),
        ("ip", "0.0.0.0/0", None, "0.0.0.0/0"),
        ("where", "app.version=1.4.2", "app.version", "1.4.2"),
        ("where", " data.plan = pro ", "data.plan", "pro"),
        ("where", "data.note=a=b", "data.note", "a=b"),
        ("where", "user.is_logged_in=TRUE", "user.is_logged_in", "true"),
        ("where", "session.seq=007", "session.seq", "7"),
    ],
)
def test_rules_are_normalised(kind: str, value: str, field: str | None, normalised: str) -> None:
    spec = check_rule(kind, value, reason=" why ")
    assert (spec.kind, spec.field, spec.value, spec.reason) == (kind, field, normalised, "why")


@pytest.mark.parametrize(
    ("kind", "value", "extra", "says"),
    [
        ("users", "u1", {}, "unknown kind 'users': use user, session, ip, where"),
        ("user", "  ", {}, "give the user.id to quarantine"),
        ("session", "x" * 501, {}, "at most 500"),
        ("user", "u1", {"reason": "  "}, "say why the data is quarantined (--reason TEXT)"),
        ("user", "u1", {"reason": None}, "say why"),
        (
            "ip",
            "203.0.113.7",
            {},
            "it stores each client's network cut to /24 (geo.network), never the address. "
            "Quarantine 203.0.113.0/24",
        ),
        ("ip", "203.0.113.0/28", {}, "Quarantine 203.0.113.0/24"),
        ("ip", "2001:db8:1:2::/64", {}, "cut to /48 (geo.network), never the address. Quarantine "),
        ("ip", "10.1.2.0/8", {}, "host bits set: the network is 10.0.0.0/8; quarantine 10.0.0.0/8"),
        ("ip", "example.com", {}, "is not an IP network"),
        ("ip", "", {}, "CIDR notation"),
        ("where", "app.version", {}, "write FIELD=VALUE"),
        ("where", "app.version!=1", {}, "write FIELD=VALUE"),
        ("where", "app.nope=1", {}, "unknown field 'app.nope'"),
        ("where", "client_ts=2026-01-01", {}, "holds timestamp values"),
        ("where", "data.plan=", {}, "data.plan= has no value"),
        ("where", "user.is_logged_in=yes", {}, "user.is_logged_in is true or false, not 'yes'"),
        ("where", "session.seq=x", {}, "session.seq holds whole numbers, not 'x'"),
        ("user", "u1", {"time_from": "soon"}, "'soon' is not a date or time"),
        (
            "user",
            "u1",
            {"time_from": "2026-03-02", "time_to": "2026-03-01"},
            "--to (2026-03-02) must be after --from (2026-03-02)",
        ),
    ],
)
def test_mistakes_say_what_to_write(
    kind: str, value: str, extra: dict[str, str | None], says: str
) -> None:
    options: dict[str, str | None] = {"reason": "r", **extra}
    with pytest.raises(DefinitionError) as info:
        check_rule(
            kind,
            value,
            time_from=options.get("time_from"),
            time_to=options.get("time_to"),
            reason=options["reason"],
        )
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("time_from", "time_to", "start", "end"),
    [
        ("2026-03-01", "2026-03-01", "2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00"),
        ("2026-03-01T12:00:00Z", None, "2026-03-01T12:00:00+00:00", None),
        (None, "2026-03-01T12:30:00+02:00", None, "2026-03-01T10:30:00+00:00"),
        (
            "2026-03-01T08:00",
            "2026-03-31",
            "2026-03-01T08:00:00+00:00",
            "2026-04-01T00:00:00+00:00",
        ),
    ],
)
def test_a_date_in_to_includes_that_day_and_a_time_is_excluded(
    time_from: str | None, time_to: str | None, start: str | None, end: str | None
) -> None:
    spec = check_rule("user", "u1", time_from=time_from, time_to=time_to, reason="r")
    assert (spec.time_from.isoformat() if spec.time_from else None) == start
    assert (spec.time_to.isoformat() if spec.time_to else None) == end


def test_add_list_lift_with_audit_rows_and_version_bumps(store: ControlStore) -> None:
    version = store.version()
    rule = add_rule(store, "ip", "10.0.0.0/8", reason="office", actor=ACTOR, time_from="2026-03-01")
    assert rule.active
    assert rule.path == "geo.network"
    assert rule.value == "10.0.0.0/8"
    assert rule.matches() == "geo.network in 10.0.0.0/8, client_ts from 2026-03-01"
    other = add_rule(store, "where", "data.plan=test", reason="test plan", actor=ACTOR)
    assert store.version() == version + 2
    assert [r.id for r in list_rules(store)] == [rule.id, other.id]
    assert get_rule(store, rule.id) == rule

    lifted = lift_rule(store, rule.id, "http:admin-key")
    assert not lifted.active
    assert lifted.lifted_by == "http:admin-key"
    assert lifted.lifted_at is not None
    assert [r.id for r in list_rules(store)] == [other.id]
    assert [r.id for r in list_rules(store, include_lifted=True)] == [rule.id, other.id]
    assert store.version() == version + 3

    entries = store.audit_log(kind=AUDIT_KIND)
    assert [(e.action, e.actor, e.name) for e in entries] == [
        ("lift", "http:admin-key", "geo.network in 10.0.0.0/8, client_ts from 2026-03-01"),
        ("add", ACTOR, "data.plan = test"),
        ("add", ACTOR, "geo.network in 10.0.0.0/8, client_ts from 2026-03-01"),
    ]
    assert entries[0].before is not None
    assert entries[0].before["active"] is True
    assert entries[0].after is not None
    assert entries[0].after["lifted_by"] == "http:admin-key"
    assert entries[2].before is None
    assert entries[2].after == rule.as_dict()
    assert entries[0].version == store.version()


def test_the_same_rule_twice_is_a_conflict_until_lifted(store: ControlStore) -> None:
    first = add_rule(store, "user", "u1", reason="a", actor=ACTOR)
    with pytest.raises(Conflict, match=rf"quarantined already \(rule {first.id}\)"):
        add_rule(store, "user", " u1 ", reason="b", actor=ACTOR)
    # another window is another rule
    windowed = add_rule(store, "user", "u1", reason="c", actor=ACTOR, time_to="2026-01-31")
    lift_rule(store, first.id, ACTOR)
    again = add_rule(store, "user", "u1", reason="d", actor=ACTOR)
    assert len({first.id, windowed.id, again.id}) == 3


def test_unknown_and_lifted_rules_are_refused(store: ControlStore) -> None:
    with pytest.raises(NotFound, match="no quarantine rule 42; `tally quarantine list`"):
        lift_rule(store, 42, ACTOR)
    with pytest.raises(NotFound):
        get_rule(store, 42)
    rule = add_rule(store, "session", "s1", reason="r", actor=ACTOR)
    lift_rule(store, rule.id, ACTOR)
    with pytest.raises(Conflict, match=rf"rule {rule.id} \(session.id = s1\) was lifted already"):
        lift_rule(store, rule.id, ACTOR)
    version = store.version()
    with pytest.raises(DefinitionError):
        add_rule(store, "ip", "10.0.0.1", reason="r", actor=ACTOR)
    assert store.version() == version  # nothing half-written


def test_purge_marks_rules_with_one_audit_row(store: ControlStore) -> None:
    a = add_rule(store, "user", "u1", reason="r", actor=ACTOR)
    b = add_rule(store, "user", "u2", reason="r", actor=ACTOR)
    marked = mark_purged(store, [a, b], ACTOR, {"events": 3})
    assert [r.purged_at is not None for r in marked] == [True, True]
    assert all(r.active for r in marked)  # purged rules stay in force
    entry = store.audit_log(kind=AUDIT_KIND, limit=1)[0]
    assert (entry.action, entry.name, entry.after) == (
        "purge",
        "purge",
        {"rules": [a.id, b.id], "events": 3},
    )
    lifted = lift_rule(store, a.id, ACTOR)
    assert lifted.purged_at == marked[0].purged_at


def test_rules_key_ignores_order_and_reasons() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    a = Rule(1, "user", "u1", None, None, None, "x", at, ACTOR)
    b = Rule(2, "ip", "10.0.0.0/8", None, at, None, "y", at, ACTOR)
    assert rules_key([a, b]) == rules_key([b, a])
    assert rules_key([a]) != rules_key([a, b])
    assert rules_key([a]) == rules_key([Rule(1, "user", "u1", None, None, None, "z", at, "me")])


def test_analyses_read_rules_without_creating_a_database(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data")
    rules = ActiveRules(settings)
    assert rules.rules() == ()
    assert not (tmp_path / "data" / "control.db").exists()
    with ControlStore.for_settings(settings) as store:
        rule = add_rule(store, "user", "u1", reason="r", actor=ACTOR)
    assert rules.rules() == (rule,)  # a database created later is found
    with ControlStore.for_settings(settings) as store:
        lift_rule(store, rule.id, ACTOR)
    assert rules.rules() == ()
    rules.close()


def test_a_database_without_the_table_has_no_rules(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "control.db").close()
    assert ActiveRules(Settings(data=tmp_path / "data")).rules() == ()


def test_an_unreadable_database_stops_analyses(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "control.db").write_bytes(b"not a database" * 100)
    with pytest.raises(RulesUnavailable, match="cannot read the quarantine rules"):
        ActiveRules(Settings(data=tmp_path / "data")).rules()
