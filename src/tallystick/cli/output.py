"""Print result rows as a Rich table, JSON (a list of row objects) or CSV; documents as JSON or
YAML."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def render(
    rows: Sequence[Mapping[str, Any]],
    fmt: Format,
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    console: Console | None = None,
) -> None:
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt is Format.json:
        sys.stdout.write(
            json.dumps(
                [{c: _plain(r.get(c)) for c in cols} for r in rows], ensure_ascii=False, indent=2
            )
            + "\n"
        )
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else _plain(r.get(c)) for c in cols])
        sys.stdout.write(buf.getvalue())
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(_plain(r.get(c))) for c in cols))
    (console or Console()).print(table)


def progress(console: Console) -> Progress:
    """The progress display of long-running commands: what, a bar, done/total, time taken."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def print_document(document: Any, fmt: str) -> None:
    """A control-plane document (a ruleset, an experiment) as indented JSON or as YAML."""
    if fmt == "json":
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
