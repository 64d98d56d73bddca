"""Private streams in analyses, on DuckDB and ClickHouse (chDB) over a real lake: the rows of the
streams a reader may not see are left out first; an event also stored for a stream it sees
counts once through that copy; rows without a stream stay. Each answer equals the reference
analysis over the rows a plain-Python filter keeps.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import ENGINES, close, reference
from metrics.lakerows import write_rows
from tallystick.config import Settings
from tallystick.control.definitions import Configuration, Stream
from tallystick.control.principal import LOCAL, Principal
from tallystick.control.quarantine import Rule
from tallystick.control.store import ControlStore
from tallystick.control.visibility import (
    EVERYTHING,
    REDACTED,
    Definitions,
    visibility,
)
from tallystick.metrics.exclusion import Exclusion
from tallystick.metrics.registry import build
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
RANGE = {"from": "2026-03-01", "to": "2026-03-31"}
Row = dict[str, Any]


def _rows() -> list[Row]:
    """30 events of 4 users: in the public stream, the private one, both (one copy each, the
    public copy without user fields) or none (imported: no stream)."""
    out: list[Row] = []
    for i in range(30):
        base: Row = {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "name": "login" if i % 3 else "create",
            "client_ts": T0 + dt.timedelta(hours=5 * i),
            "user_id": f"u{i % 4}",
            "data": {"plan": "pro" if i % 2 else "free"},
        }
        kind = i % 4
        if kind == 0:
            out.append({**base, "stream": "product"})
        elif kind == 1:
            out.append({**base, "stream": "secret"})
        elif kind == 2:
            out.append({**base, "stream": "secret"})
            out.append({**base, "stream": "product", "user_id": None})
        else:
            out.append({**base, "stream": None})
    return out


ROWS = _rows()


def seen(rows: list[Row], hidden: frozenset[str]) -> list[Row]:
    """The plain filter: copies of hidden streams go, rows without a stream stay."""
    return [r for r in rows if r.get("stream") is None or r["stream"] not in hidden]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return write_rows(tmp_path_factory.mktemp("private") / "lake", ROWS)


SECRET = frozenset({"secret"})


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("unit", ["user.id", "data.plan"])
def test_hidden_streams_leave_their_rows_out(lake: Lake, engine: str, unit: str) -> None:
    analysis = build("count", {**RANGE, "event": "login", "grain": "week", "unit": unit})
    runner = ENGINES[engine](lake)
    got = analysis.run(runner, (), SECRET).rows
    assert close(got, reference(seen(ROWS, SECRET), analysis)), got
    everything = analysis.run(runner, ()).rows
    assert close(everything, reference(ROWS, analysis))
    assert got != everything


@pytest.mark.parametrize("engine", list(ENGINES))
def test_an_event_in_a_public_and_a_private_stream_counts_once_through_its_public_copy(
    lake: Lake, engine: str
) -> None:
    runner = ENGINES[engine](lake)
    for name in ("login", "create"):
        analysis = build("count", {**RANGE, "event": name, "grain": "month"})
        total = sum(r["events"] for r in analysis.run(runner, (), SECRET).rows)
        public = {r["event_id"] for r in ROWS if r["name"] == name and r["stream"] != "secret"}
        assert total == len(public)  # copies in both streams once, private-only ones not at all
        everything = sum(r["events"] for r in analysis.run(runner, ()).rows)
        assert everything == len({r["event_id"] for r in ROWS if r["name"] == name})
        assert total < everything


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_analysis_leaves_out_the_same_rows(lake: Lake, engine: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "core": {"actions": "create", "active": "login,create"},
        "ratio": {"numerator": "create", "denominator": "login", "unit": "event"},
        "funnel": {"steps": "login,create", "window": "1d"},
        "retention": {"cohort_event": "login", "return_events": "create", "periods": 1},
    }
    for name, params in cases.items():
        analysis = build(name, {**RANGE, **params, "grain": "week"})
        got = analysis.run(ENGINES[engine](lake), (), SECRET).rows
        assert close(got, reference(seen(ROWS, SECRET), analysis)), name


@pytest.mark.parametrize("engine", list(ENGINES))
def test_a_quarantine_rule_matching_only_the_private_copy_still_removes_the_event(
    lake: Lake, engine: str
) -> None:
    # user u2's events of kind 2 have user.id only on their private copy: a rule on u2 must
    # not let the narrowed public copy stand in for them
    rule = Rule(1, "user", "u2", None, None, None, "test", T0, "test")
    analysis = build("count", {**RANGE, "event": "login", "grain": "month"})
    got = analysis.run(ENGINES[engine](lake), (rule,), SECRET).rows
    gone = {(r["event_id"], r["name"]) for r in ROWS if r.get("user_id") == "u2"}
    kept = [r for r in seen(ROWS, SECRET) if (r["event_id"], r["name"]) not in gone]
    assert close(got, reference(kept, analysis))


def test_reader_views_leave_out_hidden_streams(lake: Lake) -> None:
    con = connect(lake, Exclusion(include_bots=True, hidden_streams=SECRET))
    try:
        events = {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
        streams = {r[0] for r in con.execute("SELECT DISTINCT stream FROM messages").fetchall()}
        raw = con.execute("SELECT count(*) FROM raw_events").fetchone()
    finally:
        con.close()
    assert events == {r["event_id"] for r in seen(ROWS, SECRET)}
    assert "secret" not in streams
    assert raw == (len(ROWS),)


def test_exclusion_key_and_description_name_no_stream() -> None:
    plain = Exclusion()
    hidden = Exclusion(hidden_streams=SECRET)
    assert plain.key() != hidden.key()
    assert hidden.key() == Exclusion(hidden_streams=frozenset({"secret"})).key()
    assert hidden.describe() == "1 private stream and bots excluded"
    assert Exclusion(include_bots=True, hidden_streams=SECRET).describe() == (
        "1 private stream excluded"
    )
    assert "secret" not in hidden.describe()


CONFIG = Configuration(
    (
        Stream("product", events=("login", "create", "page.*")),
        Stream("secret", events=("login", "secret.*"), private=True),
        Stream("vault", events=("vault.open",), private=True),
    ),
    (),
    "unrouted",
)


def test_visibility_of_principals() -> None:
    admin = Principal(kind="admin", name="key:1:admin")
    granted = Principal(kind="read", name="key:2:r", key_id=2, streams=frozenset({"secret"}))
    ungranted = Principal(kind="read", name="key:3:r", key_id=3, streams=frozenset())
    everything = Principal(kind="read", name="key:4:r", key_id=4, streams=frozenset({"*"}))
    assert visibility(admin, CONFIG) is EVERYTHING
    assert visibility(LOCAL, CONFIG) is EVERYTHING
    assert visibility(everything, CONFIG) is EVERYTHING
    assert visibility(granted, CONFIG).hidden == {"vault"}
    view = visibility(ungranted, CONFIG)
    assert view.hidden == {"secret", "vault"}
    assert all(view.stream(s) for s in ("product", "unrouted", None))
    assert not view.stream("secret")
    # login goes to product too; secret.* and vault.open only to private streams
    assert all(view.event(n) for n in ("login", "page.view", "never.declared"))
    assert not any(view.event(n) for n in ("secret.thing", "vault.open"))
    assert not view.events(["login", "vault.open"])
    sql = "WHERE (stream IS NULL OR NOT stream IN ('secret', 'vault')) AND x = 'secrets'"
    assert view.redact(sql) == (
        f"WHERE (stream IS NULL OR NOT stream IN ('{REDACTED}', '{REDACTED}')) AND x = 'secrets'"
    )


def test_definitions_follow_the_configuration_version(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "data")
    ungranted = Principal(kind="read", name="key:3:r", key_id=3, streams=frozenset())
    definitions = Definitions(settings)
    try:
        # no control database yet: nothing is private
        assert definitions.visibility(ungranted) is EVERYTHING
        with ControlStore.for_settings(settings) as store:
            store.put_stream(Stream("secret", events=("a.*",), private=True), "test")
            assert definitions.visibility(ungranted).hidden == {"secret"}
            store.put_stream(Stream("secret", events=("a.*",)), "test")
            assert definitions.visibility(ungranted) is EVERYTHING
            # a private stream deleted keeps its stored copies private
            store.put_stream(Stream("gone", events=("b.*",), private=True), "test")
            store.delete_stream("gone", "test")
            assert definitions.visibility(ungranted).hidden == {"gone"}
            # until a stream of that name is defined again
            store.put_stream(Stream("gone", events=("b.*",)), "test")
            assert definitions.visibility(ungranted) is EVERYTHING
    finally:
        definitions.close()
