"""Hypothesis: the funnel and retention SQL give the reference's rows on random event logs.

The logs (``analyses.test_reference_properties.logs``) have colliding event ids, equal
timestamps, offsets from -12:00 to +14:00 and anonymous units. DuckDB is checked on many
examples; a smaller property runs both engines (ClickHouse via chDB) on the same analyses.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyses.test_reference_properties import BASE, GRAINS, NAMES, WINDOWS, logs, ranges
from metrics.harness import close, reference, run_on
from metrics.lakerows import write_rows
from tallystick.metrics.analyses.funnel import Funnel
from tallystick.metrics.analyses.retention import Retention
from tallystick.metrics.analysis import Analysis
from tallystick.metrics.params import Filter, Grain, Scope

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

_STEPS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map(tuple)
# The logs' times are whole minutes, often 0, 30, 60 or 61 minutes apart: these windows put
# steps exactly on the edge, and one second or one minute past it.
_WINDOWS = st.sampled_from([*WINDOWS, dt.timedelta(minutes=29, seconds=59), dt.timedelta(days=3)])
_FILTERS: list[tuple[Filter, ...]] = [(), (Filter("data.site", "!=", ("s1",)),)]


# Ranges around the first day of the logs (2024-01-01), for logs spanning a few hours.
_FIRST_DAY = st.sampled_from([(0, 0), (-1, 0), (0, 1)]).map(
    lambda days: (BASE.date() + dt.timedelta(days[0]), BASE.date() + dt.timedelta(days[1]))
)


@st.composite
def scopes(
    draw: st.DrawFn, spans: st.SearchStrategy[tuple[dt.date, dt.date]] | None = None
) -> Scope:
    """A random range (from ``spans``, default ``ranges()``), unit, filter and breakdown."""
    date_from, date_to = draw(ranges() if spans is None else spans)
    return Scope(
        date_from=date_from,
        date_to=date_to,
        unit=draw(st.sampled_from(["user.id", "user.id", "session.id"])),
        where=draw(st.sampled_from(_FILTERS)),
        breakdown=draw(st.sampled_from([None, "app.instance", "data.site"])),
    )


@st.composite
def funnels(
    draw: st.DrawFn, spans: st.SearchStrategy[tuple[dt.date, dt.date]] | None = None
) -> Analysis:
    return Funnel(steps=draw(_STEPS), window=draw(_WINDOWS), scope=draw(scopes(spans)))


@st.composite
def retentions(draw: st.DrawFn) -> Analysis:
    grain: Grain = draw(st.sampled_from(GRAINS))
    return Retention(
        cohort_event=draw(st.sampled_from(NAMES)),
        return_events=tuple(
            draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        ),
        grain=grain,
        periods=draw(st.integers(0, 5)),
        scope=draw(scopes()),
    )


def _agree(
    rows: Sequence[dict[str, Any]], analyses: Sequence[Analysis], engines: Sequence[str]
) -> None:
    """Every engine returns the reference's rows for every analysis (one fresh lake)."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = write_rows(Path(tmp) / "lake", rows)
        for analysis in analyses:
            expected = reference(rows, analysis)
            for engine in engines:
                got = run_on(lake, analysis, engine)
                assert close(got, expected), f"{engine}: {analysis}\n{got}\n{expected}"


@settings(max_examples=40, **_SETTINGS)
@given(rows=logs(), funnel=funnels(), retention=retentions())
def test_duckdb_equals_reference(
    rows: list[dict[str, Any]], funnel: Analysis, retention: Analysis
) -> None:
    _agree(rows, [funnel, retention], ["duckdb"])


@settings(max_examples=40, **_SETTINGS)
@given(rows=logs(max_size=12, span_minutes=180, users=False), funnel=funnels(_FIRST_DAY))
def test_duckdb_funnel_equals_reference_on_one_busy_unit(
    rows: list[dict[str, Any]], funnel: Analysis
) -> None:
    """One unit, many events within hours: repeats, equal timestamps and window edges."""
    _agree(rows, [funnel], ["duckdb"])


@settings(max_examples=15, **_SETTINGS)
@given(rows=logs(), funnel=funnels(), retention=retentions())
def test_duckdb_and_clickhouse_equal_reference(
    rows: list[dict[str, Any]], funnel: Analysis, retention: Analysis
) -> None:
    _agree(rows, [funnel, retention], ["duckdb", "clickhouse"])
