"""Migration 0006: ``alert_runs.stream`` holds an experiment's ``experiment:KEY`` (up to 200
characters) on SQLite and Postgres, and a database at 0005 keeps its alert history when it is
migrated."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from tallystick.control import db
from tallystick.control import tables as t
from tallystick.control.store import ControlStore
from tallystick.experiments.definition import MAX_KEY_LENGTH
from tallystick.quality.alerts import AlertRun, current, history, record

AT = dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC)


def _run(stream: str, label: str = "experiment_srm", fired: bool = True) -> AlertRun:
    return AlertRun(
        AT,
        stream,
        "experiment_srm",
        label,
        {"rule": "experiment_srm"},
        fired,
        1e-9,
        0.001,
        "sample ratio mismatch",
    )


def test_the_longest_experiment_key_fits(store_url: str) -> None:
    subject = "experiment:" + "k" * MAX_KEY_LENGTH
    assert len(subject) == 200
    with ControlStore.open(store_url) as store:
        record(store, [_run(subject)])
        assert [r.stream for r in history(store, stream=subject)] == [subject]
        assert current(store)[(subject, "experiment_srm")].fired


def test_migrating_from_0005_keeps_the_history(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        db.migrate(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                sa.insert(t.alert_runs).values(
                    at=AT,
                    stream="product",
                    rule="volume",
                    label="volume(24h)",
                    spec={},
                    fired=False,
                    message="quiet",
                )
            )
        db.migrate(engine)
        assert db.current_revision(engine) == db.HEAD == "0006"
    finally:
        engine.dispose()
    with ControlStore.open(store_url) as store:
        record(store, [_run("experiment:" + "x" * MAX_KEY_LENGTH)])
        assert sorted(r.stream[:12] for r in history(store)) == ["experiment:x", "product"]
