"""Deletion and retention through a real `tally serve`, checked in the Parquet files themselves:
events of several users are collected; one is deleted with the admin API, another with
`tally users delete` in another process while the server runs (its loader does the work); their
rows leave the event, ledger and failed files, the other users' stay; their later events are not
stored (counted as declined); and the server enforces retention on its own."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support import make_event
from tallystick.collect.server import ServerProcess
from tallystick.store.lake import DECLINED, EVENTS, FAILED, MESSAGES, Lake

pytestmark = pytest.mark.e2e

T = TypeVar("T")
USERS = ("alice", "bob", "carol", "dave")
NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=60)
"""Older than the server's retention (30 days)."""


def _post(base: str, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        return json.loads(resp.read())


def _read(lake: Lake, kind: str) -> pa.Table:
    """Every row of ``kind`` (again when the loader replaced a file meanwhile)."""
    for _ in range(20):
        try:
            tables = [pq.read_table(p) for p in lake.absolute(lake.files(kind))]
        except (FileNotFoundError, OSError):
            time.sleep(0.05)
            continue
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    raise AssertionError(f"could not read the {kind} files")


def _until(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _users(lake: Lake) -> dict[str | None, int]:
    table = _read(lake, EVENTS)
    if not table.num_rows:
        return {}
    counts: dict[str | None, int] = {}
    for user in table["user_id"].to_pylist():
        counts[user] = counts.get(user, 0) + 1
    return counts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("deletion") / "data"
    env = {
        "TALLYSTICK_SPOOL_ROTATE_SECONDS": "0.2",
        "TALLYSTICK_FLUSH_INTERVAL_SECONDS": "0.2",
        "TALLYSTICK_CONTROL_POLL_SECONDS": "0.2",
        "TALLYSTICK_RETENTION_DAYS": "30",
        "TALLYSTICK_RETENTION_INTERVAL_SECONDS": "1",
    }
    proc = ServerProcess(data, env=env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def collected(server: ServerProcess) -> dict[str, list[str]]:
    """Each user's event ids, once all are in the lake (plus failed events naming them)."""
    ids: dict[str, list[str]] = {}
    batch = []
    for user in USERS:
        events = [make_event("page.view", user={"id": user}) for _ in range(5)]
        ids[user] = [e["event_id"] for e in events]
        batch += events
    # an invalid event carrying a user id: kept as a failed event
    bad = [make_event("Bad Name", user={"id": user}) for user in ("alice", "carol")]
    status, answer = _post(server.url, "/v1/events", batch + bad)
    assert status == 207, answer
    lake = Lake(server.data / "lake")
    _until(lambda: _users(lake) == dict.fromkeys(USERS, 5), "every event in the lake")
    _until(lambda: _read(lake, FAILED).num_rows == 2, "the failed events in the lake")
    return ids


def _raws(lake: Lake) -> list[str]:
    table = _read(lake, FAILED)
    return table["raw"].to_pylist() if table.num_rows else []


def _assert_gone(lake: Lake, user: str, ids: list[str]) -> None:
    assert user not in _users(lake)
    assert not set(_read(lake, EVENTS)["event_id"].to_pylist()) & set(ids)
    assert not set(_read(lake, MESSAGES)["event_id"].to_pylist()) & set(ids)
    assert not [r for r in _raws(lake) if f'"{user}"' in r]
    for path in lake.absolute(lake.files(EVENTS)):
        assert f'"{user}"'.encode() not in Path(path).read_bytes()


def test_delete_with_the_admin_api(server: ServerProcess, collected: dict[str, list[str]]) -> None:
    lake = Lake(server.data / "lake")
    status, answer = _post(server.url, "/v1/admin/users/delete", {"user_id": "alice"})
    assert status == 202, answer
    request = answer["deletion"]
    assert request["status"] == "pending"
    assert "alice" not in json.dumps(answer)
    done = _until(
        lambda: (
            (r := _get(server.url, f"/v1/admin/deletions/{request['id']}")["deletion"])
            and r["status"] != "pending"
            and r
        ),
        "the loader to carry out the request",
    )
    assert done["status"] == "done", done
    assert done["report"]["event_rows"] == 5
    assert done["report"]["failed_rows"] == 1
    _assert_gone(lake, "alice", collected["alice"])
    assert {u: n for u, n in _users(lake).items() if u != "bob"} == {"carol": 5, "dave": 5}
    assert [r for r in _raws(lake) if '"carol"' in r]
    listed = _get(server.url, "/v1/admin/deletions")["deletions"]
    assert request["id"] in [d["id"] for d in listed]


def test_delete_with_the_cli_while_the_server_runs(
    server: ServerProcess, collected: dict[str, list[str]]
) -> None:
    lake = Lake(server.data / "lake")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tallystick", "users", "delete", "bob"),
            *("--data", str(server.data), "--format", "json", "--timeout", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "done"
    assert answer["report"]["event_rows"] == 5
    assert "bob" not in done.stdout
    _assert_gone(lake, "bob", collected["bob"])
    assert _users(lake)["carol"] == 5
    assert _users(lake)["dave"] == 5


def test_later_events_are_not_stored(
    server: ServerProcess, collected: dict[str, list[str]]
) -> None:
    lake = Lake(server.data / "lake")
    _until(
        lambda: (
            all(d["status"] == "done" for d in _get(server.url, "/v1/admin/deletions")["deletions"])
            and len(_get(server.url, "/v1/admin/deletions")["deletions"]) >= 1
        ),
        "the deletions",
    )
    # the collectors reloaded the configuration (and the deleted users) within 0.2 s of each
    # request
    later = [make_event("page.view", user={"id": u}) for u in ("alice", "bob", "alice")]
    marker = make_event("page.view", user={"id": "carol"})
    status, answer = _post(server.url, "/v1/events", [*later, marker])
    assert status == 200, answer
    _until(lambda: _users(lake).get("carol") == 6, "carol's new event in the lake")
    users = _users(lake)
    assert "alice" not in users
    assert "bob" not in users
    declined = _read(lake, DECLINED)
    reasons = [
        (r["reason"], r["count"]) for r in declined.to_pylist() if r["reason"] == "deleted_user"
    ]
    assert sum(n for _, n in reasons) >= 3
    database = (server.data / "control.db").read_bytes()
    assert b"alice" not in database
    assert b"bob" not in database


def test_the_server_enforces_retention(
    server: ServerProcess, collected: dict[str, list[str]]
) -> None:
    lake = Lake(server.data / "lake")
    old = [
        make_event("page.view", user={"id": "dave"}, client_ts=OLD.isoformat()) for _ in range(3)
    ]
    status, answer = _post(server.url, "/v1/events", old)
    assert status == 200, answer
    marker = make_event("page.view", user={"id": "dave"})
    _post(server.url, "/v1/events", [marker])

    def settled() -> bool:
        table = _read(lake, EVENTS)
        ids = set(table["event_id"].to_pylist())
        return marker["event_id"] in ids and not ids & {e["event_id"] for e in old}

    _until(settled, "the old events loaded and removed by retention", timeout=30)
    assert not [d for d in lake.partitions(EVENTS) if d < (NOW - dt.timedelta(days=30)).date()]
    audit = _get(server.url, "/v1/admin/audit-log?kind=retention")["entries"]
    assert audit
    assert audit[0]["actor"] == "tally serve (loader)"
    assert _users(lake)["dave"] == 6
