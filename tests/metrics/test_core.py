"""Core-action metric on both engines against the reference and hand-computed numbers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from metrics.harness import check

D = dt.date.fromisoformat
_RECEIVED = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
_n = 0


def ev(name: str, ts: str, user: str | None = "u1", **cols: Any) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"e{_n:06d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(ts),
        "received_ts": _RECEIVED + dt.timedelta(seconds=_n),
        "user_id": user,
        **cols,
    }


# Week of Mon 2026-01-05 .. Sun 2026-01-11, then the week of 2026-01-12.
ROWS = [
    # Sunday 23:30 at -02:00 is Monday 01:30Z: it belongs to the week of 2026-01-05.
    ev("login", "2026-01-04T23:30:00-02:00", "u1", data={"site": "a"}),
    ev("create", "2026-01-05T09:00:00+00:00", "u1", data={"site": "a"}),
    # Monday 00:30 at +01:00 is Sunday 23:30Z: it belongs to the week of 2025-12-29.
    ev("login", "2026-01-05T00:30:00+01:00", "u2", data={"site": "b"}),
    ev("login", "2026-01-06T10:00:00+00:00", "u2", data={"site": "b"}),
    ev("create", "2026-01-06T11:00:00+00:00", None, data={"site": "b"}),  # anonymous
    ev("create", "2026-01-07T11:00:00+00:00", "", data={"site": "c"}),  # empty user
    ev("login", "2026-01-20T10:00:00+00:00", "u3"),  # week of 2026-01-19, no site
]
# A later copy of the first create, received later with another user: ignored.
ROWS.append({**ROWS[1], "received_ts": _RECEIVED + dt.timedelta(days=1), "user_id": "u9"})


def test_weekly_core_actions_with_shares(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "core",
        actions="create,login",
        active="login",
        grain="week",
        **{"from": "2026-01-01", "to": "2026-01-25"},
    )
    got = {(r["period"], r["action"]): (r["users"], r["active_users"], r["share"]) for r in rows}
    assert got == {
        (D("2025-12-29"), "create"): (0, 1, 0.0),
        (D("2025-12-29"), "login"): (1, 1, 1.0),
        (D("2026-01-05"), "create"): (1, 2, 0.5),
        (D("2026-01-05"), "login"): (2, 2, 1.0),
        (D("2026-01-12"), "create"): (0, 0, None),  # empty week: zeros, share None
        (D("2026-01-12"), "login"): (0, 0, None),
        (D("2026-01-19"), "create"): (0, 1, 0.0),
        (D("2026-01-19"), "login"): (1, 1, 1.0),
    }


def test_breakdown_grid_includes_values_of_anonymous_events(tmp_path: Path) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "core",
        actions="create",
        active="login",
        grain="month",
        breakdown="data.site",
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [(r["breakdown"], r["users"], r["active_users"]) for r in rows] == [
        ("a", 1, 1),
        ("b", 0, 1),
        ("c", 0, 0),  # only an anonymous event carries site c
        (None, 0, 1),
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["data.site=a"], [1, 1]),
        (["data.site!=a"], [0, 2]),
        (["data.site in a,b"], [1, 2]),
    ],
)
def test_filters(tmp_path: Path, where: list[str], expected: list[int]) -> None:
    rows = check(
        tmp_path,
        ROWS,
        "core",
        actions="create",
        active="login",
        grain="month",
        where=where,
        **{"from": "2026-01-01", "to": "2026-01-31"},
    )
    assert [rows[0]["users"], rows[0]["active_users"]] == expected
