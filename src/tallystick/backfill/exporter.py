"""Export de-duplicated events from the lake (``tally export``).

Events come from the reader's ``events`` view (one copy per ``event_id``), optionally limited
to an inclusive range of UTC dates of ``client_ts``, ordered by ``client_ts`` then ``event_id``,
and streamed in Arrow batches so memory stays bounded whatever the size of the lake.

Formats:

* **jsonl**: one nested monoschema object per line, as clients send events plus
  ``received_ts``; null fields are left out; ``data`` and ``experiments`` are objects.
* **csv**: a header row of dotted fields (``event_id,name,client_ts,…,user.id,…``), one
  column per field of ``schema.FIELDS``; ``data`` and ``experiments`` hold JSON text; times
  are RFC 3339 in UTC; booleans ``true``/``false``; missing values are empty cells (so an
  empty string does not survive a CSV round trip: it comes back as missing).
* **parquet**: the nested monoschema as Arrow types: one struct column per group (``app``,
  ``user``, …), ``experiments`` a map of strings, and ``data`` JSON text marked with Parquet's
  JSON logical type (``arrow.json``), since its values vary in type from event to event.

All three are read back unchanged by ``tally import``.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick.backfill.formats import ExportFormat
from tallystick.schema import FIELDS, Field
from tallystick.store.lake import EVENT_SCHEMA, Lake
from tallystick.store.reader import with_retry

DEFAULT_BATCH_ROWS: Final = 16_384

COLUMNS: Final = tuple(f.column for f in FIELDS)
CSV_HEADER: Final = tuple(f.path for f in FIELDS)


class ExportInterrupted(RuntimeError):
    """The lake changed under a running export after output was written; run it again."""


@dataclass(frozen=True, slots=True)
class _Slot:
    column: str
    group: str | None
    key: str


_SLOTS: Final = tuple(
    _Slot(f.column, *f.path.split(".", 1)) if "." in f.path else _Slot(f.column, None, f.path)
    for f in FIELDS
)


_RFC3339: Final = "'%Y-%m-%dT%H:%M:%S.%fZ'"


def _expression(field: Field, fmt: ExportFormat) -> str:
    """How one column is selected: text formats get times and maps as text from DuckDB."""
    col = f'e."{field.column}"'
    if fmt is ExportFormat.parquet:
        return col
    if field.kind == "timestamp":
        # RFC 3339 in UTC; whole seconds without the fraction, like the importer's format
        return f"replace(strftime({col} AT TIME ZONE 'UTC', {_RFC3339}), '.000000Z', 'Z')"
    if field.kind == "map":
        return f"to_json({col})::VARCHAR"
    if fmt is ExportFormat.csv and field.kind in ("bool", "int", "float"):
        return f"{col}::VARCHAR"
    return col


def query(
    date_from: dt.date | None, date_to: dt.date | None, fmt: ExportFormat = ExportFormat.parquet
) -> tuple[str, list[Any]]:
    """SQL and parameters selecting the events to export (``date_to`` inclusive)."""
    where: list[str] = []
    params: list[Any] = []
    if date_from is not None:
        where.append("e.client_ts >= ?")
        params.append(dt.datetime.combine(date_from, dt.time(), dt.UTC))
    if date_to is not None:
        where.append("e.client_ts < ?")
        params.append(dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.UTC))
    cols = ", ".join(f'{_expression(f, fmt)} AS "{f.column}"' for f in FIELDS)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {cols} FROM events AS e{clause} ORDER BY e.client_ts, e.event_id"
    return sql, params


_RAW_JSON: Final = frozenset({"data", "experiments"})


def _columns(batch: pa.RecordBatch) -> list[list[Any]]:
    return [column.to_pylist() for column in batch.columns]


def nest(values: Sequence[Any]) -> dict[str, Any]:
    """One row of the JSONL query (values in ``FIELDS`` order) as a nested monoschema object
    without nulls; ``data`` and ``experiments`` arrive as JSON text and are embedded as is."""
    out: dict[str, Any] = {}
    for slot, value in zip(_SLOTS, values, strict=True):
        if value is None:
            continue
        if slot.column in _RAW_JSON:
            value = msgspec.Raw(value.encode())
        if slot.group is None:
            out[slot.key] = value
        else:
            out.setdefault(slot.group, {})[slot.key] = value
    return out


class _Writer(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """Nested monoschema, one object per line."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.encoder = msgspec.json.Encoder()

    def write(self, batch: pa.RecordBatch) -> None:
        buf = bytearray()
        for values in zip(*_columns(batch), strict=True):
            self.encoder.encode_into(nest(values), buf, len(buf))
            buf += b"\n"
        self.out.write(buf)

    def close(self) -> None:
        self.out.flush()


class CsvWriter:
    """One column per dotted field; ``data`` and ``experiments`` as JSON text."""

    def __init__(self, out: IO[bytes]) -> None:
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self.csv = csv.writer(self.text, lineterminator="\n")
        self.csv.writerow(CSV_HEADER)

    def write(self, batch: pa.RecordBatch) -> None:
        # every column is text (see _expression); None is written as an empty cell
        self.csv.writerows(zip(*_columns(batch), strict=True))

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


@functools.cache
def parquet_schema() -> pa.Schema:
    """The nested monoschema as an Arrow schema (plus ``received_ts``)."""
    fields: list[pa.Field] = []
    groups: dict[str, list[pa.Field]] = {}
    for slot in _SLOTS:
        flat = EVENT_SCHEMA.field(slot.column)
        kind = pa.json_() if slot.column == "data" else flat.type
        if slot.group is None:
            fields.append(pa.field(slot.key, kind, nullable=flat.nullable))
            continue
        if slot.group not in groups:
            groups[slot.group] = []
            fields.append(pa.field(slot.group, pa.null()))  # placeholder, keeps the order
        groups[slot.group].append(pa.field(slot.key, kind))
    return pa.schema(
        [pa.field(f.name, pa.struct(groups[f.name])) if f.name in groups else f for f in fields]
    )


class ParquetWriter:
    """Nested monoschema columns: a struct per group, ``data`` as JSON text."""

    def __init__(self, out: IO[bytes]) -> None:
        self.schema = parquet_schema()
        self.writer = pq.ParquetWriter(out, self.schema, compression="zstd")

    def _column(self, batch: pa.RecordBatch, name: str) -> pa.Array:
        array = batch.column(name).cast(EVENT_SCHEMA.field(name).type)
        if name == "data":
            return pa.ExtensionArray.from_storage(pa.json_(), array)
        return array

    def write(self, batch: pa.RecordBatch) -> None:
        arrays: list[pa.Array] = []
        for target in self.schema:
            if not pa.types.is_struct(target.type):
                arrays.append(self._column(batch, _column_of(None, target.name)))
                continue
            children = [
                self._column(batch, _column_of(target.name, child.name)) for child in target.type
            ]
            valid = functools.reduce(pc.or_, [c.is_valid() for c in children])
            arrays.append(
                pa.StructArray.from_arrays(
                    children, fields=list(target.type), mask=pc.invert(valid)
                )
            )
        self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


def _column_of(group: str | None, key: str) -> str:
    for slot in _SLOTS:
        if slot.group == group and slot.key == key:
            return slot.column
    raise KeyError(f"{group}.{key}")


def writer_for(fmt: ExportFormat, out: IO[bytes]) -> _Writer:
    if fmt is ExportFormat.jsonl:
        return JsonlWriter(out)
    if fmt is ExportFormat.csv:
        return CsvWriter(out)
    return ParquetWriter(out)


def export_events(
    lake: Lake,
    out: IO[bytes],
    fmt: ExportFormat,
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the selected events to ``out`` in ``fmt``; return how many were written."""
    sql, params = query(date_from, date_to, fmt)

    def work(con: duckdb.DuckDBPyConnection) -> int:
        reader = con.sql(sql, params=params or None).to_arrow_reader(batch_rows)
        # A failure before the first batch is retried by with_retry (nothing written yet);
        # after it, output is partial and a retry would duplicate it, so the export stops.
        first = _next_batch(reader)
        writer = writer_for(fmt, out)
        written = 0
        try:
            batch = first
            while batch is not None:
                writer.write(batch)
                written += batch.num_rows
                if progress is not None:
                    progress(written)
                batch = _next_batch(reader)
        except duckdb.IOException as exc:
            raise ExportInterrupted(
                "the lake changed during the export (compaction replaced a file): run it again."
            ) from exc
        finally:
            writer.close()
        return written

    return with_retry(lake, work)


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
