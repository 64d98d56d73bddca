"""The Python API: every analysis as a function returning a pandas ``DataFrame``.

Parameters have the names of the registry (see :mod:`tallystick.metrics.registry`), with
``date_from``/``date_to`` for ``from``/``to``; the CLI (``tally metrics ...``) and the HTTP API
(``/v1/query/<analysis>``) take the same ones and return the same rows::

    from tallystick import metrics

    df = metrics.core(actions="project.commit", active="user.login", date_from="2026-01-01",
                      date_to="2026-03-31", grain="week", data="./tally-data")

Result frames have one row per result row, columns in the documented order. Period columns
(``period``, ``cohort``) hold ``datetime.date`` objects (convert with ``pd.to_datetime`` for a
time axis); list columns (retention's ``retained`` and ``rates``) hold Python lists; a missing
value (a share whose denominator is 0, an event without a breakdown value) is ``NaN``/``None``
as pandas stores it. :func:`query` returns the raw rows and the SQL that ran.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar

from tallystick.config import from_env
from tallystick.metrics.analysis import Analysis, Outcome, Row
from tallystick.metrics.engines import Engine, make_engine
from tallystick.metrics.params import DEFAULT_UNIT, Filter, MetricError
from tallystick.metrics.registry import DEFAULT_PERIODS, DEFAULT_WINDOW, build
from tallystick.store.lake import Lake

if TYPE_CHECKING:
    import pandas as pd

    from tallystick.config import Settings
    from tallystick.control.quarantine import ActiveRules, Rule

__all__ = [
    "EngineChoice",
    "QueryFailed",
    "active",
    "core",
    "count",
    "frame",
    "funnel",
    "open_engine",
    "percentile",
    "query",
    "ratio",
    "retention",
    "run",
    "stickiness",
]

#: Event names: a list, or one string with names separated by commas.
Names: TypeAlias = str | Sequence[str]
#: A date: ``datetime.date`` or ``YYYY-MM-DD``.
DateLike: TypeAlias = str | dt.date
#: Filters: ``"FIELD=VALUE"``, ``"FIELD!=VALUE"``, ``"FIELD in A,B"`` or ``(field, op, value)``.
Where: TypeAlias = str | Sequence[str | Filter | tuple[str, str, object]]
EngineChoice: TypeAlias = Literal["duckdb", "clickhouse"]

_CHDB_ERROR: Final = re.compile(r"^Code: \d+\. DB::Exception: ")


class QueryFailed(MetricError):
    """The engine could not run an analysis; the message carries the engine's own reason."""


def open_engine(
    data: str | Path | None = None, engine: str = "duckdb", engine_url: str | None = None
) -> Engine:
    """The engine ``engine`` over the lake of data directory ``data`` (or at ``engine_url``),
    leaving out what the data directory's control plane quarantines."""
    settings = from_env(data=data)
    if not engine_url and not settings.data.is_dir():
        raise MetricError(
            f"no data directory at {settings.data}: pass the directory `tally serve` or "
            "`tally import` wrote (--data DIR, data=..., or TALLYSTICK_DATA)"
        )
    return make_engine(Lake(settings.lake_dir), engine, engine_url, quarantine=_rules(settings))


_ACTIVE_RULES: dict[str, ActiveRules] = {}


def _rules(settings: Settings) -> ActiveRules:
    """The quarantine rules of ``settings``' control plane: one reader per database for the
    process (each analysis still reads the rules in force)."""
    from tallystick.control.quarantine import ActiveRules

    url = settings.control_database
    if url not in _ACTIVE_RULES:
        _ACTIVE_RULES[url] = ActiveRules(settings)
    return _ACTIVE_RULES[url]


def _engine_reason(exc: Exception) -> str | None:
    """The one-line reason of an engine's error, or ``None`` if ``exc`` is not one."""
    text = str(exc).strip()
    if type(exc) is RuntimeError and _CHDB_ERROR.match(text):  # chDB's way of failing
        text = _CHDB_ERROR.sub("", text)
    elif not type(exc).__module__.startswith(("duckdb", "_duckdb", "clickhouse_connect")):
        return None
    line = next((s.strip() for s in text.splitlines() if s.strip()), type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."


T = TypeVar("T")


def _is_io_error(exc: Exception) -> bool:
    return type(exc).__name__ == "IOException" and type(exc).__module__.endswith("duckdb")


def run(
    analysis: Analysis,
    engine: Engine,
    rules: tuple[Rule, ...] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> Outcome:
    """Run ``analysis`` on ``engine``; an engine's error becomes :class:`QueryFailed`.

    The rows of the ``hidden`` streams (private streams the reader may not see) are left out
    first (``metrics.exclusion``).

    Bots are left out unless the analysis includes them, and so is what the quarantine
    ``rules`` match (default: the engine's rules in force; rules that cannot be read are a
    :class:`QueryFailed` too: nothing is counted that may be quarantined). A DuckDB read that
    failed because compaction, a purge or retention replaced a file is tried again (the files
    are listed anew each time, ``store.reader.retrying``).
    """
    return guarded(
        lambda: analysis.run(engine, rules, hidden),
        f"{engine.name} could not run the {analysis.name} analysis",
    )


def guarded(call: Callable[[], T], failed: str) -> T:
    """``call()``, tried again when a DuckDB read met a file replaced under it; an engine's
    error, or quarantine rules that cannot be read, raised as :class:`QueryFailed`
    (``"{failed}: {reason}"``); a :class:`MetricError` as it is."""
    from tallystick.control.quarantine import RulesUnavailable
    from tallystick.store.reader import retrying

    try:
        return retrying(call, _is_io_error)
    except MetricError:
        raise
    except RulesUnavailable as exc:
        raise QueryFailed(str(exc)) from exc
    except Exception as exc:
        reason = _engine_reason(exc)
        if reason is None:
            raise
        raise QueryFailed(f"{failed}: {reason}") from exc


def query(
    name: str,
    *,
    data: str | Path | None = None,
    engine: str = "duckdb",
    engine_url: str | None = None,
    today: dt.date | None = None,
    **params: Any,
) -> Outcome:
    """Run analysis ``name`` with registry parameters ``params``; the rows and the SQL.

    ``data`` is the data directory (default: ``TALLYSTICK_DATA`` or ``./tally-data``);
    ``engine`` is ``duckdb`` or ``clickhouse`` (chDB in-process, or the ClickHouse server at
    ``engine_url``); ``today`` fixes the default date range (the 12 weeks ending today).
    Raises :class:`~tallystick.metrics.params.MetricError` for a parameter to fix and
    :class:`QueryFailed` when the engine refused or failed the query.
    """
    analysis = build(name, params, today=today)
    return run(analysis, open_engine(data, engine, engine_url))


def frame(rows: Sequence[Row]) -> pd.DataFrame:
    """A DataFrame of result rows: one row each, columns in their order, values as they are."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame.from_records(list(rows), columns=columns)


def _frame(name: str, params: dict[str, Any]) -> pd.DataFrame:
    """The frame of analysis ``name``; ``params`` are the calling function's arguments."""
    return frame(query(name, **params).rows)


def core(
    actions: Names,
    active: Names,
    *,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Core actions: per period and action, the distinct units who did the action.

    Columns: ``period``, ``action``, ``users``, ``active_users`` (units that did any of the
    ``active`` actions in the period) and ``share`` (``users / active_users``), plus
    ``breakdown`` with a breakdown.

    Args:
        actions: the core actions (a list, or names separated by commas).
        active: the actions that make a unit active.
        date_from, date_to: inclusive UTC dates (default: the 12 weeks ending today).
        grain: ``day``, ``week`` or ``month``.
        unit: the field that identifies what is counted (default ``user.id``).
        where: filters, e.g. ``["app.environment=prod", ("data.plan", "in", ["a", "b"])]``.
        breakdown: a field to split the results by.
        include_bots: count events from bots too (``agent.is_bot``; left out by default).
        data: the data directory (default ``TALLYSTICK_DATA`` or ``./tally-data``).
        engine: ``duckdb`` or ``clickhouse``; engine_url: a ClickHouse server's URL.
    """
    return _frame("core", locals())


def active(
    active: Names,
    *,
    stickiness: bool = False,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Active units: per period, the distinct units with an event of any ``active`` action.

    Columns: ``period``, ``active_users`` (plus ``breakdown``). With ``stickiness=True`` the
    result is that of :func:`stickiness` instead. The other parameters are those of
    :func:`core`.
    """
    return _frame("active", locals())


def stickiness(
    active: Names,
    *,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Stickiness: per calendar month, average daily active units over monthly active units.

    Columns: ``period`` (the month), ``dau_mean``, ``mau`` and ``stickiness`` (plus
    ``breakdown``); only the month's days inside the date range count. The other parameters
    are those of :func:`core`.
    """
    return _frame("stickiness", locals())


def count(
    event: str,
    *,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Event counts: per period, the events named ``event`` and the distinct units among them.

    Columns: ``period``, ``events``, ``units`` (plus ``breakdown``). The other parameters are
    those of :func:`core`.
    """
    return _frame("count", locals())


def ratio(
    numerator: str,
    denominator: str,
    *,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    numerator_where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """A ratio of two events: per period, units (or events) of each and their ratio.

    Columns: ``period``, ``numerator``, ``denominator``, ``ratio`` (plus ``breakdown``). With
    ``unit="event"`` events are counted instead of distinct units; ``numerator_where`` filters
    the numerator's events only (``["data.pageviews=1"]``). The other parameters are those of
    :func:`core`.
    """
    return _frame("ratio", locals())


def percentile(
    event: str,
    field: str,
    p: str | float | Sequence[float | str],
    *,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Percentiles of a numeric field: per period, over the events named ``event``.

    ``field`` is ``data.<key>``; ``p`` the percentiles (``[50, 90, 99]`` or ``"50,90,99"``).
    Columns: ``period``, ``count`` (number of values) and ``p50``, ``p90``, ... (plus
    ``breakdown``); exact, with linear interpolation like ``numpy.percentile``. The other
    parameters are those of :func:`core`.
    """
    return _frame("percentile", locals())


def funnel(
    steps: Names,
    *,
    window: str | dt.timedelta | float = DEFAULT_WINDOW,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """A conversion funnel over the date range: how many units reached each step in order.

    ``steps`` are event names in order; ``window`` is the time from step 1 within which the
    later steps must happen (``"1h"``, ``"30m"``, ``"1d"``, a ``timedelta`` or seconds).
    Columns: ``step``, ``name``, ``users``, ``conversion_from_previous``,
    ``conversion_from_start``, ``median_seconds_from_previous`` (plus ``breakdown``). The other
    parameters are those of :func:`core`.
    """
    return _frame("funnel", locals())


def retention(
    cohort_event: str,
    return_events: Names,
    *,
    periods: int = DEFAULT_PERIODS,
    date_from: DateLike | None = None,
    date_to: DateLike | None = None,
    grain: str = "week",
    unit: str = DEFAULT_UNIT,
    where: Where | None = None,
    breakdown: str | None = None,
    include_bots: bool = False,
    data: str | Path | None = None,
    engine: EngineChoice = "duckdb",
    engine_url: str | None = None,
) -> pd.DataFrame:
    """Cohort retention: units by the period of their first ``cohort_event``, and how many came
    back with any of ``return_events`` in each of the ``periods`` periods after.

    Columns: ``cohort``, ``size``, ``retained`` and ``rates`` (lists of ``periods + 1`` values,
    index 0 being the cohort period; ``None`` for periods after the date range), plus
    ``breakdown``. The other parameters are those of :func:`core`.
    """
    return _frame("retention", locals())
