"""Retention on a real lake, read back from the Parquet files with pyarrow: per stream, by
default, failed events and declined counts, the delivery ledger with its events, materialised
results; whole partitions go; a second run removes nothing; a dry run writes nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrics.lakerows import to_table
from tallystick.config import Settings
from tallystick.control.definitions import Stream
from tallystick.control.store import ControlStore
from tallystick.metrics.materialize import STATE
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import DECLINED, EVENTS, FAILED, MESSAGES, Lake
from tallystick.store.retention import (
    Policy,
    audit,
    enforce,
    enforce_locked,
    plan,
    policy_for,
)

TODAY = dt.date(2026, 3, 31)
#: days before TODAY the fixture has events on (one per stream and day)
AGES = (0, 5, 9, 10, 11, 19, 20, 21, 29, 30, 31, 45, 400)
STREAMS = ("short", "long", "plain", None)
"""``short`` keeps 10 days, ``long`` 30, ``plain`` has no retention of its own, None: no stream."""


def _at(age: int, hour: int = 12) -> dt.datetime:
    day = TODAY - dt.timedelta(days=age)
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def _rows() -> list[dict[str, Any]]:
    rows = []
    for age in AGES:
        for n, stream in enumerate(STREAMS):
            rows.append(
                {
                    "event_id": f"00000000-0000-4000-8000-{age:06d}{n:06d}",
                    "name": "login",
                    "client_ts": _at(age),
                    # received a little later, some (late events) on a later day
                    "received_ts": _at(age, 13) + dt.timedelta(days=2 if age == 31 else 0),
                    "user_id": f"u{n}",
                    "session_id": f"s{age}",
                    "stream": stream,
                }
            )
    return rows


ROWS = _rows()


def _lake(root: Path) -> Lake:
    lake = Lake(root)
    # two files per partition: one with the named streams, one with the rest
    lake.write_events(to_table([r for r in ROWS if r["stream"] in ("short", "long")]), "a")
    lake.write_events(to_table([r for r in ROWS if r["stream"] not in ("short", "long")]), "b")
    failed = [
        FailedEvent(_at(age), "http", "invalid_event", "bad", json.dumps({"n": age}), index=0)
        for age in AGES
    ]
    lake.write_failed(failed, "f")
    lake.write_declined(
        [
            {"received_ts": _at(age), "stream": "short", "reason": "sampled_out", "name": "x"}
            | {"count": 3}
            for age in AGES
        ],
        "d",
    )
    return lake


def _policy(default: int = 0, failed: int = 30, results: int = 90) -> Policy:
    return Policy(TODAY, default, {"short": 10, "long": 30}, failed, results)


def _read(lake: Lake, kind: str) -> pa.Table:
    paths = lake.absolute(lake.files(kind))
    if not paths:
        return pa.table({})
    return pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")


def _ages_left(lake: Lake, stream: str | None) -> set[int]:
    table = _read(lake, EVENTS)
    if not table.num_rows:
        return set()
    return {
        (TODAY - ts.date()).days
        for ts, s in zip(table["client_ts"].to_pylist(), table["stream"].to_pylist(), strict=True)
        if s == stream
    }


def _kept(days: int) -> set[int]:
    return {a for a in AGES if not days or a <= days}


CASES = [
    # default retention, failed retention, what each stream keeps (days; 0: all)
    pytest.param(0, 30, {"short": 10, "long": 30, "plain": 0, None: 0}, id="default-forever"),
    pytest.param(20, 30, {"short": 10, "long": 30, "plain": 20, None: 20}, id="default-20"),
    pytest.param(5, 0, {"short": 10, "long": 30, "plain": 5, None: 5}, id="failed-forever"),
    pytest.param(100, 10, {"short": 10, "long": 30, "plain": 100, None: 100}, id="default-100"),
]


@pytest.mark.parametrize(("default", "failed", "expected"), CASES)
def test_exact_rows_left_in_the_files(
    tmp_path: Path, default: int, failed: int, expected: dict[str | None, int]
) -> None:
    lake = _lake(tmp_path / "lake")
    policy = _policy(default, failed)
    report = enforce(lake, policy)
    for stream, days in expected.items():
        assert _ages_left(lake, stream) == _kept(days), stream
    # the ledger goes with its events: one row per stored copy left
    events = _read(lake, EVENTS)
    ledger = _read(lake, MESSAGES)
    assert sorted(ledger["event_id"].to_pylist()) == sorted(events["event_id"].to_pylist())
    # failed events and declined counts by the day they were received
    for kind in (FAILED, DECLINED):
        left = _read(lake, kind)
        ages = {(TODAY - ts.date()).days for ts in left["received_ts"].to_pylist()}
        assert ages == _kept(failed), kind
    assert report.removed(EVENTS) == len(ROWS) - events.num_rows
    assert report.removed(MESSAGES) == len(ROWS) - ledger.num_rows
    assert report.removed(FAILED) == len(AGES) - len(_kept(failed))
    # partitions with nothing left are gone, directories included
    survivors = set().union(*(_kept(days) for days in expected.values()))
    assert {(TODAY - d).days for d in lake.partitions(EVENTS)} == survivors
    for kind in (FAILED, DECLINED):
        assert {(TODAY - d).days for d in lake.partitions(kind)} == _kept(failed)
    for kind in (EVENTS, FAILED, DECLINED):
        dirs = list((lake.root / kind).iterdir())
        assert all(any(d.iterdir()) for d in dirs), f"an empty partition directory in {kind}"
    # a second run removes nothing and touches no file
    before = {p: lake.storage.version(p) for k in (EVENTS, MESSAGES) for p in lake.files(k)}
    again = enforce(lake, policy)
    assert again.files == ()
    assert {p: lake.storage.version(p) for k in (EVENTS, MESSAGES) for p in lake.files(k)} == before


def test_a_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    versions = {
        p: lake.storage.version(p) for k in (EVENTS, MESSAGES, FAILED) for p in lake.files(k)
    }
    planned = plan(lake, _policy(20))
    assert planned.dry_run
    assert {
        p: lake.storage.version(p) for k in (EVENTS, MESSAGES, FAILED) for p in lake.files(k)
    } == versions
    done = enforce(lake, _policy(20))
    assert planned.summary() | {"dry_run": False} == done.summary()


def test_untouched_partitions_are_not_rewritten(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    recent = {
        p: lake.storage.version(p)
        for day, ps in lake.partitions(EVENTS).items()
        if (TODAY - day).days <= 10
        for p in ps
    }
    enforce(lake, _policy(0))
    assert {p: lake.storage.version(p) for p in recent} == recent


def test_files_without_a_stream_column_follow_the_default(tmp_path: Path) -> None:
    """Event files written before streams existed have no ``stream`` column."""
    lake = Lake(tmp_path / "lake")
    table = to_table([r for r in ROWS if r["stream"] is None]).drop_columns(["stream"])
    path = f"events/date={(TODAY - dt.timedelta(days=45)).isoformat()}/old.parquet"
    lake.storage.write_table(path, table.filter(pa.compute.equal(table["session_id"], "s45")))
    enforce(lake, _policy(20))
    assert lake.files(EVENTS) == []


def _results(lake: Lake) -> Path:
    folder = lake.root / "metrics" / "logins" / "grain=week"
    folder.mkdir(parents=True)
    weeks = [dt.date(2025, 12, 1) + dt.timedelta(weeks=k) for k in range(18)]
    lake.storage.write_table(
        "metrics/logins/grain=week/logins.parquet",
        pa.table({"metric": ["logins"] * 18, "period": weeks, "value": list(range(18))}),
    )
    state = {"format": 1, "periods": {w.isoformat(): {"fingerprint": "x"} for w in weeks}}
    (folder / STATE).write_text(json.dumps(state))
    return folder


def test_results_are_kept_by_their_own_policy(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    folder = _results(lake)
    report = enforce(lake, _policy(0, results=60))
    cutoff = TODAY - dt.timedelta(days=60)  # 2026-01-30
    left = pq.read_table(folder / "logins.parquet")["period"].to_pylist()
    # a week goes once its last day (start + 6) is before the cutoff
    assert left == [
        dt.date(2025, 12, 1) + dt.timedelta(weeks=k)
        for k in range(18)
        if dt.date(2025, 12, 1) + dt.timedelta(weeks=k, days=6) >= cutoff
    ]
    assert left[0] == dt.date(2026, 1, 26)
    state = json.loads((folder / STATE).read_text())
    assert state["expired_before"] == cutoff.isoformat()
    assert sorted(state["periods"]) == [d.isoformat() for d in left]
    assert report.removed("metrics") == 18 - len(left)
    assert enforce(lake, _policy(0, results=60)).files == ()


def test_policy_from_the_control_plane_and_audit_without_content(
    settings: Settings, tmp_path: Path
) -> None:
    settings = Settings(data=settings.data, retention_days=20, failed_retention_days=30)
    lake = _lake(settings.lake_dir)
    with ControlStore.for_settings(settings) as store:
        store.put_stream(Stream("short", ("login",), retention_days=10), "t")
        store.put_stream(Stream("long", ("login",), retention_days=30), "t")
        store.put_stream(Stream("plain", ("login",)), "t")
        policy = policy_for(settings, store, TODAY)
        assert policy.stream_cutoffs == {
            "long": TODAY - dt.timedelta(days=30),
            "short": TODAY - dt.timedelta(days=10),
        }
        report = enforce_locked(lake, policy, settings.data)
        audit(store, report, "tester")
        [entry] = store.audit_log(kind="retention")
    assert entry.after is not None
    assert entry.after["event_rows"] == report.removed(EVENTS) > 0
    assert _ages_left(lake, "plain") == _kept(20)
    text = json.dumps(entry.after)
    assert "u1" not in text
    assert "00000000-0000-4000" not in text


def test_the_command_line(settings: Settings) -> None:
    from typer.testing import CliRunner

    from tallystick.cli import app as cli

    lake = _lake(settings.lake_dir)
    with ControlStore.for_settings(settings) as store:
        store.put_stream(Stream("short", ("login",), retention_days=10), "t")
    data = str(settings.data)
    versions = {p: lake.storage.version(p) for p in lake.files(EVENTS)}
    dry = CliRunner().invoke(
        cli, ["retention", "enforce", "--dry-run", "--format", "json", "--data", data]
    )
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True
    # the command's today is the real one: every row of the fixture is older than 10 days
    assert planned["event_rows"] == len(AGES)
    assert {p: lake.storage.version(p) for p in lake.files(EVENTS)} == versions
    done = CliRunner().invoke(cli, ["retention", "enforce", "--data", data])
    assert done.exit_code == 0, done.output
    assert "Retention on" in done.stdout
    assert _ages_left(lake, "short") == set()
    assert _ages_left(lake, "long") == _kept(0)  # no retention of its own here: forever
    with ControlStore.for_settings(settings) as store:
        [entry] = store.audit_log(kind="retention")
    assert entry.actor.startswith("cli:")
