"""Golden files: the SQL each analysis generates, per engine, over a fixed source table.

A change to generated SQL shows up as a diff of ``tests/metrics/golden/<case>.<engine>.sql``.
After checking the new SQL (it must still pass the parity and reference tests), rewrite the
files with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/metrics/test_sql_golden.py``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from tallystick.metrics.registry import build
from tallystick.metrics.sql import ENGINES, render

GOLDEN = Path(__file__).parent / "golden"
RANGE = {"from": "2026-01-01", "to": "2026-03-31"}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "core": ("core", {"actions": "create,share", "active": "login,create", "grain": "week"}),
    "core-breakdown-where": (
        "core",
        {
            "actions": "create",
            "active": "login",
            "breakdown": "data.site",
            "where": ["app.environment!=test", "data.plan in free,pro", "session.seq=3"],
        },
    ),
    "active-instances": ("active", {"active": "login", "unit": "app.instance", "grain": "month"}),
    "stickiness": ("stickiness", {"active": "login"}),
    "count": ("count", {"event": "page.view", "grain": "day"}),
    "ratio-events": (
        "ratio",
        {"numerator": "app.error", "denominator": "page.view", "unit": "event"},
    ),
    "percentile": (
        "percentile",
        {"event": "api.call", "field": "data.duration_ms", "p": "50,90,99.9"},
    ),
    "funnel": ("funnel", {"steps": "dialog.open,dialog.submit,sign_in.ok", "window": "1h"}),
    "funnel-repeated-step": ("funnel", {"steps": "view,cart,view,pay", "window": "1d"}),
    "retention": (
        "retention",
        {"cohort_event": "signup", "return_events": "login,create", "periods": 4},
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_generated_sql_matches_the_golden_file(case: str, engine: Any) -> None:
    name, params = CASES[case]
    analysis = build(name, {**RANGE, **params}, today=dt.date(2026, 4, 1))
    sql = render(analysis.build(exp.to_table("events")), engine, pretty=True) + "\n"
    path = GOLDEN / f"{case}.{engine}.sql"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(sql)
    assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
    assert sql == path.read_text(), f"{path.name} changed; review and run with UPDATE_GOLDEN=1"
