"""The client's address: the peer, or the first untrusted hop of X-Forwarded-For from the right
when the peer is a trusted proxy; checked against a plain reference on generated chains."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.config import ConfigError
from tallystick.enrich.client_ip import (
    MAX_HOPS,
    ClientAddress,
    parse_address,
    parse_trusted_proxies,
)

ip = ipaddress.ip_address


def scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    return {
        "type": "http",
        "client": None if peer is None else (peer, 50_000),
        "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded],
    }


@pytest.mark.parametrize(
    ("setting", "networks"),
    [
        (None, []),
        ("", []),
        (" , ", []),
        ("127.0.0.1", ["127.0.0.1/32"]),
        ("127.0.0.1, 10.0.0.0/8,::1", ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]),
    ],
)
def test_trusted_proxies_setting(setting: str | None, networks: list[str]) -> None:
    assert [str(n) for n in parse_trusted_proxies(setting)] == networks


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("localhost", "'localhost' is not an IP address or CIDR range"),
        ("10.0.0.0/8;127.0.0.1", "'10.0.0.0/8;127.0.0.1' is not an IP address"),
        ("*", "'*' is not an IP address"),
        ("10.0.0.1/8", "10.0.0.1/8 has host bits set; write the network 10.0.0.0/8"),
    ],
)
def test_bad_trusted_proxies_setting(setting: str, says: str) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies") as caught:
        parse_trusted_proxies(setting)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:4431", "203.0.113.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", None),
        ("testclient", None),
        ("", None),
        ("_hidden", None),
        ("300.1.1.1", None),
    ],
)
def test_parse_address(text: str, address: str | None) -> None:
    assert parse_address(text) == (None if address is None else ip(address))


PROXY = "10.0.0.5"


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        (None, "203.0.113.7", [], "203.0.113.7"),
        (None, "203.0.113.7", ["198.51.100.1"], "203.0.113.7"),  # not trusted: header ignored
        ("10.0.0.0/8", "203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        ("10.0.0.0/8", PROXY, [], PROXY),  # a proxy that did not say: the proxy
        ("10.0.0.0/8", PROXY, ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.0/8", PROXY, ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # spoofed left part
        ("10.0.0.0/8", PROXY, ["6.6.6.6", "198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        ("10.0.0.0/8", PROXY, ["10.0.0.8, 10.0.0.9"], "10.0.0.8"),  # all proxies: leftmost
        ("10.0.0.0/8", PROXY, ["198.51.100.1, unknown"], None),
        ("10.0.0.0/8", PROXY, ["198.51.100.1, , "], "198.51.100.1"),  # empty entries say nothing
        ("10.0.0.0/8", PROXY, ["1" * 100], None),  # not an address, and not remembered
        ("10.0.0.0/8", PROXY, ["[2001:db8::1]:5555"], "2001:db8::1"),
        ("10.0.0.0/8", "::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.0/8", None, ["198.51.100.1"], None),
        ("10.0.0.0/8", "testclient", ["198.51.100.1"], None),
    ],
)
def test_client_address(
    trusted: str | None, peer: str | None, forwarded: list[str], client: str | None
) -> None:
    found = ClientAddress.from_setting(trusted)(scope(peer, *forwarded))
    assert found == (None if client is None else ip(client))


def test_a_long_stuffed_header_is_read_from_the_right_only() -> None:
    chain = ", ".join(["10.0.0.1"] * (MAX_HOPS + 10))
    found = ClientAddress.from_setting("10.0.0.0/8")(scope(PROXY, "6.6.6.6, " + chain))
    assert found == ip("10.0.0.1")  # never reaches the client's 6.6.6.6 beyond MAX_HOPS


_PROXIES = ["10.0.0.1", "10.0.0.2", "10.9.9.9"]
_CLIENTS = ["203.0.113.7", "198.51.100.1", "2001:db8::1", "6.6.6.6"]
_hop = st.sampled_from(_PROXIES + _CLIENTS + ["unknown"])


def reference(trusted: set[str], peer: str, hops: list[str]) -> str | None:
    """Walk the chain from the connecting peer towards the client by hand."""
    if peer not in trusted:
        return peer
    current = peer
    for hop in reversed(hops):
        if hop == "unknown":
            return None
        current = hop
        if hop not in trusted:
            return hop
    return current


@given(
    st.sampled_from(_PROXIES + _CLIENTS),
    st.lists(_hop, max_size=8),
    st.lists(st.integers(1, 3), max_size=3),
)
def test_agrees_with_the_reference(peer: str, hops: list[str], cuts: list[int]) -> None:
    """However the chain is split across headers, the answer is the reference's."""
    headers, rest = [], list(hops)
    for cut in cuts:
        if rest:
            headers.append(", ".join(rest[:cut]))
            rest = rest[cut:]
    if rest:
        headers.append(", ".join(rest))
    found = ClientAddress.from_setting("10.0.0.0/8")(scope(peer, *headers))
    expected = reference(set(_PROXIES), peer, hops)
    assert found == (None if expected is None else ip(expected))
