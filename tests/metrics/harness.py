"""Run an analysis on a real lake with DuckDB and ClickHouse (chDB) and on the reference.

``check(tmp_path, rows, name, **params)`` writes ``rows`` into a lake of Parquet files, builds
analysis ``name`` from ``params`` (registry names: ``from``, ``to``, ``grain``, ...), runs it on
both engines and compares each result with ``analyses.reference`` called with the same
parameters. It returns the (equal) rows so a test can also compare them with hand-computed
literals.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from analyses import reference as ref
from metrics.lakerows import write_rows
from tallystick.metrics.analysis import Analysis
from tallystick.metrics.engines import ChDBEngine, DuckDBEngine, Engine
from tallystick.metrics.registry import build
from tallystick.store.lake import Lake

ENGINES: dict[str, Callable[[Lake], Engine]] = {"duckdb": DuckDBEngine, "clickhouse": ChDBEngine}


def _where(analysis: Analysis, filters: Any = None) -> list[tuple[str, str, Any]]:
    return [
        (f.field, f.op, list(f.values) if f.op == "in" else f.values[0])
        for f in (analysis.scope.where if filters is None else filters)
    ]


def reference(rows: Sequence[Mapping[str, Any]], analysis: Analysis) -> list[dict[str, Any]]:
    """The reference's answer to ``analysis``."""
    s = analysis.scope
    common: dict[str, Any] = {
        "date_from": s.date_from,
        "date_to": s.date_to,
        "where": _where(analysis),
        "breakdown": s.breakdown,
    }
    a: Any = analysis
    name = analysis.name
    if name == "core":
        return ref.core(rows, a.actions, a.active, a.grain, unit=s.unit, **common)
    if name == "active":
        return ref.active(rows, a.active, a.grain, unit=s.unit, **common)
    if name == "stickiness":
        return ref.stickiness(rows, a.active, unit=s.unit, **common)
    if name == "count":
        return ref.count(rows, a.event, a.grain, unit=s.unit, **common)
    if name == "ratio":
        return ref.ratio(
            rows,
            a.numerator,
            a.denominator,
            a.grain,
            unit=s.unit,
            numerator_where=_where(analysis, a.numerator_where),
            **common,
        )
    if name == "percentile":
        return ref.percentile(rows, a.event, a.field, a.percentiles, a.grain, **common)
    if name == "funnel":
        return ref.funnel(rows, a.steps, a.window, unit=s.unit, **common)
    if name == "retention":
        return ref.retention(
            rows, a.cohort_event, a.return_events, a.grain, a.periods, unit=s.unit, **common
        )
    raise AssertionError(f"no reference for {name}")


def close(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-9 relative (engines may differ in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def run_on(lake: Lake, analysis: Analysis, engine: str) -> list[dict[str, Any]]:
    return analysis.run(ENGINES[engine](lake)).rows


def check(
    tmp_path: Path,
    rows: Sequence[Mapping[str, Any]],
    name: str,
    *,
    engines: Sequence[str] = ("duckdb", "clickhouse"),
    **params: Any,
) -> list[dict[str, Any]]:
    """Both engines and the reference agree on ``name(params)`` over ``rows``; the rows."""
    lake = write_rows(tmp_path / "lake", rows)
    analysis = build(name, params, today=dt.date(2026, 1, 1))
    expected = reference(rows, analysis)
    for engine in engines:
        got = run_on(lake, analysis, engine)
        assert close(got, expected), f"{engine} differs from the reference:\n{got}\n{expected}"
    return expected
