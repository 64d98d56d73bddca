"""Import events from files into the lake (``tally import``).

Input formats, chosen by extension unless ``input_format`` is given:

* JSONL: ``.jsonl``, ``.ndjson`` or ``.json`` with one JSON object per line;
* CSV: ``.csv`` with a header row; empty cells mean "missing";
* Parquet: ``.parquet`` / ``.pq``.

JSONL and CSV may be gzip-compressed (``.gz`` suffix, or recognised by their first bytes).
Each row is converted by :mod:`tallystick.backfill.flat` and then judged by
``collect.validate.check_event`` with the collector's limits, so an imported event is accepted
or refused exactly as if a client had sent it.

Rows are processed in chunks (``chunk_rows``, 100,000 by default) so memory stays bounded.
For each chunk:

1. bad rows (unreadable, unconvertible, invalid) are written to the failed-events store as
   ``import-<sha1 of the file, 16 hex>-<chunk>`` with source ``import``, origin
   ``<file>:<line>`` (CSV: the line the record starts on; Parquet: the 1-based row number),
   ``index`` the 0-based record number and the raw row (truncated to
   ``failed_raw_max_bytes``); importing the file again on the same day replaces them;
2. good rows whose ``event_id`` appeared earlier in the chunk, or already exists in the lake
   partitions of the same UTC dates (earlier chunks and files included), are counted as
   duplicates and dropped. The lookup is a DuckDB semi-join over only the ``event_id`` column
   of those partitions' files, not the ``events`` view of the whole lake, so a chunk costs the
   same however long the lake's history;
3. the remaining events are written to the lake as
   ``import-<sha1 of the file, 16 hex>-<chunk, 5 digits>-<sha1 of the written ids, 8 hex>``.
   The name is a pure function of the file and of what is written, so a re-run after a crash
   replaces what it wrote before instead of adding a copy, and never overwrites a file holding
   other events.

Importing the same file twice therefore adds nothing: every row is a duplicate the second
time. An id re-used with a *different* UTC date is not caught here (only those dates' partitions
are searched); the ``events`` view still counts it once.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import functools
import gzip
import hashlib
import io
import itertools
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick import messages
from tallystick.backfill.flat import canonical_json, convert_row, format_timestamp
from tallystick.backfill.formats import InputFormat
from tallystick.collect.validate import check_event, latest_allowed
from tallystick.config import Settings
from tallystick.enrich.pipeline import Enricher
from tallystick.messages import Problem
from tallystick.privacy.ingest import Guard, Refused
from tallystick.schema import Event
from tallystick.store.failed import SOURCE_IMPORT, FailedEvent
from tallystick.store.lake import Lake, events_to_table
from tallystick.store.reader import existing_events

if TYPE_CHECKING:
    from tallystick.store.deletion import Suppression

DEFAULT_CHUNK_ROWS: Final = 100_000
MAX_PROBLEMS_KEPT: Final = 1_000
"""Bad rows kept per file for display; all of them are counted and stored as failed events."""

_GZIP_MAGIC: Final = b"\x1f\x8b"
_HASH_BLOCK: Final = 1024 * 1024
_TICK_EVERY: Final = 1024
_CSV_FIELD_LIMIT: Final = 64 * 1024 * 1024
_NOT_UTF8: Final = "is not valid UTF-8: save the file as UTF-8."


EXTENSIONS: Final[Mapping[str, InputFormat]] = {
    ".jsonl": InputFormat.jsonl,
    ".ndjson": InputFormat.jsonl,
    ".json": InputFormat.jsonl,
    ".csv": InputFormat.csv,
    ".parquet": InputFormat.parquet,
    ".pq": InputFormat.parquet,
}


class UsageError(Exception):
    """The command cannot run as asked (missing file, unknown format): exit code 2."""


@dataclass(frozen=True, slots=True)
class Source:
    """A file to import and how to read it."""

    path: Path
    format: InputFormat
    gzip: bool

    @property
    def label(self) -> str:
        return str(self.path)


def detect_source(path: Path, input_format: InputFormat | None = None) -> Source:
    """How to read ``path``: by ``input_format`` if given, else by its extension.

    Raises :class:`UsageError` when the file is missing or its format cannot be told.
    """
    if not path.exists():
        raise UsageError(f"{path}: no such file.")
    if not path.is_file():
        raise UsageError(f"{path}: not a file.")
    name = path.name.lower()
    gz_suffix = name.endswith(".gz")
    base = name.removesuffix(".gz")
    ext = Path(base).suffix
    fmt = input_format or EXTENSIONS.get(ext)
    if fmt is None:
        known = ", ".join(EXTENSIONS)
        raise UsageError(
            f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; name the "
            f"file {known} (JSONL and CSV optionally .gz) or pass --input-format."
        )
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    compressed = gz_suffix or magic == _GZIP_MAGIC
    if fmt is InputFormat.parquet and compressed:
        raise UsageError(
            f"{path}: Parquet compresses its own data and cannot be read gzip'd: gunzip it first."
        )
    return Source(path, fmt, compressed)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One bad row, printed as ``file:line: code: message``."""

    file: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.code}: {self.message}"


@dataclass(slots=True)
class FileReport:
    """What importing one file did."""

    file: str
    format: str
    rows: int = 0
    added: int = 0
    duplicates: int = 0
    failed: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "rows": self.rows,
            "added": self.added,
            "duplicates": self.duplicates,
            "failed": self.failed,
        }


ProgressFn = Callable[[str, int, int | None], None]
"""``progress(phase, done, total)``: ``done`` and ``total`` are bytes or rows of one file."""


@dataclass(frozen=True, slots=True)
class Record:
    """One row as read from a file: where it is, its raw form, and its content or a problem."""

    line: int
    index: int
    raw: bytes | str | list[str] | Mapping[str, Any]
    row: Mapping[str, Any] | Problem


def raw_text(raw: bytes | str | list[str] | Mapping[str, Any]) -> bytes | str:
    """The record as it appeared in the file (CSV: re-quoted; Parquet: JSON)."""
    if isinstance(raw, bytes | str):
        return raw
    if isinstance(raw, list):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(raw)
        return buf.getvalue()
    return canonical_json(raw)


# --- readers -------------------------------------------------------------------------------


def _open_binary(source: Source, raw_file: IO[bytes]) -> IO[bytes]:
    if source.gzip:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw_file, mode="rb"))
    return raw_file


def _gzip_problem(exc: BaseException) -> Problem:
    return Problem(
        messages.INVALID_GZIP,
        f"the file is not valid gzip or is cut short ({exc}); the rows after this point were "
        "not read: re-create or re-download the file.",
    )


def _parse_json_line(line: bytes) -> Mapping[str, Any] | Problem:
    try:
        obj = msgspec.json.decode(line)
    except UnicodeDecodeError:
        return Problem(messages.INVALID_UTF8, f"the line {_NOT_UTF8}")
    except msgspec.DecodeError as exc:
        return Problem(messages.MALFORMED_JSON, f"the line is not valid JSON ({exc}).")
    if not isinstance(obj, dict):
        return Problem(messages.NOT_AN_OBJECT, "each line must hold one JSON object.")
    return obj


def read_jsonl(source: Source, tick: Callable[[int], None]) -> Iterator[Record]:
    """Records of a JSONL file: one JSON object per non-blank line."""
    with source.path.open("rb") as raw_file, _open_binary(source, raw_file) as stream:
        lineno = 0
        index = 0
        first = True
        try:
            for lineno, line in enumerate(stream, 1):
                body = line.rstrip(b"\r\n")
                if first:
                    body = body.removeprefix(codecs.BOM_UTF8)
                if not body.strip():
                    continue
                if first and body.lstrip()[:1] == b"[":
                    yield Record(
                        lineno,
                        index,
                        body,
                        Problem(
                            messages.WRONG_SHAPE,
                            "the file holds a JSON array, not one object per line: convert it, "
                            "e.g. `jq -c '.[]' in.json > out.jsonl`.",
                        ),
                    )
                    return
                first = False
                yield Record(lineno, index, body, _parse_json_line(body))
                index += 1
                if index % _TICK_EVERY == 0:
                    tick(raw_file.tell())
        except (OSError, EOFError, zlib.error) as exc:
            yield Record(lineno + 1, index, b"", _gzip_problem(exc))
        tick(raw_file.tell())


def _has_surrogates(cells: Sequence[str]) -> bool:
    for cell in cells:
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def _header_problem(header: list[str]) -> Problem | None:
    if any(not h for h in header):
        return Problem(messages.INVALID_ROW, "the CSV header has an empty column name.")
    seen: set[str] = set()
    for h in header:
        if h in seen:
            return Problem(messages.INVALID_ROW, f"the CSV header names `{h}` twice.")
        seen.add(h)
    return None


def read_csv(source: Source, tick: Callable[[int], None]) -> Iterator[Record]:
    """Records of a CSV file with a header row; empty cells are left out (missing)."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with (
        source.path.open("rb") as raw_file,
        _open_binary(source, raw_file) as binary,
        io.TextIOWrapper(
            binary, encoding="utf-8-sig", errors="surrogateescape", newline=""
        ) as text,
    ):
        yield from _csv_records(csv.reader(text, strict=False), lambda: tick(raw_file.tell()))
        tick(raw_file.tell())


def _csv_records(reader: Any, tick: Callable[[], None]) -> Iterator[Record]:
    index = 0
    start = 1
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            return
        if problem := _header_problem(header):
            yield Record(1, 0, header, problem)
            return
        while True:
            start = reader.line_num + 1
            try:
                cells: list[str] = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield Record(
                    start,
                    index,
                    "",
                    Problem(messages.INVALID_ROW, f"cannot read the CSV record ({exc})."),
                )
                index += 1
                continue
            if not cells or cells == [""]:
                continue
            yield Record(start, index, cells, _csv_row(header, cells))
            index += 1
            if index % _TICK_EVERY == 0:
                tick()
    except (OSError, EOFError, zlib.error) as exc:
        yield Record(start, index, "", _gzip_problem(exc))


def _csv_row(header: list[str], cells: list[str]) -> Mapping[str, Any] | Problem:
    if len(cells) != len(header):
        return Problem(
            messages.INVALID_ROW,
            f"the record has {len(cells)} fields; the header has {len(header)}.",
        )
    if _has_surrogates(cells):
        return Problem(messages.INVALID_UTF8, f"the record {_NOT_UTF8}")
    return {h: c for h, c in zip(header, cells, strict=True) if c != ""}


_SCALARS: Final = (str, int, float, bool)


def plain(value: object) -> object:
    """A value read from Parquet as JSON-ready Python (times as RFC 3339, nulls dropped)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # UUID, timedelta, …


def _times_as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Top-level timestamp columns as RFC 3339 text, computed by Arrow (much faster than
    making Python datetimes). Times with a zone become UTC; times without one are UTC."""
    arrays = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any] | Problem]:
    """The rows of ``batch`` as dicts without null values; unreadable rows as problems."""
    batch = _times_as_text(batch)
    try:
        rows = batch.to_pylist(maps_as_pydicts="strict")
    except (KeyError, ValueError, pa.ArrowException):
        rows = []
        for i in range(batch.num_rows):
            try:
                rows.append(batch.slice(i, 1).to_pylist(maps_as_pydicts="strict")[0])
            except (KeyError, ValueError, pa.ArrowException) as exc:
                rows.append(Problem(messages.INVALID_ROW, f"cannot read the row ({exc})."))
    return [
        row
        if isinstance(row, Problem)
        else {
            k: v if isinstance(v, _SCALARS) else plain(v) for k, v in row.items() if v is not None
        }
        for row in rows
    ]


def parquet_rows(source: Source) -> int | None:
    try:
        return int(pq.ParquetFile(source.path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None


def read_parquet(
    source: Source, tick: Callable[[int], None], batch_rows: int = 16_384
) -> Iterator[Record]:
    """Records of a Parquet file, one per row (``line`` is the 1-based row number)."""
    index = 0
    try:
        pf = pq.ParquetFile(source.path)
        for batch in pf.iter_batches(batch_size=batch_rows):
            for item in _batch_rows(batch):
                if isinstance(item, Problem):
                    yield Record(index + 1, index, "", item)
                else:
                    yield Record(index + 1, index, item, item)
                index += 1
            tick(index)
    except (OSError, pa.ArrowException) as exc:
        yield Record(
            index + 1,
            index,
            "",
            Problem(
                messages.INVALID_ROW,
                f"cannot read the Parquet file ({exc}); the rows after this point were not read.",
            ),
        )
    tick(index)


def read_records(source: Source, tick: Callable[[int], None]) -> Iterator[Record]:
    """The records of ``source`` in file order."""
    if source.format is InputFormat.jsonl:
        return read_jsonl(source, tick)
    if source.format is InputFormat.csv:
        return read_csv(source, tick)
    return read_parquet(source, tick)


# --- the import ----------------------------------------------------------------------------


def file_sha1(path: Path, tick: Callable[[int], None] | None = None) -> str:
    """SHA-1 of the file's bytes (names the lake files an import writes)."""
    digest = hashlib.sha1(usedforsecurity=False)
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
            done += len(block)
            if tick is not None:
                tick(done)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class _Good:
    event: Event
    received: dt.datetime
    server: dict[str, Any]
    """Server-set fields the file carried (our own export), by lake column."""


@dataclass(frozen=True, slots=True)
class _Bad:
    problem: Problem
    event_id: str | None


def _with_exported(table: pa.Table, server: Sequence[dict[str, Any]]) -> pa.Table:
    """``table`` with the server-set values an export carried taking precedence, row by row."""
    for column in sorted({c for values in server for c in values}):
        index = table.schema.get_field_index(column)
        kind = table.schema.field(index).type
        exported = pa.array([values.get(column) for values in server], kind)
        table = table.set_column(
            index, table.schema.field(index), pc.coalesce(exported, table[column])
        )
    return table


@functools.cache
def _enricher(settings: Settings) -> Enricher:
    """The enrichment of imported events: user agents and bots only. Geography needs the
    sender's address, clock correction the moment of sending, and sessionization the loader's
    state: none of which an import has (see docs/enrichment.md)."""
    return Enricher(
        settings.with_changes(enrich_geo=False, enrich_clock=False, enrich_sessions=False)
    )


@dataclass(slots=True)
class _Run:
    source: Source
    lake: Lake
    settings: Settings
    now: dt.datetime
    latest: dt.datetime
    tag: str
    report: FileReport
    max_problems: int
    suppression: Suppression | None = None
    """Deleted users (``store.deletion``), read at the first chunk with events."""
    privacy: Guard | None = None
    """Personal data and pseudonymous ids, as the collector (``privacy.ingest``, the settings'
    ``pii_action``: imported events belong to no stream)."""

    def guard(self) -> Guard:
        if self.privacy is None:
            self.privacy = Guard(self.settings)
        return self.privacy

    def fail(self, record: Record, problem: Problem, event_id: str | None) -> FailedEvent:
        self.report.failed += 1
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(
                RowProblem(self.source.label, record.line, problem.code, problem.message)
            )
        text = raw_text(record.raw)
        guard = self.guard()
        raw, cut = guard.failed_raw(
            text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text,
            None,
            self.settings.failed_raw_max_bytes,
        )
        return FailedEvent(
            received_ts=self.now,
            source=SOURCE_IMPORT,
            error_code=problem.code,
            error_message=guard.failed_text(problem.message, None),
            raw=raw,
            raw_truncated=cut,
            index=record.index,
            event_id=guard.failed_id(event_id, None),
            origin=f"{self.source.label}:{record.line}",
        )

    def judge(self, record: Record) -> _Good | _Bad:
        if isinstance(record.row, Problem):
            return _Bad(record.row, None)
        converted = convert_row(record.row)
        if isinstance(converted, Problem):
            raw_id = record.row.get("event_id")
            return _Bad(converted, raw_id if isinstance(raw_id, str) else None)
        raw_id = converted.event.get("event_id")
        event_id = raw_id if isinstance(raw_id, str) else None
        try:
            body = msgspec.json.encode(converted.event)
        except (TypeError, ValueError) as exc:
            problem = Problem(messages.INVALID_ROW, f"the row cannot be written as JSON ({exc}).")
            return _Bad(problem, event_id)
        result = check_event(
            body, max_event_bytes=self.settings.max_event_bytes, latest_client_ts=self.latest
        )
        if isinstance(result, Problem):
            return _Bad(result, event_id)
        # a valid event is cleaned as the collector cleans it (``privacy.ingest``)
        guard = self.guard()
        cleaned = guard.clean(converted.event, guard.default_policy, "", suspect=True)
        if isinstance(cleaned, Refused):
            return _Bad(Problem(messages.PERSONAL_DATA, cleaned.message()), event_id)
        if cleaned is not None:
            again = check_event(
                msgspec.json.encode(cleaned),
                max_event_bytes=self.settings.max_event_bytes,
                latest_client_ts=self.latest,
            )
            if isinstance(again, Problem):  # a hash token made a value too long
                return _Bad(again, event_id)
            result = again
        return _Good(result, converted.received_ts or self.now, converted.server)

    def chunk(self, number: int, records: list[Record]) -> None:
        good: dict[tuple[str, str], _Good] = {}
        failed: list[FailedEvent] = []
        for record in records:
            self.report.rows += 1
            judged = self.judge(record)
            if isinstance(judged, _Bad):
                failed.append(self.fail(record, judged.problem, judged.event_id))
                continue
            key = (str(judged.event.event_id), judged.event.name)  # an event: its id and name
            if key in good:
                self.report.duplicates += 1
                continue
            good[key] = judged
        if good:
            days = {g.event.client_ts.astimezone(dt.UTC).date() for g in good.values()}
            stored = existing_events(self.lake, list(good), days)
            for key in stored:
                del good[key]
            self.report.duplicates += len(stored)
        if good:
            table = events_to_table(
                [g.event for g in good.values()], [g.received for g in good.values()]
            )
            table = (
                _enricher(self.settings)
                .apply(table, pa.array([0] * table.num_rows, pa.int64()), [None])
                .table
            )
            table = _with_exported(table, [g.server for g in good.values()])
            # deleted users' events are not stored (``store.deletion``), only counted
            if self.suppression is None:
                from tallystick.store.deletion import read_suppression

                self.suppression = read_suppression(self.settings)
            table, _, declined = self.suppression.drop(
                table, pa.array(range(table.num_rows), pa.int32())
            )
            if declined:
                self.report.written += self.lake.write_declined(
                    declined, f"{self.tag}-{number:05d}-declined"
                )
                self.report.added -= sum(int(d["count"]) for d in declined)
            written = sorted(f"{event_id}\t{name}" for event_id, name in good)
            ids = hashlib.sha1("\n".join(written).encode(), usedforsecurity=False)
            name = f"{self.tag}-{number:05d}-{ids.hexdigest()[:8]}"
            self.report.written += self.lake.write_events(table, name)
            self.report.added += len(good)
        if failed:
            self.report.written += self.lake.write_failed(failed, f"{self.tag}-{number:05d}")


def import_file(
    source: Source,
    lake: Lake,
    settings: Settings,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    now: dt.datetime | None = None,
    progress: ProgressFn | None = None,
    max_problems: int = MAX_PROBLEMS_KEPT,
) -> FileReport:
    """Import one file into ``lake``; see the module docstring for what is written where."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    size = source.path.stat().st_size

    def hashing(done: int) -> None:
        if progress is not None:
            progress(f"hashing {source.path.name}", done, size)

    tag = f"import-{file_sha1(source.path, hashing)[:16]}"
    total = parquet_rows(source) if source.format is InputFormat.parquet else size

    def reading(done: int) -> None:
        if progress is not None:
            progress(f"importing {source.path.name}", done, total)

    reading(0)
    run = _Run(
        source=source,
        lake=lake,
        settings=settings,
        now=now,
        latest=latest_allowed(now, settings.max_future_seconds),
        tag=tag,
        report=FileReport(source.label, source.format.value),
        max_problems=max_problems,
    )
    records = read_records(source, reading)
    for number in itertools.count():
        batch = list(itertools.islice(records, chunk_rows))
        if not batch:
            break
        run.chunk(number, batch)
    return run.report


def import_files(
    sources: Sequence[Source],
    lake: Lake,
    settings: Settings,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    now: dt.datetime | None = None,
    progress: ProgressFn | None = None,
) -> list[FileReport]:
    """Import several files one after the other (later files see earlier ones as stored)."""
    now = now or dt.datetime.now(dt.UTC)
    return [
        import_file(s, lake, settings, chunk_rows=chunk_rows, now=now, progress=progress)
        for s in sources
    ]


def totals(reports: Sequence[FileReport]) -> dict[str, Any]:
    """The summary row over all files."""
    return {
        "file": "total",
        "format": "",
        "rows": sum(r.rows for r in reports),
        "added": sum(r.added for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "failed": sum(r.failed for r in reports),
    }


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "FileReport",
    "InputFormat",
    "RowProblem",
    "Source",
    "UsageError",
    "detect_source",
    "import_file",
    "import_files",
    "totals",
]
