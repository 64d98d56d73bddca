"""Server-sent events of one environment's flags ruleset: ``GET /v1/flags/stream?environment=``.

An SDK (or a page's ``EventSource``) holds one request open instead of polling
``GET /v1/flags/ruleset``. The answer is ``text/event-stream``:

- ``retry: 1000`` first (how long an ``EventSource`` waits before reconnecting), then
- ``event: ruleset`` with ``id: <version>`` and ``data: <the environment's ruleset, JSON on one
  line>`` — the same document ``GET /v1/flags/ruleset`` answers — at once, unless the request's
  ``Last-Event-ID`` names the version in force (a reconnecting client has it already), and again
  whenever the environment's version changes;
- ``: keep-alive`` comment lines every ``KEEP_ALIVE_SECONDS`` of silence, so that proxies and
  clients see a live connection;
- ``event: error`` with ``data: {"error": {...}}`` (as a 404 would carry) when the environment
  disappears from the ruleset, and then the end of the stream.

Each stream looks at the environment's version every ``POLL_SECONDS``; the streams of one worker
share one read of it per interval (``FlagStreams.version``) and one encoding of each new ruleset,
so a thousand open streams cost the database no more than one. A stream ends after
``MAX_STREAM_SECONDS`` (its client reconnects with ``Last-Event-ID`` and is authenticated again:
a revoked key stops getting changes), when its client goes away, and when the server shuts down.

Shutting down: uvicorn tells an application nothing until its open responses are finished (the
lifespan's shutdown comes after them), so a held stream would hold ``tally serve`` for its whole
graceful-shutdown timeout. :func:`watch_signals` therefore chains a handler in front of the
server's own for SIGTERM and SIGINT that marks the process as shutting down; each stream ends
within ``POLL_SECONDS`` and the server goes on with its orderly shutdown. ``tally serve``'s
workers call it as they build their app (a stream accepted while a worker is still starting is
covered too); a stream calls it as well, for other servers.

At most ``flags_max_streams`` streams are open per worker; one more is answered 503
``not_ready`` with ``Retry-After`` (SDKs poll meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import anyio

from tallystick import messages
from tallystick.collect.asgi import Receive, Scope, Send, respond_json
from tallystick.collect.requests import Refused
from tallystick.messages import Problem

if TYPE_CHECKING:
    from tallystick.control.flags import StoredRuleset

__all__ = [
    "CONTENT_TYPE",
    "KEEP_ALIVE",
    "KEEP_ALIVE_SECONDS",
    "MAX_STREAM_SECONDS",
    "POLL_SECONDS",
    "FlagStreams",
    "last_event_id",
    "ruleset_event",
    "watch_signals",
]

log = logging.getLogger("tallystick.admin")

POLL_SECONDS: Final = 0.5
"""How often each stream looks at its environment's version."""
KEEP_ALIVE_SECONDS: Final = 15.0
"""A ``: keep-alive`` comment after this much silence."""
MAX_STREAM_SECONDS: Final = 300.0
"""A stream ends after this long; its client reconnects (and is authenticated again)."""
RETRY_MILLISECONDS: Final = 1000
CONTENT_TYPE: Final = b"text/event-stream; charset=utf-8"
KEEP_ALIVE: Final = b": keep-alive\n\n"
_HEADERS: Final = (
    (b"content-type", CONTENT_TYPE),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
)
_RETRY_AFTER: Final = ((b"retry-after", b"30"),)


def ruleset_event(document: Mapping[str, Any], version: int) -> bytes:
    """One ``ruleset`` event: the document as JSON on one line (JSON escapes line breaks)."""
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return f"event: ruleset\nid: {version}\ndata: {data}\n\n".encode()


def error_event(problem: Problem) -> bytes:
    data = json.dumps({"error": problem.as_dict()}, separators=(",", ":"), ensure_ascii=False)
    return f"event: error\ndata: {data}\n\n".encode()


def last_event_id(scope: Scope) -> int | None:
    """The version a reconnecting client has (its ``Last-Event-ID`` header), if it names one."""
    for key, value in scope.get("headers") or ():
        if key.lower() == b"last-event-id":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


_shutting_down = threading.Event()
_handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}


def watch_signals() -> None:
    """Chain a handler in front of the process's SIGTERM and SIGINT handlers that tells every
    flag stream to end (see the module). Only from the main thread, where a server installs its
    handlers; a signal without a handler of its own (the default: the process just ends) is
    left alone. Idempotent while the chain is in place; after a server restored the handlers
    it replaced, the next call chains (and forgets the shutdown) again."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous is _handlers.get(signum) or not callable(previous):
            continue
        handler = _chained(previous)
        signal.signal(signum, handler)
        _handlers[signum] = handler
        _shutting_down.clear()


def _chained(
    previous: Callable[[int, FrameType | None], Any],
) -> Callable[[int, FrameType | None], Any]:
    def handler(signum: int, frame: FrameType | None) -> Any:
        _shutting_down.set()
        return previous(signum, frame)

    return handler


def _refusal(limit: int, stopping: bool) -> Problem:
    if stopping:
        detail = "this server is shutting down"
    elif limit <= 0:
        detail = "flag streams are off on this server (flags_max_streams is 0)"
    else:
        detail = f"this server holds as many flag streams as it may ({limit}, flags_max_streams)"
    return Problem(
        messages.NOT_READY,
        f"{detail}: poll GET /v1/flags/ruleset?environment=... instead (the SDKs do), or try "
        "again later",
    )


class FlagStreams:
    """The open flag streams of one worker: how many, the versions they share, and whether the
    server is shutting down."""

    def __init__(
        self,
        limit: int,
        *,
        poll_seconds: float = POLL_SECONDS,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
        max_seconds: float = MAX_STREAM_SECONDS,
    ) -> None:
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.keep_alive_seconds = keep_alive_seconds
        self.max_seconds = max_seconds
        self.open = 0
        self._stopped = threading.Event()
        self._versions: dict[str, tuple[float, int]] = {}
        self._events: dict[str, tuple[int, bytes]] = {}

    def stop(self) -> None:
        """End every open stream (within ``poll_seconds``) and refuse new ones."""
        self._stopped.set()

    @property
    def stopping(self) -> bool:
        """Whether the streams end: ``stop()`` was called or the process is shutting down."""
        return self._stopped.is_set() or _shutting_down.is_set()

    async def version(self, environment: str, read: Callable[[], Awaitable[int]]) -> int:
        """The environment's version, read at most about once per ``poll_seconds`` for all the
        streams of this worker."""
        cached = self._versions.get(environment)
        if cached is not None and time.monotonic() - cached[0] < self.poll_seconds * 0.9:
            return cached[1]
        version = await read()
        self._versions[environment] = (time.monotonic(), version)
        return version

    def event(self, stored: StoredRuleset) -> bytes:
        """The ``ruleset`` event of a stored environment, encoded once per version."""
        cached = self._events.get(stored.environment)
        if cached is not None and cached[0] == stored.version:
            return cached[1]
        event = ruleset_event(stored.document, stored.version)
        self._events[stored.environment] = (stored.version, event)
        return event

    async def serve(
        self,
        receive: Receive,
        send: Send,
        first: StoredRuleset,
        last_id: int | None,
        version: Callable[[], Awaitable[int]],
        document: Callable[[], Awaitable[StoredRuleset]],
    ) -> None:
        """Answer one stream request for ``first.environment``: ``first`` is its ruleset now,
        ``last_id`` the client's ``Last-Event-ID``; ``version`` and ``document`` read the
        environment's version and ruleset again (raising ``Refused``, 404 when it is gone)."""
        watch_signals()
        if self.stopping or self.open >= self.limit:
            await respond_json(
                send,
                503,
                {"error": _refusal(self.limit, self.stopping).as_dict()},
                _RETRY_AFTER,
            )
            return
        self.open += 1
        try:
            await self._stream(receive, send, first, last_id, version, document)
        finally:
            self.open -= 1

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        first: StoredRuleset,
        last_id: int | None,
        version: Callable[[], Awaitable[int]],
        document: Callable[[], Awaitable[StoredRuleset]],
    ) -> None:
        environment = first.environment
        await send({"type": "http.response.start", "status": 200, "headers": list(_HEADERS)})
        opening = f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        if first.version != last_id:
            opening += self.event(first)
        sent = first.version
        await send({"type": "http.response.body", "body": opening, "more_body": True})
        started = quiet_since = time.monotonic()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_until_disconnect, receive, tasks.cancel_scope)
            while not self.stopping:
                await anyio.sleep(self.poll_seconds)
                now = time.monotonic()
                if self.stopping or now - started >= self.max_seconds:
                    break
                chunk, sent, ends = await self._next(environment, sent, version, document)
                if chunk is None and now - quiet_since >= self.keep_alive_seconds:
                    chunk = KEEP_ALIVE
                if chunk is not None:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    quiet_since = now
                if ends:
                    break
            tasks.cancel_scope.cancel()
        with contextlib.suppress(OSError):  # the client may be gone already
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _next(
        self,
        environment: str,
        sent: int,
        version: Callable[[], Awaitable[int]],
        document: Callable[[], Awaitable[StoredRuleset]],
    ) -> tuple[bytes | None, int, bool]:
        """What to send after version ``sent``: the event (``None``: nothing new), the version
        sent now, and whether the stream ends (the environment is gone: an ``error`` event). A
        database that cannot be read just now sends nothing (the next interval tries again)."""
        try:
            current = await self.version(environment, version)
            if current == sent:
                return None, sent, False
            stored = await document()
        except Refused as refused:
            if refused.status == 404:
                return error_event(refused.problem), sent, True
            return None, sent, False
        return self.event(stored), stored.version, False


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Read the request until its client goes away, then cancel the stream."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
