"""Read a request body within limits and undo gzip without letting a bomb explode."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tallystick import messages
from tallystick.messages import Problem

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientDisconnected(Exception):
    """The client went away before the body arrived."""


def _too_large(limit: int, what: str) -> Problem:
    return Problem(
        messages.REQUEST_TOO_LARGE,
        f"the request body is larger than {limit:,} bytes {what}(max_request_bytes): "
        "send fewer events per request.",
    )


async def read_body(receive: Receive, limit: int, declared: int | None) -> bytes | Problem:
    """The raw body, or a problem when it is (or says it is) larger than ``limit``."""
    if declared is not None and declared > limit:
        return _too_large(limit, "")
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            return _too_large(limit, "")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_content(body: bytes, encoding: str, limit: int) -> bytes | Problem:
    """Undo ``Content-Encoding``; stop decompressing as soon as ``limit`` is passed."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return Problem(
            messages.UNSUPPORTED_ENCODING,
            f"Content-Encoding {encoding!r} is not supported: send gzip or no encoding.",
        )
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        return Problem(messages.INVALID_GZIP, f"the body is not valid {encoding} data ({exc}).")
    if len(out) > limit or inflater.unconsumed_tail:
        return _too_large(limit, "after decompression ")
    if not inflater.eof:
        return Problem(
            messages.INVALID_GZIP, f"the {encoding} data is truncated: send the complete body."
        )
    return out
