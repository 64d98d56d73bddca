"""Who makes a request, and what that lets them see (pure).

Every HTTP request is authenticated once, by the collector's router, into a ``Principal``
(``control.keys`` checks the key, ``admin.access`` the rules); the apps behind it (query API,
control-plane API, dashboard) read it from ``scope["tally.principal"]`` and never look at the
key again. The command line acts as ``LOCAL``: whoever can run ``tally`` on the server can read
its data directory anyway.

A read key sees the streams that are not private and the private ones granted to it; an admin
key, the server's own static keys (``read_key``, ``admin_key``) and open mode see every stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

Kind: TypeAlias = Literal["open", "local", "write", "read", "admin"]
SCOPE_KEY: Final = "tally.principal"
"""Where the router leaves the request's principal in the ASGI scope."""
ALL_STREAMS: Final = "*"
"""A read key's grant of every private stream."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request."""

    kind: Kind
    name: str
    """Recorded as the actor of changes: ``key:<id>:<name>``, ``http:loopback``, ``cli``…"""
    key_id: int | None = None
    """The ``api_keys`` row (``None``: open mode, the CLI, a static key from the settings)."""
    streams: frozenset[str] | None = None
    """Private streams granted (``None``: all of them)."""
    app: str | None = None
    """A write key's app."""

    @property
    def sees_everything(self) -> bool:
        return self.streams is None or ALL_STREAMS in self.streams

    def may_read(self, stream: str, private: bool) -> bool:
        """Whether this principal may read a stream (write keys read nothing)."""
        if self.kind == "write":
            return False
        return not private or self.sees_everything or stream in (self.streams or ())

    def hidden(self, private_streams: Iterable[str]) -> frozenset[str]:
        """Of the private streams, those this principal may not read: every analysis leaves
        their rows out (``metrics.exclusion``)."""
        if self.sees_everything:
            return frozenset()
        granted = self.streams or frozenset()
        return frozenset(s for s in private_streams if s not in granted)


LOCAL: Final = Principal(kind="local", name="cli")
"""The command line on the server itself."""
OPEN: Final = Principal(kind="open", name="http:open")
"""A request to a server with no keys at all (loopback only)."""


def principal_of(scope: Any) -> Principal:
    """The principal the router authenticated (``OPEN`` for an app called directly, as in unit
    tests of one app)."""
    found = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    return found if isinstance(found, Principal) else OPEN
