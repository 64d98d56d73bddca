"""Streams applied by the collector: routing, curation, sampling, keep, expiry, enable/disable.

In-process (the collector app with its lifespan, a real SQLite control plane and the real
loader); ``tests/e2e/test_streams_live.py`` changes a running server's configuration."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import load, make_event
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.definitions import parse_configuration, parse_stream
from tallystick.control.sampling import keep
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def store(settings: Settings) -> Iterator[ControlStore]:
    with ControlStore.for_settings(settings) as s:
        yield s


def stored(lake: Lake) -> list[dict[str, Any]]:
    con = connect(lake)
    try:
        table = con.sql("SELECT * FROM raw_events ORDER BY stream, name, event_id").arrow()
        rows: list[dict[str, Any]] = table.read_all().to_pylist()
        return rows
    finally:
        con.close()


def send(
    client: TestClient, app: Collector, settings: Settings, events: list[dict[str, Any]]
) -> None:
    response = client.post("/v1/events", json=events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)
    load(settings, app)


def per_stream(lake: Lake) -> Counter[tuple[str | None, str]]:
    return Counter((r["stream"], r["name"]) for r in stored(lake))


def test_without_streams_every_event_is_stored_as_sent_in_unrouted(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    send(collector, app, settings, [make_event("project.commit"), make_event("signin.open")])
    assert per_stream(lake) == {("unrouted", "project.commit"): 1, ("unrouted", "signin.open"): 1}
    assert collector.get("/readyz").json() == {"status": "ready", "config_version": 0}


def test_routing_to_zero_one_or_several_streams(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    store.apply(
        parse_configuration(
            {
                "unrouted_stream": "undeclared",
                "streams": [
                    {"name": "product", "events": ["project.*", "signin.open"]},
                    {"name": "auth", "events": ["signin.*"]},
                    {"name": "debugging", "events": ["debug.*"], "enabled": False},
                ],
            }
        ),
        actor="test",
    )
    app.reload_controls()
    send(
        collector,
        app,
        settings,
        [
            make_event("project.commit"),
            make_event("signin.open"),
            make_event("signin.fail"),
            make_event("search.query"),
            make_event("debug.layout"),  # declared, but its only stream is off: not stored
        ],
    )
    assert per_stream(lake) == {
        ("product", "project.commit"): 1,
        ("product", "signin.open"): 1,
        ("auth", "signin.open"): 1,
        ("auth", "signin.fail"): 1,
        ("undeclared", "search.query"): 1,
    }
    con = connect(lake)
    try:  # two stored copies, one event: metrics count it once
        assert con.execute("SELECT count(*) FROM events").fetchone() == (4,)
    finally:
        con.close()


def test_curation_rules_drop_matching_events_from_that_stream_only(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    store.apply(
        parse_configuration(
            {
                "streams": [
                    {
                        "name": "prod",
                        "events": ["project.*"],
                        "curation": [
                            {"field": "app.environment", "op": "equals", "value": "test"},
                            {"field": "data.files", "op": "greater_than", "value": 100},
                            {"field": "page.url", "op": "contains", "value": "/admin"},
                        ],
                    },
                    {"name": "all", "events": ["project.*"]},
                ]
            }
        ),
        actor="test",
    )
    app.reload_controls()
    events = [
        make_event(app={"id": "web", "environment": "test"}),
        make_event(app={"id": "web", "environment": "production"}),
        make_event(data={"files": 101}),
        make_event(data={"files": 100}),
        make_event(page={"url": "https://x.org/admin/users"}),
    ]
    send(collector, app, settings, events)
    rows = stored(lake)
    kept = {r["event_id"] for r in rows if r["stream"] == "prod"}
    assert kept == {events[1]["event_id"], events[3]["event_id"]}
    assert sum(r["stream"] == "all" for r in rows) == 5


def test_sampling_keeps_the_same_sessions_and_records_the_rate(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    store.apply(
        parse_configuration(
            {
                "streams": [
                    {"name": "tenth", "events": ["*"], "sample": {"unit": "session", "rate": 0.1}},
                    {"name": "half", "events": ["*"], "sample": {"unit": "session", "rate": 0.5}},
                ]
            }
        ),
        actor="test",
    )
    app.reload_controls()
    sessions = [f"s-{i}" for i in range(400)]
    events = [make_event(session={"id": s, "seq": 1}) for s in sessions]
    events.append(make_event(session=None))  # no session id: kept, not re-weighted
    for start in range(0, len(events), 200):
        send(collector, app, settings, events[start : start + 200])
    rows = stored(lake)
    by_stream: dict[str, set[str | None]] = {"tenth": set(), "half": set()}
    for r in rows:
        sent = None if r["session_inferred"] else r["session_id"]  # the loader may infer one
        by_stream[r["stream"]].add(sent)
        expected = None if sent is None else {"tenth": 0.1, "half": 0.5}[r["stream"]]
        assert r["sample_rate"] == expected
        assert r["sample_unit"] == (None if expected is None else "session")
    assert by_stream["tenth"] - {None} == {s for s in sessions if keep("session", s, 0.1)}
    assert by_stream["half"] - {None} == {s for s in sessions if keep("session", s, 0.5)}
    assert by_stream["tenth"] <= by_stream["half"]  # nested
    assert None in by_stream["tenth"]


def test_keep_stores_only_the_listed_contextual_attributes(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    store.put_stream(
        parse_stream({"name": "lean", "events": ["*"], "keep": ["session", "page.url"]}), "test"
    )
    app.reload_controls()
    event = make_event(
        page={"url": "https://x.org/p", "referrer": "https://ref.org/"},
        agent={"user_agent": "Mozilla/5.0"},
        locale="de-DE",
    )
    send(collector, app, settings, [event])
    (row,) = stored(lake)
    assert row["session_id"] == "s-1"
    assert row["page_url"] == "https://x.org/p"
    assert row["user_id"] is None
    assert row["page_referrer"] is None
    assert row["agent_user_agent"] is None
    assert row["locale"] is None
    assert row["data"] == '{"files":3}'  # the event's own fields are always kept


@pytest.mark.parametrize(
    ("settings_of_stream", "collected"),
    [
        ({"enabled": True}, True),
        ({"enabled": False}, False),
        ({"expires": (NOW - dt.timedelta(minutes=1)).isoformat()}, False),
        ({"expires": (NOW + dt.timedelta(days=1)).isoformat()}, True),
        ({"starts": (NOW + dt.timedelta(days=1)).isoformat()}, False),
        ({"starts": (NOW - dt.timedelta(days=1)).isoformat()}, True),
    ],
)
def test_disabled_expired_or_not_started_streams_collect_nothing(
    app: Collector,
    collector: TestClient,
    settings: Settings,
    lake: Lake,
    store: ControlStore,
    settings_of_stream: dict[str, Any],
    collected: bool,
) -> None:
    store.put_stream(parse_stream({"name": "s", "events": ["*"], **settings_of_stream}), "test")
    app.reload_controls()
    send(collector, app, settings, [make_event()])
    assert per_stream(lake) == ({("s", "project.commit"): 1} if collected else {})


def test_reads_prefer_the_fullest_copy_of_an_event(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    store.apply(
        parse_configuration(
            {
                "streams": [
                    {"name": "a_lean", "events": ["*"], "keep": ["session"]},
                    {"name": "full", "events": ["*"]},
                ]
            }
        ),
        actor="test",
    )
    app.reload_controls()
    send(collector, app, settings, [make_event(client={"library": "tallystick-js"})] * 1)
    con = connect(lake)
    try:
        rows = con.execute("SELECT stream, user_id, client_library FROM events").fetchall()
    finally:
        con.close()
    assert rows == [("full", "u-1", "tallystick-js")]
    from tallystick.metrics.api import run
    from tallystick.metrics.engines import DuckDBEngine
    from tallystick.metrics.registry import build

    analysis = build("count", {"event": "project.commit", "breakdown": "client.library"})
    outcome = run(analysis, DuckDBEngine(lake))
    assert {r["breakdown"] for r in outcome.rows} == {"tallystick-js"}  # never empty
    assert sum(r["events"] for r in outcome.rows) == 1


def test_what_streams_decline_is_counted_with_its_reason(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake, store: ControlStore
) -> None:
    past = (NOW - dt.timedelta(days=1)).isoformat()
    store.apply(
        parse_configuration(
            {
                "streams": [
                    {"name": "off", "events": ["project.*"], "enabled": False},
                    {"name": "old", "events": ["project.commit"], "expires": past},
                    {
                        "name": "prod",
                        "events": ["*"],
                        "curation": [{"field": "data.files", "op": "greater_than", "value": 5}],
                    },
                    {"name": "tenth", "events": ["*"], "sample": {"unit": "session", "rate": 0.1}},
                ]
            }
        ),
        actor="test",
    )
    app.reload_controls()
    sessions = [f"s-{i}" for i in range(50)]
    events = [make_event(session={"id": s, "seq": 1}, data={"files": 9}) for s in sessions]
    send(collector, app, settings, events)
    sampled_out = sum(not keep("session", s, 0.1) for s in sessions)
    con = connect(lake)
    try:
        rows = con.execute(
            "SELECT stream, reason, name, sum(count) FROM declined_events GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    assert rows == [
        ("off", "disabled", "project.commit", 50),
        ("old", "expired", "project.commit", 50),
        ("prod", "curated", "project.commit", 50),
        ("tenth", "sampled_out", "project.commit", sampled_out),
    ]
    from tallystick.store.health import declined

    assert declined(lake, NOW.date()) == {
        "off": {"disabled": 50},
        "old": {"expired": 50},
        "prod": {"curated": 50},
        "tenth": {"sampled_out": sampled_out},
    }
