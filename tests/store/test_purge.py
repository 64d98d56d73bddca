"""Purge on a real lake: exactly the rows of quarantined events leave the event files, the
delivery ledger and the failed events (read back with pyarrow); every other row is unchanged and
files without such rows are not touched; a second purge deletes nothing; a running loader
stops it; and analyses answer the same before and after (what was left out is now gone)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from metrics.lakerows import to_table
from tallystick.config import Settings
from tallystick.control.quarantine import Rule
from tallystick.metrics.engines import DuckDBEngine
from tallystick.metrics.registry import build
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import EVENTS, FAILED, MESSAGES, Lake
from tallystick.store.loader import loader_lock
from tallystick.store.purge import PurgeRefused, matched_events, plan, purge

T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_IDS = itertools.count(1)


def rule(kind: str, value: str, field: str | None = None, **window: dt.datetime) -> Rule:
    return Rule(
        next(_IDS),
        kind,  # type: ignore[arg-type]
        value,
        field,
        window.get("time_from"),
        window.get("time_to"),
        "r",
        AT,
        "t",
    )


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "name": "login",
        "client_ts": T0 + dt.timedelta(hours=5 * i),
        "received_ts": T0 + dt.timedelta(hours=5 * i, seconds=1),
        "user_id": f"u{i % 4}",
        "session_id": f"s{i % 6}",
        "session_seq": i,
        "geo_network": f"10.0.{i % 3}.0/24",
        "stream": "product",
        "data": {"plan": "pro" if i % 5 == 0 else "free"},
        **extra,
    }


def _rows() -> list[dict[str, Any]]:
    rows = [_event(i) for i in range(30)]
    # a retry of event 2 in a later file, and a copy of event 9 (user u1) without user fields
    rows.append(_event(2, received_ts=T0 + dt.timedelta(days=3)))
    rows.append(_event(9, user_id=None, stream="anonymous"))
    return rows


ROWS = _rows()
FAILED_ROWS = [
    FailedEvent(T0, "http", "invalid_event", "bad", json.dumps({"user": {"id": "u1"}}), index=0),
    FailedEvent(T0, "http", "invalid_event", "bad", json.dumps({"user": {"id": "u2"}}), index=1),
    FailedEvent(T0, "http", "invalid_json", "bad", "{not json", index=None),
    FailedEvent(
        T0,
        "http",
        "invalid_event",
        "bad",
        "{}",
        index=2,
        event_id=ROWS[10]["event_id"],  # a later copy of event 10 was refused
    ),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(data=tmp_path_factory.mktemp("purge") / "data")
    lake = Lake(settings.lake_dir)
    for n, part in enumerate((ROWS[:12], ROWS[12:24], ROWS[24:30], ROWS[30:])):
        lake.write_events(to_table(part), f"load-{n}")
    lake.write_failed(FAILED_ROWS, "load-0")
    return settings.data


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the lake (four loads, a retry, a narrowed copy, failed events)."""
    return Path(shutil.copytree(template, tmp_path / "data"))


def _files(lake: Lake) -> dict[str, bytes]:
    return {
        path: (lake.root / path).read_bytes()
        for kind in (EVENTS, MESSAGES, FAILED)
        for path in lake.files(kind)
    }


def _rows_of(lake: Lake, path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(lake.root / path).to_pylist()
    return rows


def _doomed_keys(rows: Sequence[dict[str, Any]], rules: Sequence[Rule]) -> set[tuple[str, str]]:
    """Events any copy of which a rule matches (written independently of the SQL)."""
    out = set()
    for row in rows:
        for r in rules:
            value = {
                "user": row.get("user_id"),
                "session": row.get("session_id"),
                "ip": row.get("geo_network"),
                "where": (row.get("data") or {}).get((r.field or "").removeprefix("data.")),
            }[r.kind]
            inside = value == r.value or (
                r.kind == "ip" and value is not None and _within(value, r.value)
            )
            in_window = (r.time_from is None or row["client_ts"] >= r.time_from) and (
                r.time_to is None or row["client_ts"] < r.time_to
            )
            if inside and in_window:
                out.add((row["event_id"], row["name"]))
    return out


def _within(stored: str, cidr: str) -> bool:
    net, wanted = ipaddress.ip_network(stored), ipaddress.ip_network(cidr)
    return net.version == wanted.version and net.subnet_of(wanted)  # type: ignore[arg-type]


RULES = (
    rule("user", "u1"),
    rule("ip", "10.0.2.0/24", time_from=T0 + dt.timedelta(days=2)),
    rule("where", "pro", "data.plan"),
)


def test_purge_deletes_exactly_the_quarantined_rows(data: Path) -> None:
    lake = Lake(data / "lake")
    before = _files(lake)
    contents = {p: _rows_of(lake, p) for p in before}
    doomed = _doomed_keys(ROWS, RULES)
    doomed_ids = {e for e, _ in doomed}
    by_rule = {r.id: len(_doomed_keys(ROWS, [r])) for r in RULES}
    assert matched_events(lake, RULES) == by_rule

    dry = plan(lake, RULES)
    assert _files(lake) == before  # a plan writes nothing
    report = purge(lake, RULES, data)

    assert report.events == dry.events == len(doomed)
    assert report.events_by_rule == dry.events_by_rule == by_rule
    narrowed = [r for r in after_rows(lake) if r["event_id"] == ROWS[9]["event_id"]]
    assert narrowed == []  # the copy without user.id went with the full one
    after = _files(lake)
    removed: dict[str, int] = {}
    rewritten: list[str] = []
    for path, old in contents.items():
        kind = path.split("/")[0]
        if kind == EVENTS:
            keep = [r for r in old if (r["event_id"], r["name"]) not in doomed]
        elif kind == MESSAGES:
            keep = [r for r in old if r["event_id"] not in doomed_ids]
        else:
            keep = [
                r
                for r in old
                if r["event_id"] not in doomed_ids and '"id": "u1"' not in (r["raw"] or "")
            ]
        removed[kind] = removed.get(kind, 0) + len(old) - len(keep)
        if len(keep) == len(old):
            assert after[path] == before[path], f"{path} was touched"
        elif keep:
            # rewritten under a new name in its partition (a query may be reading the old one)
            assert path not in after, f"{path} should be replaced by a file of another name"
            partition = path.rsplit("/", 1)[0] + "/rewrite-"
            (new,) = [p for p in after if p.startswith(partition) and _rows_of(lake, p) == keep]
            rewritten.append(new)
            schema = pq.read_schema(lake.root / new)
            assert schema == pq.read_schema(pa_buffer(before[path]))
        else:
            assert path not in after, f"{path} should be deleted, it holds nothing"
    assert (
        removed[EVENTS]
        == report.removed(EVENTS)
        == sum(1 for r in ROWS if (r["event_id"], r["name"]) in doomed)
    )
    assert removed[MESSAGES] == report.removed(MESSAGES) == removed[EVENTS]
    assert removed[FAILED] == report.removed(FAILED) == 2  # u1's raw JSON, event 10's id
    # nothing new but one rewritten file per file that kept rows, and no temporaries
    assert sorted(p for p in after if p not in before) == sorted(rewritten)
    assert not [p for p in lake.root.rglob(".*") if p.is_file()]

    again = purge(lake, RULES, data)
    assert again.events == 0
    assert again.files == ()
    assert _files(lake) == after


def after_rows(lake: Lake) -> list[dict[str, Any]]:
    return [r for p in lake.files(EVENTS) for r in _rows_of(lake, p)]


def pa_buffer(content: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(content)


def test_analyses_answer_the_same_and_lifting_brings_nothing_back(data: Path) -> None:
    lake = Lake(data / "lake")
    analysis = build("count", {"from": "2026-03-01", "to": "2026-03-31", "event": "login"})
    engine = DuckDBEngine(lake)
    excluded = analysis.run(engine, RULES).rows
    everything = analysis.run(engine, ()).rows
    purge(lake, RULES, data)
    assert analysis.run(engine, RULES).rows == excluded
    assert analysis.run(engine, ()).rows == excluded != everything


def test_a_running_loader_stops_the_purge(data: Path) -> None:
    lake = Lake(data / "lake")
    before = _files(lake)
    stop, held = threading.Event(), threading.Event()

    def loader() -> None:
        with loader_lock(data, stop) as lock:
            assert lock.acquired
            held.set()
            stop.wait(30)

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(PurgeRefused, match=r"the loader of .* is running .*Stop `tally serve`"):
            purge(lake, RULES, data, wait=0.2)
    finally:
        stop.set()
        thread.join()
    assert _files(lake) == before
    assert purge(lake, RULES, data, wait=0.2).events > 0  # once it is gone


def test_nothing_to_purge(data: Path, tmp_path: Path) -> None:
    lake = Lake(data / "lake")
    before = _files(lake)
    report = purge(lake, (rule("user", "nobody"),), data)
    assert (report.events, report.files) == (0, ())
    assert report.events_by_rule == {report.rules[0].id: 0}
    assert _files(lake) == before
    assert plan(Lake(tmp_path / "nothing"), RULES).events == 0
    assert purge(lake, (), data).events == 0
