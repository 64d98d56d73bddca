"""The control-plane API for a reader who may not see every stream (a server without an admin
key lets read keys read ``/v1/admin/...``): private streams it is not granted, and the models
that read them, are absent from every listing and a 404 by name; audit entries and check
results about them are left out; admin and granted principals see them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from admin.conftest import client
from metrics.lakerows import to_table
from tallystick.admin.app import ControlApi
from tallystick.collect.asgi import Receive, Scope, Send
from tallystick.config import Settings
from tallystick.control.definitions import parse_model, parse_stream
from tallystick.control.principal import SCOPE_KEY, Principal
from tallystick.control.store import CheckRun, ControlStore
from tallystick.store.lake import Lake

UNGRANTED = Principal(kind="read", name="key:3:everyone", key_id=3, streams=frozenset())
GRANTED = Principal(kind="read", name="key:2:finance", key_id=2, streams=frozenset({"vault"}))
ADMIN = Principal(kind="admin", name="key:1:ops", key_id=1)
SECRETS = ("vault", "vault_model", "data.vault_amount")
TODAY = dt.datetime.now(dt.UTC).replace(hour=1, minute=0, second=0, microsecond=0)


class As:
    """``app`` with the router's principal set, as the collector sets it."""

    def __init__(self, app: ControlApi, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, SCOPE_KEY: self.principal}
        await self.app(scope, receive, send)


@pytest.fixture
def control(settings: Settings) -> Iterator[ControlApi]:
    with ControlStore.for_settings(settings) as store:
        store.put_stream(parse_stream({"name": "web", "events": ["page.*"]}), "test")
        store.put_stream(
            parse_stream({"name": "vault", "events": ["vault.*"], "private": True}), "test"
        )
        store.put_model(
            parse_model({"name": "vault_model", "stream": "vault", "fields": ["user.id"]}), "test"
        )
        store.put_model(
            parse_model({"name": "web_model", "stream": "web", "fields": ["user.id"]}), "test"
        )
        store.record_checks(
            [
                CheckRun("model", name, "not_null user_id", {}, True, 0, 1, "ok")
                for name in ("vault_model", "web_model")
            ]
        )
    rows: list[dict[str, Any]] = [
        {"event_id": "e1", "name": "page.view", "client_ts": TODAY, "stream": "web"},
        {
            "event_id": "e2",
            "name": "vault.deal",
            "client_ts": TODAY,
            "stream": "vault",
            "data": {"vault_amount": 3},
        },
    ]
    Lake(settings.lake_dir).write_events(to_table(rows), "fixture")
    api = ControlApi(settings)
    yield api
    api.close()


def _as(control: ControlApi, principal: Principal) -> TestClient:
    return client(As(control, principal))


READS = (
    "/v1/admin/streams",
    "/v1/admin/models",
    "/v1/admin/checks",
    "/v1/admin/audit-log",
    "/v1/admin/config",
    "/v1/admin/config?format=yaml",
    "/v1/catalog/streams",
    "/v1/catalog/models",
    "/v1/catalog/fields",
    "/v1/catalog/search?q=deal",
)


def test_an_ungranted_reader_sees_nothing_of_a_private_stream(control: ControlApi) -> None:
    with _as(control, UNGRANTED) as c:
        for path in READS:
            response = c.get(path)
            assert response.status_code == 200, (path, response.text)
            assert not [s for s in SECRETS if s in response.text], (path, response.text)
        assert "web_model" in c.get("/v1/admin/models").text
        assert "data.vault_amount" not in c.get("/v1/catalog/fields").text
        for path in ("/v1/admin/streams/vault", "/v1/admin/models/vault_model"):
            response = c.get(path)
            assert response.status_code == 404, response.text
        assert c.get("/v1/admin/streams/web").status_code == 200
        assert c.get("/v1/audit").status_code == 403


@pytest.mark.parametrize("principal", [GRANTED, ADMIN], ids=["granted", "admin"])
def test_granted_and_admin_readers_see_it(control: ControlApi, principal: Principal) -> None:
    with _as(control, principal) as c:
        assert "vault" in {s["name"] for s in c.get("/v1/admin/streams").json()["streams"]}
        assert c.get("/v1/admin/streams/vault").status_code == 200
        assert c.get("/v1/admin/models/vault_model").status_code == 200
        assert "vault_model" in c.get("/v1/admin/checks").text
        audit = c.get("/v1/admin/audit-log").json()["entries"]
        assert {"vault", "vault_model"} <= {e["name"] for e in audit}
        fields = {f["name"] for f in c.get("/v1/catalog/fields").json()["fields"]}
        assert "data.vault_amount" in fields


def test_a_deleted_private_streams_stored_copies_stay_private(
    control: ControlApi, settings: Settings
) -> None:
    with ControlStore.for_settings(settings) as store:
        store.put_stream(
            parse_stream({"name": "retired", "events": ["old.*"], "private": True}), "test"
        )
        store.delete_stream("retired", "test")
    row = {"event_id": "e9", "name": "old.thing", "client_ts": TODAY, "stream": "retired"}
    Lake(settings.lake_dir).write_events(to_table([row]), "retired")
    with _as(control, UNGRANTED) as c:
        listed = c.get("/v1/catalog/streams")
        assert "retired" not in listed.text
    with _as(control, ADMIN) as c:
        other = c.get("/v1/catalog/streams").json()["other"]
        assert "retired" in {o["stream"] for o in other}
