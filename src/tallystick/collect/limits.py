"""Rate limits for ``POST /v1/events``: token buckets per client IP and per write key.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a request takes
one. An empty bucket answers with the seconds until the next token, which becomes the 429's
``Retry-After`` (whole seconds, at least 1).

Buckets live in the memory of each collector worker process, not shared: with ``--workers N``
a client whose requests are spread over the workers may send up to N times the rate. Each map
of buckets is bounded (least recently used first out): a client evicted by a flood of other
addresses comes back with a full bucket, which errs on the side of letting it through.

Keys: an IPv4 address as is, an IPv6 address by its /64 (one host usually holds a whole /64, so
per-address buckets would be free to dodge); a write key (the ``Authorization: Bearer`` token)
only as a keyed hash, so the token itself is never kept, printed or logged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Generic, TypeVar

K = TypeVar("K")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_BUCKETS: Final = 16_384
"""Buckets per map and worker (about 240 bytes each with the map: some 4 MB a map at most)."""
IPV6_BUCKET_PREFIX: Final = 64


class TokenBuckets(Generic[K]):
    """Token buckets by key, bounded to ``max_buckets`` (least recently used evicted)."""

    __slots__ = ("_buckets", "_clock", "burst", "max_buckets", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[K, list[float]] = OrderedDict()
        """key -> [tokens, at (clock seconds)]"""

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: K, now: float | None = None) -> float:
        """Seconds until ``key`` may send again: 0 when it may now. Takes nothing."""
        state = self._buckets.get(key)
        if state is None:
            return 0.0
        at = self._clock() if now is None else now
        tokens = min(self.burst, state[0] + (at - state[1]) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: K, now: float | None = None) -> float:
        """Take a token for ``key``: 0 when there was one, else the seconds until there is
        (and nothing is taken)."""
        at = self._clock() if now is None else now
        state = self._buckets.get(key)
        if state is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            self._buckets[key] = [self.burst - 1, at]
            return 0.0
        self._buckets.move_to_end(key)
        tokens = min(self.burst, state[0] + (at - state[1]) * self.rate)
        if tokens < 1:
            return (1 - tokens) / self.rate
        state[0], state[1] = tokens - 1, at
        return 0.0


def retry_after(seconds: float) -> int:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def ip_key(address: Address) -> int:
    """The bucket of an address: IPv4 by address, IPv6 by its /64 (kept apart by the sign)."""
    if address.version == 4:
        return int(address)
    return -(int(address) >> (128 - IPV6_BUCKET_PREFIX)) - 1


_SALT: Final = os.urandom(16)


def key_digest(token: bytes) -> bytes:
    """A write key as the rate limiter keeps it: a keyed hash, salted per process."""
    return hashlib.blake2b(token, digest_size=16, key=_SALT).digest()


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


class RateLimits:
    """The collector's two limits; either may be off (rate 0)."""

    __slots__ = ("per_ip", "per_key")

    def __init__(self, per_ip: float, per_key: float, burst: int) -> None:
        self.per_ip: TokenBuckets[int] | None = TokenBuckets(per_ip, burst) if per_ip > 0 else None
        self.per_key: TokenBuckets[bytes] | None = (
            TokenBuckets(per_key, burst) if per_key > 0 else None
        )

    def __bool__(self) -> bool:
        return self.per_ip is not None or self.per_key is not None

    def check(self, address: Address | None, authorization: bytes | None) -> tuple[str, float]:
        """("", 0) when the request may go (its tokens taken), else which limit it hit
        ("ip" or "key") and the seconds to wait. A request over one limit takes no token from
        the other. Requests from an unknown address, or without a key, skip that limit."""
        now = time.monotonic()
        ip = ip_key(address) if address is not None and self.per_ip is not None else None
        token = bearer_token(authorization) if authorization and self.per_key is not None else None
        key = key_digest(token) if token is not None else None
        if ip is not None and self.per_ip is not None:
            wait = self.per_ip.wait(ip, now)
            if wait > 0:
                return "ip", wait
        if key is not None and self.per_key is not None:
            wait = self.per_key.take(key, now)
            if wait > 0:
                return "key", wait
        if ip is not None and self.per_ip is not None:
            self.per_ip.take(ip, now)
        return "", 0.0
