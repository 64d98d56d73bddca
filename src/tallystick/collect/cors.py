"""Cross-origin requests to ``POST /v1/events`` (pure).

A web page on another origin may send events when its origin is one a write key allows
(``tally keys create --kind write --origin https://app.example.com``):

- a request whose ``Origin`` the key allows gets ``Access-Control-Allow-Origin: <that origin>``
  and ``Vary: Origin``; any other origin gets no CORS header at all, and a ``POST`` from an
  origin that a key listing origins does not allow is refused (403 ``origin_not_allowed``, nothing
  stored). A key that lists no origins is a server-side key: its requests get no CORS header.
- the preflight (``OPTIONS /v1/events``) carries no key, so it is answered for any origin that
  some active write key allows; the ``POST`` itself is checked against its own key.
- open mode (no write key yet, loopback only) answers pages served from this machine
  (``http://localhost:…``, ``http://127.0.0.1:…``, ``http://[::1]:…``) and no other origin.

The answer never carries a wildcard and never ``Access-Control-Allow-Credentials``: events are
sent with a key, not with cookies.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Collection
from typing import Final

DEFAULT_PORTS: Final = {"http": 80, "https": 443}
ALLOW_METHODS: Final = b"POST"
ALLOW_HEADERS: Final = b"authorization, content-type, content-encoding"
MAX_AGE: Final = b"600"
VARY: Final = (b"vary", b"Origin")


def origin_of(url: str) -> str:
    """The origin a URL names (``scheme://host[:port]``, lower case, the default port left
    out); raises ``ValueError`` saying why when it names none."""
    text = url.strip()
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parsed.hostname:
        raise ValueError(
            f"{url!r} is not an origin: write scheme://host[:port], such as "
            "https://app.example.com (http or https, no wildcard)"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
        raise ValueError(
            f"{url!r} is not an origin: an origin has no path, query or user, only "
            "scheme://host[:port]"
        )
    if "*" in parsed.hostname:
        raise ValueError(f"{url!r}: wildcards are not allowed in origins; list each origin")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not an origin: {exc}") from None
    host = parsed.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalized(origin: bytes | str | None) -> str | None:
    """A request's ``Origin`` header as ``origin_of`` writes it, or ``None`` (absent, ``null``
    or not an origin)."""
    if origin is None:
        return None
    text = origin.decode("latin-1") if isinstance(origin, bytes) else origin
    if not text or text == "null":
        return None
    try:
        return origin_of(text)
    except ValueError:
        return None


def is_local(origin: str) -> bool:
    """Whether an origin is a page served from this machine (open mode's only origins)."""
    host = urllib.parse.urlsplit(origin).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allows(origin: str | None, origins: Collection[str]) -> bool:
    """Whether ``origin`` (normalised) is one of ``origins``."""
    return origin is not None and origin in origins


def response_headers(origin: str | None) -> tuple[tuple[bytes, bytes], ...]:
    """The CORS headers of an answer to an allowed origin (nothing for no origin)."""
    if origin is None:
        return ()
    return ((b"access-control-allow-origin", origin.encode()), VARY)


def preflight_headers(origin: str | None) -> tuple[tuple[bytes, bytes], ...]:
    """The headers of a preflight's answer: allowed origin → its CORS grant; otherwise only
    ``Vary: Origin`` (the browser then refuses to send)."""
    if origin is None:
        return (VARY,)
    return (
        *response_headers(origin),
        (b"access-control-allow-methods", ALLOW_METHODS),
        (b"access-control-allow-headers", ALLOW_HEADERS),
        (b"access-control-max-age", MAX_AGE),
    )
