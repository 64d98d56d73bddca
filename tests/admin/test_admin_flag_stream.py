"""GET /v1/flags/stream in-process, over a real SQLite control store: the first ruleset event and
one per change (equal to GET /v1/flags/ruleset), Last-Event-ID, keep-alives, the bound on open
streams (503), an unknown environment (the ruleset's 404), a removed environment (an error event),
the end of a stream on disconnect, after its longest time and on stop()."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from support import run_coroutine
from tallystick.admin.app import ControlApi
from tallystick.admin.flag_stream import FlagStreams
from tallystick.collect.asgi import Message
from tallystick.config import Settings
from tallystick.control.flags import get_environment, put_ruleset

FLAG = {"type": "boolean", "default": False}


def ruleset(default: bool, environments: tuple[str, ...] = ("dev", "prod")) -> dict[str, Any]:
    return {
        "environments": list(environments),
        "flags": {
            "new-signin": {
                **FLAG,
                "default": default,
                "environments": {
                    env: {"rules": [{"id": "all", "value": True}]} for env in environments
                },
            }
        },
    }


class Stream:
    """One ASGI request to the API, run as a task: what it sends, and a disconnect button."""

    def __init__(self, api: ControlApi, query: str, headers: dict[str, str] | None = None) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.received = False
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/v1/flags/stream",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 50123),
        }
        self.task = asyncio.create_task(api(scope, self._receive, self._send))
        self.body = b""

    async def _receive(self) -> dict[str, Any]:
        if not self.received:
            self.received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        await self.messages.put(dict(message))

    async def start(self) -> tuple[int, dict[str, str]]:
        message = await asyncio.wait_for(self.messages.get(), 10)
        assert message["type"] == "http.response.start"
        return message["status"], {k.decode(): v.decode() for k, v in message["headers"]}

    async def until(self, text: bytes, timeout: float = 10.0) -> bytes:
        """The body so far, once it holds ``text``."""
        async with asyncio.timeout(timeout):
            while text not in self.body:
                message = await self.messages.get()
                self.body += message.get("body", b"")
        return self.body

    async def rulesets(self, count: int, timeout: float = 10.0) -> list[tuple[int, Any]]:
        """The ruleset events, once there are ``count`` of them."""
        async with asyncio.timeout(timeout):
            while len(rulesets(self.body)) < count:
                message = await self.messages.get()
                self.body += message.get("body", b"")
        return rulesets(self.body)

    async def ended(self, timeout: float = 10.0) -> bytes:
        """The whole body, once the response is finished (and the app returned)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                self.body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            await self.task
        return self.body


def events(body: bytes) -> list[dict[str, str]]:
    """The complete events of a body (each a dict of its fields; comments under ``":"``)."""
    out = []
    for block in body[: body.rfind(b"\n\n") + 1].decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                fields[":"] = line[1:].strip()
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
        if fields:
            out.append(fields)
    return out


def rulesets(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    return [
        (int(e["id"]), json.loads(e["data"])) for e in events(body) if e.get("event") == "ruleset"
    ]


@pytest.fixture
def api(settings: Settings) -> Iterator[ControlApi]:
    control = ControlApi(settings)
    control.flag_streams = FlagStreams(
        2, poll_seconds=0.05, keep_alive_seconds=0.3, max_seconds=60.0
    )
    yield control
    control.close()


def test_the_ruleset_at_once_and_on_every_change(api: ControlApi) -> None:
    store = api.store()
    first = put_ruleset(store, ruleset(False), "test").version
    assert first is not None

    async def scenario() -> None:
        stream = Stream(api, "environment=prod")
        status, headers = await stream.start()
        assert status == 200
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert await stream.rulesets(1) == [(first, get_environment(store, "prod").document)]
        assert stream.body.startswith(b"retry: 1000\n\n")

        # a change to another environment sends nothing; prod's change does
        dev_only = ruleset(False)
        dev_only["flags"]["new-signin"]["environments"]["dev"]["rules"] = []
        await asyncio.to_thread(put_ruleset, store, dev_only, "test")
        await asyncio.sleep(0.3)
        assert len(rulesets(stream.body)) == 1
        second = await asyncio.to_thread(put_ruleset, store, ruleset(True), "test")
        got = await stream.rulesets(2)
        assert [v for v, _ in got] == [first, second.version]
        assert got[-1][1] == get_environment(store, "prod").document
        assert got[-1][1]["flags"]["new-signin"]["default"] is True

        # quiet: keep-alive comments
        await stream.until(b": keep-alive\n\n")
        assert api.flag_streams.open == 1

        stream.gone.set()
        await asyncio.wait_for(stream.task, 5)
        assert api.flag_streams.open == 0

    run_coroutine(scenario())


def test_last_event_id_skips_what_the_client_has(api: ControlApi) -> None:
    store = api.store()
    version = put_ruleset(store, ruleset(False), "test").version
    assert version is not None

    async def scenario() -> None:
        current = Stream(api, "environment=prod", {"Last-Event-ID": str(version)})
        older = Stream(api, "environment=prod", {"Last-Event-ID": str(version - 1)})
        await current.start()
        await older.start()
        assert [v for v, _ in await older.rulesets(1)] == [version]
        await current.until(b": keep-alive")
        assert rulesets(current.body) == []
        assert current.body.startswith(b"retry: 1000\n\n")
        changed = await asyncio.to_thread(put_ruleset, store, ruleset(True), "test")
        assert [v for v, _ in await current.rulesets(1)] == [changed.version]
        api.flag_streams.stop()
        await current.ended()
        await older.ended()

    run_coroutine(scenario())


def test_open_streams_are_bounded(api: ControlApi) -> None:
    async def scenario() -> None:
        held = [Stream(api, "environment=prod"), Stream(api, "environment=dev")]
        for stream in held:
            assert (await stream.start())[0] == 200
        refused = Stream(api, "environment=prod")
        status, headers = await refused.start()
        assert status == 503
        assert headers["retry-after"] == "30"
        error = json.loads(await refused.ended())["error"]
        assert error["code"] == "not_ready"
        assert "flags_max_streams" in error["message"]
        assert "GET /v1/flags/ruleset" in error["message"]

        held[0].gone.set()
        await asyncio.wait_for(held[0].task, 5)
        again = Stream(api, "environment=prod")
        assert (await again.start())[0] == 200
        api.flag_streams.stop()
        for stream in (held[1], again):
            await stream.ended()
        late = Stream(api, "environment=prod")
        assert (await late.start())[0] == 503
        assert "shutting down" in json.loads(await late.ended())["error"]["message"]

    run_coroutine(scenario())


def test_an_unknown_environment_is_the_rulesets_404(api: ControlApi) -> None:
    put_ruleset(api.store(), ruleset(False), "test")

    async def answer(path: str) -> tuple[int, dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            messages.append(dict(message))

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"environment=staging",
            "headers": [],
            "client": ("127.0.0.1", 50123),
        }
        await api(scope, receive, send)
        return messages[0]["status"], json.loads(messages[1]["body"])

    async def scenario() -> None:
        streamed = await answer("/v1/flags/stream")
        fetched = await answer("/v1/flags/ruleset")
        assert streamed == fetched
        assert streamed[0] == 404
        assert "the environments are dev, prod" in streamed[1]["error"]["message"]

    run_coroutine(scenario())


def test_a_removed_environment_ends_the_stream_with_an_error(api: ControlApi) -> None:
    store = api.store()
    put_ruleset(store, ruleset(False), "test")

    async def scenario() -> None:
        stream = Stream(api, "environment=dev")
        await stream.start()
        await stream.rulesets(1)
        await asyncio.to_thread(put_ruleset, store, ruleset(False, ("prod",)), "test")
        body = await stream.ended()
        last = events(body)[-1]
        assert last["event"] == "error"
        error = json.loads(last["data"])["error"]
        assert error["code"] == "not_found"
        assert "'dev'" in error["message"]
        assert api.flag_streams.open == 0

    run_coroutine(scenario())


def test_a_stream_ends_after_its_longest_time(settings: Settings) -> None:
    api = ControlApi(settings)
    api.flag_streams = FlagStreams(5, poll_seconds=0.05, keep_alive_seconds=10, max_seconds=0.3)

    async def scenario() -> None:
        stream = Stream(api, "environment=prod")
        await stream.start()
        body = await stream.ended(timeout=5)
        empty = {"version": 0, "environments": ["prod"], "segments": {}, "flags": {}}
        assert rulesets(body) == [(0, empty)]

    try:
        run_coroutine(scenario())
    finally:
        api.close()
