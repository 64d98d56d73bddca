"""Data models over HTTP: create, read, replace and delete them, build one in the engine and run
its checks against a real lake, and read the latest results, failed ones first."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from metrics.lakerows import to_table
from query.responses import error_message
from tallystick import messages
from tallystick.config import Settings
from tallystick.store.lake import Lake

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)

COMMITS = {
    "name": "commits",
    "stream": "product",
    "description": "One row per commit",
    "owner": "data-team",
    "materialize": "table",
    "fields": ["user.id", {"field": "data.files", "as": "files"}],
    "checks": [
        {"type": "not_null", "field": "user_id"},
        {"type": "range", "field": "files", "min": 1, "max": 100},
    ],
}


def _event(
    n: int, hours_ago: int, user: str | None, files: int, stream: str = "product"
) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "name": "project.commit",
        "client_ts": NOW - dt.timedelta(hours=hours_ago),
        "received_ts": NOW,
        "user_id": user,
        "data": {"files": files},
        "stream": stream,
    }


@pytest.fixture
def shop(local: TestClient, settings: Settings) -> TestClient:
    """A product stream with four commits in the lake: one without a user, one with 0 files;
    and one commit of another stream, which the model does not read."""
    rows = [
        _event(1, 1, "u1", 3),
        _event(2, 2, None, 5),
        _event(3, 50, "u2", 0),
        _event(4, 80, "u3", 7),
        _event(5, 3, None, 0, stream="web"),
    ]
    Lake(settings.lake_dir).write_events(to_table(rows), "shop")
    assert local.post("/v1/admin/streams", json={"name": "product"}).status_code == 201
    assert local.post("/v1/admin/streams", json={"name": "web"}).status_code == 201
    return local


def test_a_model_from_creation_to_deletion(shop: TestClient) -> None:
    created = shop.post("/v1/admin/models", json=COMMITS)
    assert created.status_code == 201, created.text
    model = created.json()["model"]
    stored = {**COMMITS, "fields": [{"field": "user.id", "as": "user_id"}, COMMITS["fields"][1]]}
    assert model == {**stored, "built_at": None}
    assert shop.get("/v1/admin/models/commits").json() == model
    assert shop.get("/v1/admin/models").json() == {"models": [model]}

    replaced = shop.put("/v1/admin/models/commits", json={**COMMITS, "materialize": "view"})
    assert replaced.status_code == 200
    assert replaced.json()["changes"][0]["changed"] == ["materialize"]

    deleted = shop.delete("/v1/admin/models/commits")
    assert deleted.json()["deleted"] == {"kind": "model", "name": "commits"}
    assert shop.get("/v1/admin/models").json() == {"models": []}
    log = shop.get("/v1/admin/audit-log", params={"kind": "model"}).json()["entries"]
    assert [e["action"] for e in log] == ["delete", "update", "create"]


def test_build_then_check_a_model(shop: TestClient) -> None:
    shop.post("/v1/admin/models", json=COMMITS)
    built = shop.post("/v1/admin/models/commits/build")
    assert built.status_code == 200, built.text
    [result] = built.json()["built"]
    assert (result["model"], result["materialize"], result["rows"]) == ("commits", "table", 4)
    assert [c["name"] for c in result["columns"]] == ["user_id", "files"]
    assert shop.get("/v1/admin/models/commits").json()["built_at"] == result["built_at"]

    checked = shop.post("/v1/admin/models/commits/check", json={})
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert (body["passed"], body["failing"]) == (False, 2)
    # failed first; both fail here: one row without a user, one with 0 files (of 4)
    assert [(r["check"], r["passed"], r["failing"], r["checked"]) for r in body["results"]] == [
        ("not_null(user_id)", False, 1, 4),
        ("range(files)", False, 1, 4),
    ]
    for r in body["results"]:
        assert r["message"]
    latest = shop.get("/v1/admin/checks").json()["checks"]
    assert [(r["target"], r["check"]) for r in latest] == [
        ("commits", "not_null(user_id)"),
        ("commits", "range(files)"),
    ]
    assert shop.get("/v1/admin/checks", params={"target": "nosuch"}).json() == {"checks": []}

    catalog = shop.get("/v1/catalog/models").json()["models"]
    assert [(m["name"], m["failing"], len(m["results"])) for m in catalog] == [("commits", 2, 2)]


def test_models_with_failing_checks_come_first_in_the_catalog(shop: TestClient) -> None:
    clean = {"name": "a_clean", "stream": "product", "fields": ["user.id"], "checks": []}
    shop.post("/v1/admin/models", json=clean)
    shop.post("/v1/admin/models", json=COMMITS)
    shop.post("/v1/admin/models/commits/check")
    names = [m["name"] for m in shop.get("/v1/catalog/models").json()["models"]]
    assert names == ["commits", "a_clean"]


# (case, method, path, body, status, code, message)
REFUSALS: list[tuple[str, str, str, Any, int, str, str]] = [
    (
        "no such stream",
        "POST",
        "/v1/admin/models",
        {**COMMITS, "name": "other", "stream": "nosuch"},
        409,
        messages.CONFLICT,
        "no stream 'nosuch'",
    ),
    (
        "a check of no column",
        "POST",
        "/v1/admin/models",
        {**COMMITS, "checks": [{"type": "unique", "field": "user"}]},
        400,
        messages.INVALID_DEFINITION,
        "checks[0].field: the model has no column 'user'",
    ),
    (
        "no fields",
        "PUT",
        "/v1/admin/models/commits",
        {"stream": "product", "fields": []},
        400,
        messages.INVALID_DEFINITION,
        "fields: list at least one field",
    ),
    ("unknown model", "GET", "/v1/admin/models/x", None, 404, messages.NOT_FOUND, "no model 'x'"),
    (
        "build an unknown model",
        "POST",
        "/v1/admin/models/x/build",
        None,
        404,
        messages.NOT_FOUND,
        "no model 'x'; GET /v1/admin/models lists them",
    ),
    (
        "check since 0 days",
        "POST",
        "/v1/admin/models/commits/check",
        {"since_days": 0},
        400,
        messages.INVALID_QUERY,
        "since_days must be a whole number of days (1 or more), got 0",
    ),
    (
        "check with other settings",
        "POST",
        "/v1/admin/models/commits/check",
        {"since": 3},
        400,
        messages.INVALID_QUERY,
        "check takes only since_days, not 'since'",
    ),
    (
        "models are not patched",
        "PATCH",
        "/v1/admin/models/commits",
        {"owner": "x"},
        405,
        messages.METHOD_NOT_ALLOWED,
        "use GET or PUT or DELETE",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "message"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals(
    shop: TestClient, method: str, path: str, body: Any, status: int, code: str, message: str
) -> None:
    shop.post("/v1/admin/models", json=COMMITS)
    response = shop.request(method, path, json=body)
    assert message in error_message(response, status, code)


def test_checks_since_some_days(shop: TestClient) -> None:
    shop.post("/v1/admin/models", json={**COMMITS, "materialize": "view"})
    # the last day holds e1 (u1, 3 files) and e2 (no user, 5 files)
    body = shop.post("/v1/admin/models/commits/check", json={"since_days": 1}).json()
    assert [(r["check"], r["passed"], r["failing"], r["checked"]) for r in body["results"]] == [
        ("not_null(user_id)", False, 1, 2),
        ("range(files)", True, 0, 2),
    ]
