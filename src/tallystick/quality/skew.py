"""Clock skew by client library and version (issue 6, point 4): a plain-Python reference and the
same report in DuckDB SQL over the lake.

The collector records ``clock_skew_ms`` = ``received_ts`` − ``sent_ts`` for every event that
carries ``sent_ts`` (positive: the client's clock is behind the collector's, transit time
included), and when the skew is beyond ``clock_skew_threshold_seconds`` it shifts ``client_ts``
by it and keeps the client's own reading in ``client_ts_original`` (see docs/enrichment.md).
This report reads those columns back; it measures nothing itself.

Decisions
---------
- One **sample** per event: the lake's ``events`` view (each event once, its first received
  copy). Copies in several streams, and retries, are not counted again.
- Rows are grouped by **client library and version** (``client.library``,
  ``client.library_version``; ``None`` when the event names none) and, with ``grain`` ``day`` or
  ``week``, by the UTC **day the collector received** the event (weeks start on Monday): a
  skewed clock cannot move an event to another row. ``all`` gives one row per library and
  version over the whole range.
- ``events``: events of the row; ``measured``: those with a skew (they carried ``sent_ts``).
- ``median_skew_ms``: the median of the signed skew (which way the clocks are off);
  ``median_abs_skew_ms``, ``p95_abs_skew_ms``: percentiles of ``|skew|`` with linear
  interpolation between the two nearest values (DuckDB's ``quantile_cont``, numpy's default);
  ``max_abs_skew_ms``: the largest ``|skew|``. All ``None`` when nothing was measured.
- ``corrected``: measured events whose ``client_ts`` the collector corrected
  (``client_ts_original`` is set; only a measured event can be); ``corrected_share`` =
  ``corrected`` / ``measured`` (``None`` when nothing was measured).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import duckdb

from tallystick.quality.loss import week_start

Grain = Literal["day", "week", "all"]
GRAINS: Final[tuple[Grain, ...]] = ("day", "week", "all")

COLUMNS: Final = (
    "library",
    "version",
    "events",
    "measured",
    "median_skew_ms",
    "median_abs_skew_ms",
    "p95_abs_skew_ms",
    "max_abs_skew_ms",
    "corrected",
    "corrected_share",
)
"""The columns of a report row after its period (``day`` or ``week``; none for ``all``)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored event, as the report sees it."""

    day: dt.date
    """UTC date of ``received_ts``."""
    library: str | None
    version: str | None
    skew_ms: int | None
    corrected: bool


@dataclass(frozen=True, slots=True)
class SkewRow:
    """Clock skew of one (period, client library, library version)."""

    period: dt.date | None
    """The day, or the Monday of the week; ``None`` for the whole range (grain ``all``)."""
    library: str | None
    version: str | None
    events: int
    measured: int
    median_skew_ms: float | None
    median_abs_skew_ms: float | None
    p95_abs_skew_ms: float | None
    max_abs_skew_ms: int | None
    corrected: int
    corrected_share: float | None

    def as_row(self, grain: Grain) -> dict[str, Any]:
        """JSON-ready, the period (an ISO date) under the grain's name (none for ``all``)."""
        values = {c: getattr(self, c) for c in COLUMNS}
        if grain == "all" or self.period is None:
            return values
        return {grain: self.period.isoformat(), **values}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0–1) of sorted ``values`` by linear interpolation."""
    position = q * (len(values) - 1)
    lo = math.floor(position)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (position - lo)


def _period(day: dt.date, grain: Grain) -> dt.date | None:
    if grain == "day":
        return day
    if grain == "week":
        return week_start(day)
    return None


def _nulls_last(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def skew_report(samples: Iterable[Sample], grain: Grain = "all") -> list[SkewRow]:
    """The report of ``samples``, ordered by period, then library and version (nulls last)."""
    groups: dict[tuple[dt.date | None, str | None, str | None], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(_period(s.day, grain), s.library, s.version)].append(s)

    def order(key: tuple[dt.date | None, str | None, str | None]) -> tuple[Any, ...]:
        period, library, version = key
        return (period or dt.date.min, _nulls_last(library), _nulls_last(version))

    out = []
    for key in sorted(groups, key=order):
        rows = groups[key]
        skews = sorted(float(s.skew_ms) for s in rows if s.skew_ms is not None)
        absolute = sorted(abs(v) for v in skews)
        corrected = sum(1 for s in rows if s.corrected and s.skew_ms is not None)
        out.append(
            SkewRow(
                period=key[0],
                library=key[1],
                version=key[2],
                events=len(rows),
                measured=len(skews),
                median_skew_ms=percentile(skews, 0.5) if skews else None,
                median_abs_skew_ms=percentile(absolute, 0.5) if skews else None,
                p95_abs_skew_ms=percentile(absolute, 0.95) if skews else None,
                max_abs_skew_ms=int(absolute[-1]) if skews else None,
                corrected=corrected,
                corrected_share=corrected / len(skews) if skews else None,
            )
        )
    return out


SAMPLES_SQL: Final = """
SELECT
    CAST(timezone('UTC', received_ts) AS DATE) AS day,
    client_library AS library,
    client_library_version AS version,
    clock_skew_ms AS skew_ms,
    client_ts_original IS NOT NULL AS corrected
FROM events
"""
"""One sample per event of the lake (the reader's de-duplicated ``events`` view)."""

_PERIODS: Final[dict[Grain, str]] = {
    "day": "day",
    "week": "CAST(date_trunc('week', day) AS DATE)",
    "all": "CAST(NULL AS DATE)",
}

_REPORT: Final = """
SELECT
    {period} AS period,
    library,
    version,
    count(*) AS events,
    count(skew_ms) AS measured,
    quantile_cont(skew_ms, 0.5) AS median_skew_ms,
    quantile_cont(abs(skew_ms), 0.5) AS median_abs_skew_ms,
    quantile_cont(abs(skew_ms), 0.95) AS p95_abs_skew_ms,
    max(abs(skew_ms)) AS max_abs_skew_ms,
    count(*) FILTER (WHERE corrected AND skew_ms IS NOT NULL) AS corrected
FROM ({source}) AS samples
{where}
GROUP BY ALL
ORDER BY period, library NULLS LAST, version NULLS LAST
"""


def report_sql(
    grain: Grain = "all",
    source: str = SAMPLES_SQL,
    *,
    date_from: bool = False,
    date_to: bool = False,
    library: bool = False,
) -> str:
    """The report's SQL over ``source`` (a query with the columns of ``Sample``), keeping the
    days from ``?`` / to ``?`` and one library ``?`` when asked (parameters in that order)."""
    conditions = [
        c
        for c, wanted in (("day >= ?", date_from), ("day <= ?", date_to), ("library = ?", library))
        if wanted
    ]
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return _REPORT.format(period=_PERIODS[grain], source=source, where=where)


def run_report(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> list[SkewRow]:
    """Run a report query from this module (with its ``?`` parameters) and return its rows."""
    out = []
    for row in con.execute(sql, list(params)).fetchall():
        period, library, version, events, measured, median, median_abs, p95, top, corrected = row
        measured = int(measured)
        out.append(
            SkewRow(
                period=period,
                library=library,
                version=version,
                events=int(events),
                measured=measured,
                median_skew_ms=None if median is None else float(median),
                median_abs_skew_ms=None if median_abs is None else float(median_abs),
                p95_abs_skew_ms=None if p95 is None else float(p95),
                max_abs_skew_ms=None if top is None else int(top),
                corrected=int(corrected),
                corrected_share=int(corrected) / measured if measured else None,
            )
        )
    return out


def lake_skew_report(
    con: duckdb.DuckDBPyConnection,
    grain: Grain = "all",
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    library: str | None = None,
) -> list[SkewRow]:
    """The skew report of the lake behind ``con`` (``store.reader.connect``): events received
    from ``date_from`` to ``date_to`` (inclusive; ``None``: unbounded), of one client
    ``library`` when given."""
    sql = report_sql(
        grain,
        date_from=date_from is not None,
        date_to=date_to is not None,
        library=library is not None,
    )
    params = [p for p in (date_from, date_to, library) if p is not None]
    return run_report(con, sql, params)
