"""Deleting a user on a real data directory, read back from the Parquet files with pyarrow:
every stored form of the id (as sent, pseudonyms under the current and a previous key) leaves
the event files (every copy), the delivery ledger and the failed events; the spool is loaded
first with the user's events dropped; later events are dropped at load; other users are
untouched; running again removes nothing; nothing written keeps the id in clear."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from metrics.lakerows import to_table
from support import make_event
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.deletions import (
    DONE,
    get_deletion,
    list_deletions,
    pending,
    request_deletion,
)
from tallystick.control.store import ControlStore
from tallystick.enrich.pipeline import STATE_FILE
from tallystick.enrich.sessions import SessionStore, State, Track
from tallystick.privacy.pseudonym import pseudonymize
from tallystick.store import spool
from tallystick.store.deletion import plan, run_here
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import DECLINED, EVENTS, FAILED, MESSAGES, Lake
from tallystick.store.loader import Loader
from tallystick.store.purge import PurgeRefused
from tallystick.store.spool import SpoolWriter

KEY, OLD_KEY = "current-pseudonym-key", "previous-pseudonym-key"
T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
VICTIM = "alice@example.com"
FORMS = (VICTIM, pseudonymize(VICTIM, KEY), pseudonymize(VICTIM, OLD_KEY))
OTHERS = ("bob", pseudonymize("bob", KEY), "carol")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data=tmp_path / "data",
        min_free_bytes=0,
        pseudonymize_user_ids=True,
        pseudonym_key=KEY,
        pseudonym_previous_keys=OLD_KEY,
    )


def _row(i: int, user: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"00000000-0000-4000-8000-{i:012d}",
        "name": "login",
        "client_ts": T0 + dt.timedelta(hours=i),
        "received_ts": T0 + dt.timedelta(hours=i, seconds=1),
        "user_id": user,
        "session_id": f"s{i % 5}",
        "session_seq": i,
        "stream": "product",
        **extra,
    }


def _lake_rows() -> list[dict[str, Any]]:
    users = [*FORMS, *OTHERS]
    rows = [_row(i, users[i % len(users)]) for i in range(36)]
    # a copy of the victim's event 0 in a stream that does not keep `user`
    rows.append(_row(0, None, stream="anonymous"))
    # a retry of event 1 (the victim's current pseudonym) in a later file
    rows.append(_row(1, FORMS[1], received_ts=T0 + dt.timedelta(days=4)))
    return rows


ROWS = _lake_rows()
VICTIM_IDS = {r["event_id"] for r in ROWS if r["user_id"] in FORMS}


def _failed() -> list[FailedEvent]:
    def f(raw: str, event_id: str | None = None) -> FailedEvent:
        return FailedEvent(T0, "http", "invalid_event", "bad", raw, index=0, event_id=event_id)

    return [
        f(json.dumps({"user": {"id": VICTIM}, "name": "Bad Name"})),
        f(json.dumps([{"user": {"id": "bob"}}, {"user": {"id": FORMS[2]}}])),
        f(json.dumps({"events": [{"user": {"id": FORMS[1]}}]})),
        f('{"user": {"id": "' + VICTIM + '"}, "data": {"x": "cut her'),  # truncated: not JSON
        f(json.dumps({"user": {"id": "bob"}})),
        f("{not json at all"),
        f(json.dumps({"name": "x"}), event_id=sorted(VICTIM_IDS)[0]),
    ]


def _build(settings: Settings) -> Lake:
    lake = Lake(settings.lake_dir)
    for i in range(3):
        part = [r for n, r in enumerate(ROWS) if n % 3 == i]
        lake.write_events(to_table(part), f"fixture-{i}")
    lake.write_failed(_failed(), "failed")
    return lake


def _read(lake: Lake, kind: str) -> pa.Table:
    tables = [pq.read_table(p) for p in lake.absolute(lake.files(kind))]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def _spool(settings: Settings, events: list[dict[str, Any]]) -> None:
    writer = SpoolWriter(settings.spool_dir, rotate_seconds=60)
    writer.start()
    writer.append_sync(
        [
            spool.context_frame(
                spool.RequestContext(stream="product"),
                1_772_000_000_000_000,
                msgspec.json.encode(events),
            )
        ]
    )
    writer.close()


def _assert_gone(lake: Lake) -> None:
    events = _read(lake, EVENTS)
    assert not set(events["user_id"].to_pylist()) & set(FORMS)
    assert not set(events["event_id"].to_pylist()) & VICTIM_IDS
    ledger = _read(lake, MESSAGES)
    assert not set(ledger["event_id"].to_pylist()) & VICTIM_IDS
    for raw in _read(lake, FAILED)["raw"].to_pylist():
        assert not any(form in raw for form in FORMS), raw
    for path in [*lake.absolute(lake.files(EVENTS)), *lake.absolute(lake.files(FAILED))]:
        data = Path(path).read_bytes()
        assert VICTIM.encode() not in data


def test_every_stored_form_leaves_the_lake_and_nothing_else_does(settings: Settings) -> None:
    lake = _build(settings)
    others = sorted(r["event_id"] for r in ROWS if r["event_id"] not in VICTIM_IDS)
    with ControlStore.for_settings(settings) as store:
        request = request_deletion(store, settings, VICTIM, "tester")
        planned = plan(lake, settings, [request])
        assert planned.forms == 3
        report = run_here(settings, store)
        assert report is not None
        assert get_deletion(store, request.id).status == DONE
        assert pending(store) == []
    _assert_gone(lake)
    events = _read(lake, EVENTS)
    assert sorted(events["event_id"].to_pylist()) == others
    assert sorted(_read(lake, MESSAGES)["event_id"].to_pylist()) == others
    # the failed events of others stay: bob's, the unreadable one
    left = sorted(_read(lake, FAILED)["raw"].to_pylist())
    assert left == sorted([json.dumps({"user": {"id": "bob"}}), "{not json at all"])
    assert report.removed(EVENTS) == len(ROWS) - len(others)
    assert report.removed(FAILED) == 5
    assert report.events == len({(r["event_id"], r["name"]) for r in ROWS}) - len(others)
    assert planned.summary()["event_rows"] == report.summary()["event_rows"]


def test_a_second_run_removes_nothing(settings: Settings) -> None:
    lake = _build(settings)
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        run_here(settings, store)
        versions = {
            p: lake.storage.version(p) for k in (EVENTS, MESSAGES, FAILED) for p in lake.files(k)
        }
        again = request_deletion(store, settings, VICTIM, "tester")
        report = run_here(settings, store)
    assert report is not None
    assert report.files == ()
    assert report.requests == (again.id,)
    assert {
        p: lake.storage.version(p) for k in (EVENTS, MESSAGES, FAILED) for p in lake.files(k)
    } == versions


def test_a_pending_request_is_not_recorded_twice(settings: Settings) -> None:
    with ControlStore.for_settings(settings) as store:
        first = request_deletion(store, settings, VICTIM, "a")
        second = request_deletion(store, settings, VICTIM, "b")
        other = request_deletion(store, settings, "bob", "a")
        assert second.id == first.id
        assert [r.id for r in pending(store)] == [first.id, other.id]
        with pytest.raises(ValueError, match="user id is needed"):
            request_deletion(store, settings, "  ", "a")


def test_the_spool_is_loaded_first_without_the_users_events(settings: Settings) -> None:
    lake = Lake(settings.lake_dir)
    mine = [make_event(user={"id": VICTIM}) for _ in range(4)]
    theirs = [make_event(user={"id": "bob"}) for _ in range(3)]
    _spool(settings, [*mine, *theirs])
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        report = run_here(settings, store)
    assert report is not None
    assert report.spool_segments == 1
    assert list(settings.spool_dir.glob("*.ready")) == []
    events = _read(lake, EVENTS)
    assert sorted(events["event_id"].to_pylist()) == sorted(e["event_id"] for e in theirs)
    declined = _read(lake, DECLINED).to_pylist()
    assert [(d["reason"], d["stream"], d["count"]) for d in declined] == [
        ("deleted_user", "product", 4)
    ]


def test_later_events_are_dropped_at_load(settings: Settings) -> None:
    lake = Lake(settings.lake_dir)
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        run_here(settings, store)
    # stored under its pseudonym (the collector pseudonymizes before the spool) or as sent
    later = [make_event(user={"id": form}) for form in FORMS] + [make_event(user={"id": "bob"})]
    _spool(settings, later)
    stats = Loader(settings).load_once()
    assert stats.events == 1
    assert _read(lake, EVENTS)["user_id"].to_pylist() == ["bob"]
    assert sum(d["count"] for d in _read(lake, DECLINED).to_pylist()) == 3


def test_the_session_state_forgets_the_user(settings: Settings) -> None:
    path = settings.data / STATE_FILE
    store_ = SessionStore(path, 30 * 60_000_000)
    tracks = {f"u:{FORMS[1]}": Track(1), "u:bob": Track(2), f"a:{VICTIM}-device": Track(3)}
    path.parent.mkdir(parents=True)
    path.write_bytes(msgspec.json.encode(State(tracks=tracks)))
    _build(settings)
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        report = run_here(settings, store)
    assert report is not None
    assert report.session_tracks == 1
    del store_
    left = msgspec.json.decode(path.read_bytes(), type=State)
    assert sorted(left.tracks) == sorted(["u:bob", f"a:{VICTIM}-device"])


def test_nothing_written_keeps_the_id_in_clear(settings: Settings) -> None:
    _build(settings)
    with ControlStore.for_settings(settings) as store:
        request = request_deletion(store, settings, VICTIM, "tester")
        run_here(settings, store)
        [done] = list_deletions(store)
        entries = store.audit_log(kind="deletion")
    assert done.id == request.id
    assert done.outcome is not None
    assert done.outcome["event_rows"] > 0
    assert [e.action for e in entries] == ["done", "request"]
    assert len(done.subject_hash) == 64
    database = (settings.data / "control.db").read_bytes()
    for form in FORMS:
        assert form.encode() not in database
    assert b"alice" not in database


def test_refused_while_a_loader_runs(settings: Settings) -> None:
    import threading

    from tallystick.store.loader import loader_lock

    stop = threading.Event()
    with ControlStore.for_settings(settings) as store, loader_lock(settings.data, stop):
        request_deletion(store, settings, VICTIM, "tester")
        with pytest.raises(PurgeRefused, match="a deletion cannot rewrite"):
            run_here(settings, store, wait=0)
        assert len(pending(store)) == 1


def test_the_collector_drops_the_users_later_events(
    settings: Settings, app: Collector, collector: TestClient
) -> None:
    """The collector itself (not only the loader): nothing of the user reaches the spool."""
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
    app.reload_controls()  # what the collector's watcher does when the version moves
    mine = [make_event(user={"id": VICTIM}), make_event("page.view", user={"id": VICTIM})]
    theirs = make_event(user={"id": "bob"})
    response = collector.post("/v1/events", json=[*mine, theirs])
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "rejected": 0}
    app.spool.seal()
    frames = [
        frame
        for segment in sorted(settings.spool_dir.glob("*.ready"))
        for frame in spool.read_segment(segment).frames
    ]
    stored = b"".join(f.payload for f in frames if f.kind != spool.DECLINED)
    assert theirs["event_id"].encode() in stored
    for event in mine:
        assert event["event_id"].encode() not in stored
    assert VICTIM.encode() not in b"".join(f.payload for f in frames)
    declined = [
        row for f in frames if f.kind == spool.DECLINED for row in msgspec.json.decode(f.payload)
    ]
    assert sorted((d["reason"], d["name"], d["count"]) for d in declined) == [
        ("deleted_user", "page.view", 1),
        ("deleted_user", "project.commit", 1),
    ]


def test_materialised_metrics_are_computed_again(settings: Settings) -> None:
    from tallystick.metrics.catalog import read_catalog
    from tallystick.metrics.materialize import materialize, results_path

    lake = _build(settings)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "logins.yaml").write_text(
        "- name: logins\n  title: Logins\n  type: count\n  params: {event: login}\n"
    )
    catalog, problems = read_catalog(settings.catalog_dir)
    assert problems == []
    materialize(lake, list(catalog))
    path = lake.root / results_path("logins", "week")

    def users() -> int:
        return sum(r["units"] or 0 for r in pq.read_table(path).to_pylist())

    before = users()
    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        report = run_here(settings, store)
    assert report is not None
    assert report.metrics == ("logins",)
    assert report.stale == ()
    # the victim counted once per week under each of the three forms, which are gone now
    assert users() < before
    events = sum(r["events"] for r in pq.read_table(path).to_pylist())
    assert events == len(set(_read(lake, EVENTS)["event_id"].to_pylist()))


def test_table_models_are_built_again(settings: Settings) -> None:
    from tallystick.control.definitions import Stream, parse_model
    from tallystick.models.build import build_models, snapshot_file

    _build(settings)
    with ControlStore.for_settings(settings) as store:
        store.put_stream(Stream("product", ("login",)), "t")
        model = parse_model(
            {"name": "logins", "stream": "product", "materialize": "table", "fields": ["user.id"]}
        )
        store.put_model(model, "t")
        build_models(settings, store)
        snapshot = snapshot_file(settings, "logins")
        assert set(pq.read_table(snapshot)["user_id"].to_pylist()) & set(FORMS)
        request_deletion(store, settings, VICTIM, "tester")
        report = run_here(settings, store)
    assert report is not None
    assert report.models == ("logins",)
    users = set(pq.read_table(snapshot)["user_id"].to_pylist())
    assert not users & set(FORMS)
    assert {"bob", "carol"} <= users


def test_an_import_does_not_bring_the_user_back(settings: Settings, tmp_path: Path) -> None:
    from tallystick.backfill.importer import detect_source, import_file

    with ControlStore.for_settings(settings) as store:
        request_deletion(store, settings, VICTIM, "tester")
        run_here(settings, store)
    rows = [make_event(user={"id": u}) for u in (VICTIM, VICTIM, "bob")]
    path = tmp_path / "backup.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lake = Lake(settings.lake_dir)
    report = import_file(detect_source(path), lake, settings)
    assert report.added == 1
    stored = _read(lake, EVENTS)["user_id"].to_pylist()
    assert len(stored) == 1
    assert not set(stored) & set(FORMS)
    assert sum(d["count"] for d in _read(lake, DECLINED).to_pylist()) == 2


def test_the_admin_api(settings: Settings) -> None:
    admin = "admin-key-for-the-test-0123456789"
    app = Collector(settings.with_changes(admin_key=admin))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        _admin_api(client)


def _admin_api(collector: TestClient) -> None:
    for body in ({"user_id": ""}, {"user_id": 7}, {"user": "x"}, {}):
        answer = collector.post("/v1/admin/users/delete", json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "invalid_query"
    first = collector.post("/v1/admin/users/delete", json={"user_id": VICTIM})
    assert first.status_code == 202
    request = first.json()["deletion"]
    assert request["status"] == "pending"
    assert VICTIM not in first.text
    again = collector.post("/v1/admin/users/delete", json={"user_id": VICTIM})
    assert again.status_code == 200
    assert again.json()["deletion"]["id"] == request["id"]
    listed = collector.get("/v1/admin/deletions?status=pending").json()["deletions"]
    assert [d["id"] for d in listed] == [request["id"]]
    assert collector.get("/v1/admin/deletions?status=done").json() == {"deletions": []}
    assert collector.get("/v1/admin/deletions?status=nope").status_code == 400
    one = collector.get(f"/v1/admin/deletions/{request['id']}").json()["deletion"]
    assert one == request
    assert collector.get("/v1/admin/deletions/999").status_code == 404
    audit = collector.get("/v1/admin/audit-log?kind=deletion").json()["entries"]
    assert [e["action"] for e in audit] == ["request"]
    assert VICTIM not in json.dumps(audit)


def test_the_command_line_deletes_and_warns_without_pseudonym_keys(settings: Settings) -> None:
    from typer.testing import CliRunner

    from tallystick.cli import app as cli

    lake = _build(settings)
    data = ["--data", str(settings.data)]
    # this shell has no pseudonym key: only the id as given can be found
    result = CliRunner().invoke(cli, ["users", "delete", VICTIM, "--format", "json", *data])
    assert result.exit_code == 0, result.output
    assert "no pseudonym key is set" in " ".join(result.stderr.split())
    answer = json.loads(result.stdout)
    assert answer["status"] == "done"
    assert VICTIM not in result.stdout
    left = set(_read(lake, EVENTS)["user_id"].to_pylist())
    assert VICTIM not in left
    assert {FORMS[1], FORMS[2]} <= left
    listed = CliRunner().invoke(cli, ["users", "deletions", "--status", "done", *data])
    assert listed.exit_code == 0, listed.output
    assert "done" in listed.stdout
    wrong = CliRunner().invoke(cli, ["users", "deletions", "--status", "nope", *data])
    assert wrong.exit_code == 2
