"""The ASGI types and the one way every app here (collector, query API, dashboard) answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

import msgspec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

JSON: Final = b"application/json"
_encode = msgspec.json.Encoder().encode


async def respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    headers: Headers = (),
    *,
    head: bool = False,
) -> None:
    """Send a whole response; for a HEAD request, its headers only."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                *headers,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def respond_json(send: Send, status: int, body: object, headers: Headers = ()) -> None:
    """Send ``body`` as JSON (``bytes`` are taken as JSON already encoded)."""
    payload = body if isinstance(body, bytes) else _encode(body)
    await respond(send, status, JSON, payload, headers)
