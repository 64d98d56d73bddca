"""X-Tally-Flags set by the SDK's middlewares on real applications on 127.0.0.1 — a Starlette app
served by uvicorn and a WSGI app served by wsgiref — whose handlers evaluate flags through a
Tracker holding the ruleset of a real `tally serve`. The header equals the one the server's own
POST /v1/flags/evaluate sets for the same unit and flags; each request lists only its own
evaluations (concurrent requests too); nothing evaluated, no header; an app's own header stays.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import uvicorn
from openfeature.evaluation_context import EvaluationContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tallystick import Tracker
from tallystick.collect.server import ServerProcess, free_port
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.flags.header import ACTIVE_HEADER
from tallystick.sdk.middleware import (
    FlagsHeaderMiddleware,
    WsgiFlagsHeaderMiddleware,
    collecting,
    evaluated,
    header_value,
)

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

pytestmark = pytest.mark.e2e

RULESET: dict[str, Any] = {
    "environments": ["prod"],
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "pro",
                            "condition": {"attribute": "plan", "op": "equals", "value": "pro"},
                            "value": True,
                        }
                    ]
                }
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "experiment": {
                                "key": "signin-exp",
                                "variations": [
                                    {"key": "a", "value": "A"},
                                    {"key": "b", "value": "B"},
                                ],
                            },
                        }
                    ]
                }
            },
        },
        "banner": {"type": "json", "default": {"text": "hi"}},
    },
}
USERS = [{"id": f"user-{i}", "plan": "pro" if i % 2 else "free"} for i in range(8)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data: Path = tmp_path_factory.mktemp("middleware") / "data"
    data.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        _, admin = create_key(store, "admin", "ops", actor="test")
        _, write = create_key(store, "write", "shop-web", actor="test", app="shop")
    with ServerProcess(data) as server:
        put = urllib.request.Request(
            server.url + "/v1/admin/flags",
            data=json.dumps(RULESET).encode(),
            method="PUT",
            headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(put, timeout=30) as response:
            assert response.status == 200
        yield server.url, write


@pytest.fixture(scope="module")
def tracker(served: tuple[str, str]) -> Iterator[Tracker]:
    url, write = served
    with Tracker(
        url, write, app_id="shop", queue_dir=False, flags_environment="prod", wait_for_flags=20
    ) as tracker:
        assert tracker.flags_ruleset is not None
        yield tracker


def servers_header(served: tuple[str, str], unit: dict[str, Any], flags: list[str]) -> str:
    """X-Tally-Flags as tally serve's own POST /v1/flags/evaluate sets it."""
    url, write = served
    request = urllib.request.Request(
        url + "/v1/flags/evaluate",
        data=json.dumps({"environment": "prod", "attributes": unit, "flags": flags}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {write}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers[ACTIVE_HEADER] or ""


def get(url: str) -> tuple[str, str | None]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode(), response.headers.get(ACTIVE_HEADER)


def unit_of(query: dict[str, str]) -> dict[str, str]:
    return {"id": query["user"], "plan": query["plan"]}


# -- ASGI ------------------------------------------------------------------------------------


def starlette_app(tracker: Tracker) -> Starlette:
    def evaluate(request: Request) -> str:
        unit = unit_of(dict(request.query_params))
        tracker.flag("new-signin", False, unit)
        tracker.flag("banner", None, unit)  # a JSON value: never listed
        return str(tracker.variant("signin-exp", unit))

    async def page(request: Request) -> PlainTextResponse:
        variation = evaluate(request)
        await asyncio.sleep(0.2)  # concurrent requests interleave here
        return PlainTextResponse(variation)

    def sync_page(request: Request) -> PlainTextResponse:  # run on Starlette's thread pool
        return PlainTextResponse(evaluate(request))

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("nothing evaluated")

    async def own(request: Request) -> PlainTextResponse:
        evaluate(request)
        return PlainTextResponse("own", headers={ACTIVE_HEADER: "set-by=the-app"})

    app = Starlette(
        routes=[
            Route("/page", page),
            Route("/sync", sync_page),
            Route("/plain", plain),
            Route("/own", own),
        ]
    )
    app.add_middleware(FlagsHeaderMiddleware)
    return app


@pytest.fixture(scope="module")
def asgi_url(tracker: Tracker) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        starlette_app(tracker), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        thread.join(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("path", ["/page", "/sync"])
def test_asgi_header_lists_the_requests_flags(
    served: tuple[str, str], asgi_url: str, path: str
) -> None:
    for user in USERS[:4]:
        query = {"user": str(user["id"]), "plan": str(user["plan"])}
        body, header = get(f"{asgi_url}{path}?{urlencode(query)}")
        expected = servers_header(served, user, ["new-signin", "signin-dialog", "banner"])
        assert header == expected
        assert ("new-signin=true" in expected) == (user["plan"] == "pro")
        assert f"signin-dialog={body}" in expected


def test_asgi_concurrent_requests_keep_their_own(served: tuple[str, str], asgi_url: str) -> None:
    urls = [f"{asgi_url}/page?{urlencode({'user': u['id'], 'plan': u['plan']})}" for u in USERS]
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(get, urls))
    for user, (_, header) in zip(USERS, answers, strict=True):
        assert header == servers_header(served, user, ["new-signin", "signin-dialog"])


def test_asgi_no_evaluation_no_header_and_the_apps_own_stays(asgi_url: str) -> None:
    assert get(f"{asgi_url}/plain") == ("nothing evaluated", None)
    assert get(f"{asgi_url}/own?user=user-1&plan=pro") == ("own", "set-by=the-app")


# -- WSGI ------------------------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wsgi_app(tracker: Tracker) -> WsgiFlagsHeaderMiddleware:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if p)
        if environ["PATH_INFO"] == "/plain":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"nothing evaluated"]
        if environ["PATH_INFO"] == "/lazy":
            return lazy(query, start_response)
        unit = unit_of(query)
        tracker.flag("new-signin", False, unit)
        variation = tracker.variant("signin-exp", unit)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(variation).encode()]

    def lazy(query: dict[str, str], start_response: StartResponse) -> Iterator[bytes]:
        """A generator: evaluates and starts the response on the server's first next()."""
        unit = unit_of(query)
        flag = tracker.flag("new-signin", False, unit)
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield str(flag).encode()
        yield str(tracker.variant("signin-exp", unit)).encode()  # too late for the header

    return WsgiFlagsHeaderMiddleware(app)


@pytest.fixture(scope="module")
def wsgi_url(tracker: Tracker) -> Iterator[str]:
    httpd: WSGIServer = make_server("127.0.0.1", 0, wsgi_app(tracker), handler_class=QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def test_wsgi_header_lists_the_requests_flags(served: tuple[str, str], wsgi_url: str) -> None:
    for user in USERS[:4]:
        body, header = get(
            f"{wsgi_url}/page?{urlencode({'user': user['id'], 'plan': user['plan']})}"
        )
        assert header == servers_header(served, user, ["new-signin", "signin-dialog"])
        assert f"signin-dialog={body}" in (header or "")


def test_wsgi_generator_app_and_no_evaluation(served: tuple[str, str], wsgi_url: str) -> None:
    body, header = get(f"{wsgi_url}/lazy?user=user-1&plan=pro")
    assert body.startswith("True")
    assert header == "new-signin=true"  # the variant came after start_response
    assert get(f"{wsgi_url}/lazy?user=user-2&plan=free")[1] is None  # the default: not listed
    assert get(f"{wsgi_url}/plain") == ("nothing evaluated", None)


# -- without a middleware --------------------------------------------------------------------


def test_collecting_outside_a_framework(served: tuple[str, str], tracker: Tracker) -> None:
    unit = {"id": "user-3", "plan": "pro"}
    tracker.flag("new-signin", False, unit)  # outside any request: noted nowhere
    assert evaluated() == {}
    with collecting() as seen:
        tracker.flag("new-signin", False, unit)
        tracker.variant("signin-exp", unit)
        assert sorted(seen) == ["new-signin", "signin-dialog"]
        assert header_value() == servers_header(served, unit, ["new-signin", "signin-dialog"])
    assert evaluated() == {}
    assert header_value() == ""


def test_openfeature_evaluations_are_noted(served: tuple[str, str], tracker: Tracker) -> None:
    provider = tracker.openfeature_provider()
    unit = {"id": "user-5", "plan": "pro"}
    with collecting() as seen:
        context = EvaluationContext("user-5", {"plan": "pro"})
        assert provider.resolve_boolean_details("new-signin", False, context).value is True
        provider.resolve_string_details("signin-dialog", "A", context)
        assert sorted(seen) == ["new-signin", "signin-dialog"]
        assert header_value() == servers_header(served, unit, ["new-signin", "signin-dialog"])
