"""What every analysis leaves out, on DuckDB and ClickHouse (chDB) over a real lake: bots unless
included, and every copy of an event a quarantine rule matches. Each answer equals the reference
analysis over the rows a plain-Python filter keeps; lifting a rule gives the first answer back.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from metrics.harness import ENGINES, close, reference
from metrics.lakerows import to_table, write_rows
from tallystick.config import Settings
from tallystick.control.quarantine import ActiveRules, Rule, add_rule, lift_rule
from tallystick.control.store import ControlStore
from tallystick.enrich.geo import network
from tallystick.metrics.catalog import MetricDef
from tallystick.metrics.engines import ChDBEngine, DuckDBEngine, Engine
from tallystick.metrics.exclusion import Exclusion
from tallystick.metrics.materialize import plan
from tallystick.metrics.registry import build
from tallystick.metrics.sql import in_network, render
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RANGE = {"from": "2026-03-01", "to": "2026-03-31"}
Row = dict[str, Any]


def _rows() -> list[Row]:
    """40 events of 5 users over 4 days: sessions, networks (IPv4 and IPv6), versions, plans,
    bots; one event stored twice (a full copy, and a later one without user fields)."""
    out: list[Row] = []
    for i in range(40):
        v4 = i % 2 == 1
        address = (
            ipaddress.ip_address(f"10.{i % 3}.{i % 5}.{i}")
            if v4
            else ipaddress.ip_address(f"2001:db8:{i % 4:x}::{i:x}")
        )
        out.append(
            {
                "event_id": f"00000000-0000-4000-8000-{i:012d}",
                "name": "login" if i % 3 else "create",
                "client_ts": T0 + dt.timedelta(hours=2 * i),
                "user_id": f"u{i % 5}",
                "session_id": f"s{i % 7}",
                "agent_is_bot": True if i % 10 == 0 else (None if i % 4 == 1 else False),
                "geo_network": network(address),
                "app_version": "1.0" if i < 20 else "2.0",
                "stream": "product",
                "data": {"plan": "pro" if i % 4 == 0 else "free", "ms": i},
            }
        )
    narrowed = {**out[3], "user_id": None, "stream": "anonymous"}
    narrowed["received_ts"] = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    out.append(narrowed)
    return out


ROWS = _rows()
_IDS = itertools.count(1)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return write_rows(tmp_path_factory.mktemp("exclusion") / "lake", ROWS)


def rule(kind: str, value: str, field: str | None = None, **window: dt.datetime) -> Rule:
    return Rule(
        next(_IDS),
        kind,  # type: ignore[arg-type]
        value,
        field,
        window.get("time_from"),
        window.get("time_to"),
        "test",
        AT,
        "test",
    )


def _matches(r: Rule, row: Mapping[str, Any]) -> bool:
    """The rule's meaning, written independently of the SQL."""
    ts = row["client_ts"]
    if r.time_from is not None and ts < r.time_from:
        return False
    if r.time_to is not None and ts >= r.time_to:
        return False
    if r.kind == "user":
        return bool(row.get("user_id") == r.value)
    if r.kind == "session":
        return bool(row.get("session_id") == r.value)
    if r.kind == "ip":
        stored = row.get("geo_network")
        if stored is None:
            return False
        net = ipaddress.ip_network(stored)
        wanted = ipaddress.ip_network(r.value)
        return net.version == wanted.version and net.subnet_of(wanted)  # type: ignore[arg-type]
    assert r.field is not None
    if r.field.startswith("data."):
        return bool(str((row.get("data") or {}).get(r.field[5:])) == r.value)
    return bool(row.get(r.field.replace(".", "_")) == r.value)


def kept(rows: Sequence[Row], rules: Sequence[Rule], include_bots: bool) -> list[Row]:
    """The rows an analysis may count: every copy of a matched event goes; bots row by row."""
    gone = {(r["event_id"], r["name"]) for r in rows for q in rules if _matches(q, r)}
    return [
        r
        for r in rows
        if (r["event_id"], r["name"]) not in gone
        and (include_bots or r.get("agent_is_bot") is not True)
    ]


CASES: dict[str, tuple[list[Rule], bool]] = {
    "bots left out": ([], False),
    "bots included": ([], True),
    "user": ([rule("user", "u1")], False),
    "session": ([rule("session", "s3")], True),
    "ipv4 /16": ([rule("ip", "10.1.0.0/16")], False),
    "ipv6 /48": ([rule("ip", "2001:db8:2::/48")], False),
    "where data": ([rule("where", "pro", "data.plan")], False),
    "where field": ([rule("where", "2.0", "app.version")], False),
    "time window": (
        [
            rule(
                "user", "u2", time_from=T0 + dt.timedelta(days=1), time_to=T0 + dt.timedelta(days=2)
            )
        ],
        False,
    ),
    "several": ([rule("user", "u4"), rule("ip", "10.0.0.0/8"), rule("session", "s0")], False),
    "narrowed copy": ([rule("user", "u3")], False),
}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("case", list(CASES))
def test_answers_leave_out_what_the_rules_match(lake: Lake, engine: str, case: str) -> None:
    rules, bots = CASES[case]
    analysis = build("count", {**RANGE, "event": "login", "grain": "month", "include_bots": bots})
    got = analysis.run(ENGINES[engine](lake), tuple(rules)).rows
    expected = reference(kept(ROWS, rules, bots), analysis)
    assert close(got, expected), (got, expected)
    # and the rules changed the answer (each case matches something)
    if rules:
        assert got != reference(kept(ROWS, [], bots), analysis)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_analysis_leaves_out_the_same_events(lake: Lake, engine: str) -> None:
    rules = (rule("user", "u1"), rule("ip", "2001:db8:1::/48"))
    cases: dict[str, dict[str, Any]] = {
        "core": {"actions": "login", "active": "login,create"},
        "ratio": {"numerator": "create", "denominator": "login", "unit": "event"},
        "percentile": {"event": "login", "field": "data.ms", "p": "50,90"},
        "funnel": {"steps": "login,create", "window": "1d"},
        "retention": {"cohort_event": "login", "return_events": "create", "periods": 1},
    }
    for name, params in cases.items():
        analysis = build(name, {**RANGE, **params, "grain": "week"})
        got = analysis.run(ENGINES[engine](lake), rules).rows
        assert close(got, reference(kept(ROWS, rules, False), analysis)), name


@pytest.mark.parametrize("engine", [DuckDBEngine, ChDBEngine])
def test_a_rule_changes_the_answer_and_lifting_it_restores_it_exactly(
    tmp_path: Path, engine: Callable[..., Engine]
) -> None:
    settings = Settings(data=tmp_path / "data")
    lake = write_rows(settings.lake_dir, ROWS)
    quarantine = ActiveRules(settings)
    runner = engine(lake, quarantine=quarantine)
    analysis = build("count", {**RANGE, "event": "login", "grain": "week"})
    before = analysis.run(runner).rows
    with ControlStore.for_settings(settings) as store:
        added = add_rule(store, "where", "data.plan=free", reason="test", actor="test")
        during = analysis.run(runner).rows
        lift_rule(store, added.id, "test")
    after = analysis.run(runner).rows
    quarantine.close()
    assert during != before
    assert close(during, reference(kept(ROWS, [added], False), analysis))
    assert after == before


def test_reader_events_view_leaves_out_the_same_events(lake: Lake) -> None:
    rules = (rule("session", "s1"),)
    con = connect(lake, Exclusion(rules=rules))
    try:
        got = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
        raw = con.execute("SELECT count(*) FROM raw_events").fetchone()
    finally:
        con.close()
    assert got == {r["event_id"] for r in kept(ROWS, rules, False)}
    assert raw == (len(ROWS),)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_files_written_before_bot_and_network_columns_still_read(
    tmp_path: Path, engine: str
) -> None:
    lake = Lake(tmp_path / "lake")
    old = to_table(ROWS[:10]).drop_columns(["agent_is_bot", "geo_network", "stream"])
    lake.storage.write_table("events/date=2026-03-02/old.parquet", old)
    analysis = build("count", {**RANGE, "event": "login", "grain": "month"})
    rules = (rule("ip", "10.0.0.0/8"), rule("user", "u2"))
    got = analysis.run(ENGINES[engine](lake), rules).rows
    plain = [
        {k: v for k, v in r.items() if k not in ("agent_is_bot", "geo_network")} for r in ROWS[:10]
    ]
    assert close(got, reference(kept(plain, rules, False), analysis))


def test_materialised_periods_are_recomputed_when_the_rules_change(lake: Lake) -> None:
    metric = MetricDef("logins", "Logins", "count", {"event": "login"}, grain="week")
    plain = plan(lake, metric, "week")
    same = plan(lake, metric, "week", rules=())
    ruled = plan(lake, metric, "week", rules=(rule("user", "u1"),))
    assert [p.fingerprint for p in plain.periods] == [p.fingerprint for p in same.periods]
    assert all(
        a.fingerprint != b.fingerprint for a, b in zip(plain.periods, ruled.periods, strict=True)
    )


# -- networks -------------------------------------------------------------------------------------

_V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
_V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def _rule_network(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        return ipaddress.IPv4Network((int(draw(_V4)), draw(st.integers(0, 24))), strict=False)
    return ipaddress.IPv6Network((int(draw(_V6)), draw(st.integers(0, 48))), strict=False)


@st.composite
def _networks(draw: st.DrawFn) -> tuple[list[str], list[Any]]:
    rules = [_rule_network(draw) for _ in range(draw(st.integers(1, 4)))]
    stored: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.booleans()) and rules:
            # an address inside (or next to) one of the rules' networks
            net = draw(st.sampled_from(rules))
            offset = draw(st.integers(-1, 1)) * net.num_addresses + draw(
                st.integers(0, net.num_addresses - 1)
            )
            value = (int(net.network_address) + offset) % (2**net.max_prefixlen)
            stored.append(
                network(
                    ipaddress.ip_address(value)
                    if net.version == 4
                    else ipaddress.IPv6Address(value)
                )
            )
        else:
            stored.append(network(draw(st.one_of(_V4, _V6))))
    return stored, rules


def _in_network_sql(stored: list[str], rules: list[Any], engine: str) -> str:
    table = exp.to_table("nets")
    checks = [
        exp.alias_(
            in_network(
                exp.column("n"), r.version, str(r.network_address), str(r.broadcast_address)
            ),
            f"r{i}",
        )
        for i, r in enumerate(rules)
    ]
    query = exp.select(exp.column("i"), *checks).from_(table).order_by("i")
    values = ", ".join(f"({i}, '{s}')" for i, s in enumerate(stored))
    if engine == "duckdb":
        source = f"(SELECT * FROM (VALUES {values}, (-1, NULL), (-2, 'junk')) AS v(i, n))"
    else:
        structure = "'i Int64, n Nullable(String)'"
        source = f"(SELECT * FROM values({structure}, {values}, (-1, NULL), (-2, 'junk')))"
    return render(query, engine).replace("FROM nets", f"FROM {source} AS nets")  # type: ignore[arg-type]


def _check_networks(stored: list[str], rules: list[Any]) -> None:
    import chdb
    import duckdb

    expected = [
        [
            ipaddress.ip_network(s).version == r.version and ipaddress.ip_network(s).subnet_of(r)
            for r in rules
        ]
        for s in stored
    ]
    junk = [[False] * len(rules)] * 2
    duck = duckdb.execute(_in_network_sql(stored, rules, "duckdb")).fetchall()
    assert [list(row[1:]) for row in duck] == junk + expected
    result = chdb.query(_in_network_sql(stored, rules, "clickhouse"), "JSONCompact")  # type: ignore[no-untyped-call]
    text = result.bytes()
    ch = json.loads(text)["data"]
    assert [[bool(v) for v in row[1:]] for row in ch] == junk + expected


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_networks())
def test_stored_networks_match_as_ipaddress_says(case: tuple[list[str], list[Any]]) -> None:
    _check_networks(*case)


def test_many_networks_at_once_match_as_ipaddress_says() -> None:
    draw = random.Random(6)
    rules: list[Any] = []
    for _ in range(16):
        if draw.random() < 0.5:
            rules.append(ipaddress.IPv4Network((draw.getrandbits(32), draw.randint(0, 24)), False))
        else:
            rules.append(ipaddress.IPv6Network((draw.getrandbits(128), draw.randint(0, 48)), False))
    stored = []
    for _ in range(200):
        net = draw.choice(rules)
        inside = int(net.network_address) + draw.randrange(net.num_addresses)
        near = inside + draw.choice((-1, 0, 0, 1)) * net.num_addresses
        value = near % (2**net.max_prefixlen)
        kind = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
        stored.append(network(kind(value)))
    _check_networks(stored, rules)
