"""``X-Tally-Flags`` on an application's responses: the flags and experiment variations it
evaluated through the SDK while answering one request, for analysis (access logs, a CDN's
logs, a proxy that forwards it).

::

    app = FlagsHeaderMiddleware(app)  # any ASGI app; Starlette: app.add_middleware(...)
    flask_app.wsgi_app = WsgiFlagsHeaderMiddleware(flask_app.wsgi_app)  # any WSGI app

Each request gets its own record (a :mod:`contextvars` variable); every evaluation through
``Tracker.flag()``, ``flag_details()``, ``variant()``, ``FlagClient.evaluate`` or the tracker's
OpenFeature provider made while answering it is noted (the last one per flag key), and when
the response starts its header lists them in the format of
:func:`tallystick.flags.header.active_header`: ``key=variation`` for experiment assignments,
``key=value`` for targeted and rolled-out values (defaults, unknown, killed and JSON-valued
flags are left out). No header when nothing qualifies; a header the application set itself is
left alone. Only what was evaluated before the response started can be listed: a streamed
body's later evaluations are not.

Threads that the application starts itself see the record only if they copy the request's
context (``contextvars.copy_context().run``, as Starlette's thread pool and ``asyncio.to_thread``
do). Other frameworks can use :func:`collecting` around a request and :func:`header_value`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tallystick.flags.header import ACTIVE_HEADER, active_header

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from tallystick.flags.evaluate import Evaluation

__all__ = [
    "ACTIVE_HEADER",
    "FlagsHeaderMiddleware",
    "WsgiFlagsHeaderMiddleware",
    "collecting",
    "evaluated",
    "header_value",
    "record",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

_evaluated: contextvars.ContextVar[dict[str, Evaluation] | None] = contextvars.ContextVar(
    "tallystick_flags_evaluated", default=None
)


def record(evaluation: Evaluation) -> None:
    """Note an evaluation for the request being answered (nothing outside one)."""
    seen = _evaluated.get()
    if seen is not None:
        seen[evaluation.flag] = evaluation


def evaluated() -> dict[str, Evaluation]:
    """The evaluations noted so far for the request being answered, by flag key."""
    return dict(_evaluated.get() or {})


def header_value() -> str:
    """The ``X-Tally-Flags`` value for the request being answered (``""``: nothing to list)."""
    return active_header(_evaluated.get() or {})


@contextlib.contextmanager
def collecting() -> Iterator[dict[str, Evaluation]]:
    """Note the evaluations made inside the block (a request, in frameworks without a
    middleware here): yields the record, keyed by flag."""
    seen: dict[str, Evaluation] = {}
    token = _evaluated.set(seen)
    try:
        yield seen
    finally:
        _evaluated.reset(token)


class FlagsHeaderMiddleware:
    """ASGI middleware: ``X-Tally-Flags`` on each HTTP response (see the module)."""

    def __init__(self, app: ASGIApp, *, header: str = ACTIVE_HEADER) -> None:
        self.app = app
        self.header = header
        self._name = header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen: dict[str, Evaluation] = {}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                value = active_header(seen)
                if value and not any(bytes(k).lower() == self._name for k, _ in headers):
                    headers.append((self._name, value.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        token = _evaluated.set(seen)
        try:
            await self.app(scope, receive, sending)
        finally:
            _evaluated.reset(token)


class WsgiFlagsHeaderMiddleware:
    """WSGI middleware: ``X-Tally-Flags`` on each response (see the module). The application,
    its body's iteration and its ``close()`` run in the request's own context, so evaluations
    made lazily while the body is produced before ``start_response`` count too."""

    def __init__(self, app: WSGIApplication, *, header: str = ACTIVE_HEADER) -> None:
        self.app = app
        self.header = header
        self._name = header.lower()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        context = contextvars.copy_context()
        seen: dict[str, Evaluation] = {}
        context.run(_evaluated.set, seen)

        def starting(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            value = active_header(seen)
            if value and not any(k.lower() == self._name for k, _ in headers):
                headers = [*headers, (self.header, value)]
            return start_response(status, headers, exc_info)

        return _InContext(context.run(self.app, environ, starting), context)


class _InContext:
    """A WSGI body whose iteration and ``close()`` run in the request's context."""

    def __init__(self, body: Iterable[bytes], context: contextvars.Context) -> None:
        self._body = body
        self._context = context
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._body)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            self._context.run(close)
