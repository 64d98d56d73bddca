"""The read key: when the server has one (``read_key``), every read of the query API must carry
it as ``Authorization: Bearer <key>``.

One shared key is a stand-in until hashed per-person keys arrive (privacy and access, issue 7).
The key is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from tallystick import messages
from tallystick.messages import Problem

CHALLENGE: Final = (b"www-authenticate", b"Bearer")
"""The header every 401 carries."""

MISSING: Final = Problem(
    messages.UNAUTHORIZED,
    "this server needs a read key: send it as Authorization: Bearer <key> "
    "(the dashboard asks for it)",
)
WRONG: Final = Problem(
    messages.UNAUTHORIZED,
    "the read key was not accepted: send the server's read key as Authorization: Bearer <key> "
    "(the dashboard asks for it; ask whoever runs the server for the current one)",
)


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


def check(headers: Iterable[tuple[bytes, bytes]], key: str | None) -> Problem | None:
    """Why a request with ``headers`` may not read, or ``None`` when it may (always, when the
    server has no key)."""
    if not key:
        return None
    token = bearer(headers)
    if token is None:
        return MISSING
    if not hmac.compare_digest(token, key.encode()):
        return WRONG
    return None
