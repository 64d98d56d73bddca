"""``tally models ...``: data models (a stream's events narrowed to chosen fields) and their
data-quality checks.

Definitions live in the control plane (every change audited, actor ``cli:<user>``); ``build``
materialises them in ``DATA/models.duckdb`` (a view reads the lake live, a table is a Parquet
snapshot), ``check`` runs the checks, stores the results and exits with 1 when one fails.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
import yaml
from rich.console import Console
from rich.table import Table

from tallystick.cli.control import ControlUrlOption, actor, err, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render

if TYPE_CHECKING:
    from tallystick.config import Settings
    from tallystick.control.definitions import Model
    from tallystick.control.store import CheckRun

models_app = typer.Typer(
    name="models",
    help="Data models: a stream's fields as a view or table, with data-quality checks.",
    no_args_is_help=True,
)
out = Console()

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The model's name.")]
NamesArgument = Annotated[
    list[str] | None,
    typer.Argument(metavar="[NAME]...", help="Models to act on (default: every model)."),
]
_MEASURES: Final = ("freshness", "row_count_change")
#: the table leaves out owner and description (``show``, JSON and CSV have them)
_LIST_TABLE: Final = ("name", "stream", "materialize", "fields", "checks", "built", "last_check")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app)


def _settings(data: Path, control_url: str | None) -> Settings:
    from tallystick.config import from_env

    return from_env(data=data, control_url=control_url)


def _time(value: dt.datetime | None) -> str:
    return "never" if value is None else f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _counts(run: CheckRun) -> str:
    if run.spec.get("type") in _MEASURES:
        return "-"
    return f"{run.failing:,} of {run.checked:,}"


def _result_rows(runs: list[CheckRun], *, with_time: bool) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "model": r.target,
            "check": r.label,
            "result": "passed" if r.passed else "FAILED",
            "failing": _counts(r),
            "message": r.message,
        }
        if with_time:
            row["ran_at"] = _time(r.ran_at)
        rows.append(row)
    return rows


def _print_results(runs: list[CheckRun], fmt: Format, title: str, *, with_time: bool) -> None:
    if fmt is Format.json:
        render([r.as_dict() for r in runs], fmt)
        return
    rows = _result_rows(runs, with_time=with_time)
    if fmt is Format.csv:
        render(rows, fmt)
        return
    table = Table(title=title)
    columns = ["model", "check", "result", "failing", "message"] + (["ran_at"] if with_time else [])
    for column in columns:
        table.add_column(
            "failing rows" if column == "failing" else column.replace("_", " "),
            no_wrap=column in ("model", "check", "result"),
            overflow="fold",
        )
    for row in rows:
        style = "green" if row["result"] == "passed" else "bold red"
        cells = [str(row[c]) for c in columns]
        cells[2] = f"[{style}]{row['result']}[/]"
        table.add_row(*cells)
    out.print(table)


def _current(runs: list[CheckRun], models: tuple[Model, ...]) -> list[CheckRun]:
    """The stored results of the checks the models define now (not of removed ones)."""
    from tallystick.models.checks import labels

    defined = {(m.name, label) for m in models for label in labels(m.checks)}
    return [r for r in runs if r.target_kind == "model" and (r.target, r.label) in defined]


@models_app.command("list")
def list_models(
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the models: stream, materialisation, fields, checks, last build and check results."""
    with opened(data, control_url) as store:
        models = store.models()
        built = store.model_built()
        results = _current(store.latest_checks(), models)
    rows = []
    for m in models:
        mine = [r for r in results if r.target == m.name]
        failed = sum(not r.passed for r in mine)
        rows.append(
            {
                "name": m.name,
                "stream": m.stream,
                "materialize": m.materialize,
                "fields": len(m.fields),
                "checks": len(m.checks),
                "built": _time(built.get(m.name)),
                "last_check": (
                    f"{len(mine) - failed} passed, {failed} failed" if mine else "not run"
                ),
                "owner": m.owner,
                "description": m.description,
            }
        )
    if fmt is Format.table and not rows:
        out.print("No models yet: add one with `tally models add FILE.yaml` (see docs/models.md).")
        return
    columns = list(_LIST_TABLE) if fmt is Format.table else None
    render(rows, fmt, title="Data models", columns=columns)


@models_app.command("show")
def show(
    name: NameArgument,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Show a model's definition, where it is built and its latest check results."""
    from tallystick.models.build import engine_file, snapshot_file

    settings = _settings(data, control_url)
    with opened(data, control_url) as store:
        model = store.model(name)
        built = store.model_built().get(name)
        results = _current(store.latest_checks(target=name), (model,))
    out.print(f"[bold]{name}[/]: {model.materialize} over stream {model.stream}", highlight=False)
    out.print(yaml.safe_dump(model.as_dict(), sort_keys=False).rstrip(), highlight=False)
    out.print(f"\nbuilt: {_time(built)}", highlight=False)
    if built is not None:
        out.print(f"view: {name} in {engine_file(settings)}", highlight=False)
        if model.materialize == "table":
            out.print(f"snapshot: {snapshot_file(settings, name)}", highlight=False)
    else:
        out.print(f"build it with `tally models build {name}`", highlight=False)
    if results:
        out.print("\n[bold]Latest check results[/]")
        for r in results:
            style, verdict = ("green", "passed") if r.passed else ("bold red", "FAILED")
            out.print(
                f"[{style}]{verdict}[/] {r.label} ({_time(r.ran_at)}): {r.message}",
                highlight=False,
            )
    elif model.checks:
        out.print(f"checks not run yet: `tally models check {name}`", highlight=False)


def _read_file(path: Path) -> tuple[list[tuple[str, Any]], Any]:
    """The model definitions in a YAML file, each with where it is, and the YAML's node tree
    (for line numbers): one mapping, a list of them, or a mapping with a ``models`` list."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", 2)
    from tallystick.control.config_file import ConfigFileError, read_yaml

    try:
        raw, root = read_yaml(text, str(path))
    except ConfigFileError as exc:
        fail(str(exc), 2)
    if isinstance(raw, dict) and "name" not in raw and isinstance(raw.get("models"), list):
        return [(f"models[{i}]", m) for i, m in enumerate(raw["models"])], root
    if isinstance(raw, list):
        return [(f"[{i}]", m) for i, m in enumerate(raw)], root
    if isinstance(raw, dict):
        return [("", raw)], root
    fail(
        f"{path}: write one model (a mapping with name, stream, fields...), a list of them, "
        "or `models:` followed by a list (see docs/models.md)",
        2,
    )


@models_app.command("add")
def add(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.yaml", help="One model, a list of models, or `models:` with a list."
        ),
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Update models that exist already.")
    ] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Add models from a YAML file (checked whole first: nothing is added if any is wrong)."""
    from tallystick.control.config_file import line_of
    from tallystick.control.definitions import DefinitionError, parse_model

    entries, root = _read_file(file)
    if not entries:
        fail(f"{file}: no models in it", 2)
    models: list[tuple[str, Model]] = []
    for where, raw in entries:
        try:
            model = parse_model(raw, where)
        except DefinitionError as exc:
            fail(f"{file}:{line_of(root, exc.where)}: {exc}", 2)
        twice = next((w for w, m in models if m.name == model.name), None)
        if twice is not None:
            fail(
                f"{file}:{line_of(root, f'{where}.name')}: model {model.name!r} is defined "
                f"twice (also at line {line_of(root, f'{twice}.name')})",
                2,
            )
        models.append((where, model))
    with opened(data, control_url) as store:
        config = store.configuration()
        streams = {s.name for s in config.streams} | {config.unrouted_stream}
        for where, model in models:
            if model.stream not in streams:
                fail(
                    f"{file}:{line_of(root, f'{where}.stream')}: no stream {model.stream!r}; "
                    "create it with `tally streams create` or pick one of "
                    f"{', '.join(sorted(streams))}",
                    2,
                )
            if not replace and config.model(model.name) is not None:
                fail(
                    f"{file}:{line_of(root, f'{where}.name')}: model {model.name!r} exists "
                    "already; add --replace to update it"
                )
        who = actor()
        for _, model in models:
            plan = store.put_model(model, who, create_only=not replace)
            if not plan:
                out.print(f"{model.name}: nothing to change", highlight=False)
            for line in plan.lines():
                out.print(line, highlight=False)
    out.print("Build them with `tally models build` (views and tables in the engine).")


@models_app.command("delete")
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete a model: its definition, its view and its table snapshot (the events stay)."""
    from tallystick.models import ModelError, drop_model

    settings = _settings(data, control_url)
    with opened(data, control_url) as store:
        store.model(name)
        if not yes and not typer.confirm(f"Delete model {name}?", default=False):
            fail("not deleted")
        for line in store.delete_model(name, actor()).lines():
            out.print(line, highlight=False)
    try:
        if drop_model(settings, name):
            out.print(f"dropped the view {name} and its snapshot", highlight=False)
    except ModelError as exc:
        fail(f"the definition is deleted, but its view stays: {exc}")


@models_app.command("build")
def build(
    names: NamesArgument = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Materialise models in DATA/models.duckdb: views read the lake live, tables are
    snapshots written now. Building every model also drops views of deleted models."""
    from tallystick.models import ModelError, build_models

    settings = _settings(data, control_url)
    with opened(data, control_url) as store:
        try:
            results = build_models(settings, store, names or None)
        except ModelError as exc:
            fail(str(exc))
    if fmt is Format.json:
        render([r.as_dict() for r in results], fmt)
        return
    if not results:
        out.print("No models to build: add one with `tally models add FILE.yaml`.")
        return
    rows = [
        {
            "model": r.model,
            "stream": r.stream,
            "materialize": r.materialize,
            "columns": ", ".join(f"{n} {t}" for n, t in r.columns),
            "rows": "live" if r.rows is None else f"{r.rows:,}",
            "seconds": f"{r.seconds:.2f}",
        }
        for r in results
    ]
    render(rows, fmt, title=f"Built in {results[0].database}")


@models_app.command("check")
def check(
    names: NamesArgument = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            metavar="DAYS",
            min=1,
            help="Row checks look only at events of the last DAYS days (by client_ts).",
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Run the models' data-quality checks, store the results; exit 1 when one fails."""
    from tallystick.models import ModelError, run_checks

    settings = _settings(data, control_url)
    with opened(data, control_url) as store:
        try:
            runs = run_checks(settings, store, names or None, since)
        except ModelError as exc:
            fail(str(exc), 2)
    if not runs:
        if fmt is Format.json:
            render([], fmt)
        else:
            out.print("No checks to run: the models define none (add `checks:` to a model).")
        return
    _print_results(runs, fmt, "Data-quality checks", with_time=False)
    failed = sum(not r.passed for r in runs)
    summary = f"{len(runs)} checks: {len(runs) - failed} passed, {failed} failed"
    if failed:
        err.print(f"[red]{summary}[/]", highlight=False)
        raise typer.Exit(1)
    err.print(f"[green]{summary}[/]", highlight=False)


@models_app.command("results")
def results(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Only this model.")] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The latest result of every check (of one model, or of all), as stored by the last runs."""
    with opened(data, control_url) as store:
        models = (store.model(name),) if name is not None else store.models()
        runs = _current(store.latest_checks(target=name), models)
    if fmt is Format.table and not runs:
        out.print("No check results yet: run `tally models check`.")
        return
    _print_results(runs, fmt, "Latest check results", with_time=True)
