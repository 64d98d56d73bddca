"""``tally import`` and ``tally export``: move events between files and the lake.

``tally import FILE...`` backfills events from JSONL, CSV or Parquet files (see
:mod:`tallystick.backfill.importer`); ``tally export`` writes de-duplicated events out in a
shape ``tally import`` reads back (see :mod:`tallystick.backfill.exporter`).

Exit codes of ``import``: 0 when every row was imported or already present, 1 when some rows
failed (the good ones are kept), 2 for usage errors (missing file, unknown format).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Final, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tallystick.backfill.formats import ExportFormat, InputFormat

if TYPE_CHECKING:
    from tallystick.backfill.importer import FileReport
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import Settings, from_env

MAX_SHOWN_PROBLEMS: Final = 20
SUMMARY_COLUMNS: Final = ("file", "format", "rows", "added", "duplicates", "failed")


def _usage(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _settings(data: Path) -> Settings:
    try:
        return from_env(data=data)
    except ValueError as exc:
        _usage(str(exc))


class _Bar:
    """One Rich progress task on stderr, re-labelled per phase (hashing, importing, …)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def update(self, phase: str, done: int, total: int | None) -> None:
        if self.task is None:
            self.task = self.progress.add_task(phase, total=total)
        self.progress.update(self.task, description=phase, completed=done, total=total)


@contextlib.contextmanager
def _progress() -> Iterator[_Bar]:
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        yield _Bar(progress)


def _show_problems(reports: Sequence[FileReport]) -> None:
    problems = [p for r in reports for p in r.problems]
    for problem in problems[:MAX_SHOWN_PROBLEMS]:
        typer.echo(str(problem), err=True)
    failed = sum(r.failed for r in reports)
    if failed > MAX_SHOWN_PROBLEMS:
        typer.echo(f"… and {failed - MAX_SHOWN_PROBLEMS:,} more bad rows.", err=True)
    if failed:
        rows = "1 bad row was" if failed == 1 else f"{failed:,} bad rows were"
        typer.echo(
            f"{rows} kept in the failed-events store (source `import`, origin file:line); "
            "the good rows were imported.",
            err=True,
        )


InputFormatOption = Annotated[
    InputFormat | None,
    typer.Option(
        "--input-format",
        help="Read every FILE as this format instead of telling it from the extension.",
        case_sensitive=False,
        show_default=False,
    ),
]


def import_(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE",
            help="Files to import: .jsonl/.ndjson/.json (one object per line), .csv, "
            "or .parquet; JSONL and CSV may be gzip'd (.gz).",
            show_default=False,
        ),
    ],
    data: DataOption = DEFAULT_DATA,
    fmt: FormatOption = Format.table,
    input_format: InputFormatOption = None,
) -> None:
    """Import (backfill) events from JSONL, CSV or Parquet files into the lake.

    Rows may be monoschema events (as `tally export` writes them) or the flat shape of most
    trackers' exports: event_id, name or event, timestamp (RFC 3339; no offset = UTC; or
    epoch seconds/ms), user_id, anonymous_id, session_id, properties, plus any field of the
    event schema by its dotted or flat name (app.instance, session_seq, page_url, …). Other
    snake_case columns with scalar values go into `data`; keys of `properties` are converted
    to snake_case (pageTitle → page_title). Rows without event_id get an id derived from
    their content.

    Every event is validated like the collector does. Events already in the lake and repeats
    within the files count as duplicates, so importing a file twice adds nothing. Bad rows are
    listed as file:line and kept in the failed-events store; the good ones are imported.

    Prints a summary per file in --format. Exit code 0 when every row was imported (or was a
    duplicate), 1 when some rows failed, 2 for usage errors.
    """
    from tallystick.backfill.importer import UsageError, detect_source, import_files, totals
    from tallystick.store.lake import Lake

    settings = _settings(data)
    try:
        sources = [detect_source(path, input_format) for path in files]
    except UsageError as exc:
        _usage(str(exc))
    lake = Lake(settings.lake_dir)
    with _progress() as bar:
        reports = import_files(sources, lake, settings, progress=bar.update)
    rows = [r.summary() for r in reports]
    rows.append(totals(reports))
    render(rows, fmt, title="Import", columns=SUMMARY_COLUMNS)
    _show_problems(reports)
    if any(r.failed for r in reports):
        raise typer.Exit(1)


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _usage(f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-02.")


@contextlib.contextmanager
def _destination(output: str | None, fmt: ExportFormat) -> Iterator[IO[bytes]]:
    """Stdout, or a temporary file next to ``output`` renamed into place on success."""
    if output is None or output == "-":
        if fmt is ExportFormat.parquet:
            _usage("Parquet is a binary file format: choose a file with --output FILE.")
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    if not target.parent.is_dir():
        _usage(f"--output {output}: the directory {target.parent} does not exist.")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as fh:
            yield fh
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export(
    date_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE",
            help="First UTC date of client_ts to export (YYYY-MM-DD), inclusive.",
            show_default=False,
        ),
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="DATE",
            help="Last UTC date of client_ts to export (YYYY-MM-DD), inclusive.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="File format of the export (this command writes data, not a results table).",
            case_sensitive=False,
        ),
    ] = ExportFormat.jsonl,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE|-",
            help="File to write; `-` or none writes to stdout (jsonl and csv only).",
            show_default=False,
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Export de-duplicated events as JSONL, CSV or Parquet, ordered by client_ts, event_id.

    JSONL and Parquet hold nested monoschema events plus received_ts (JSONL omits null
    fields); CSV has one column per dotted field (event_id, name, client_ts, …, user.id, …)
    with data and experiments as JSON text. `tally import` reads every export back unchanged.

    Note: --format here is the file format (jsonl, csv, parquet), not the table/json/csv
    results format of other commands. Progress goes to stderr.
    """
    first = _date(date_from, "--from")
    last = _date(date_to, "--to")
    if first is not None and last is not None and first > last:
        _usage(f"--from {first} is after --to {last}.")
    from tallystick.backfill.exporter import ExportInterrupted, export_events
    from tallystick.store.lake import Lake

    settings = _settings(data)
    lake = Lake(settings.lake_dir)
    try:
        with _destination(output, fmt) as out, _progress() as bar:
            count = export_events(
                lake,
                out,
                fmt,
                date_from=first,
                date_to=last,
                progress=lambda done: bar.update("exporting", done, None),
            )
    except ExportInterrupted as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except BrokenPipeError:
        # the reader (e.g. `head`) went away: stop quietly, like other Unix tools
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(1) from None
    where = f" to {output}" if output not in (None, "-") else ""
    typer.echo(f"exported {count:,} events{where}.", err=True)


def _help(doc: str | None) -> str:
    """A docstring as help text: paragraphs kept, the line breaks inside them removed."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def register(app: typer.Typer) -> None:
    """Add ``import`` and ``export`` to the ``tally`` app."""
    app.command("import", help=_help(import_.__doc__))(import_)
    app.command("export", help=_help(export.__doc__))(export)
