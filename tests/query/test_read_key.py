"""The read key: with ``read_key`` set, every read of the HTTP API needs
``Authorization: Bearer <key>``; the OpenAPI document, ingestion and health checks stay open."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from query.sample import RANGE, make_lake
from support import make_event
from tallystick import messages
from tallystick.collect.app import Collector
from tallystick.config import Settings, from_env
from tallystick.query import auth

KEY = "s3cret-read-key"

#: (method, path, JSON body) of every endpoint that needs the key
READS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/query/count?event=login&from=2026-01-01&to=2026-01-31", None),
    ("POST", "/v1/query/count", {"event": "login", **RANGE}),
    ("GET", "/v1/metrics/logins?from=2026-01-01&to=2026-01-31", None),
    ("POST", "/v1/metrics/logins", RANGE),
    ("GET", "/v1/catalog", None),
    ("GET", "/v1/meta", None),
    ("GET", "/v1/health?from=2026-01-01&to=2026-01-31", None),
]
#: (method, path, JSON body, status) of endpoints open to anyone
OPEN: list[tuple[str, str, Any, int]] = [
    ("GET", "/openapi.json", None, 200),
    ("POST", "/v1/events", [make_event()], 200),
    ("GET", "/healthz", None, 200),
    ("GET", "/readyz", None, 200),
    ("GET", "/v1", None, 200),
]

MISSING = (
    "this server needs a read key: send it as Authorization: Bearer <key> "
    "(the dashboard asks for it)"
)

#: Authorization header -> whether it is the right key, and which message a refusal has
HEADERS: list[tuple[str | None, str | None]] = [
    (None, MISSING),
    ("Bearer wrong-key", "the read key was not accepted"),
    (f"Bearer {KEY}x", "the read key was not accepted"),
    (f"Bearer {KEY[:-1]}", "the read key was not accepted"),
    (f"Basic {KEY}", MISSING),
    ("Bearer ", MISSING),
    (KEY, MISSING),
    (f"Bearer {KEY}", None),
    (f"bearer  {KEY} ", None),
]


def _client_for(settings: Settings) -> Iterator[TestClient]:
    make_lake(settings.lake_dir)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "m.yaml").write_text(
        "name: logins\ntitle: Logins\ntype: count\nparams: {event: login}\n"
    )
    with TestClient(Collector(settings), base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client_for(Settings(data=tmp_path / "data", min_free_bytes=0, read_key=KEY))


def _call(client: TestClient, method: str, path: str, body: Any, header: str | None) -> Any:
    headers = {"Authorization": header} if header is not None else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("header", "refusal"), HEADERS)
def test_every_read_needs_the_key(
    keyed: TestClient, header: str | None, refusal: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for method, path, body in READS:
        response = _call(keyed, method, path, body, header)
        if refusal is None:
            assert response.status_code == 200, (path, response.text)
            continue
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == messages.UNAUTHORIZED
        assert refusal in error["message"]
        assert KEY not in response.text
    assert KEY not in caplog.text


@pytest.mark.parametrize(("method", "path", "body", "status"), OPEN)
def test_openapi_ingestion_and_health_checks_need_no_key(
    keyed: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    for header in (None, "Bearer wrong-key"):
        response = _call(keyed, method, path, body, header)
        assert response.status_code == status, (path, header, response.text)


def test_the_wrong_key_message_says_it_was_not_accepted(keyed: TestClient) -> None:
    response = keyed.get("/v1/meta", headers={"Authorization": "Bearer nope"})
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "the read key was not accepted: send the server's read key as "
            "Authorization: Bearer <key> (the dashboard asks for it; ask whoever runs the "
            "server for the current one)",
        }
    }
    assert keyed.get("/v1/meta").json()["error"]["message"] == MISSING


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", f"Bearer {KEY}"])
def test_unknown_paths_are_404s_for_anyone(keyed: TestClient, header: str | None) -> None:
    for method, path in (("POST", "/v1/event"), ("GET", "/v1/nope")):
        response = _call(keyed, method, path, None, header)
        assert response.status_code == 404, (path, response.text)
        assert "events go to POST /v1/events" in response.json()["error"]["message"]
    # under a path that reads data, the key comes first: who may not read learns nothing
    for path in (
        "/v1/query/nope",
        "/v1/metrics/nope",
        "/v1/query",
        "/v1/metrics/",
        "/v1/catalog/x",
    ):
        expected = 404 if header == f"Bearer {KEY}" else 401
        assert _call(keyed, "GET", path, None, header).status_code == expected, path


@pytest.mark.parametrize("key", [None, ""])
def test_without_a_key_everything_is_open(tmp_path: Path, key: str | None) -> None:
    settings = Settings(data=tmp_path / "data", min_free_bytes=0, read_key=key)
    for client in _client_for(settings):
        for method, path, body in READS:
            for header in (None, "Bearer anything"):
                response = _call(client, method, path, body, header)
                assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([], None),
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"Authorization", b"BEARER abc ")], b"abc"),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Basic x"), (b"authorization", b"Bearer abc")], b"abc"),
        ([(b"x-authorization", b"Bearer abc")], None),
    ],
)
def test_bearer_reads_the_token(headers: list[tuple[bytes, bytes]], token: bytes | None) -> None:
    assert auth.bearer(headers) == token


def test_the_setting_comes_from_the_environment_and_is_not_shown() -> None:
    settings = from_env({"TALLYSTICK_READ_KEY": KEY})
    assert settings.read_key == KEY
    assert KEY not in repr(settings)
    assert settings.to_env()["TALLYSTICK_READ_KEY"] == KEY  # workers get it
    assert from_env({"TALLYSTICK_READ_KEY": ""}).read_key is None
    assert from_env({}).read_key is None
