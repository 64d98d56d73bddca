"""Quarantine rules and IP blocks over the control-plane API, behind the collector as `tally
serve` runs it: answers match their schemas, refusals say what to fix, the admin key and loopback
decide who may change them, and the query API's answers (cached ones included) follow the rules;
bots count only with ``include_bots=true``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from admin.conftest import LOCAL, REMOTE, client
from metrics.lakerows import write_rows
from query.responses import error_message, valid
from tallystick import messages
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.store import ControlStore

T0 = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
ADMIN = "the-admin-key"
COUNT = "/v1/query/count?event=login&from=2026-03-01&to=2026-03-31&grain=month"


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "name": "login",
            "client_ts": T0 + dt.timedelta(hours=i),
            "user_id": f"u{i % 3}",
            "agent_is_bot": i % 5 == 0,
            "geo_network": f"203.0.{i % 2}.0/24",
        }
        for i in range(15)
    ]


@pytest.fixture
def server(settings: Settings) -> Collector:
    write_rows(settings.lake_dir, _rows())
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "logins.yaml").write_text(
        "name: logins\ntitle: Logins\ntype: count\ngrain: month\nparams: {event: login}\n"
    )
    return Collector(settings)  # its lifespan closes the APIs' stores


@pytest.fixture
def local(server: Collector) -> Iterator[TestClient]:
    with client(server, LOCAL) as c:
        yield c


def events(c: TestClient, url: str = COUNT) -> int:
    response = c.get(url)
    assert response.status_code == 200, response.text
    return int(response.json()["rows"][0]["events"])


def test_quarantine_over_http_moves_answers_and_lifting_moves_them_back(local: TestClient) -> None:
    assert events(local) == 12  # 3 of 15 are bots
    assert events(local, COUNT + "&include_bots=true") == 15
    added = local.post(
        "/v1/admin/quarantine",
        json={"ip": "203.0.1.0/24", "reason": "scraper", "from": "2026-03-02"},
    )
    assert added.status_code == 201, added.text
    valid("QuarantineRuleChanged", added.json())
    rule = added.json()["rule"]
    assert (rule["kind"], rule["field"], rule["created_by"]) == (
        "ip",
        "geo.network",
        "http:loopback",
    )
    # the answer kept from before is not reused: it was computed with other rules
    assert events(local) == 12 - 6  # odd i: 7 events, one (i=5) a bot
    assert events(local, COUNT + "&include_bots=true") == 15 - 7
    listed = local.get("/v1/admin/quarantine").json()
    valid("QuarantineRules", listed)
    assert [(r["id"], r["events"]) for r in listed["rules"]] == [(rule["id"], 7)]

    lifted = local.post(f"/v1/admin/quarantine/{rule['id']}/lift")
    assert lifted.status_code == 200, lifted.text
    valid("QuarantineRuleChanged", lifted.json())
    assert lifted.json()["rule"]["active"] is False
    assert events(local) == 12
    assert local.get("/v1/admin/quarantine").json() == {"rules": []}
    everything = local.get("/v1/admin/quarantine?all=true").json()["rules"]
    assert [(r["active"], r["events"]) for r in everything] == [(False, None)]
    again = local.post(f"/v1/admin/quarantine/{rule['id']}/lift")
    assert "was lifted already" in error_message(again, 409, messages.CONFLICT)
    log = local.get("/v1/admin/audit-log?kind=quarantine").json()
    valid("AuditLog", log)
    assert [(e["action"], e["actor"]) for e in log["entries"]] == [
        ("lift", "http:loopback"),
        ("add", "http:loopback"),
    ]


def test_catalog_metrics_and_queries_take_include_bots(local: TestClient) -> None:
    metric = "/v1/metrics/logins?from=2026-03-01&to=2026-03-31"
    assert events(local, metric) == 12
    assert events(local, metric + "&include_bots=true") == 15
    body = local.post(
        "/v1/query/count",
        json={"event": "login", "grain": "month", "from": "2026-03-01", "include_bots": True},
    )
    assert body.json()["rows"][0]["events"] == 15
    wrong = local.get(COUNT + "&include_bots=maybe")
    assert "include_bots" in error_message(wrong, 400, messages.INVALID_QUERY)


BAD_RULES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"reason": "x"}, 400, messages.INVALID_QUERY, "give exactly one of user, session"),
    (
        {"user": "a", "session": "b", "reason": "x"},
        400,
        messages.INVALID_QUERY,
        "not user and session",
    ),
    (
        {"user": "a", "reason": "x", "until": "z"},
        400,
        messages.INVALID_QUERY,
        "unknown key 'until'",
    ),
    ({"user": 7, "reason": "x"}, 400, messages.INVALID_QUERY, "user must be a string"),
    (
        {"user": "a"},
        400,
        messages.INVALID_DEFINITION,
        "reason: say why the data is quarantined",
    ),
    (
        {"ip": "203.0.113.9", "reason": "x"},
        400,
        messages.INVALID_DEFINITION,
        "Quarantine 203.0.113.0/24",
    ),
    ({"where": "nope", "reason": "x"}, 400, messages.INVALID_DEFINITION, "write FIELD=VALUE"),
]


def test_bad_rules_are_refused_saying_why(local: TestClient) -> None:
    for body, status, code, says in BAD_RULES:
        response = local.post("/v1/admin/quarantine", json=body)
        assert says in error_message(response, status, code), body
    assert local.get("/v1/admin/quarantine").json() == {"rules": []}  # nothing half-written


def test_unknown_ids_are_404(local: TestClient) -> None:
    missing = local.post("/v1/admin/quarantine/9/lift")
    assert "no quarantine rule 9; GET /v1/admin/quarantine lists them" in error_message(
        missing, 404, messages.NOT_FOUND
    )
    assert local.post("/v1/admin/quarantine/x/lift").status_code == 404
    assert local.delete("/v1/admin/blocks/9").status_code == 404
    assert local.get("/v1/admin/quarantine?all=perhaps").status_code == 400


def test_blocks_over_http(local: TestClient) -> None:
    added = local.post("/v1/admin/blocks", json={"network": "198.51.100.0/24", "reason": "bot"})
    assert added.status_code == 201, added.text
    valid("BlockChanged", added.json())
    block = added.json()["block"]
    twice = local.post("/v1/admin/blocks", json={"network": "198.51.100.0/24", "reason": "b"})
    assert "blocked already" in error_message(twice, 409, messages.CONFLICT)
    listed = local.get("/v1/admin/blocks").json()
    valid("Blocks", listed)
    assert [(b["network"], b["requests_refused"]) for b in listed["blocks"]] == [
        ("198.51.100.0/24", 0)
    ]
    removed = local.delete(f"/v1/admin/blocks/{block['id']}")
    assert removed.status_code == 200, removed.text
    valid("BlockChanged", removed.json())
    assert local.get("/v1/admin/blocks").json() == {"blocks": []}
    assert len(local.get("/v1/admin/blocks?all=1").json()["blocks"]) == 1
    bad = local.post("/v1/admin/blocks", json={"network": "10.1.2.3/8", "reason": "x"})
    assert "host bits set" in error_message(bad, 400, messages.INVALID_DEFINITION)


def test_who_may_change_rules(settings: Settings) -> None:
    write_rows(settings.lake_dir, _rows())
    app = Collector(settings)
    body = {"user": "u1", "reason": "x"}
    with client(app, REMOTE) as remote:
        assert remote.get("/v1/admin/quarantine").status_code == 200
        refused = remote.post("/v1/admin/quarantine", json=body)
        assert error_message(refused, 403, messages.FORBIDDEN)
        assert (
            remote.post(
                "/v1/admin/blocks", json={"network": "10.0.0.0/8", "reason": "x"}
            ).status_code
            == 403
        )
    keyed = Collector(settings.with_changes(admin_key=ADMIN))
    with client(keyed, REMOTE) as remote:
        assert remote.post("/v1/admin/quarantine", json=body).status_code == 401
        headers = {"Authorization": f"Bearer {ADMIN}"}
        assert remote.post("/v1/admin/quarantine", json=body, headers=headers).status_code == 201
    with ControlStore.for_settings(settings) as store:
        entries = store.audit_log(kind="quarantine")
    assert [(e.action, e.actor) for e in entries] == [("add", "http:admin-key")]
