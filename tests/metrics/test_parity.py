"""DuckDB and ClickHouse (chDB) give the same rows for every analysis — and the reference's.

One seeded, messy event log (several weeks across a month edge, copies with other content,
anonymous and empty units, non-UTC offsets, data values of several JSON types) and, for each
analysis in the registry, plain / filtered / broken-down / other-grain variants.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check
from tallystick.metrics.registry import ANALYSES

NAMES = ["login", "view", "create", "share", "error", "signup", "open", "submit", "done"]
ZONES = [
    dt.UTC,
    dt.timezone(dt.timedelta(hours=-2)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
]
START = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)


def _log(seed: int = 11, size: int = 600) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for n in range(size):
        ts = START + dt.timedelta(seconds=rng.randrange(0, 24 * 86400))
        data: dict[str, Any] = {"site": rng.choice(["a", "b", "c", 3, True, ""])}
        if rng.random() < 0.7:
            data["ms"] = rng.choice([rng.randrange(0, 900), rng.random() * 500, "slow", None])
        received = START + dt.timedelta(days=40, seconds=n)
        row: dict[str, Any] = {
            "event_id": f"p{n:05d}",
            "name": rng.choice(NAMES),
            "client_ts": ts.astimezone(rng.choice(ZONES)),
            "received_ts": received,
            "user_id": rng.choice([f"u{rng.randrange(25)}", f"u{rng.randrange(5)}", None, ""]),
            "app_instance": rng.choice(["i1", "i2", None]),
            "app_environment": rng.choice(["prod", "prod", "test", None]),
            "data": json.dumps(data),
        }
        rows.append(row)
        if rng.random() < 0.08:  # a copy received later with other content: ignored
            late = received + dt.timedelta(hours=1)
            rows.append({**row, "received_ts": late, "user_id": "u-copy", "data": None})
    return rows


ROWS = _log()
RANGE = {"from": "2026-01-22", "to": "2026-02-10"}
BASE: dict[str, dict[str, Any]] = {
    "core": {"actions": "create,share,view", "active": "login,create"},
    "active": {"active": "login,view"},
    "stickiness": {"active": "login,view"},
    "count": {"event": "view"},
    "ratio": {"numerator": "error", "denominator": "view"},
    "percentile": {"event": "view", "field": "data.ms", "p": "0,50,90,99.9,100"},
    "funnel": {"steps": "open,submit,done", "window": "2d"},
    "retention": {"cohort_event": "signup", "return_events": "login,create", "periods": 3},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "where": {"where": ["app.environment!=test", "data.site in a,3,true"]},
    "breakdown": {"breakdown": "data.site"},
    "instances": {"unit": "app.instance", "grain": "month", "breakdown": "app.environment"},
    "daily": {"grain": "day", "where": ["app.instance=i1"]},
}
CASES = [
    (name, variant)
    for name in ANALYSES
    for variant in VARIANTS
    if not (name == "percentile" and "unit" in VARIANTS[variant])
]


def test_every_analysis_is_covered() -> None:
    assert set(BASE) == set(ANALYSES)


@pytest.mark.parametrize(("name", "variant"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_engines_agree(tmp_path: Path, name: str, variant: str) -> None:
    params = {**RANGE, **BASE[name], **VARIANTS[variant]}
    rows = check(tmp_path, ROWS, name, **params)
    assert rows, "the case should produce rows"


def test_ratio_of_events_agrees(tmp_path: Path) -> None:
    check(tmp_path, ROWS, "ratio", unit="event", **RANGE, **BASE["ratio"])


def test_funnel_with_a_repeated_step_agrees(tmp_path: Path) -> None:
    rows = check(tmp_path, ROWS, "funnel", steps="view,create,view", window="1d", **RANGE)
    assert rows[0]["users"] > 0
