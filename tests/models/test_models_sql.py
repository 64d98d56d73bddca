"""The SQL of models (``tallystick.models.sql``): what a model's rows are, run on a real lake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models.shoplake import orders, write_shop
from tallystick.control.definitions import parse_model
from tallystick.models import sql
from tallystick.store.lake import Lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return write_shop(tmp_path_factory.mktemp("models-sql") / "lake")


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(":memory:")
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


def rows(con: duckdb.DuckDBPyConnection, tree: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in con.execute(sql.render(tree)).fetchall()]


def types_of(con: duckdb.DuckDBPyConnection, lake: Lake, model: Any) -> dict[str, str]:
    probe = sql.type_probe(model, sql.lake_source(lake.glob()))
    if probe is None:
        return {}
    found = con.execute(sql.render(probe)).fetchall()[0]
    return {k: sql.column_type(v or ()) for k, v in zip(sql.data_keys(model), found, strict=True)}


@pytest.mark.parametrize(
    ("json_types", "expected"),
    [
        ([], "VARCHAR"),
        ([None, "NULL"], "VARCHAR"),
        (["UBIGINT"], "BIGINT"),
        (["UBIGINT", "BIGINT", None], "BIGINT"),
        (["UBIGINT", "DOUBLE"], "DOUBLE"),
        (["BOOLEAN"], "BOOLEAN"),
        (["BOOLEAN", "UBIGINT"], "VARCHAR"),
        (["VARCHAR", "UBIGINT"], "VARCHAR"),
        (["OBJECT"], "VARCHAR"),
        (["ARRAY", "NULL"], "VARCHAR"),
    ],
)
def test_a_data_key_is_typed_after_its_json_values(
    json_types: list[str | None], expected: str
) -> None:
    assert sql.column_type(json_types) == expected


def test_data_keys_in_field_order_once_each() -> None:
    model = parse_model(
        {
            "name": "m",
            "stream": "s",
            "fields": ["data.b", "user.id", "data.a", {"field": "data.b", "as": "b_again"}],
        }
    )
    assert sql.data_keys(model) == ["b", "a"]
    assert (
        sql.type_probe(
            parse_model({"name": "m", "stream": "s", "fields": ["user.id"]}), sql.lake_source("x")
        )
        is None
    )


def test_the_sql_filters_the_stream_then_keeps_the_first_received_copy() -> None:
    text = sql.render(sql.model_relation(orders(), "/lake/events/*/*.parquet"))
    assert "allow_empty = TRUE" in text
    assert "hive_partitioning = FALSE" in text
    assert "UNION ALL BY NAME" in text
    assert "WHERE stream = 'shop' QUALIFY ROW_NUMBER() OVER (PARTITION BY event_id, name " in text
    assert "ORDER BY received_ts, client_ts) = 1" in text
    assert 'AS "user_id"' in text
    assert 'AS "happened"' in text


def test_a_model_reads_its_streams_copies_only_first_received_renamed_and_typed(
    con: duckdb.DuckDBPyConnection, lake: Lake
) -> None:
    model = orders()
    types = types_of(con, lake, model)
    # amount: 10, 250, -5, "n/a", 40 (and 999 in the re-sent copy): a mixture, so text;
    # qty: whole numbers; coupon: null / "SAVE"; plan: text
    assert types == {"amount": "VARCHAR", "plan": "VARCHAR", "qty": "BIGINT", "coupon": "VARCHAR"}
    got = sorted(rows(con, sql.model_relation(model, lake.glob(), types)), key=lambda r: r[5])
    day = dt.UTC
    assert got == [
        ("u3", "40", None, 5, None, dt.datetime(2030, 1, 1, 9, tzinfo=day)),
        ("u1", "n/a", "free", 1, None, dt.datetime(2030, 1, 8, 9, tzinfo=day)),
        # o1's first received copy (u1), not the re-sent one (u9, amount 999)
        ("u1", "10", "free", 1, None, dt.datetime(2030, 1, 9, 10, tzinfo=day)),
        ("u2", "250", "pro", 2, "SAVE", dt.datetime(2030, 1, 9, 11, tzinfo=day)),
        (None, "-5", "gold", 3, None, dt.datetime(2030, 1, 9, 12, tzinfo=day)),
    ]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # o2 is stored for both streams: each model sees its own copy
        ("web", [("o2", None), ("w1", "u7")]),
        ("shop", [("o1", "u1"), ("o2", "u2"), ("o3", None), ("o4", "u1"), ("o5", "u3")]),
        # copies stored before streams existed (NULL stream) belong to no model
        ("unrouted", []),
    ],
)
def test_each_stream_has_its_own_copies_and_null_streams_none(
    con: duckdb.DuckDBPyConnection, lake: Lake, stream: str, expected: list[tuple[Any, ...]]
) -> None:
    model = parse_model({"name": "ids", "stream": stream, "fields": ["event_id", "user.id"]})
    assert sorted(rows(con, sql.model_relation(model, lake.glob()))) == expected


def test_a_typed_data_key_keeps_numbers_and_drops_text(
    con: duckdb.DuckDBPyConnection, lake: Lake
) -> None:
    model = parse_model({"name": "w", "stream": "web", "fields": ["event_id", "data.amount"]})
    types = types_of(con, lake, model)
    assert types == {"amount": "BIGINT"}
    assert sorted(rows(con, sql.model_relation(model, lake.glob(), types))) == [
        ("o2", 250),
        ("w1", 1),
    ]
    # typed BIGINT over the shop stream (whose "n/a" does not fit): the text becomes NULL
    shop = parse_model({"name": "s", "stream": "shop", "fields": ["event_id", "data.amount"]})
    got = dict(rows(con, sql.model_relation(shop, lake.glob(), {"amount": "BIGINT"})))
    assert got == {"o1": 10, "o2": 250, "o3": -5, "o4": None, "o5": 40}


def test_an_empty_lake_gives_the_model_columns_and_no_rows(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    glob = Lake(tmp_path / "lake").glob()
    query = sql.model_relation(orders(), glob, hidden=True)
    result = con.execute(sql.render(query))
    names = [d[0] for d in result.description]
    assert result.fetchall() == []
    assert names == ["user_id", "amount", "plan", "qty", "coupon", "happened", *sql.HIDDEN]


@pytest.mark.parametrize(
    ("accepted", "value", "ok"),
    [
        (["a", "b"], "'a'", True),
        (["a", "b"], "'c'", False),
        ([1, 2], "1", True),
        ([1, 2], "1.0", True),
        ([1, 2], "'2'", True),
        ([1, 2], "3", False),
        ([1, 2], "'x'", False),
        ([True], "true", True),
        ([True], "false", False),
        (["1", 2], "'1'", True),
        ([1.5], "1.5", True),
    ],
)
def test_accepted_values_compare_numbers_as_numbers_else_text(
    con: duckdb.DuckDBPyConnection, accepted: list[Any], value: str, ok: bool
) -> None:
    condition = sql.accepted_condition(sql._parse(value), accepted)
    assert con.execute("SELECT " + sql.render(condition)).fetchall() == [(ok,)]


@pytest.mark.parametrize(
    ("low", "high", "value", "ok"),
    [
        (0, 100, "0", True),
        (0, 100, "100", True),
        (0, 100, "100.5", False),
        (0, 100, "-1", False),
        (0, None, "1e9", True),
        (None, 5, "-1e9", True),
        (0, 100, "'50'", True),
        (0, 100, "'n/a'", False),
    ],
)
def test_a_range_holds_numbers_between_its_bounds_inclusive(
    con: duckdb.DuckDBPyConnection, low: float | None, high: float | None, value: str, ok: bool
) -> None:
    condition = sql.range_condition(sql._parse(value), low, high)
    assert con.execute("SELECT " + sql.render(condition)).fetchall() == [(ok,)]
