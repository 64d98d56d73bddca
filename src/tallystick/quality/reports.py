"""The data-quality reports as the CLI, the HTTP API and the dashboard ask for them: one parameter
check and one answer for all three (``tally quality loss|skew``, ``GET /v1/quality/loss|skew``).

Parameters (the same names on the command line and in a query string):

- ``grain``: ``day`` or ``week`` for the loss report (default ``day``); ``day``, ``week`` or
  ``all`` for the skew report (default ``all``: one row per client over the range).
- ``from``, ``to``: the first and last UTC date (YYYY-MM-DD), inclusive. Default: unbounded
  (every day in the lake): an accounting report answers for all the data unless told otherwise.
- ``library``: only the rows of this client library (``client.library``, exact).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import duckdb

from tallystick.metrics.params import MetricError, parse_date
from tallystick.quality.loss import LossRow, total, weekly
from tallystick.quality.loss_sql import lake_loss_report
from tallystick.quality.skew import GRAINS as SKEW_GRAINS
from tallystick.quality.skew import Grain as SkewGrain
from tallystick.quality.skew import lake_skew_report
from tallystick.store.lake import Lake
from tallystick.store.reader import with_retry

if TYPE_CHECKING:
    from tallystick.metrics.exclusion import Exclusion

LOSS_GRAINS: Final = ("day", "week")
PARAMS: Final = ("grain", "from", "to", "library")


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What a report is asked for (checked)."""

    grain: str
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    library: str | None = None

    def echo(self) -> dict[str, Any]:
        """The parameters as the answer repeats them (JSON-ready)."""
        return {
            "grain": self.grain,
            "from": None if self.date_from is None else self.date_from.isoformat(),
            "to": None if self.date_to is None else self.date_to.isoformat(),
            "library": self.library,
        }


def parse_query(
    params: Mapping[str, object], grains: Sequence[str], default_grain: str, report: str
) -> ReportQuery:
    """A ``ReportQuery`` from raw parameters (strings, as a query string or options give them;
    absent or ``None``: the default); a MetricError saying what to write when one is wrong."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise MetricError(
            f"the {report} report does not take {', '.join(unknown)}; it takes {', '.join(PARAMS)}"
        )
    values: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise MetricError(f"parameter {name!r} must be a string, got {value!r}")
        if not value.strip():
            raise MetricError(f"parameter {name!r} is empty: give a value or leave it out")
        values[name] = value.strip()
    grain = values.get("grain", default_grain).lower()
    if grain not in grains:
        raise MetricError(
            f"grain {values['grain']!r} is not one of {', '.join(grains)} for the {report} report"
        )
    date_from = parse_date(values["from"], "from") if "from" in values else None
    date_to = parse_date(values["to"], "to") if "to" in values else None
    if date_from is not None and date_to is not None and date_to < date_from:
        raise MetricError(
            f"to {date_to} is before from {date_from}: give a from on or before the to"
        )
    return ReportQuery(grain, date_from, date_to, values.get("library"))


def loss_query(params: Mapping[str, object]) -> ReportQuery:
    return parse_query(params, LOSS_GRAINS, "day", "loss")


def skew_query(params: Mapping[str, object]) -> ReportQuery:
    return parse_query(params, SKEW_GRAINS, "all", "skew")


def _hiding(hidden: frozenset[str]) -> Exclusion | None:
    """What the reader leaves out for a report: the copies of ``hidden`` streams (private
    streams the reader may not see), bots counted as ever."""
    from tallystick.metrics.exclusion import Exclusion

    return Exclusion(include_bots=True, hidden_streams=hidden) if hidden else None


def loss_rows(
    lake: Lake, query: ReportQuery, hidden: frozenset[str] = frozenset()
) -> list[LossRow]:
    """The loss report's rows (``day`` is the week's Monday for grain ``week``), over the
    messages of the streams not ``hidden``."""

    def work(con: duckdb.DuckDBPyConnection) -> list[LossRow]:
        return lake_loss_report(
            con, date_from=query.date_from, date_to=query.date_to, library=query.library
        )

    rows = with_retry(lake, work, _hiding(hidden))
    return weekly(rows) if query.grain == "week" else rows


def loss_body(
    lake: Lake, query: ReportQuery, hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The answer of ``GET /v1/quality/loss``: the parameters, the rows and their totals."""
    rows = loss_rows(lake, query, hidden)
    return {
        **query.echo(),
        "rows": [r.as_row(query.grain) for r in rows],
        "totals": total(rows),
    }


def skew_body(
    lake: Lake, query: ReportQuery, hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The answer of ``GET /v1/quality/skew``: the parameters and the rows."""
    grain: SkewGrain = "day" if query.grain == "day" else "week" if query.grain == "week" else "all"

    def work(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        rows = lake_skew_report(
            con, grain, date_from=query.date_from, date_to=query.date_to, library=query.library
        )
        return [r.as_row(grain) for r in rows]

    return {**query.echo(), "rows": with_retry(lake, work, _hiding(hidden))}
