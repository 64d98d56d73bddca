"""`tally demo --no-serve` builds the demo product's data through the real collector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tallystick.demo.generator import EVENT_NAMES, FUNNEL, generate
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e

ARGS = ["--users", "60", "--days", "30", "--seed", "3"]


def _demo(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tallystick", "demo", "--no-serve", "--data", str(data), *ARGS],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_sends_everything_through_the_collector(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _demo(data)
    assert "accepted" in first.stderr
    expected = sum(1 for _ in generate(users=60, days=30, seed=3))
    con = connect(Lake(data / "lake"))
    row = con.execute(
        "SELECT count(*), count(DISTINCT app_instance), count(DISTINCT nullif(user_id, '')) "
        "FROM events"
    ).fetchone()
    assert row is not None
    events, sites, users = row
    assert events == expected
    assert sites > 1
    assert 0 < users <= 60
    names = {r[0] for r in con.execute("SELECT DISTINCT name FROM events").fetchall()}
    assert set(FUNNEL) <= names <= set(EVENT_NAMES)
    failed = con.execute("SELECT count(*) FROM failed_events").fetchone()
    assert failed == (0,)
    marker = json.loads((data / "demo.json").read_text())
    assert marker["events"] == expected

    # A second run with the same parameters sends nothing again.
    second = _demo(data)
    assert "already" in second.stderr
    again = connect(Lake(data / "lake")).execute("SELECT count(*) FROM events").fetchone()
    assert again == (expected,)
