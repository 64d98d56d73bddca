"""One `tally demo --no-serve` build per test session, shared by the dashboard's browser tests
and the demo's end-to-end test (imported as ``demo_build``; the fixture is in conftest.py).

A build sends ~48,000 events through a real collector and runs every catalog metric once: it is
among the slowest setups of the suite, so it is made once and every user works on a copy of its
own (the dashboard's server adds events and definitions; the demo test runs the command again).
Under pytest-xdist the users of the build run on one worker (``conftest.test_group``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: the dashboard's demo product (its tests were written against this size)
USERS = 300
DAYS = 120
SEED = 7


@dataclass(frozen=True)
class DemoBuild:
    """What one build left: its data directory, what the command printed, and how many events
    the demo generated just before it ran."""

    data: Path
    printed: str
    generated_before: int
    users: int = USERS
    days: int = DAYS
    seed: int = SEED

    def generated(self) -> int:
        """How many events the demo generates now (it stops at the current time, so a later
        count may be higher than the build's)."""
        return generated(self.users, self.days, self.seed)

    def copy(self, data: Path) -> DemoBuild:
        """The build in a directory of the caller's (to change or serve it)."""
        shutil.copytree(self.data, data)
        return dataclasses.replace(self, data=data)


def generated(users: int, days: int, seed: int) -> int:
    from tallystick.demo.extras import undeclared
    from tallystick.demo.generator import generate

    today = dt.datetime.now(dt.UTC).date()
    extra = len(undeclared(end=today, days=days, seed=seed))
    return sum(1 for _ in generate(users=users, days=days, seed=seed)) + extra


def build(data: Path, *, users: int = USERS, days: int = DAYS, seed: int = SEED) -> DemoBuild:
    before = generated(users, days, seed)
    size = ["--users", str(users), "--days", str(days), "--seed", str(seed)]
    done = subprocess.run(
        [sys.executable, "-m", "tallystick", "demo", "--no-serve", "--data", str(data), *size],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return DemoBuild(data, done.stderr, before, users, days, seed)
