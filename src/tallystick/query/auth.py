"""Credentials a request carries, and the paths that read data (pure).

A key comes as ``Authorization: Bearer <key>``; a write key may also come as the ``key`` query
parameter of ``POST /v1/events`` (``navigator.sendBeacon`` cannot set headers; a key in a URL
may end up in a proxy's access log, which is acceptable only for write keys: they are public,
shipped in web pages, and can do nothing but send events). The dashboard's session comes as
the ``tally_session`` cookie. ``admin.access`` decides what each may do. Keys are compared in
constant time (or by their hash) and never logged or echoed.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Final

from tallystick import messages
from tallystick.messages import Problem

CHALLENGE: Final = (b"www-authenticate", b"Bearer")
"""The header every 401 carries."""
SESSION_COOKIE: Final = "tally_session"
"""The dashboard's session cookie."""

#: paths (without a trailing slash) and prefixes of endpoints that read data
READ_PATHS: Final = frozenset(
    {
        "/v1/catalog",
        "/v1/meta",
        "/v1/health",
        "/v1/query",
        "/v1/metrics",
        "/v1/audit",
        "/v1/experiments",
        "/v1/flags",
    }
)
READ_PREFIXES: Final = (
    "/v1/query/",
    "/v1/metrics/",
    "/v1/quality/",
    "/v1/catalog/",
    "/v1/experiments/",
)

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
SESSION_ENDED: Final = Problem(
    messages.UNAUTHORIZED,
    "your dashboard session has ended (it expired, or its key was revoked): sign in again "
    "at /signin",
)


def reads_data(path: str) -> bool:
    """Whether ``path`` reads data (and so needs a read key, when reads are keyed)."""
    return path.rstrip("/") in READ_PATHS or path.startswith(READ_PREFIXES)


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


def query_key(query_string: bytes) -> bytes | None:
    """The ``key`` query parameter (``POST /v1/events?key=…``), or ``None``."""
    if b"key=" not in query_string:
        return None
    for name, value in urllib.parse.parse_qsl(query_string.decode("latin-1")):
        if name == "key" and value.strip():
            return value.strip().encode("latin-1")
    return None


def cookie(headers: Iterable[tuple[bytes, bytes]], name: str = SESSION_COOKIE) -> bytes | None:
    """The value of cookie ``name``, or ``None``."""
    wanted = name.encode()
    for header, value in headers:
        if header.lower() == b"cookie":
            for part in value.split(b";"):
                key, _, found = part.strip().partition(b"=")
                if key == wanted and found:
                    return found.strip()
    return None
