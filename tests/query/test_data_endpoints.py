"""GET /v1/meta and GET /v1/health through the collector in-process: events sent to /v1/events
(and refused ones) come back as the picker lists and per-day health figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from query.responses import error_message, valid
from support import load, make_event
from tallystick import messages
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.metrics.registry import default_range
from tallystick.query.overview import NO_LOSS
from tallystick.schema import FIELDS

D = dt.date.fromisoformat


def _time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    assert value.utcoffset() == dt.timedelta(0), text
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- /v1/meta ----------------------------------------------------------------------------------


def _sent(name: str, day: str, data: dict[str, Any]) -> dict[str, Any]:
    return make_event(name, client_ts=f"{day}T12:00:00Z", data=data)


def test_meta_lists_what_the_lake_holds(
    app: Collector, collector: TestClient, settings: Settings
) -> None:
    events = [
        *[_sent("user.login", "2026-03-01", {"old_key": 1}) for _ in range(2)],
        *[_sent("project.commit", "2026-03-03", {"files": 3}) for _ in range(3)],
        _sent("signin.open", "2026-03-04", {"variant": "b"}),
        _sent("page.view", "2026-03-05", {}),
    ]
    before = _now()
    assert collector.post("/v1/events", json=events).status_code == 200
    again = collector.post("/v1/events", json=events[:1])  # a re-sent copy
    assert again.status_code == 200
    after = _now()
    load(settings, app)

    response = collector.get("/v1/meta")
    assert response.status_code == 200, response.text
    body = response.json()
    valid("Meta", body)
    assert before <= _time(body["data_as_of"]) <= after
    assert _time(body["latest_event"]) == dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC)
    assert (body["first_day"], body["last_day"]) == ("2026-03-01", "2026-03-05")
    assert D(body["today"]) in {before.date(), after.date()}
    assert body["events"] == [
        {"name": "project.commit", "count": 3},
        {"name": "user.login", "count": 3},  # the copy counts here (the docs say so)
        {"name": "page.view", "count": 1},
        {"name": "signin.open", "count": 1},
    ]
    assert body["data_keys"] == ["data.files", "data.variant"]  # the 3 latest partitions
    assert body["fields"] == [
        f.path for f in FIELDS if f.kind in ("string", "bool", "int")
    ]  # what where/breakdown take, in schema order
    assert {"app.instance", "user.id", "session.seq", "user.is_logged_in"} <= set(body["fields"])
    assert not {"client_ts", "data", "experiments", "sample.rate"} & set(body["fields"])


def test_meta_of_an_empty_lake(collector: TestClient) -> None:
    response = collector.get("/v1/meta")
    assert response.status_code == 200, response.text
    body = response.json()
    valid("Meta", body)
    assert {k: v for k, v in body.items() if k not in ("today", "fields")} == {
        "data_as_of": None,
        "latest_event": None,
        "first_day": None,
        "last_day": None,
        "events": [],
        "data_keys": [],
    }
    assert body["fields"]


# -- /v1/health --------------------------------------------------------------------------------


def test_health_counts_received_and_failed_events_per_day(
    app: Collector, collector: TestClient, settings: Settings
) -> None:
    good = [make_event(client_ts="2026-01-10T08:00:00Z") for _ in range(5)]
    bad_name, bad_id = make_event(name="Bad Name"), make_event(event_id="nope")
    unknown = make_event(colour="blue")
    before = _now()
    mixed = collector.post("/v1/events", json=[*good, bad_name, bad_id, unknown])
    assert mixed.status_code == 207, mixed.text
    assert collector.post("/v1/events", json=good[:2]).status_code == 200  # copies
    assert collector.post("/v1/events", content=b"{nope").status_code == 400
    after = _now()
    load(settings, app)
    invalid = {e["message"] for e in mixed.json()["errors"] if e["code"] == "invalid_field"}

    first = before.date() - dt.timedelta(days=2)
    response = collector.get("/v1/health", params={"from": str(first), "to": str(after.date())})
    assert response.status_code == 200, response.text
    body = response.json()
    valid("Health", body)
    assert (body["from"], body["to"]) == (str(first), str(after.date()))
    days = [D(d["day"]) for d in body["days"]]
    assert days == [first + dt.timedelta(days=n) for n in range(len(days))]
    assert days[-1] == after.date()
    busy = [d for d in body["days"] if d["received"] or d["failed"]]
    assert sum(d["received"] for d in busy) == 5  # the copies count once
    assert sum(d["failed"] for d in busy) == 4
    assert {D(d["day"]) for d in busy} <= {before.date(), after.date()}
    reasons = body["failed_by_reason"]
    assert [(r["code"], r["count"]) for r in reasons] == [
        ("invalid_field", 2),
        ("malformed_json", 1),  # a tie: by code
        ("unknown_field", 1),
    ]
    assert reasons[0]["example"] in invalid
    assert "colour" in reasons[2]["example"]
    for reason in reasons:
        assert before <= _time(reason["latest"]) <= after
    assert _time(body["latest_event"]) == dt.datetime(2026, 1, 10, 8, tzinfo=dt.UTC)
    assert before <= _time(body["latest_received"]) <= after
    assert (body["spool_backlog"], body["quarantined"]) == (0, 0)
    assert body["loss_rate"] is None  # no event carries session.seq
    assert body["notes"] == [NO_LOSS]
    received = sum(d["received"] for d in body["days"])
    assert body["bot_rate"] == sum(d["bots"] for d in body["days"]) / received


def test_health_reports_the_spool_backlog(
    app: Collector, collector: TestClient, settings: Settings
) -> None:
    assert collector.post("/v1/events", json=[make_event()]).status_code == 200
    app.spool.seal()  # a sealed segment the loader has not taken yet
    body = collector.get("/v1/health").json()
    assert body["spool_backlog"] == 1
    assert sum(d["received"] for d in body["days"]) == 0


def test_health_defaults_to_the_analyses_range_and_an_empty_lake_is_zeros(
    collector: TestClient,
) -> None:
    response = collector.get("/v1/health")
    assert response.status_code == 200, response.text
    body = response.json()
    valid("Health", body)
    start, end = default_range(D(body["to"]))
    assert D(body["to"]) in {_now().date(), _now().date() - dt.timedelta(days=1)}
    assert D(body["from"]) == start
    assert len(body["days"]) == (end - start).days + 1
    assert {(d["received"], d["failed"]) for d in body["days"]} == {(0, 0)}
    assert body["failed_by_reason"] == []
    assert (body["latest_event"], body["latest_received"]) == (None, None)
    only_to = collector.get("/v1/health", params={"to": "2026-03-31"}).json()
    assert (only_to["from"], only_to["to"]) == ("2026-01-12", "2026-03-31")
    only_from = collector.get("/v1/health", params={"from": "2026-03-01"}).json()
    assert only_from["from"] == "2026-03-01"
    assert D(only_from["to"]) == D(body["to"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-13-01", "from '2026-13-01' is not a date: write YYYY-MM-DD"),
        ("to=2026-02-30", "to '2026-02-30' is not a date: write YYYY-MM-DD"),
        ("from=yesterday", "from 'yesterday' is not a date"),
        ("from=2026-03-02&to=2026-03-01", "to 2026-03-01 is before from 2026-03-02"),
        ("from=2000-01-01&to=2026-01-01", "is more than 3,660 days: ask for a shorter range"),
        ("from=2026-03-01&from=2026-03-02", "parameter 'from' is given twice: give it once"),
        ("grain=week", "health does not take grain; it takes from and to"),
    ],
)
def test_bad_health_parameters_are_400s_saying_what_to_write(
    collector: TestClient, query: str, message: str
) -> None:
    assert message in error_message(
        collector.get(f"/v1/health?{query}"), 400, messages.INVALID_QUERY
    )


@pytest.mark.parametrize("path", ["/v1/meta", "/v1/health", "/v1/catalog"])
def test_meta_health_and_catalog_only_answer_get(collector: TestClient, path: str) -> None:
    response = collector.post(path, json={})
    assert "use GET" in error_message(response, 405, messages.METHOD_NOT_ALLOWED)
    assert response.headers["allow"] == "GET"


def test_an_unknown_v1_path_is_a_404_pointing_at_the_list(collector: TestClient) -> None:
    message = error_message(collector.get("/v1/nope"), 404, messages.NOT_FOUND)
    assert message == (
        "no such endpoint: GET /v1/nope; events go to POST /v1/events and GET /v1 lists the API."
    )
