"""The control-plane store on SQLite and Postgres: migrations, changes with their audit rows and
version, atomic read-then-write across processes, run records."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

import pytest

from tallystick.control import db
from tallystick.control.definitions import parse_configuration, parse_model, parse_stream
from tallystick.control.store import CheckRun, Conflict, ControlStore, NotFound

CONFIG = parse_configuration(
    {
        "streams": [
            {"name": "product", "events": ["project.*"], "expires": "2027-01-01T00:00:00+02:00"},
            {"name": "auth", "events": ["signin.*"], "sample": {"unit": "user", "rate": 0.5}},
        ],
        "models": [{"name": "commits", "stream": "product", "fields": ["event_id", "user.id"]}],
    }
)


def test_migrations_match_the_tables(store: ControlStore) -> None:
    db.check_models(store.engine)  # raises if tables.py has something no migration creates
    current, head = db.revisions(store.engine)
    assert current == head == db.HEAD
    assert db.current_revision(store.engine) == db.HEAD


def test_apply_stores_everything_in_one_version_with_audit_rows(store: ControlStore) -> None:
    assert store.version() == 0
    plan = store.apply(CONFIG, "cli:ana")
    assert [(c.kind, c.name, c.action) for c in plan] == [
        ("stream", "auth", "create"),
        ("stream", "product", "create"),
        ("model", "commits", "create"),
    ]
    assert store.version() == 1
    assert store.configuration() == CONFIG
    product = store.stream("product")
    assert product.expires == dt.datetime(2026, 12, 31, 22, tzinfo=dt.UTC)  # zone kept, as UTC
    log = store.audit_log()
    assert {(e.actor, e.action, e.version) for e in log} == {("cli:ana", "apply", 1)}
    assert store.apply(CONFIG, "cli:ana").changes == ()  # nothing to do: no new version
    assert store.version() == 1


def test_an_update_records_before_and_after(store: ControlStore) -> None:
    store.apply(CONFIG, "cli:ana")
    store.update_stream("auth", "http:admin-key", "disable", enabled=False)
    (entry,) = store.audit_log(name="auth", limit=1)
    assert entry.actor == "http:admin-key"
    assert entry.action == "disable"
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["enabled"], entry.after["enabled"]) == (True, False)
    assert entry.as_dict()["changed"] == ["enabled"]
    assert entry.at.tzinfo is not None
    assert not store.stream("auth").enabled


def test_conflicts_and_missing_definitions(store: ControlStore) -> None:
    store.apply(CONFIG, "t")
    with pytest.raises(Conflict, match="read by model"):
        store.delete_stream("product", "t")
    with pytest.raises(Conflict, match="exists already"):
        store.put_stream(parse_stream({"name": "auth"}), "t", create_only=True)
    with pytest.raises(NotFound, match="no stream 'gone'"):
        store.stream("gone")
    with pytest.raises(Conflict, match="no stream 'gone'"):
        store.put_model(parse_model({"name": "m", "stream": "gone", "fields": ["name"]}), "t")
    assert store.version() == 1  # refused changes change nothing
    store.delete_model("commits", "t")
    store.delete_stream("product", "t")
    assert [s.name for s in store.streams()] == ["auth"]


def test_controls_snapshot_matches_the_version(store: ControlStore) -> None:
    store.apply(CONFIG, "t")
    controls = store.controls()
    assert controls.version == 1
    assert set(controls.streams) == {"product", "auth"}
    assert controls.router.streams("signin.open") == ("auth",)


def test_check_runs_and_metric_costs(store: ControlStore) -> None:
    run = CheckRun("model", "commits", "not_null(user_id)", {"type": "not_null"}, False, 2, 10, "x")
    store.record_checks([run])
    store.record_checks([CheckRun("model", "commits", "not_null(user_id)", {}, True, 0, 12, "ok")])
    (latest,) = store.latest_checks("commits")
    assert latest.passed
    assert latest.checked == 12
    for seconds in (0.5, 1.5):
        store.record_metric_run("wau", seconds, 10, "http")
    store.record_metric_run("dau", 0.1, 10, "cli")
    costs = store.metric_costs()
    assert [(c.metric, c.runs) for c in costs] == [("wau", 2), ("dau", 1)]
    assert costs[0].mean_seconds == pytest.approx(1.0)
    assert costs[0].max_seconds == pytest.approx(1.5)
    assert costs[0].last_run.tzinfo is not None


def test_fields_keep_their_first_sighting(store: ControlStore) -> None:
    t = [dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3, 4)]
    store.upsert_fields(
        [
            {
                "name": "page.url",
                "type": "string",
                "first_seen": t[1],
                "last_seen": t[2],
                "stats": {"n": 1},
            }
        ]
    )
    store.upsert_fields(
        [
            {
                "name": "page.url",
                "type": "string",
                "first_seen": t[2],
                "last_seen": t[3],
                "stats": {"n": 2},
            }
        ]
    )
    (row,) = store.fields()
    assert (row["first_seen"], row["last_seen"], row["stats"]) == (t[1], t[3], {"n": 2})


def _bump_many(url: str, n: int) -> None:
    with ControlStore.open(url, migrate=False) as store:
        for i in range(n):
            store.update_stream("s", f"worker-{i}", "update", description=str(i))


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.db'}"
    with ControlStore.open(url) as store:
        store.put_stream(parse_stream({"name": "s"}), "t")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump_many, args=(url, 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ControlStore.open(url) as store:
        # every change read the version it bumped inside its own transaction
        assert len(store.audit_log(limit=1000)) == 1 + sum(
            1 for e in store.audit_log(limit=1000) if e.action == "update"
        )
        versions = [e.version for e in store.audit_log(limit=1000)]
        assert sorted(versions) == list(range(1, len(versions) + 1))
        assert store.version() == len(versions)
