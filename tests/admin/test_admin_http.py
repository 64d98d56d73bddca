"""The control-plane API behind the collector, as `tally serve` runs it: every route it lists is
served (and documented in the OpenAPI document), answers match their schemas, and the read key,
the admin key and loopback decide who may call what."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.testclient import TestClient

from admin.conftest import LOCAL, REMOTE, client
from metrics.lakerows import to_table
from query.responses import DOC, error_message, valid
from tallystick import messages
from tallystick.admin.app import ControlApi
from tallystick.collect.app import ENDPOINTS, Collector, is_control_path
from tallystick.config import Settings
from tallystick.control.store import CheckRun, ControlStore
from tallystick.store.lake import Lake

READ = "the-read-key"
ADMIN = "the-admin-key"

CONTROL_ROUTES = [r for r in ENDPOINTS if is_control_path(r.split()[1])]


def _served(api: ControlApi) -> set[str]:
    out = set()
    for route in api.routes:
        path = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", route.pattern.pattern)
        path = path.removeprefix("^").removesuffix("/?$").replace("\\", "")
        out |= {f"{method} {path}" for method in route.methods}
    return out


def test_the_listed_routes_are_the_served_ones(settings: Settings) -> None:
    api = ControlApi(settings)
    assert set(CONTROL_ROUTES) == _served(api)
    documented = {
        f"{method.upper()} {path}"
        for path, operations in DOC["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert set(CONTROL_ROUTES) <= documented


@pytest.mark.parametrize("route", CONTROL_ROUTES)
def test_the_openapi_document_describes_each_route(route: str) -> None:
    method, path = route.split()
    operation = DOC["paths"][path][method.lower()]
    assert operation["summary"]
    assert operation["description"]
    responses = operation["responses"]
    assert {"200", "401"} <= set(responses)
    if path.startswith("/v1/admin/") and method != "GET":
        assert "403" in responses
        assert operation["security"][0] == {"adminKey": []}
    for example in [
        media["example"]
        for media in operation.get("requestBody", {}).get("content", {}).values()
        if "example" in media
    ]:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": DOC["components"]}).validate(
            example
        )
    ids = [
        op["operationId"]
        for item in DOC["paths"].values()
        for key, op in item.items()
        if key != "parameters"
    ]
    assert ids.count(operation["operationId"]) == 1


@pytest.fixture
def behind_collector(settings: Settings) -> Iterator[tuple[Collector, Settings]]:
    app = Collector(settings)
    yield app, settings
    api = app.control_api()
    assert isinstance(api, ControlApi)
    api.close()


def test_answers_match_their_schemas(behind_collector: tuple[Collector, Settings]) -> None:
    app, settings = behind_collector
    now = dt.datetime.now(dt.UTC)
    row = {"event_id": "e1", "name": "project.commit", "client_ts": now, "stream": "product"}
    Lake(settings.lake_dir).write_events(to_table([{**row, "data": {"files": 2}}]), "one")
    with client(app, LOCAL) as c:
        stream = {"name": "product", "events": ["project.*"], "sample": {"rate": 0.1}}
        valid("StreamChanged", c.post("/v1/admin/streams", json=stream).json())
        valid("Stream", c.get("/v1/admin/streams/product").json())
        valid("StreamChanged", c.post("/v1/admin/streams/product/renew", json={"days": 9}).json())
        valid("Streams", c.get("/v1/admin/streams").json())
        model = {"name": "commits", "stream": "product", "fields": ["user.id"]}
        valid("ModelChanged", c.post("/v1/admin/models", json=model).json())
        valid("Model", c.get("/v1/admin/models/commits").json())
        valid("Models", c.get("/v1/admin/models").json())
        with ControlStore.for_settings(settings) as store:
            store.record_checks(
                [CheckRun("model", "commits", "not_null(user_id)", {}, False, 2, 9, "2 nulls")]
            )
        valid("Checks", c.get("/v1/admin/checks").json())
        valid("CatalogModels", c.get("/v1/catalog/models").json())
        valid("CatalogStreams", c.get("/v1/catalog/streams").json())
        fields = c.get("/v1/catalog/fields").json()
        assert "data.files" in [f["name"] for f in fields["fields"]]
        valid("Fields", fields)
        hits = c.get("/v1/catalog/search", params={"q": "product files"}).json()
        assert hits["hits"], hits
        valid("SearchHits", hits)
        valid("AuditLog", c.get("/v1/admin/audit-log").json())
        config = c.get("/v1/admin/config").json()
        valid("Configuration", config)
        valid("Plan", c.post("/v1/admin/config/plan", json=config).json())
        valid("Applied", c.post("/v1/admin/config/apply", json=config).json())
        valid("Deleted", c.delete("/v1/admin/models/commits").json())
        error = c.get("/v1/admin/streams/nope")
        valid("Error", error.json())
        assert error.status_code == 404


def _keyed(tmp_path: Path, read_key: str | None, admin_key: str | None) -> Collector:
    settings = Settings(data=tmp_path / "data", min_free_bytes=0, read_key=read_key)
    return Collector(settings.with_changes(admin_key=admin_key))


def _status(c: TestClient, method: str, path: str, key: str | None, body: Any = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return c.request(method, path, headers=headers, json=body).status_code


# (case, read key, admin key, client, method, path, key sent, status)
ACCESS: list[tuple[str, str | None, str | None, tuple[str, int], str, str, str | None, int]] = [
    ("no keys, local write", None, None, LOCAL, "POST", "/v1/admin/streams", None, 201),
    ("no keys, remote write", None, None, REMOTE, "POST", "/v1/admin/streams", None, 403),
    ("no keys, remote read", None, None, REMOTE, "GET", "/v1/admin/streams", None, 200),
    ("read key, catalog without", READ, None, REMOTE, "GET", "/v1/catalog/streams", None, 401),
    ("read key, catalog with", READ, None, REMOTE, "GET", "/v1/catalog/streams", READ, 200),
    ("read key, local write without", READ, None, LOCAL, "POST", "/v1/admin/streams", None, 401),
    ("read key, local write with", READ, None, LOCAL, "POST", "/v1/admin/streams", READ, 201),
    ("admin key, remote write", None, ADMIN, REMOTE, "POST", "/v1/admin/streams", ADMIN, 201),
    ("admin key, local write without", None, ADMIN, LOCAL, "POST", "/v1/admin/streams", None, 401),
    ("admin key, admin read without", None, ADMIN, LOCAL, "GET", "/v1/admin/streams", None, 401),
    # an admin key reads too, so with one, reads need a key
    ("admin key, catalog without", None, ADMIN, REMOTE, "GET", "/v1/catalog/models", None, 401),
    ("admin key, catalog with it", None, ADMIN, REMOTE, "GET", "/v1/catalog/models", ADMIN, 200),
    ("both, write with read key", READ, ADMIN, LOCAL, "POST", "/v1/admin/streams", READ, 403),
    ("both, catalog with admin key", READ, ADMIN, REMOTE, "GET", "/v1/catalog/models", ADMIN, 200),
    ("unknown path", READ, ADMIN, REMOTE, "GET", "/v1/admin/nope", ADMIN, 404),
    ("unknown path, no key", READ, ADMIN, REMOTE, "GET", "/v1/admin/nope", None, 401),
]


@pytest.mark.parametrize(
    ("read_key", "admin_key", "address", "method", "path", "key", "status"),
    [a[1:] for a in ACCESS],
    ids=[a[0] for a in ACCESS],
)
def test_who_may_call_what(
    tmp_path: Path,
    read_key: str | None,
    admin_key: str | None,
    address: tuple[str, int],
    method: str,
    path: str,
    key: str | None,
    status: int,
) -> None:
    app = _keyed(tmp_path, read_key, admin_key)
    body = {"name": "product"} if method == "POST" else None
    try:
        with client(app, address) as c:
            assert _status(c, method, path, key, body) == status
    finally:
        api = app.control_api()
        assert isinstance(api, ControlApi)
        api.close()


def test_changes_are_recorded_under_the_key_or_loopback(tmp_path: Path) -> None:
    app = _keyed(tmp_path, None, ADMIN)
    try:
        with client(app, REMOTE) as c:
            auth = {"Authorization": f"Bearer {ADMIN}"}
            c.post("/v1/admin/streams", json={"name": "web"}, headers=auth)
            refused = c.post(
                "/v1/admin/streams", json={"name": "x"}, headers={"Authorization": "Bearer no"}
            )
            assert "the admin key was not accepted" in error_message(
                refused, 401, messages.UNAUTHORIZED
            )
            assert refused.headers["www-authenticate"] == "Bearer"
            [entry] = c.get("/v1/admin/audit-log", headers=auth).json()["entries"]
            assert (entry["actor"], entry["name"], entry["action"]) == (
                "http:admin-key",
                "web",
                "create",
            )
    finally:
        api = app.control_api()
        assert isinstance(api, ControlApi)
        api.close()


def test_a_remote_change_without_an_admin_key_says_how_to_allow_it(
    behind_collector: tuple[Collector, Settings],
) -> None:
    app, _ = behind_collector
    with client(app, REMOTE) as c:
        refused = c.put("/v1/admin/streams/web", json={})
        assert "set TALLYSTICK_ADMIN_KEY" in error_message(refused, 403, messages.FORBIDDEN)
        assert c.get("/v1/admin/audit-log").json() == {"entries": []}
