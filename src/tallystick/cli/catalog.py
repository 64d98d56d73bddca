"""``tally metrics list|show|run|materialize``: the metric catalog on the command line.

The catalog is the YAML files in the ``metrics/`` folder of the configuration directory
(``--config-dir``, ``TALLYSTICK_CONFIG_DIR``; default ``DATA/config``). Every command reads and
validates all of it first: an invalid catalog stops it with exit code 2 and every problem, one
per line, as ``FILE:LINE: what is wrong — how to fix it``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

from tallystick.cli.control import ControlUrlOption
from tallystick.cli.metrics import (
    EngineName,
    EngineOption,
    EngineUrlOption,
    FromOption,
    IncludeBotsOption,
    ShowSqlOption,
    ToOption,
    _fail,
    _print_rows,
    _show_sql,
    _spinner,
)
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.cli.output import progress as progress_display

if TYPE_CHECKING:
    from tallystick.catalog.runs import MetricRuns
    from tallystick.metrics.catalog import Catalog, MetricDef
    from tallystick.metrics.materialize import Plan
    from tallystick.metrics.params import Grain

ConfigDirOption = Annotated[
    Path | None,
    typer.Option(
        "--config-dir",
        envvar="TALLYSTICK_CONFIG_DIR",
        metavar="DIR",
        help="Configuration directory; the catalog is its metrics/ folder. Default: DATA/config.",
        show_default=False,
    ),
]
_IMPORTANCE_ORDER: Final = {"kpi": 0, "high": 1, "normal": 2, "low": 3}
_LIST_COLUMNS: Final = (
    "name",
    "title",
    "type",
    "grain",
    "importance",
    "status",
    "owner",
    "teams",
    "tags",
)


#: the table leaves out owner and file (``show`` has them) so that names fit on a terminal
_TABLE_COLUMNS: Final = ("name", "title", "type", "grain", "importance", "status", "teams", "tags")


def register(metrics_app: typer.Typer) -> None:
    metrics_app.command("list")(list_metrics)
    metrics_app.command("show")(show)
    metrics_app.command("run")(run)
    metrics_app.command("materialize")(materialize)


def _settings(data: Path, config_dir: Path | None) -> Any:
    from tallystick.config import ConfigError, from_env

    try:
        return from_env(data=data, config_dir=config_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _catalog(data: Path, config_dir: Path | None) -> Catalog:
    """The valid catalog, or exit 2 listing every problem."""
    from tallystick.metrics.catalog import read_catalog

    directory = _settings(data, config_dir).catalog_dir
    catalog, problems = read_catalog(directory)
    if problems:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for problem in problems:
            err.print(str(problem), markup=False)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise _fail(f"{count} in the metric catalog at {directory}: fix them and run again")
    return catalog


def _find(catalog: Catalog, name: str) -> MetricDef:
    from tallystick.metrics.params import MetricError

    try:
        return catalog.find(name)
    except MetricError as exc:
        raise _fail(str(exc)) from None


def _hint_empty(catalog: Catalog) -> None:
    Console(stderr=True).print(
        f"no metric definitions in {catalog.directory}: add YAML files there "
        "(see docs/catalog.md), or run `tally demo` for an example catalog",
        markup=False,
    )


def _joined(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def list_metrics(
    fmt: FormatOption = Format.table,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", metavar="TAG", help="Only metrics with this tag. Repeatable: all must match."
        ),
    ] = None,
    team: Annotated[
        list[str] | None,
        typer.Option(
            "--team",
            metavar="TEAM",
            help="Only metrics of this team. Repeatable: all must match.",
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
) -> None:
    """The metrics of the catalog: KPIs first, then by importance and name."""
    catalog = _catalog(data, config_dir)
    metrics = sorted(
        (m for m in catalog if set(tag or ()) <= set(m.tags) and set(team or ()) <= set(m.teams)),
        key=lambda m: (_IMPORTANCE_ORDER.get(m.importance, 9), m.name),
    )
    if fmt is Format.json:
        render([m.to_dict() for m in metrics], fmt)
        return
    rows = [
        {
            **{c: getattr(m, c) for c in _LIST_COLUMNS},
            "teams": _joined(m.teams),
            "tags": _joined(m.tags),
            "file": f"{m.file}:{m.line}",
        }
        for m in metrics
    ]
    if fmt is not Format.table:
        render(rows, fmt, columns=[*_LIST_COLUMNS, "file"])
        return
    table = Table(title="Metric catalog")
    for column in _TABLE_COLUMNS:
        table.add_column(column, no_wrap=column == "name")
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in _TABLE_COLUMNS))
    Console().print(table)
    if not len(catalog):
        _hint_empty(catalog)


def _materialized(data: Path, metric: MetricDef) -> dict[Grain, str]:
    """Per grain: how much of ``metric`` is materialised under ``data``."""
    from tallystick.metrics.materialize import grains_for, read_state, results_path
    from tallystick.store.lake import Lake

    lake = Lake(_settings(data, None).lake_dir)
    out: dict[Grain, str] = {}
    for grain in grains_for(metric):
        state = read_state(lake, metric.name, grain)
        periods = sorted((state or {}).get("periods", {}))
        current = state is not None and state.get("definition") == metric.definition_hash()
        if not periods or not (lake.root / results_path(metric.name, grain)).exists():
            out[grain] = "not yet (tally metrics materialize)"
        elif not current:
            out[grain] = "out of date: the definition changed (tally metrics materialize)"
        else:
            out[grain] = f"{len(periods)} periods, {periods[0]} to {periods[-1]}"
    return out


def _runs_per_week(data: Path, config_dir: Path | None, control_url: str | None) -> Any:
    """Runs per week of every metric that ran, from the control store's run log (None: there
    is no control database yet, or it cannot be read — said on stderr)."""
    from tallystick.config import ConfigError, from_env
    from tallystick.control.store import ControlStore
    from tallystick.query.catalog import usage

    try:
        url = from_env(data=data, config_dir=config_dir, control_url=control_url).control_database
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    try:
        with ControlStore.open(url) as store:
            return usage(store)
    except Exception as exc:  # the definition is still worth showing
        Console(stderr=True, highlight=False).print(
            f"runs per week unknown: cannot read the control database ({type(exc).__name__}: "
            f"{exc}); check --control-url / TALLYSTICK_CONTROL_URL",
            markup=False,
        )
        return None


def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The metric's name.")],
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
    control_url: ControlUrlOption = None,
) -> None:
    """Everything about one metric: its fields, its parameters, where it is defined, the
    dashboard pages that show it and how often it runs."""
    from tallystick.metrics.materialize import results_path
    from tallystick.query.catalog import used_in

    settings = _settings(data, config_dir)
    catalog = _catalog(data, config_dir)
    metric = _find(catalog, name)
    info = metric.to_dict()
    info["path"] = str(catalog.directory.parent / metric.file)
    info["analysis"] = metric.analysis
    info["used_in"] = used_in(metric)
    runs = _runs_per_week(data, config_dir, control_url)
    info["runs_per_week"] = None if runs is None else runs.get(metric.name, 0.0)
    info["materialized"] = {
        grain: {"status": status, "path": str(settings.lake_dir / results_path(metric.name, grain))}
        for grain, status in _materialized(data, metric).items()
    }
    if fmt is Format.json:
        typer.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    rows: list[dict[str, str]] = []
    for key, value in info.items():
        if key == "params":
            rows += [{"field": f"params.{k}", "value": _text(v)} for k, v in value.items()]
        elif key == "materialized":
            rows += [
                {"field": f"materialized.{g}", "value": f"{v['status']} — {v['path']}"}
                for g, v in value.items()
            ]
        elif key == "file":
            rows.append({"field": key, "value": f"{metric.file}:{metric.line}"})
        elif key == "runs_per_week":
            shown = "not recorded (no control database)" if value is None else f"{value:g}"
            rows.append({"field": key, "value": shown})
        elif key != "line":
            rows.append({"field": key, "value": _text(value)})
    if fmt is Format.table:
        table = Table(title=f"{metric.name}: {metric.title}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for row in rows:
            table.add_row(row["field"], row["value"])
        Console().print(table)
        return
    render(rows, fmt, columns=["field", "value"])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The metric's name.")],
    grain: Annotated[
        str | None,
        typer.Option(
            "--grain",
            metavar="day|week|month",
            help="Length of a period. Default: the definition's grain.",
            show_default=False,
        ),
    ] = None,
    date_from: FromOption = None,
    date_to: ToOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
) -> None:
    """Run a catalog metric's analysis; the options override the definition."""
    from tallystick.metrics.api import open_engine
    from tallystick.metrics.api import run as run_analysis
    from tallystick.metrics.params import MetricError, parse_date

    catalog = _catalog(data, config_dir)
    metric = _find(catalog, name)
    err = Console(stderr=True)
    try:
        analysis = metric.build(
            grain=grain,
            date_from=None if date_from is None else parse_date(date_from, "--from"),
            date_to=None if date_to is None else parse_date(date_to, "--to"),
            include_bots=include_bots or None,
        )
        lake_engine = open_engine(data, str(engine), engine_url)
        with _spinner(err, f"running {metric.name} on {engine}…"), _runs(data, config_dir) as runs:
            outcome = runs.timed(metric.name, lambda: run_analysis(analysis, lake_engine))
    except MetricError as exc:
        raise _fail(str(exc)) from None
    if show_sql:
        _show_sql(err, outcome)
    scope = analysis.scope
    title = f"{metric.name} ({metric.title}): {scope.date_from} to {scope.date_to}"
    chosen = getattr(analysis, "grain", None)
    if isinstance(chosen, str):
        title += f" by {chosen}"
    _print_rows(outcome.rows, fmt, title)
    if not outcome.rows and fmt is Format.table:
        err.print("no rows: nothing matched (check --from and --to)")


def _runs(data: Path, config_dir: Path | None) -> MetricRuns:
    """Where the query time of a metric run is recorded (for ``tally audit``)."""
    from tallystick.catalog.runs import MetricRuns

    return MetricRuns(_settings(data, config_dir), "cli")


def materialize(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NAME]...",
            help="The metrics to materialise. Default: every metric not in draft.",
            show_default=False,
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Recompute every period, changed or not."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE",
            help="Only the periods from the one containing DATE. Default: the lake's first date.",
            show_default=False,
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
) -> None:
    """Write weekly and monthly results of catalog metrics to DATA/lake/metrics/ as Parquet,
    recomputing only the periods whose events changed."""
    from tallystick.control.quarantine import ActiveRules, RulesUnavailable
    from tallystick.metrics.engines import DuckDBEngine
    from tallystick.metrics.materialize import execute, plan_all, select
    from tallystick.metrics.params import MetricError, parse_date
    from tallystick.store.lake import Lake

    settings = _settings(data, config_dir)
    catalog = _catalog(data, config_dir)
    err = Console(stderr=True, highlight=False)
    try:
        start = None if since is None else parse_date(since, "--from")
        metrics = select(catalog, names or ())
    except MetricError as exc:
        raise _fail(str(exc)) from None
    if not len(catalog):
        _hint_empty(catalog)
        return
    if not metrics:
        err.print("every metric is a draft: name the ones to materialise")
        return
    if not settings.lake_dir.is_dir():
        raise _fail(
            f"no lake at {settings.lake_dir}: pass the data directory `tally serve` or "
            "`tally import` wrote (--data DIR or TALLYSTICK_DATA)"
        )
    lake = Lake(settings.lake_dir)
    quarantine = ActiveRules(settings)
    try:
        rules = quarantine.rules()
    except RulesUnavailable as exc:
        raise _fail(str(exc)) from None
    plans = plan_all(lake, metrics, full=full, since=start, rules=rules)
    total = sum(len(p.todo) for p in plans)
    if total == 0:
        periods = sum(len(p.periods) for p in plans)
        err.print(
            f"Up to date: {len(metrics)} metric{'s' if len(metrics) != 1 else ''}, "
            f"{periods} periods unchanged; nothing written."
        )
        return
    reports = []
    try:
        with progress_display(err) as progress:
            session = DuckDBEngine(lake, quarantine=quarantine)
            task = progress.add_task("materialising", total=total)
            for plan in plans:
                progress.update(task, description=_describe(plan))
                reports.append(
                    execute(lake, plan, session, on_period=lambda _: progress.advance(task))
                )
    except MetricError as exc:
        raise _fail(str(exc)) from None
    _print_reports(reports, err)


def _describe(plan: Plan) -> str:
    return f"{plan.metric.name} by {plan.grain}"


def _print_reports(reports: list[Any], err: Console) -> None:
    table = Table(title="Materialised metrics")
    for column in ("metric", "grain", "periods", "recomputed", "rows", "file"):
        table.add_column(column)
    for r in reports:
        table.add_row(
            r.metric,
            r.grain,
            str(r.periods),
            str(len(r.computed)) if r.written else "0 (up to date)",
            str(r.rows) if r.written else "",
            str(r.path) if r.written else "",
        )
    Console().print(table)
    done = sum(len(r.computed) for r in reports)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    err.print(f"Recomputed {done} period{'s' if done != 1 else ''} at {when}.")
