"""``tally quality ...``: can the data be trusted? Loss, duplicates, clock skew and alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from tallystick.cli.control import fail
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.quality.reports import ReportQuery
    from tallystick.store.lake import Lake

quality_app = typer.Typer(
    name="quality",
    help="Data quality: loss and duplicates, clock skew, alert rules.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app)


FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="DATE",
        help="First UTC date, inclusive (YYYY-MM-DD). Default: the first day in the lake.",
        show_default=False,
    ),
]
ToOption = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="DATE",
        help="Last UTC date, inclusive (YYYY-MM-DD). Default: the last day in the lake.",
        show_default=False,
    ),
]
LibraryOption = Annotated[
    str | None,
    typer.Option(
        "--library",
        metavar="NAME",
        help="Only this client library (client.library, e.g. tallystick-js).",
        show_default=False,
    ),
]


def _report(
    params: dict[str, str | None],
    parse: Callable[[dict[str, str | None]], ReportQuery],
    body: Callable[[Lake, ReportQuery], dict[str, Any]],
    data: Any,
) -> tuple[ReportQuery, dict[str, Any]]:
    """Check the options (exit 2 with the reason when one is wrong) and compute the answer."""
    from tallystick.metrics.params import MetricError
    from tallystick.store.lake import Lake

    try:
        query = parse(params)
    except MetricError as exc:
        fail(f"{exc}.", 2)
    return query, body(Lake(from_env(data=data).lake_dir), query)


def _range_title(query: ReportQuery) -> str:
    first = query.date_from.isoformat() if query.date_from else "the first day"
    last = query.date_to.isoformat() if query.date_to else "the last day"
    library = f", {query.library} only" if query.library else ""
    return f"{first} to {last}{library}"


@quality_app.command("loss")
def loss(
    grain: Annotated[
        str, typer.Option("--grain", metavar="day|week", help="One row per day or per week.")
    ] = "day",
    date_from: FromOption = None,
    date_to: ToOption = None,
    library: LibraryOption = None,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Loss and duplicates per day (or week) and client library version: messages expected
    from session.seq, received and lost, and events delivered more than once (retries) or with
    one event_id for different payloads (client bugs)."""
    from tallystick.quality.loss import COLUMNS
    from tallystick.quality.reports import loss_body, loss_query

    params = {"grain": grain, "from": date_from, "to": date_to, "library": library}
    query, body = _report(params, loss_query, loss_body, data)
    totals = body["totals"]
    rate = totals["loss_rate"]
    title = (
        f"Loss and duplicates, {_range_title(query)}: {totals['lost']:,} of "
        f"{totals['expected']:,} messages lost"
        + (f" ({rate:.2%})" if rate is not None else "")
        + f", {totals['duplicates_natural']:,} retries, "
        f"{totals['duplicates_synthetic']:,} reused event ids"
    )
    columns = [query.grain, *COLUMNS]
    if fmt is not Format.table:
        render(body["rows"], fmt, title=title, columns=columns)
        return
    # on screen: a share as a percentage, and short headers so that a terminal holds them all
    rows = [{**r, "loss_rate": _percent(r["loss_rate"])} for r in body["rows"]]
    _table(rows, columns, _LOSS_LABELS, title)


@quality_app.command("skew")
def skew(
    grain: Annotated[
        str,
        typer.Option(
            "--grain",
            metavar="day|week|all",
            help="One row per client and day, week, or the whole range (all).",
        ),
    ] = "all",
    date_from: FromOption = None,
    date_to: ToOption = None,
    library: LibraryOption = None,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
) -> None:
    """Clock skew by client library version: how far clients' clocks are off the collector's
    (received_ts − sent_ts, in ms) and how many events had client_ts corrected. Days are the
    days the collector received the events."""
    from tallystick.quality.reports import skew_body, skew_query
    from tallystick.quality.skew import COLUMNS

    params = {"grain": grain, "from": date_from, "to": date_to, "library": library}
    query, body = _report(params, skew_query, skew_body, data)
    columns = list(COLUMNS) if query.grain == "all" else [query.grain, *COLUMNS]
    title = f"Clock skew in ms, {_range_title(query)}"
    if fmt is not Format.table:
        render(body["rows"], fmt, title=title, columns=columns)
        return
    rows = [
        {
            **r,
            **{c: _round(r[c]) for c in ("median_skew_ms", "median_abs_skew_ms")},
            "p95_abs_skew_ms": _round(r["p95_abs_skew_ms"]),
            "corrected_share": _percent(r["corrected_share"]),
        }
        for r in body["rows"]
    ]
    _table(rows, columns, _SKEW_LABELS, title)


_LOSS_LABELS: Final = {
    "sessions": "sess.",
    "expected": "expect.",
    "received": "recv.",
    "loss_rate": "loss",
    "seq_conflicts": "seq\nconfl.",
    "duplicates_natural": "retries",
    "duplicates_synthetic": "reused\nids",
}
_SKEW_LABELS: Final = {
    "measured": "meas.",
    "median_skew_ms": "median",
    "median_abs_skew_ms": "median\n|skew|",
    "p95_abs_skew_ms": "p95\n|skew|",
    "max_abs_skew_ms": "max\n|skew|",
    "corrected": "corr.",
    "corrected_share": "corr.\nshare",
}


def _table(
    rows: list[dict[str, Any]], columns: list[str], labels: dict[str, str], title: str
) -> None:
    """A Rich table with short headers (JSON and CSV keep the full names)."""
    shown = [labels.get(c, c) for c in columns]
    render(
        [{labels.get(k, k): v for k, v in r.items()} for r in rows],
        Format.table,
        title=title,
        columns=shown,
    )


def _percent(share: float | None) -> str | None:
    return None if share is None else f"{share:.2%}"


def _round(ms: float | None) -> str | None:
    return None if ms is None else f"{ms:,.1f}"
