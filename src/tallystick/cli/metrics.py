"""``tally metrics ...``, ``tally funnel`` and ``tally retention``: analyses from the command line.

Every analysis command takes the registry's parameters as options (``--from``, ``--to``,
``--grain``, ``--unit``, ``--where``, ``--breakdown`` and its own) and prints the rows the
Python API and the HTTP API return. Heavy modules (the engines, pandas, sqlglot) are imported
inside the commands so that ``tally --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console

from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render

if TYPE_CHECKING:
    from tallystick.metrics.analysis import Analysis, Outcome
    from tallystick.metrics.engines import Engine
    from tallystick.privacy.dp import Request

metrics_app = typer.Typer(
    name="metrics",
    help="Core actions, active units, counts, ratios, percentiles, and the metric catalog.",
    no_args_is_help=True,
)


class EngineName(enum.StrEnum):
    duckdb = "duckdb"
    clickhouse = "clickhouse"


FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="DATE",
        help="First UTC date, inclusive (YYYY-MM-DD). Default: 12 whole weeks before --to.",
        show_default=False,
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="DATE",
        help="Last UTC date, inclusive (YYYY-MM-DD). Default: today.",
        show_default=False,
    ),
]
GrainOption = Annotated[
    str, typer.Option("--grain", metavar="day|week|month", help="Length of a period.")
]
UnitOption = Annotated[
    str | None,
    typer.Option(
        "--unit",
        metavar="FIELD",
        help="What is counted: a field such as user.id (default) or session.id; "
        "'event' counts events (ratio only).",
        show_default=False,
    ),
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="FILTER",
        help="FIELD=VALUE, FIELD!=VALUE or 'FIELD in A,B'. Repeat it: every filter must hold.",
        show_default=False,
    ),
]
BreakdownOption = Annotated[
    str | None,
    typer.Option(
        "--breakdown", metavar="FIELD", help="Split the results by this field.", show_default=False
    ),
]
IncludeBotsOption = Annotated[
    bool,
    typer.Option(
        "--include-bots",
        help="Count events from bots too (agent.is_bot); by default they are left out.",
    ),
]
ShowSqlOption = Annotated[
    bool, typer.Option("--show-sql", help="Print the SQL that ran to stderr.")
]
EngineOption = Annotated[
    EngineName,
    typer.Option(
        "--engine",
        case_sensitive=False,
        help="duckdb, or clickhouse (chDB in-process, or the server at --engine-url).",
    ),
]
EngineUrlOption = Annotated[
    str | None,
    typer.Option(
        "--engine-url",
        metavar="URL",
        help="A ClickHouse server: clickhouse://user:password@host:8123/database?table=events",
        show_default=False,
    ),
]
DpEpsilonOption = Annotated[
    float | None,
    typer.Option(
        "--dp-epsilon",
        metavar="E",
        help="Publish a differentially private release instead: noise for privacy loss E, "
        "spent from the dataset's privacy budget (see docs/differential-privacy.md).",
        show_default=False,
    ),
]
DpMaxPeriodsOption = Annotated[
    int | None,
    typer.Option(
        "--dp-max-periods-per-user",
        metavar="P",
        help="With --dp-epsilon: count a unit in at most P periods. Default: every period.",
        show_default=False,
    ),
]
DpMaxEventsOption = Annotated[
    int | None,
    typer.Option(
        "--dp-max-events-per-user",
        metavar="K",
        help="With --dp-epsilon: count at most K events of a unit over the release. Default: 10.",
        show_default=False,
    ),
]


def _names_option(flag: str, help_text: str) -> Any:
    return typer.Option(flag, metavar="NAME[,NAME]", help=help_text + " Repeatable.")


# Parameters that belong to the command line, not to the analysis.
_CLI_ONLY: Final = ("fmt", "show_sql", "engine", "engine_url", "data")


retention_app = typer.Typer(
    name="retention",
    help="Cohort retention (with its options), or `tally retention enforce`.",
    invoke_without_command=True,
)
"""``tally retention``: the cohort analysis when called with its options and no subcommand;
``enforce`` (``cli.retention``) deletes what the retention policy no longer keeps."""


def register(app: typer.Typer) -> None:
    app.add_typer(metrics_app, name="metrics")
    app.command("funnel")(funnel)
    app.add_typer(retention_app, name="retention")


# -- commands -----------------------------------------------------------------------------------


@metrics_app.command("core")
def core(
    actions: Annotated[
        list[str], _names_option("--action", "The core action(s): event names, e.g. A,B.")
    ],
    active: Annotated[list[str], _names_option("--active", "The actions that make a unit active.")],
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Core actions: per period and action, the units who did it and their share of the
    active units."""
    _run("core", locals())


@metrics_app.command("active")
def active(
    active: Annotated[list[str], _names_option("--active", "The actions that make a unit active.")],
    stickiness: Annotated[
        bool,
        typer.Option(
            "--stickiness", help="Per month: average daily active units / monthly active units."
        ),
    ] = False,
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    dp_epsilon: DpEpsilonOption = None,
    dp_max_periods_per_user: DpMaxPeriodsOption = None,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Active units per period (or, with --stickiness, DAU/MAU per month)."""
    _run("active", locals())


@metrics_app.command("count")
def count(
    event: Annotated[str, typer.Option("--event", metavar="NAME", help="The event to count.")],
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    dp_epsilon: DpEpsilonOption = None,
    dp_max_events_per_user: DpMaxEventsOption = None,
    dp_max_periods_per_user: DpMaxPeriodsOption = None,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Events and distinct units per period."""
    _run("count", locals())


@metrics_app.command("ratio")
def ratio(
    numerator: Annotated[
        str, typer.Option("--numerator", metavar="NAME", help="Event of the numerator.")
    ],
    denominator: Annotated[
        str, typer.Option("--denominator", metavar="NAME", help="Event of the denominator.")
    ],
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    numerator_where: Annotated[
        list[str] | None,
        typer.Option(
            "--numerator-where",
            metavar="FILTER",
            help="Like --where, on the numerator's events only (e.g. data.pageviews=1).",
            show_default=False,
        ),
    ] = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Units (or, with --unit event, events) of one event over another, per period."""
    _run("ratio", locals())


@metrics_app.command("percentile")
def percentile(
    event: Annotated[
        str, typer.Option("--event", metavar="NAME", help="The event carrying the value.")
    ],
    field: Annotated[str, typer.Option("--field", metavar="data.KEY", help="The numeric field.")],
    p: Annotated[str, typer.Option("--p", metavar="P[,P]", help="Percentiles, e.g. 50,90,99.")],
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Exact percentiles of a numeric field per period (linear interpolation)."""
    _run("percentile", locals())


def funnel(
    steps: Annotated[
        list[str], _names_option("--steps", "The step events in order, e.g. s1,s2,s3.")
    ],
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            metavar="DURATION",
            help="Time from step 1 within which later steps count: 90s, 30m, 1h, 1d, 2w. "
            "Default: 1d.",
            show_default=False,
        ),
    ] = None,
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """A conversion funnel: units reaching each step in order within the window."""
    _run("funnel", locals())


@retention_app.callback()
def retention(
    ctx: typer.Context,
    cohort_event: Annotated[
        str | None,
        typer.Option(
            "--cohort-event",
            metavar="NAME",
            help="The event that puts a unit in a cohort. Required.",
            show_default=False,
        ),
    ] = None,
    return_events: Annotated[
        list[str] | None,
        _names_option("--return-event", "The events that count as a return. Required."),
    ] = None,
    periods: Annotated[
        int | None,
        typer.Option(
            "--periods",
            metavar="N",
            help="How many periods after the cohort's to report. Default: 8.",
            show_default=False,
        ),
    ] = None,
    date_from: FromOption = None,
    date_to: ToOption = None,
    grain: GrainOption = "week",
    unit: UnitOption = None,
    where: WhereOption = None,
    breakdown: BreakdownOption = None,
    include_bots: IncludeBotsOption = False,
    fmt: FormatOption = Format.table,
    show_sql: ShowSqlOption = False,
    engine: EngineOption = EngineName.duckdb,
    engine_url: EngineUrlOption = None,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Cohort retention: units by their first cohort event, and returns in later periods.
    (`tally retention enforce` applies the retention policy to the lake.)"""
    if ctx.invoked_subcommand is not None:
        return
    for flag, value in (("--cohort-event", cohort_event), ("--return-event", return_events)):
        if not value:
            raise _fail(
                f"missing option {flag}: `tally retention` needs --cohort-event and "
                "--return-event (or a subcommand: `tally retention enforce`)"
            )
    given = dict(locals())
    for name in ("ctx", "flag", "value"):
        given.pop(name, None)
    _run("retention", given)


# -- running --------------------------------------------------------------------------------


def _fail(message: str) -> typer.Exit:
    typer.secho("error: ", fg="red", err=True, nl=False)
    typer.echo(message, err=True)
    return typer.Exit(2)


def _flatten(items: Sequence[str]) -> list[str]:
    """Names from repeated options that may each hold several, separated by commas."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def _params(given: Mapping[str, Any]) -> dict[str, Any]:
    """The registry parameters of a command's arguments."""
    from tallystick.metrics.params import parse_date

    params: dict[str, Any] = {}
    for key, value in given.items():
        if key in _CLI_ONLY or value is None or value is False:
            continue
        if key in ("date_from", "date_to"):
            value = parse_date(value, "--from" if key == "date_from" else "--to")
        elif isinstance(value, list) and key not in ("where", "numerator_where"):
            value = _flatten(value)
        params[key] = value
    return params


@contextlib.contextmanager
def _spinner(console: Console, text: str) -> Iterator[None]:
    """A spinner on stderr while a query runs, only when stderr is a terminal."""
    if console.is_terminal:
        with console.status(text, spinner="dots"):
            yield
    else:
        yield


def _run(name: str, given: Mapping[str, Any]) -> None:
    from tallystick.config import ConfigError
    from tallystick.metrics.api import open_engine, run
    from tallystick.metrics.params import MetricError
    from tallystick.metrics.registry import build

    err = Console(stderr=True)
    engine_name = str(given["engine"])
    try:
        params, private = _private(name, _params(given))
        analysis = build(name, params)
        engine = open_engine(given["data"], engine_name, given["engine_url"])
        if private is not None:
            _release(analysis, private, engine, given, err)
            return
        with _spinner(err, f"running {name} on {engine_name}…"):
            outcome = run(analysis, engine)
    except (MetricError, ConfigError) as exc:
        raise _fail(str(exc)) from None
    if given["show_sql"]:
        _show_sql(err, outcome)
    scope = analysis.scope
    title = f"{analysis.name}: {scope.date_from} to {scope.date_to}"
    grain = getattr(analysis, "grain", None)
    if isinstance(grain, str):
        title += f" by {grain}"
    fmt: Format = given["fmt"]
    _print_rows(outcome.rows, fmt, title)
    if not outcome.rows and fmt is Format.table:
        err.print("no rows: nothing matched (check --from, --to and --where)")


def _private(name: str, params: dict[str, Any]) -> tuple[dict[str, Any], Request | None]:
    """The analysis's parameters and, with --dp-epsilon, the private release asked for."""
    if not any(k.startswith("dp_") for k in params):
        return params, None
    from tallystick.privacy import dp

    return dp.split(name, params)


def _release(
    analysis: Analysis, request: Request, engine: Engine, given: Mapping[str, Any], err: Console
) -> None:
    """Make and print a differentially private release (see privacy.dp); a release beyond the
    dataset's budget exits with 1, spending nothing."""
    from tallystick.cli.control import actor
    from tallystick.config import from_env
    from tallystick.control.dp_ledger import BudgetExhausted, Ledger
    from tallystick.control.store import ControlStore
    from tallystick.metrics.api import run
    from tallystick.privacy import dp

    settings = from_env(data=given["data"])
    with ControlStore.for_settings(settings) as store:
        try:
            with _spinner(err, f"releasing {analysis.name} with differential privacy…"):
                made = dp.release(
                    analysis,
                    request,
                    lambda bounded: run(bounded, engine),
                    Ledger.of(store, settings),
                    actor(),
                )
        except BudgetExhausted as exc:
            typer.secho("error: ", fg="red", err=True, nl=False)
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    if given["show_sql"]:
        _show_sql(err, made.sql)
    fmt: Format = given["fmt"]
    if fmt is Format.json:
        rows = [{k: _plain(v) for k, v in r.items()} for r in made.rows]
        sys.stdout.write(json.dumps({"rows": rows, "dp": made.dp}, indent=2) + "\n")
        return
    scope = analysis.scope
    title = f"{analysis.name} (differentially private): {scope.date_from} to {scope.date_to}"
    _print_rows(made.rows, fmt, title)
    b = made.dp
    bounds = ", ".join(f"{k.replace('_', '-')} {b[k]}" for k in b if k.startswith("max_"))
    lines = [
        f"dp: epsilon {b['epsilon']:g} spent from dataset {b['dataset']!r} "
        f"({b['remaining']:g} of {b['budget']:g} left; release {b['release']})",
        f"dp: Laplace noise, scale {b['scale']:.4g} (sensitivity {b['sensitivity']} per "
        f"{b['unit']}; {bounds}): each value is within ±{b['interval95']:.3g} of the bounded "
        "count with 95% probability; anonymous events are left out",
    ]
    if fmt is Format.table:
        for line in lines:
            Console().print(line, highlight=False, soft_wrap=True)
    else:
        for line in lines:
            err.print(line, highlight=False, soft_wrap=True)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _show_sql(err: Console, outcome: Outcome | str) -> None:
    sql = outcome if isinstance(outcome, str) else outcome.sql
    if err.is_terminal:
        from rich.syntax import Syntax

        err.print(Syntax(sql, "sql", word_wrap=True, background_color="default"))
    else:
        sys.stderr.write(sql + "\n")
        sys.stderr.flush()


def _cell(value: Any) -> Any:
    """A value for a table cell: floats to 4 decimals, lists as comma-separated values."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return ", ".join("–" if v is None else str(_cell(v)) for v in value)
    return value


def _print_rows(rows: list[dict[str, Any]], fmt: Format, title: str) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if fmt is Format.table:
        rows = [{k: _cell(v) for k, v in r.items()} for r in rows]
    elif fmt is Format.csv:
        rows = [
            {k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows
        ]
    render(rows, fmt, title=title, columns=columns)
