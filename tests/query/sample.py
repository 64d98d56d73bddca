"""A small lake shared by the Python API, CLI and HTTP API tests, and parameters for every analysis.

``ROWS`` are reference-style rows (see ``metrics/lakerows.py``); ``PARAMS`` holds registry
parameters for each analysis that give a non-trivial result over them; ``RANGE`` is the date range.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from metrics.lakerows import write_rows
from tallystick.store.lake import Lake

_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"s{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


ROWS = [
    ev("signup", "2026-01-05T09:00:00+00:00", "u1", data={"ms": 120, "plan": "free"}),
    ev("login", "2026-01-05T09:05:00+00:00", "u1", data={"plan": "free"}),
    ev("create", "2026-01-05T09:30:00+00:00", "u1", data={"ms": 300, "plan": "free"}),
    ev("signup", "2026-01-06T10:00:00+00:00", "u2", data={"plan": "pro"}),
    ev("login", "2026-01-06T10:20:00+00:00", "u2", data={"plan": "pro"}),
    ev("login", "2026-01-13T10:00:00+00:00", "u2", data={"plan": "pro"}),
    ev("create", "2026-01-14T11:00:00+00:00", "u2", data={"ms": 80, "plan": "pro"}),
    ev("login", "2026-01-20T08:00:00+00:00", "u1", app_environment="test"),
    ev("create", "2026-01-21T08:00:00+00:00", None, data={"ms": 40}),  # anonymous
    ev("signup", "2026-01-22T08:00:00+00:00", "u3", app_environment="test"),
]

RANGE: dict[str, Any] = {"from": "2026-01-01", "to": "2026-01-31"}

#: analysis -> its own parameters (registry names); ``RANGE`` and ``grain`` come on top
PARAMS: dict[str, dict[str, Any]] = {
    "core": {"actions": ["create", "login"], "active": ["login"]},
    "active": {"active": ["login", "create"]},
    "stickiness": {"active": ["login"]},
    "count": {"event": "create"},
    "ratio": {"numerator": "create", "denominator": "login"},
    "percentile": {"event": "create", "field": "data.ms", "p": [50, 90]},
    "funnel": {"steps": ["signup", "login", "create"], "window": "1h"},
    "retention": {"cohort_event": "signup", "return_events": ["login"], "periods": 2},
}


def make_lake(root: Path) -> Lake:
    """The sample lake at ``root`` (a data directory's ``lake``)."""
    return write_rows(root, ROWS)
