"""Who may call the control-plane API, and under which name their changes are recorded (pure).

- Reads of the catalog (``/v1/catalog/...``, ``/v1/audit``) follow the query API's rule: when the
  server has a ``read_key``, the request carries it (or the admin key) as
  ``Authorization: Bearer <key>``.
- With an ``admin_key``, every request to ``/v1/admin/...`` carries that key; its changes are
  recorded as made by ``http:admin-key``.
- Without one, ``/v1/admin/...`` reads follow the read-key rule, and changes are taken from
  loopback clients only (and with the read key, when there is one), recorded as
  ``http:loopback``; anyone else is told to set ``TALLYSTICK_ADMIN_KEY``.

Keys are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any, Final

from tallystick import messages
from tallystick.collect.requests import Refused
from tallystick.config import Settings
from tallystick.messages import Problem
from tallystick.query.auth import CHALLENGE, MISSING, WRONG, bearer

ADMIN_PREFIX: Final = "/v1/admin/"
ADMIN_ACTOR: Final = "http:admin-key"
LOOPBACK_ACTOR: Final = "http:loopback"
READS: Final = frozenset({"GET", "HEAD"})

ADMIN_MISSING: Final = Problem(
    messages.UNAUTHORIZED,
    "this server needs the admin key for /v1/admin/: send it as Authorization: Bearer <key> "
    "(the server's TALLYSTICK_ADMIN_KEY)",
)
ADMIN_WRONG: Final = Problem(
    messages.UNAUTHORIZED,
    "the admin key was not accepted: send the server's admin key (TALLYSTICK_ADMIN_KEY) as "
    "Authorization: Bearer <key>; the read key does not change the configuration",
)
REMOTE: Final = Problem(
    messages.FORBIDDEN,
    "this server takes configuration changes from its own machine only, because it has no "
    "admin key: set TALLYSTICK_ADMIN_KEY on the server and send it as Authorization: Bearer "
    "<key>, or make the change on the server itself (tally streams …, tally config apply)",
)


def _matches(token: bytes, key: str | None) -> bool:
    return bool(key) and hmac.compare_digest(token, (key or "").encode())


def is_loopback(client: Any) -> bool:
    """Whether an ASGI ``scope["client"]`` (``(host, port)`` or ``None``) is this machine."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_read(headers: Iterable[tuple[bytes, bytes]], settings: Settings) -> None:
    """Raise Refused unless the request may read (any request, when there is no read key; the
    admin key reads too)."""
    if not settings.read_key:
        return
    token = bearer(headers)
    if token is None:
        raise Refused(401, MISSING, (CHALLENGE,))
    if not (_matches(token, settings.read_key) or _matches(token, settings.admin_key)):
        raise Refused(401, WRONG, (CHALLENGE,))


def authorize(scope: Any, settings: Settings) -> str | None:
    """Who makes this request: the actor recorded for its changes (``None`` for a read); raises
    Refused when it may not be made."""
    path: str = scope["path"]
    method: str = scope["method"]
    headers = scope.get("headers") or ()
    if not path.startswith(ADMIN_PREFIX):
        check_read(headers, settings)
        return None
    if settings.admin_key:
        token = bearer(headers)
        if token is None:
            raise Refused(401, ADMIN_MISSING, (CHALLENGE,))
        if not _matches(token, settings.admin_key):
            raise Refused(401, ADMIN_WRONG, (CHALLENGE,))
        return None if method in READS else ADMIN_ACTOR
    check_read(headers, settings)
    if method in READS:
        return None
    if not is_loopback(scope.get("client")):
        raise Refused(403, REMOTE)
    return LOOPBACK_ACTOR
