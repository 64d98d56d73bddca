"""The client's IP address of a request: the one source for geo lookup, IP blocks and per-IP
rate limits, decided before anything else and never written to disk.

The connecting peer (the ASGI scope's ``client``) is the client, unless it is one of the
``trusted_proxies``: then ``X-Forwarded-For`` is read from right to left, skipping every address
that is itself a trusted proxy, and the first one that is not is the client. Entries to the left
of that one were written by the client (anyone can send the header) and are never believed. Only
what a trusted proxy wrote is used, so a client cannot pick its own address to escape a block or
a rate limit.

An address that cannot be read (a unix-socket peer, the test client's ``"testclient"``, or a
trusted proxy naming something that is not an address) gives ``None``: no geo, no block, and the
request shares the per-IP rate limit of other unknown clients.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from tallystick.collect.asgi import Scope
from tallystick.config import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR: Final = b"x-forwarded-for"
CACHE_SIZE: Final = 16_384
"""Address strings each worker remembers the meaning of (memory only)."""
MAX_CHARS: Final = 64
"""The longest entry read as an address (an IPv6 address with a zone, brackets and a port is
shorter): anything longer is not one, and is not remembered."""
MAX_HOPS: Final = 32
"""``X-Forwarded-For`` entries looked at, from the right: a chain of proxies is short, a header
stuffed by a client can be long."""


def parse_trusted_proxies(setting: str | None) -> tuple[Network, ...]:
    """The ``trusted_proxies`` setting (comma-separated addresses or CIDR ranges) as networks;
    a ``ConfigError`` names the entry that is wrong and what to write."""
    if setting is None or not setting.strip():
        return ()
    networks: list[Network] = []
    for item in setting.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
            continue
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(
                f"trusted_proxies: {text!r} is not an IP address or CIDR range; list your "
                "reverse proxies' addresses separated by commas, such as 127.0.0.1,10.0.0.0/8"
            ) from None
        raise ConfigError(
            f"trusted_proxies: {text} has host bits set; write the network {loose} "
            f"(or the address {text.partition('/')[0]} alone)"
        )
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An address as a client or a proxy wrote it: plain, ``[v6]:port``, ``v4:port``; an
    IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, a dual-stack socket) as IPv4. None when it
    is not an address."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Finds the client's address of a request; built once from the ``trusted_proxies``
    setting. Remembers what it made of recent address strings (parsed, trusted or not)."""

    __slots__ = ("_classify", "_trusted")

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self._trusted = tuple(trusted)
        self._classify = lru_cache(maxsize=CACHE_SIZE)(self._classify_text)

    @classmethod
    def from_setting(cls, setting: str | None) -> ClientAddress:
        return cls(parse_trusted_proxies(setting))

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)

    def _classify_text(self, text: str) -> tuple[Address | None, bool]:
        address = parse_address(text)
        return address, address is not None and self.trusts(address)

    def __call__(self, scope: Scope) -> Address | None:
        client = scope.get("client")
        if not client:
            return None
        peer, trusted = self._classify(str(client[0]))
        if not trusted:
            return peer
        address = peer
        for entry in reversed(forwarded_for(scope)[-MAX_HOPS:]):
            text = entry.strip()
            if not text:
                continue  # "a, , b": an empty entry says nothing
            found, trusted = self._classify(text) if len(text) <= MAX_CHARS else (None, False)
            if found is None:
                return None  # a trusted hop named something that is not an address
            address = found
            if not trusted:
                return found
        return address  # every hop is a proxy: the leftmost one we looked at is the client


def forwarded_for(scope: Scope) -> list[str]:
    """The ``X-Forwarded-For`` entries of a request in order (several headers are joined, as
    RFC 9110 says repeated fields combine); entries are not stripped."""
    values = [value for name, value in scope.get("headers") or () if name == FORWARDED_FOR]
    if not values:
        return []
    return b",".join(values).decode("latin-1").split(",")
