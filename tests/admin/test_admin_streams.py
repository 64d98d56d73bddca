"""Streams over HTTP, through the ASGI app and a real SQLite store: create, read, replace, patch,
renew, enable, disable and delete, each recorded in the audit log; and every refusal naming what
to fix."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from query.responses import error_message
from tallystick import messages
from tallystick.admin.app import ControlApi
from tallystick.control.definitions import parse_stream

PRODUCT = {
    "name": "product",
    "description": "What people do in the product",
    "owner": "product-team",
    "events": ["project.*", "dataset.create"],
    "sample": {"unit": "session", "rate": 0.5},
    "expires": "2030-01-31",
    "retention_days": 400,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_stream_from_creation_to_deletion(local: TestClient, control: ControlApi) -> None:
    created = local.post("/v1/admin/streams", json=PRODUCT)
    assert created.status_code == 201, created.text
    stream = created.json()["stream"]
    assert {k: stream[k] for k in PRODUCT if k != "expires"} == {
        k: v for k, v in PRODUCT.items() if k != "expires"
    }
    assert stream["expires"] == "2030-01-31T00:00:00Z"
    assert stream["status"] == "collecting"
    assert stream["created_at"] == stream["updated_at"]
    assert stream["expires_in_days"] == (dt.datetime(2030, 1, 31, tzinfo=dt.UTC) - _now()).days
    [change] = created.json()["changes"]
    assert (change["kind"], change["action"], change["before"]) == ("stream", "create", None)
    assert change["after"] == parse_stream(PRODUCT).as_dict()

    assert local.get("/v1/admin/streams/product").json() == stream
    listed = local.get("/v1/admin/streams").json()
    assert listed == {"unrouted_stream": "unrouted", "streams": [stream]}

    # PATCH: a null removes a setting; the others stay
    patched = local.patch("/v1/admin/streams/product", json={"owner": None, "retention_days": 30})
    assert patched.status_code == 200, patched.text
    after = patched.json()["stream"]
    assert "owner" not in after
    assert after["retention_days"] == 30
    assert after["sample"] == PRODUCT["sample"]
    assert after["created_at"] == stream["created_at"] < after["updated_at"]
    assert patched.json()["changes"][0]["changed"] == ["owner", "retention_days"]

    # disable and enable
    off = local.post("/v1/admin/streams/product/disable").json()["stream"]
    assert (off["enabled"], off["status"]) == (False, "disabled")
    on = local.post("/v1/admin/streams/product/enable", json={}).json()["stream"]
    assert (on["enabled"], on["status"]) == (True, "collecting")

    # renew: until a date, or for some days from now
    renewed = local.post("/v1/admin/streams/product/renew", json={"until": "2031-06-01"})
    assert renewed.json()["stream"]["expires"] == "2031-06-01T00:00:00Z"
    before = _now().replace(microsecond=0)
    renewed = local.post("/v1/admin/streams/product/renew", json={"days": 90})
    expires = dt.datetime.fromisoformat(renewed.json()["stream"]["expires"])
    assert before + dt.timedelta(days=90) <= expires <= _now() + dt.timedelta(days=90)

    # PUT replaces the whole definition; what a GET answers can be sent back as it is
    edited = {**local.get("/v1/admin/streams/product").json(), "events": ["project.*"]}
    put = local.put("/v1/admin/streams/product", json=edited)
    assert put.status_code == 200, put.text
    assert put.json()["stream"]["events"] == ["project.*"]
    assert put.json()["changes"][0]["changed"] == ["events"]
    same = local.put("/v1/admin/streams/product", json=edited)
    assert (same.status_code, same.json()["changes"]) == (200, [])

    deleted = local.delete("/v1/admin/streams/product")
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] == {"kind": "stream", "name": "product"}
    assert deleted.json()["changes"][0]["after"] is None
    assert local.get("/v1/admin/streams").json()["streams"] == []

    actions = [e["action"] for e in local.get("/v1/admin/audit-log").json()["entries"]]
    assert actions == [
        "delete", "update", "renew", "renew", "enable", "disable", "update", "create"
    ]  # fmt: skip
    entries = local.get("/v1/admin/audit-log", params={"limit": 8}).json()["entries"]
    assert {e["actor"] for e in entries} == {"http:loopback"}
    assert [e["version"] for e in entries] == list(range(8, 0, -1))


def test_put_creates_a_stream_under_its_address(local: TestClient) -> None:
    response = local.put("/v1/admin/streams/web", json={"events": ["page.view"]})
    assert response.status_code == 201, response.text
    assert response.json()["stream"]["name"] == "web"


@pytest.mark.parametrize(
    ("status", "expires", "starts", "enabled"),
    [
        ("collecting", None, None, True),
        ("expired", "2020-01-01", None, True),
        ("scheduled", None, "2099-01-01", True),
        ("disabled", "2020-01-01", None, False),
    ],
)
def test_each_stream_shows_its_status(
    local: TestClient, status: str, expires: str | None, starts: str | None, enabled: bool
) -> None:
    body = {"name": "s", "enabled": enabled, "expires": expires, "starts": starts}
    created = local.post("/v1/admin/streams", json={k: v for k, v in body.items() if v is not None})
    assert created.json()["stream"]["status"] == status


# (case, method, path, body, status, code, message)
REFUSALS: list[tuple[str, str, str, Any, int, str, str]] = [
    (
        "sample rate",
        "POST",
        "/v1/admin/streams",
        {"name": "a", "sample": {"unit": "session", "rate": 2}},
        400,
        messages.INVALID_DEFINITION,
        "sample.rate: a sample rate is a number from 0 to 1",
    ),
    (
        "unknown setting",
        "POST",
        "/v1/admin/streams",
        {"name": "a", "onwer": "x"},
        400,
        messages.INVALID_DEFINITION,
        "onwer: a stream has no setting 'onwer'",
    ),
    (
        "bad name",
        "POST",
        "/v1/admin/streams",
        {"name": "Web Events"},
        400,
        messages.INVALID_DEFINITION,
        "name: stream name 'Web Events' is invalid",
    ),
    (
        "created twice",
        "POST",
        "/v1/admin/streams",
        {"name": "existing"},
        409,
        messages.CONFLICT,
        "stream 'existing' exists already; update it instead",
    ),
    (
        "the unrouted stream's name",
        "POST",
        "/v1/admin/streams",
        {"name": "unrouted"},
        409,
        messages.CONFLICT,
        "'unrouted' is the stream for undeclared events",
    ),
    (
        "not JSON",
        "POST",
        "/v1/admin/streams",
        b"{name:",
        400,
        messages.MALFORMED_JSON,
        "the body is not valid JSON",
    ),
    (
        "not an object",
        "POST",
        "/v1/admin/streams",
        ["a"],
        400,
        messages.INVALID_QUERY,
        "the body must be a JSON object",
    ),
    (
        "renamed by PUT",
        "PUT",
        "/v1/admin/streams/existing",
        {"name": "other"},
        400,
        messages.INVALID_DEFINITION,
        "a stream cannot be renamed",
    ),
    (
        "patch makes it invalid",
        "PATCH",
        "/v1/admin/streams/existing",
        {"starts": "2031-01-01"},
        400,
        messages.INVALID_DEFINITION,
        "expires: must be later than `starts`",
    ),
    (
        "patch of nothing",
        "PATCH",
        "/v1/admin/streams/existing",
        {},
        400,
        messages.INVALID_DEFINITION,
        "send the settings to change",
    ),
    (
        "renew in the past",
        "POST",
        "/v1/admin/streams/existing/renew",
        {"until": "2001-01-01"},
        400,
        messages.INVALID_DEFINITION,
        "until: 2001-01-01T00:00:00Z is not in the future",
    ),
    (
        "enable with settings",
        "POST",
        "/v1/admin/streams/existing/enable",
        {"enabled": False},
        400,
        messages.INVALID_QUERY,
        "enable takes no settings",
    ),
    (
        "no such stream",
        "GET",
        "/v1/admin/streams/nosuch",
        None,
        404,
        messages.NOT_FOUND,
        "no stream 'nosuch'; GET /v1/admin/streams lists them",
    ),
    (
        "renew no such stream",
        "POST",
        "/v1/admin/streams/nosuch/renew",
        {"days": 3},
        404,
        messages.NOT_FOUND,
        "no stream 'nosuch'",
    ),
    (
        "delete no such stream",
        "DELETE",
        "/v1/admin/streams/nosuch",
        None,
        404,
        messages.NOT_FOUND,
        "no stream 'nosuch'",
    ),
    (
        "delete a stream a model reads",
        "DELETE",
        "/v1/admin/streams/existing",
        None,
        409,
        messages.CONFLICT,
        "stream 'existing' is read by model(s) reader: delete or move them first",
    ),
    (
        "method",
        "PATCH",
        "/v1/admin/streams",
        {},
        405,
        messages.METHOD_NOT_ALLOWED,
        "use GET or POST for this endpoint",
    ),
    (
        "unknown parameter",
        "GET",
        "/v1/admin/streams?status=expired",
        None,
        400,
        messages.INVALID_QUERY,
        "unknown parameter 'status': it takes none",
    ),
    (
        "unknown endpoint",
        "GET",
        "/v1/admin/stream",
        None,
        404,
        messages.NOT_FOUND,
        "no such endpoint: GET /v1/admin/stream; events go to POST /v1/events",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "message"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals_say_what_to_fix_and_change_nothing(
    local: TestClient,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    message: str,
) -> None:
    existing = {"name": "existing", "events": ["x.*"], "expires": "2030-01-01"}
    assert local.post("/v1/admin/streams", json=existing).status_code == 201
    reader = {"name": "reader", "stream": "existing", "fields": ["user.id"]}
    assert local.post("/v1/admin/models", json=reader).status_code == 201
    before = local.get("/v1/admin/audit-log").json()
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = local.request(method, path, **kwargs)
    assert message in error_message(response, status, code)
    if status == 405:
        assert response.headers["allow"] == "GET, POST"
    assert local.get("/v1/admin/audit-log").json() == before


def test_a_definition_error_names_its_place(local: TestClient) -> None:
    bad = {"name": "a", "curation": [{"field": "data.plan", "op": "is", "value": 1}]}
    error = local.post("/v1/admin/streams", json=bad).json()["error"]
    assert error["where"] == "curation[0]"
    assert error["message"].startswith("curation[0]: ")
