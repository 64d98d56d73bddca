"""The control-plane API's requests and errors: reading a body, its JSON, query parameters, and
the ``Refused`` exception every refusal travels in."""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

import msgspec

from tallystick import messages
from tallystick.collect.asgi import Receive
from tallystick.collect.body import ClientDisconnected
from tallystick.messages import Problem

MAX_BODY_BYTES: Final = 1024 * 1024
"""The largest request body: a whole configuration fits many times over."""


class Refused(Exception):
    """A request the control-plane API answers with an error: status, problem, headers, and for
    a definition the place of the problem (``where``, and ``line`` in a YAML document)."""

    def __init__(
        self,
        status: int,
        problem: Problem,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        *,
        where: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(problem.message)
        self.status = status
        self.problem = problem
        self.headers = headers
        self.where = where
        self.line = line

    def body(self) -> dict[str, Any]:
        """``{"error": {"code", "message"}}``, with ``where`` and ``line`` when known."""
        error: dict[str, Any] = self.problem.as_dict()
        if self.where is not None:
            error["where"] = self.where
        if self.line is not None:
            error["line"] = self.line
        return {"error": error}


def invalid(message: str) -> Refused:
    """A wrong query parameter or request body (400 ``invalid_query``)."""
    return Refused(400, Problem(messages.INVALID_QUERY, message))


def not_found(message: str) -> Refused:
    return Refused(404, Problem(messages.NOT_FOUND, message))


def not_allowed(*methods: str) -> Refused:
    return Refused(
        405,
        Problem(messages.METHOD_NOT_ALLOWED, f"use {' or '.join(methods)} for this endpoint."),
        ((b"allow", ", ".join(methods).encode()),),
    )


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body; 413 once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise Refused(
                413,
                Problem(
                    messages.REQUEST_TOO_LARGE,
                    f"the body is larger than {limit:,} bytes: send one definition or "
                    "configuration at a time.",
                ),
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_value(body: bytes) -> Any:
    """The JSON of a body (``None`` for an empty one); 400 ``malformed_json`` when it is not."""
    if not body.strip():
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Refused(
            400,
            Problem(
                messages.MALFORMED_JSON, f"the body is not valid JSON ({exc}): send an object."
            ),
        ) from None


def json_object(body: bytes, example: str) -> dict[str, Any]:
    """A body that must be a JSON object (empty: ``{}``)."""
    value = json_value(body)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"the body must be a JSON object, such as {example}")
    return value


def query_params(query_string: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """Query parameters, each once, only those ``allowed``."""
    out: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True):
        if key not in allowed:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise invalid(f"unknown parameter {key!r}: {takes}")
        if key in out:
            raise invalid(f"parameter {key!r} is given twice: give it once")
        out[key] = value
    return out
