"""Who may do what over HTTP (pure): each request needs one kind of access.

====================== ===================================================================
need                   rule
====================== ===================================================================
``write`` (ingestion)  a write key, when any write key exists; read and admin keys do not
                       send events
``read``               a read or admin key (or a dashboard session), when any read or admin
                       key exists, in the database or the settings (``read_key``,
                       ``admin_key``); a write key never reads (403)
``admin``              ``/v1/admin/...``: an admin key, when one exists (a read key: 403);
                       without one, reads follow the read rule and changes are taken from
                       loopback clients only (recorded as ``http:loopback``)
``flags``              ``/v1/flags/...`` (the flags ruleset, its stream, evaluation): any
                       key, a write key included (SDKs in apps carry write keys: they need
                       the ruleset, never data), when any key exists; open otherwise.
                       ``GET /v1/flags`` itself (every environment, who changed it: for
                       people, the dashboard's Flags page) is a ``read``
``none``               ``/healthz``, ``/readyz``, ``GET /v1``, ``/openapi.json``
====================== ===================================================================

A kind nobody has a key for is open (``tally serve`` allows that on loopback only, and says so
at start-up); a key sent to an open kind is ignored, unless it is a revoked key (401: its owner
should learn it no longer works). A missing, unknown or revoked key is a 401 with
``WWW-Authenticate: Bearer``; a key of the wrong kind is a 403 saying what it is for.

The collector's router decides once per request (``decide``) and leaves the principal in
``scope["tally.principal"]``; ``authorize`` gives the control-plane API the actor a change is
recorded under. Keys are never logged or echoed.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from tallystick import messages
from tallystick.collect.requests import Refused
from tallystick.config import Settings
from tallystick.control.keys import STATIC_ADMIN, STATIC_READ, Keyed
from tallystick.control.principal import OPEN, SCOPE_KEY, Principal
from tallystick.messages import Problem
from tallystick.query.auth import CHALLENGE, MISSING, SESSION_ENDED, WRONG, bearer, reads_data

Need: TypeAlias = Literal["none", "write", "read", "admin", "flags"]
ADMIN_PREFIX: Final = "/v1/admin/"
FLAGS_PREFIX: Final = "/v1/flags/"
FLAGS_OVERVIEW: Final = "/v1/flags"
"""Every environment's ruleset with who changed it: for people (a read), not for SDKs."""
ADMIN_ACTOR: Final = STATIC_ADMIN.name
LOOPBACK_ACTOR: Final = "http:loopback"
READS: Final = frozenset({"GET", "HEAD"})
EVENTS_PATH: Final = "/v1/events"

ADMIN_MISSING: Final = Problem(
    messages.UNAUTHORIZED,
    "this server needs an admin key for /v1/admin/: send it as Authorization: Bearer <key> "
    "(`tally keys create --kind admin`, or the server's TALLYSTICK_ADMIN_KEY)",
)
ADMIN_WRONG: Final = Problem(
    messages.UNAUTHORIZED,
    "the admin key was not accepted: send an admin key as Authorization: Bearer <key> "
    "(`tally keys list` shows which are active)",
)
FLAGS_MISSING: Final = Problem(
    messages.UNAUTHORIZED,
    "this server needs a key for /v1/flags/: send any of its keys (an app's write key will do) "
    "as Authorization: Bearer <key>",
)
FLAGS_WRONG: Final = Problem(
    messages.UNAUTHORIZED,
    "the key was not accepted: send one of the server's keys (an app's write key will do) as "
    "Authorization: Bearer <key>",
)
REVOKED: Final = Problem(
    messages.UNAUTHORIZED,
    "this key was revoked: ask whoever runs the server for a new one (`tally keys create`)",
)
WRITE_MISSING: Final = Problem(
    messages.UNAUTHORIZED,
    "this collector needs a write key: send it as Authorization: Bearer <key> (or, from "
    "navigator.sendBeacon, as ?key=<key>)",
)
WRITE_WRONG: Final = Problem(
    messages.UNAUTHORIZED,
    "the write key was not accepted: check the key your app sends (Authorization: Bearer "
    "<key>); ask whoever runs the collector for the current one",
)
WRITE_ONLY: Final = Problem(
    messages.FORBIDDEN,
    "this is a write key: it only sends events (POST /v1/events); reading data and changing "
    "the configuration need a read or admin key",
)
NOT_A_WRITE_KEY: Final = Problem(
    messages.FORBIDDEN,
    "this is a read or admin key: events are sent with a write key (`tally keys create "
    "--kind write`)",
)
READ_ONLY: Final = Problem(
    messages.FORBIDDEN,
    "this key reads only: /v1/admin/ (the configuration) needs an admin key",
)
REMOTE: Final = Problem(
    messages.FORBIDDEN,
    "this server takes configuration changes from its own machine only, because it has no "
    "admin key: create one (`tally keys create --kind admin --name NAME`, or set "
    "TALLYSTICK_ADMIN_KEY) and send it as Authorization: Bearer <key>, or make the change on "
    "the server itself (tally streams …, tally config apply)",
)


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request presented: nothing, or a key (or session cookie) and who it turned out to
    be (``principal`` ``None``: unknown, or ``revoked``)."""

    sent: bool = False
    principal: Principal | None = None
    revoked: bool = False
    cookie: bool = False


NOTHING: Final = Credential()


def need_of(path: str, method: str) -> Need:
    """What a request to ``path`` needs (ingestion is ``write``; unknown paths need nothing:
    they are 404s for anyone)."""
    if path == EVENTS_PATH:
        return "write" if method == "POST" else "none"
    if path.startswith(ADMIN_PREFIX):
        return "admin"
    if path.startswith(FLAGS_PREFIX) and path.rstrip("/") != FLAGS_OVERVIEW:
        return "flags"
    if reads_data(path):
        return "read"
    return "none"


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


def _unauthorized(problem: Problem) -> Refused:
    return Refused(401, problem, (CHALLENGE,))


def decide(
    need: Need,
    credential: Credential,
    keyed: Callable[[], Keyed],
    method: str,
    client: Any,
) -> Principal:
    """Who makes a request that needs ``need``; raises ``Refused`` (401 or 403) when it may not
    be made. ``keyed`` is called only when the answer depends on it."""
    if need == "none":
        return credential.principal or OPEN
    if credential.revoked:
        raise _unauthorized(REVOKED)
    who = credential.principal
    if need == "flags":
        # any kind of key: the ruleset is configuration an app needs, not collected data
        if who is not None:
            return who
        keys = keyed()
        if not (keys.write or keys.read):
            return OPEN
        raise _unauthorized(FLAGS_WRONG if credential.sent else FLAGS_MISSING)
    if need == "write":
        if who is not None and who.kind == "write":
            return who
        if not keyed().write:
            return OPEN
        if who is not None:
            raise Refused(403, NOT_A_WRITE_KEY)
        raise _unauthorized(WRITE_WRONG if credential.sent else WRITE_MISSING)
    if who is not None and who.kind == "write":
        raise Refused(403, WRITE_ONLY)
    if need == "admin" and keyed().admin:
        if who is None:
            raise _unauthorized(ADMIN_WRONG if credential.sent else ADMIN_MISSING)
        if who.kind != "admin":
            raise Refused(403, READ_ONLY)
        return who
    reader = who if who is not None else _open_read(credential, keyed)
    if need == "read" or method in READS:
        return reader
    if not is_loopback(client):
        raise Refused(403, REMOTE)
    if reader.kind == "open":
        return Principal("open", LOOPBACK_ACTOR)
    return dataclasses.replace(reader, name=LOOPBACK_ACTOR)


def _open_read(credential: Credential, keyed: Callable[[], Keyed]) -> Principal:
    """Reads without a usable key: open, unless reads are keyed."""
    if not keyed().read:
        return OPEN
    if credential.cookie:
        raise _unauthorized(SESSION_ENDED)
    raise _unauthorized(WRONG if credential.sent else MISSING)


# -- without the router: the settings' static keys only -----------------------------------------


def _matches(token: bytes, key: str | None) -> bool:
    return bool(key) and hmac.compare_digest(token, (key or "").encode())


def static_credential(scope: Any, settings: Settings) -> Credential:
    """A request's credential judged by the settings' static keys alone."""
    token = bearer(scope.get("headers") or ())
    if token is None:
        return NOTHING
    if _matches(token, settings.admin_key):
        return Credential(True, STATIC_ADMIN)
    if _matches(token, settings.read_key):
        return Credential(True, STATIC_READ)
    return Credential(True)


def static_keyed(settings: Settings) -> Keyed:
    return Keyed(read=bool(settings.read_key or settings.admin_key), admin=bool(settings.admin_key))


def authorize(scope: Any, settings: Settings) -> str | None:
    """Who makes this request to the control-plane API: the actor recorded for its changes
    (``None`` for a read); raises Refused when it may not be made. The router has decided
    already (``scope["tally.principal"]``); an app called directly decides with the settings'
    static keys."""
    method: str = scope["method"]
    principal = scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        principal = decide(
            need_of(scope["path"], method)
            if scope["path"].startswith((ADMIN_PREFIX, FLAGS_PREFIX))
            else "read",
            static_credential(scope, settings),
            lambda: static_keyed(settings),
            method,
            scope.get("client"),
        )
    if method in READS:
        return None
    return principal.name


def authorize_read(scope: Any, settings: Settings) -> Principal:
    """Who reads, for an app called without the router: the settings' static keys decide;
    raises Refused."""
    return decide(
        "read",
        static_credential(scope, settings),
        lambda: static_keyed(settings),
        scope["method"],
        scope.get("client"),
    )


KEYS_NEED_ADMIN: Final = Problem(
    messages.FORBIDDEN,
    "keys are managed with an admin key (or, while the server has none, from its own machine "
    "without a key): `tally keys create --kind admin`",
)


def require_key_admin(scope: Any) -> None:
    """``/v1/admin/keys``: an admin key, or open mode on loopback (which the router checked for
    changes); never a read key, even where the loopback rule lets it change streams."""
    principal = scope.get(SCOPE_KEY)
    if not isinstance(principal, Principal):
        return  # called without the router: ``authorize`` has applied the static keys' rules
    if principal.kind not in ("admin", "open"):
        raise Refused(403, KEYS_NEED_ADMIN)
