"""Building models in DATA/models.duckdb: views read the lake live, tables are snapshots."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from metrics.lakerows import to_table
from models.shoplake import NOW, add_streams, at, orders, row, write_shop
from tallystick.config import Settings
from tallystick.control.definitions import parse_model
from tallystick.control.store import ControlStore, NotFound
from tallystick.models import ModelError, build_models, drop_model
from tallystick.models.build import engine_file, snapshot_file
from tallystick.models.sql import HIDDEN

COLUMNS = (
    ("user_id", "VARCHAR"),
    ("amount", "VARCHAR"),
    ("plan", "VARCHAR"),
    ("qty", "BIGINT"),
    ("coupon", "VARCHAR"),
    ("happened", "TIMESTAMP WITH TIME ZONE"),
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> Iterator[ControlStore]:
    with ControlStore.for_settings(settings) as s:
        add_streams(s)
        yield s


def query(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    """What a user sees opening the models' database read-only."""
    con = duckdb.connect(str(engine_file(settings)), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return [tuple(r) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_a_view_reads_the_lake_live_and_a_table_is_a_snapshot(
    settings: Settings, store: ControlStore
) -> None:
    lake = write_shop(settings.lake_dir)
    store.put_model(orders(), "test")
    store.put_model(orders(name="orders_t", materialize="table"), "test")

    results = {r.model: r for r in build_models(settings, store, now=NOW)}
    view, table = results["orders"], results["orders_t"]
    assert (view.materialize, view.rows, view.snapshot, view.columns) == (
        "view",
        None,
        None,
        COLUMNS,
    )
    assert (table.materialize, table.rows, table.columns) == ("table", 5, COLUMNS)
    assert table.snapshot == snapshot_file(settings, "orders_t").resolve()
    assert view.database == table.database == engine_file(settings)
    assert store.model_built() == {"orders": NOW, "orders_t": NOW}
    assert view.as_dict()["columns"][0] == {"name": "user_id", "type": "VARCHAR"}
    assert view.as_dict()["built_at"] == "2030-01-10T12:00:00Z"

    # the snapshot keeps the hidden time columns; the view over it leaves them out
    assert pq.read_schema(table.snapshot).names == [n for n, _ in COLUMNS] + list(HIDDEN)
    expected = [("u1", 1), ("u1", 1), ("u2", 2), ("u3", 5), (None, 3)]
    for name in ("orders", "orders_t"):
        got = query(settings, f"SELECT user_id, qty FROM {name} ORDER BY user_id NULLS LAST, qty")
        assert got == expected, name
    assert len(query(settings, "DESCRIBE orders_t")) == len(COLUMNS)

    lake.write_events(to_table([row("o9", "shop", at(10, 1), at(10, 2), "u8", {"qty": 7})]), "x")
    assert query(settings, "SELECT count(*) FROM orders") == [(6,)]
    assert query(settings, "SELECT count(*) FROM orders_t") == [(5,)]
    (rebuilt,) = build_models(settings, store, ["orders_t"])
    assert rebuilt.rows == 6
    assert query(settings, "SELECT count(*) FROM orders_t") == [(6,)]


def test_a_view_built_on_an_empty_lake_shows_events_as_they_arrive(
    settings: Settings, store: ControlStore
) -> None:
    store.put_model(orders(), "test")
    (result,) = build_models(settings, store)
    # nothing seen yet: data keys are text until a rebuild sees their values
    text = "VARCHAR"
    assert result.columns == tuple((n, text if n == "qty" else t) for n, t in COLUMNS)
    assert query(settings, "SELECT count(*) FROM orders") == [(0,)]
    write_shop(settings.lake_dir)
    assert query(settings, "SELECT count(*) FROM orders") == [(5,)]


def test_building_everything_drops_what_is_no_longer_defined(
    settings: Settings, store: ControlStore
) -> None:
    write_shop(settings.lake_dir)
    store.put_model(orders(), "test")
    store.put_model(orders(name="gone", materialize="table"), "test")
    store.put_model(orders(name="switch", materialize="table"), "test")
    build_models(settings, store)
    con = duckdb.connect(str(engine_file(settings)))
    con.execute("CREATE VIEW mine AS SELECT 1 AS x")  # a user's own view is left alone
    con.close()
    assert snapshot_file(settings, "gone").exists()

    store.delete_model("gone", "test")
    store.put_model(orders(name="switch", materialize="view"), "test")
    build_models(settings, store, ["switch"])
    assert not snapshot_file(settings, "switch").exists()  # a view has no snapshot
    assert snapshot_file(settings, "gone").exists()  # building some models drops nothing
    build_models(settings, store)
    assert not snapshot_file(settings, "gone").exists()
    views = query(settings, "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1")
    assert views == [("mine",), ("orders",), ("switch",)]


def test_drop_model_removes_its_view_and_snapshot(settings: Settings, store: ControlStore) -> None:
    assert drop_model(settings, "orders_t") is False  # nothing built yet: no database made
    assert not engine_file(settings).exists()
    write_shop(settings.lake_dir)
    store.put_model(orders(name="orders_t", materialize="table"), "test")
    build_models(settings, store)
    assert drop_model(settings, "orders_t") is True
    assert not snapshot_file(settings, "orders_t").parent.exists()
    assert query(settings, "SELECT count(*) FROM duckdb_views() WHERE NOT internal") == [(0,)]
    assert drop_model(settings, "orders_t") is False


def test_a_model_name_that_is_an_sql_keyword_works(settings: Settings, store: ControlStore) -> None:
    write_shop(settings.lake_dir)
    model = parse_model(
        {"name": "order", "stream": "shop", "fields": [{"field": "user.id", "as": "user"}]}
    )
    store.put_model(model, "test")
    build_models(settings, store)
    assert query(settings, 'SELECT count("user") FROM "order"') == [(4,)]


def test_unknown_names_reserved_columns_and_a_busy_database_are_refused(
    settings: Settings, store: ControlStore
) -> None:
    with pytest.raises(NotFound, match="no model 'nope'"):
        build_models(settings, store, ["nope"])
    hidden = parse_model(
        {"name": "bad", "stream": "shop", "fields": [{"field": "user.id", "as": HIDDEN[0]}]}
    )
    store.put_model(hidden, "test")
    with pytest.raises(ModelError, match="'_tally_client_ts' is reserved for Tallystick"):
        build_models(settings, store, ["bad"])
    store.delete_model("bad", "test")
    store.put_model(orders(), "test")

    engine_file(settings).parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(engine_file(settings)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ModelError, match="is open in another process"):
            build_models(settings, store)
    finally:
        holder.communicate("", timeout=30)
    assert store.model_built()["orders"] is None
    build_models(settings, store, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
