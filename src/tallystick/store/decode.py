"""Turn spooled JSON into lake rows with DuckDB's vectorised JSON reader.

The loader hands over whole spool frames — each a JSON array of events as the collector accepted
them — and DuckDB unnests, types and flattens them in C++ into the lake's columns; no Python runs
per event. The SQL is generated from ``schema.FIELDS``, like every other view of the schema, and
a test checks it against the plain-Python conversion (``lake.events_to_table``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from functools import cache
from typing import Final

import duckdb
import msgspec
import pyarrow as pa

from tallystick.schema import FIELDS, SCHEMA_VERSION, Event, Field
from tallystick.store.lake import EVENT_SCHEMA, events_to_table

log = logging.getLogger("tallystick.loader")
_decode_events = msgspec.json.Decoder(list[Event]).decode

_JSON_TYPES: Final = {
    "string": "VARCHAR",
    "timestamp": "VARCHAR",  # parsed by CAST below, offsets included
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "float": "DOUBLE",
    "map": "MAP(VARCHAR, VARCHAR)",
    "json": "JSON",
}

_SQL_TYPES: Final = {**_JSON_TYPES, "timestamp": "TIMESTAMPTZ", "json": "VARCHAR"}
FRAME: Final = "__frame"


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
    if f.origin == "server":  # filled in by enrichment after decoding
        return f"CAST(NULL AS {_SQL_TYPES[f.kind]})"
    if f.path == "event_id":
        return f"CAST(CAST({ref} AS UUID) AS VARCHAR)"
    if f.kind == "timestamp":
        return f"CAST(upper({ref}) AS TIMESTAMPTZ)"  # RFC 3339 allows a lowercase t and z
    if f.kind == "json":
        return f"nullif(CAST({ref} AS VARCHAR), '{{}}')"
    if f.kind == "map":
        return f"CASE WHEN cardinality({ref}) = 0 THEN NULL ELSE {ref} END"
    return ref


@cache
def select_sql() -> str:
    """The query that flattens table ``frames(payload VARCHAR, received_us BIGINT, stream
    VARCHAR, frame INTEGER)``: the lake's columns, then ``frame``."""
    columns = ",\n  ".join(f"{_column(f)} AS {_quote(f.column)}" for f in FIELDS)
    structure = _structure().replace("'", "''")
    return (
        f"SELECT\n  {columns},\n  CAST({SCHEMA_VERSION} AS SMALLINT) AS schema_version,\n"
        f"  stream,\n  frame AS {FRAME}\n"
        f"FROM (SELECT unnest(from_json(payload, '{structure}')) AS e, received_us, stream, frame "
        "FROM frames)"
    )


def frames_to_table(
    payloads: Sequence[bytes],
    received_us: Sequence[int],
    streams: Sequence[str | None] | None = None,
) -> pa.Table:
    """Lake rows for spooled event arrays (each payload a JSON array of validated events, stored
    for the stream at the same place in ``streams``; default: none)."""
    return decode_frames(payloads, received_us, streams)[0]


def decode_frames(
    payloads: Sequence[bytes],
    received_us: Sequence[int],
    streams: Sequence[str | None] | None = None,
) -> tuple[pa.Table, pa.Array]:
    """Lake rows for spooled event arrays, and for each row the index of the frame (payload) it
    came from — enrichment looks up the frame's request context with it.

    Should DuckDB refuse something msgspec accepted when the collector validated it, the rows
    are converted the plain-Python way instead: an acknowledged event is never held back by a
    difference between two parsers.
    """
    names = list(streams) if streams is not None else [None] * len(payloads)
    try:
        return _with_duckdb(payloads, received_us, names)
    except duckdb.Error as exc:
        log.warning("DuckDB could not convert spooled events (%s); converting them in Python", exc)
        return _with_python(payloads, received_us, names)


def _with_python(
    payloads: Sequence[bytes], received_us: Sequence[int], streams: Sequence[str | None]
) -> tuple[pa.Table, pa.Array]:
    events: list[Event] = []
    received: list[dt.datetime] = []
    names: list[str | None] = []
    frames: list[int] = []
    for i, (payload, us, stream) in enumerate(zip(payloads, received_us, streams, strict=True)):
        batch = _decode_events(payload)
        events.extend(batch)
        stamp = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
        received.extend([stamp] * len(batch))
        names.extend([stream] * len(batch))
        frames.extend([i] * len(batch))
    return events_to_table(events, received, names), pa.array(frames, pa.int32())


def _with_duckdb(
    payloads: Sequence[bytes], received_us: Sequence[int], streams: Sequence[str | None]
) -> tuple[pa.Table, pa.Array]:
    frames = pa.table(
        {
            "payload": pa.array(payloads, type=pa.binary()).cast(pa.string()),
            "received_us": pa.array(received_us, type=pa.int64()),
            "stream": pa.array(streams, type=pa.string()),
            "frame": pa.array(range(len(payloads)), type=pa.int32()),
        }
    )
    con = duckdb.connect(":memory:", config={"threads": "2"})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("frames", frames)
        table = con.sql(select_sql()).arrow().read_all()
    finally:
        con.close()
    index = table[FRAME].combine_chunks().cast(pa.int32())
    return table.drop_columns([FRAME]).cast(EVENT_SCHEMA), index
