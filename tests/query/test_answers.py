"""Kept answers: reused while the lake files behind them are unchanged, computed again as soon as
a file is added, replaced or removed — checked alone and through the HTTP API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from functools import partial

import pytest
from starlette.testclient import TestClient

from support import load, make_event
from tallystick.collect.app import Collector
from tallystick.query.answers import Answers
from tallystick.query.app import QueryApp
from tallystick.store.lake import Lake

# (asks as (question, stamp), how many computations they cost)
CASES: list[tuple[str, list[tuple[str, Hashable]], int]] = [
    ("same question, same stamp", [("q", 1), ("q", 1), ("q", 1)], 1),
    ("the stamp changes", [("q", 1), ("q", 2), ("q", 2), ("q", 1)], 3),
    ("two questions", [("a", 1), ("b", 1), ("a", 1), ("b", 1)], 2),
]


@pytest.mark.parametrize(("asks", "computed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answers_are_computed_once_per_stamp(
    asks: list[tuple[str, Hashable]], computed: int
) -> None:
    answers = Answers()
    calls: list[str] = []

    def compute(question: str, stamp: Hashable) -> str:
        calls.append(question)
        return f"{question}{stamp}"

    for question, stamp in asks:
        got = answers.get(question, stamp, partial(compute, question, stamp))
        assert got == f"{question}{stamp}"
    assert len(calls) == computed
    assert answers.misses == computed
    assert answers.hits == len(asks) - computed


def test_least_recently_used_answers_go_first_and_big_ones_are_not_kept() -> None:
    answers = Answers(max_answers=2)
    answers.get("a", 0, lambda: "A")
    answers.get("b", 0, lambda: "B")
    answers.get("a", 0, lambda: "never")  # a is now the most recent
    answers.get("c", 0, lambda: "C")  # b goes
    assert answers.get("a", 0, lambda: "again") == "A"
    assert answers.get("b", 0, lambda: "B2") == "B2"
    answers.get("big", 0, lambda: "X" * 10, keep=lambda v: len(v) < 5)
    assert answers.get("big", 0, lambda: "fresh") == "fresh"


def _count(client: TestClient) -> list[int]:
    response = client.get(
        "/v1/query/count",
        params={"event": "user.login", "from": "2026-03-02", "to": "2026-03-08", "grain": "week"},
    )
    assert response.status_code == 200, response.text
    return [r["events"] for r in response.json()["rows"]]


def _login(day: str) -> dict[str, object]:
    return make_event("user.login", client_ts=f"{day}T12:00:00Z")


def _send(app: Collector, client: TestClient, events: list[dict[str, object]]) -> None:
    assert client.post("/v1/events", json=events).status_code == 200
    load(app.settings, app)


def test_http_answers_follow_the_lake(app: Collector, collector: TestClient, lake: Lake) -> None:
    _send(app, collector, [_login("2026-03-03"), _login("2026-03-04")])
    assert _count(collector) == [2]
    query = app.query_app()
    answers = query.answers  # type: ignore[attr-defined]
    assert isinstance(answers, Answers)
    misses = answers.misses
    assert _count(collector) == [2]
    assert answers.misses == misses  # the second ask was answered from memory

    _send(app, collector, [_login("2026-03-05")])  # a new file in the range
    assert _count(collector) == [3]
    _send(app, collector, [_login("2026-04-20")])  # a file outside the range
    hits = answers.hits
    assert _count(collector) == [3]
    assert answers.hits == hits + 1

    for path in lake.files():  # files removed (as retention will) change the answer too
        if "date=2026-03-05" in path:
            lake.storage.delete(path)
    assert _count(collector) == [2]


def test_meta_is_kept_until_the_lake_changes(app: Collector, collector: TestClient) -> None:
    _send(app, collector, [_login("2026-03-03")])
    first = collector.get("/v1/meta").json()
    assert first["events"] == [{"name": "user.login", "count": 1}]
    assert collector.get("/v1/meta").json() == first
    _send(app, collector, [make_event("page.view", client_ts="2026-03-03T13:00:00Z")])
    names = {e["name"] for e in collector.get("/v1/meta").json()["events"]}
    assert names == {"user.login", "page.view"}
    assert dt.date.fromisoformat(first["today"]) == dt.datetime.now(dt.UTC).date()


def test_priming_keeps_the_first_answers_every_page_asks_for(
    app: Collector, collector: TestClient
) -> None:
    _send(app, collector, [_login(dt.datetime.now(dt.UTC).date().isoformat())])
    query = app.query_app()
    assert isinstance(query, QueryApp)
    query.prime()
    answers = query.answers
    assert answers is not None
    misses = answers.misses
    assert collector.get("/v1/meta").json()["events"] == [{"name": "user.login", "count": 1}]
    assert sum(d["received"] for d in collector.get("/v1/health").json()["days"]) == 1
    assert answers.misses == misses
