"""The query API: every analysis over HTTP, as an ASGI application the collector delegates to.

``GET /v1/query/<analysis>?from=...&where=...`` and ``POST /v1/query/<analysis>`` (a JSON object
of the same parameters) answer ``{"analysis", "engine", "rows", "sql"}`` with dates as ISO
strings; ``GET /openapi.json`` describes every analysis. Queries run on DuckDB over the server's
lake in worker threads (at most ``QUERY_THREADS`` at a time per process), so the event loop, and
with it ingestion, never waits for one. See docs/http-api.md.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec

from tallystick import messages
from tallystick.collect.body import ClientDisconnected
from tallystick.config import Settings
from tallystick.messages import Problem
from tallystick.metrics.analysis import Outcome
from tallystick.metrics.api import QueryFailed, run
from tallystick.metrics.engines import DuckDBEngine, Engine
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import ANALYSES, REQUIRED, build, normalise
from tallystick.query.openapi import OPENAPI_PATH, QUERY_PREFIX, check, document, param, parameters
from tallystick.store.lake import Lake

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("tallystick.query")

QUERY_THREADS: Final = 2
MAX_BODY_BYTES: Final = 64 * 1024

_encode = msgspec.json.Encoder().encode


class Refused(Exception):
    """A request the query API answers with an error (status and problem)."""

    def __init__(
        self, status: int, problem: Problem, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(problem.message)
        self.status = status
        self.problem = problem
        self.headers = headers


def _invalid(message: str) -> Refused:
    return Refused(400, Problem(messages.INVALID_QUERY, message))


async def _respond(
    send: Send, status: int, body: object, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    payload = body if isinstance(body, bytes) else _encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                *headers,
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def query_params(query_string: str) -> dict[str, Any]:
    """Parameters from a query string: repeatable ones as lists when repeated, others once."""
    out: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True):
        name = normalise({key: ""}).popitem()[0]
        if name in out:
            if not param(name).repeatable:
                raise _invalid(f"parameter {key!r} is given twice: give it once")
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise Refused(
                413,
                Problem(
                    messages.REQUEST_TOO_LARGE,
                    f"the body is larger than {MAX_BODY_BYTES:,} bytes: send only the "
                    "analysis's parameters.",
                ),
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if not body.strip():
        return {}
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Refused(
            400,
            Problem(
                messages.MALFORMED_JSON, f"the body is not valid JSON ({exc}): send an object."
            ),
        ) from None
    if not isinstance(value, dict):
        raise _invalid(
            'the body must be a JSON object of parameters, such as {"event": "user.login"}'
        )
    return value


class QueryApp:
    """The query API over one lake (DuckDB by default; any ``Engine`` can be given)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine: Engine = engine or DuckDBEngine(Lake(settings.lake_dir))
        self._limiter: anyio.CapacityLimiter | None = None
        self._openapi: bytes | None = None

    def openapi(self) -> bytes:
        if self._openapi is None:
            from tallystick.version import __version__

            self._openapi = _encode(document(__version__))
        return self._openapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == OPENAPI_PATH:
            if method == "GET":
                await _respond(send, 200, self.openapi())
            else:
                await self._refuse(send, _not_allowed("GET"))
            return
        name = path[len(QUERY_PREFIX) :].rstrip("/") if path.startswith(QUERY_PREFIX) else ""
        try:
            if name not in ANALYSES:
                what = f"no analysis {name!r}" if name else "name the analysis"
                raise Refused(
                    404,
                    Problem(
                        messages.NOT_FOUND,
                        f"{what}: use /v1/query/<analysis> with one of {', '.join(ANALYSES)}.",
                    ),
                )
            if method == "GET":
                raw = query_params(scope.get("query_string", b"").decode("latin-1"))
            elif method == "POST":
                raw = await _read_json(receive)
            else:
                raise _not_allowed("GET", "POST")
            outcome = await self._run(name, raw)
        except Refused as refused:
            await self._refuse(send, refused)
            return
        except ClientDisconnected:
            return
        await _respond(
            send,
            200,
            {"analysis": name, "engine": outcome.engine, "rows": outcome.rows, "sql": outcome.sql},
        )

    async def _run(self, name: str, raw: dict[str, Any]) -> Outcome:
        try:
            params = normalise(raw)
            missing = [k for k in REQUIRED[name] if k not in params]
            if missing:
                example = " and ".join(f"{k}={param(k).example}" for k in missing)
                raise MetricError(f"{name} needs {' and '.join(missing)}: add e.g. {example}")
            taken = set(parameters(name))
            params = {k: check(k, v) if k in taken else v for k, v in params.items()}
            analysis = build(name, params)
        except MetricError as exc:
            raise _invalid(str(exc)) from None
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(QUERY_THREADS)
        try:
            return await anyio.to_thread.run_sync(
                partial(run, analysis, self.engine), limiter=self._limiter
            )
        except QueryFailed as exc:
            log.warning("query %s failed: %s", name, exc)
            raise Refused(500, Problem(messages.QUERY_FAILED, f"{exc}. Try again later.")) from None
        except MetricError as exc:
            raise _invalid(str(exc)) from None

    async def _refuse(self, send: Send, refused: Refused) -> None:
        body = {"error": refused.problem.as_dict()}
        await _respond(send, refused.status, body, refused.headers)


def _not_allowed(*methods: str) -> Refused:
    return Refused(
        405,
        Problem(messages.METHOD_NOT_ALLOWED, f"use {' or '.join(methods)} for this endpoint."),
        ((b"allow", ", ".join(methods).encode()),),
    )
