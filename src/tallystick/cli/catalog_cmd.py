"""``tally catalog search|fields``: find streams, fields and metrics; every field ever seen.

The field catalog lives in the control store (``DATA/control.db`` or ``--control-url``):
``tally catalog fields --refresh`` measures the lake again and stores the result, which keeps
fields the lake no longer holds. The metric catalog entries come from the catalog folder (see
``tally metrics list``), the streams from the control store.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from tallystick.cli.catalog import ConfigDirOption
from tallystick.cli.control import ControlUrlOption, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption

if TYPE_CHECKING:
    from tallystick.catalog.fields import FieldInfo
    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

catalog_app = typer.Typer(
    name="catalog",
    help="The catalog: search streams, fields and metrics; every field ever seen in the lake.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TodayOption = Annotated[
    str | None,
    typer.Option(
        "--today",
        metavar="DATE",
        help="Measure volumes and trends as of this UTC date (YYYY-MM-DD) when the lake is "
        "measured. Default: today.",
        show_default=False,
    ),
]
_SHOWN_NAMES: Final = 3


class Kind(enum.StrEnum):
    stream = "stream"
    field = "field"
    metric = "metric"


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app)


def _settings(data: Path, config_dir: Path | None, control_url: str | None) -> Settings:
    from tallystick.config import ConfigError, from_env

    try:
        return from_env(data=data, config_dir=config_dir, control_url=control_url)
    except ConfigError as exc:
        fail(str(exc), 2)


def _day(today: str | None) -> dt.date | None:
    if today is None:
        return None
    try:
        return dt.date.fromisoformat(today.strip())
    except ValueError:
        fail(f"--today {today!r} is not a date: write it as YYYY-MM-DD", 2)


def _fields(
    settings: Settings, store: ControlStore, *, refresh: bool, today: dt.date | None, err: Console
) -> list[FieldInfo]:
    """The stored field catalog; measured from the lake first when ``refresh`` or when it was
    never measured."""
    from tallystick.catalog import fields as catalog_fields
    from tallystick.store.lake import Lake

    stored = catalog_fields.read_fields(store)
    if stored and not refresh:
        return stored
    if not settings.lake_dir.is_dir():
        if stored:
            fail(f"no lake at {settings.lake_dir}: pass the data directory (--data DIR)", 2)
        err.print(f"no lake at {settings.lake_dir}: no field has been seen yet")
        return []
    with err.status("measuring the lake's fields…"):
        done = catalog_fields.refresh(Lake(settings.lake_dir), store, today)
    err.print(
        f"measured {sum(f.in_lake for f in done.fields)} fields in the lake in "
        f"{done.seconds:.1f} s; {len(done.fields)} ever seen",
        highlight=False,
    )
    return done.fields


def _weekly(info: FieldInfo) -> str:
    return " ".join(str(n) for n in info.weekly)


def _trend(info: FieldInfo) -> str:
    if info.change_pct is None:
        return info.trend
    return f"{info.change_pct:+g} % {info.trend}"


def _names(values: tuple[str, ...]) -> str:
    shown = ", ".join(values[:_SHOWN_NAMES])
    more = len(values) - _SHOWN_NAMES
    return f"{shown} (+{more})" if more > 0 else shown


@catalog_app.command("fields")
def fields(
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Measure the lake again first (otherwise the last measurement is shown; the "
            "first run always measures).",
        ),
    ] = False,
    as_json: JsonOption = False,
    today: TodayOption = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Every field ever seen in the lake, with its volume, trend and redacted examples.

    For each field: its type, first and last seen, events per day (last 7 complete days), the
    last 4 complete weeks and their trend, the events and streams that carry it, about how many
    distinct values and up to three examples with personal data redacted.
    """
    err = Console(stderr=True)
    settings = _settings(data, None, control_url)
    day = _day(today)
    with opened(data, control_url) as store:
        found = _fields(settings, store, refresh=refresh, today=day, err=err)
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in found], ensure_ascii=False, indent=2))
        return
    if not found:
        err.print("no fields yet: send events (or run `tally demo`), then `--refresh`")
        return
    as_of = found[0].as_of
    weeks = found[0].weeks
    title = f"Fields ever seen: {len(found)}" + (f", as of {as_of}" if as_of else "")
    if weeks:
        title += f" (4 weeks from {weeks[0]})"
    table = Table(title=title)
    table.add_column("field", no_wrap=True)
    table.add_column("type")
    table.add_column("per day", justify="right")
    table.add_column("4 weeks → trend")
    table.add_column("seen", no_wrap=True)
    table.add_column("events, streams, values", overflow="fold", ratio=1)
    for info in found:
        table.add_row(
            info.name,
            "|".join(info.types),
            per_day(info.per_day),
            f"{_weekly(info)} → {_trend(info)}" if info.in_lake else "gone from the lake",
            f"{info.first_seen:%Y-%m-%d}\n{info.last_seen:%Y-%m-%d}",
            _notes(info),
        )
    Console().print(table)


def per_day(value: float) -> str:
    """Events per day as a person reads them: 2,728 / 41.6 / 1.86."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _short(text: str, at: int = 40) -> str:
    return text if len(text) <= at else text[: at - 1] + "…"


def _notes(info: FieldInfo) -> str:
    parts = [_names(info.event_names)]
    if info.streams:
        parts.append(f"streams {', '.join(info.streams)}")
    parts.append(f"~{info.distinct:,} values")
    if info.examples:
        parts.append("e.g. " + ", ".join(_short(e) for e in info.examples))
    if info.personal:
        parts.append(f"PERSONAL: {info.personal}")
    return " · ".join(parts)


@catalog_app.command("search")
def search(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="Words to look for.")],
    kind: Annotated[
        list[Kind] | None,
        typer.Option(
            "--kind",
            help="Only this kind of entry. Repeatable. Default: all three.",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, metavar="N", help="At most N hits.", show_default=False),
    ] = None,
    as_json: JsonOption = False,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
    control_url: ControlUrlOption = None,
) -> None:
    """Find streams, fields and catalog metrics; name matches first.

    Every word of TEXT must occur in the entry's name, title, events, description, owner or
    teams; a match in the name ranks above the others.
    """
    from tallystick.catalog.search import SearchError, search, words
    from tallystick.metrics.catalog import read_catalog

    err = Console(stderr=True, highlight=False)
    if not words(text):
        fail("give a word to search for, e.g. `signin` or `user id`", 2)
    settings = _settings(data, config_dir, control_url)
    kinds = [str(k) for k in kind] if kind else None
    catalog, problems = read_catalog(settings.catalog_dir)
    if problems:
        err.print(
            f"the metric catalog has {len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''} (`tally metrics list` shows them); "
            "searching its valid definitions",
            markup=False,
        )
    with opened(data, control_url) as store:
        streams = store.streams()
        found = _fields(settings, store, refresh=False, today=None, err=err)
    try:
        hits = search(text, streams, found, catalog, kinds=kinds, limit=limit)
    except SearchError as exc:
        fail(str(exc), 2)
    if as_json:
        typer.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        err.print(f"nothing matches {text!r}", markup=False)
        return
    table = Table(title=f"Catalog: {text}")
    for column in ("kind", "name", "matched in", "about"):
        table.add_column(column, no_wrap=column in ("kind", "name"), overflow="fold")
    for hit in hits:
        table.add_row(hit.kind, hit.name, ", ".join(hit.matched), hit.summary)
    Console().print(table)
