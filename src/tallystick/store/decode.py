"""Turn spooled JSON into lake rows with DuckDB's vectorised JSON reader.

The loader hands over whole spool frames — each a JSON array of events as the collector accepted
them — and DuckDB unnests, types and flattens them in C++ into the lake's columns; no Python runs
per event. The SQL is generated from ``schema.FIELDS``, like every other view of the schema, and
a test checks it against the plain-Python conversion (``lake.events_to_table``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Final

import duckdb
import pyarrow as pa

from tallystick.schema import FIELDS, SCHEMA_VERSION, Field
from tallystick.store.lake import EVENT_SCHEMA

_JSON_TYPES: Final = {
    "string": "VARCHAR",
    "timestamp": "VARCHAR",  # parsed by CAST below, offsets included
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "float": "DOUBLE",
    "map": "MAP(VARCHAR, VARCHAR)",
    "json": "JSON",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _structure() -> str:
    tree: dict[str, object] = {}
    for f in FIELDS:
        if f.origin != "client":
            continue
        *groups, leaf = f.path.split(".")
        node = tree
        for g in groups:
            child = node.setdefault(g, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = _JSON_TYPES[f.kind]
    return json.dumps([tree])


def _column(f: Field) -> str:
    ref = "e." + ".".join(_quote(p) for p in f.path.split("."))
    if f.path == "received_ts":
        return "make_timestamp(received_us)::TIMESTAMPTZ"
    if f.path == "event_id":
        return f"CAST(CAST({ref} AS UUID) AS VARCHAR)"
    if f.kind == "timestamp":
        return f"CAST({ref} AS TIMESTAMPTZ)"
    if f.kind == "json":
        return f"nullif(CAST({ref} AS VARCHAR), '{{}}')"
    if f.kind == "map":
        return f"CASE WHEN cardinality({ref}) = 0 THEN NULL ELSE {ref} END"
    return ref


@cache
def select_sql() -> str:
    """The query that flattens table ``frames(payload VARCHAR, received_us BIGINT)``."""
    columns = ",\n  ".join(f"{_column(f)} AS {_quote(f.column)}" for f in FIELDS)
    structure = _structure().replace("'", "''")
    return (
        f"SELECT\n  {columns},\n  CAST({SCHEMA_VERSION} AS SMALLINT) AS schema_version\n"
        f"FROM (SELECT unnest(from_json(payload, '{structure}')) AS e, received_us "
        "FROM frames)"
    )


def frames_to_table(payloads: Sequence[bytes], received_us: Sequence[int]) -> pa.Table:
    """Lake rows for spooled event arrays (each payload a JSON array of validated events)."""
    frames = pa.table(
        {
            "payload": pa.array(payloads, type=pa.binary()).cast(pa.string()),
            "received_us": pa.array(received_us, type=pa.int64()),
        }
    )
    con = duckdb.connect(":memory:", config={"threads": "2"})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("frames", frames)
        table = con.sql(select_sql()).arrow().read_all()
    finally:
        con.close()
    return table.cast(EVENT_SCHEMA)
