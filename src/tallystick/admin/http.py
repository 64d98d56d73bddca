"""The control-plane API's requests and errors: reading a body, its JSON, query parameters, and
the ``Refused`` exception (``collect.requests``) every refusal travels in."""

from __future__ import annotations

import urllib.parse
from typing import Final

from tallystick import messages
from tallystick.collect import requests
from tallystick.collect.asgi import Receive
from tallystick.collect.requests import Refused
from tallystick.messages import Problem

MAX_BODY_BYTES: Final = 1024 * 1024
"""The largest request body: a whole configuration fits many times over."""


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
    return await requests.read_body(
        receive, limit, "send one definition or configuration at a time."
    )


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
