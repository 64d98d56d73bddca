"""Blocked IP ranges: validation, add/remove with audit rows and a version bump (SQLite and
Postgres), the collector's matcher against ``ipaddress`` membership, and the counts read back
from the lake's declined table."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.control.blocks import (
    BLOCKED,
    COLLECTOR_STREAM,
    RATE_LIMITED,
    Block,
    Blocklist,
    Hits,
    add_block,
    hits,
    list_blocks,
    parse_network,
    remove_block,
)
from tallystick.control.definitions import NAME_PATTERN, DefinitionError
from tallystick.control.store import Conflict, ControlStore, NotFound
from tallystick.store.lake import Lake

T0 = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_networks_are_normalised(text: str, network: str) -> None:
    assert str(parse_network(text)) == network


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "CIDR notation"),
        ("   ", "CIDR notation"),
        ("10.0.0.0/33", "is not an IP network"),
        ("example.com", "is not an IP network"),
        ("10.0.0/8", "is not an IP network"),
        ("10.1.2.3/8", "host bits set: the network is 10.0.0.0/8; block 10.0.0.0/8 (or 10.1.2.3"),
        ("2001:db8::1/32", "the network is 2001:db8::/32"),
    ],
)
def test_bad_networks_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_network(text)
    assert caught.value.where == "network"
    assert says in caught.value.message


def test_add_list_remove_with_audit_rows_and_versions(store: ControlStore) -> None:
    assert store.version() == 0
    first = add_block(store, "203.0.113.0/24", "scraper", "cli:ana")
    second = add_block(store, "2001:db8::/32", "  test range ", "http:admin-key")
    assert (first.network, first.reason, first.created_by, first.active) == (
        "203.0.113.0/24",
        "scraper",
        "cli:ana",
        True,
    )
    assert second.reason == "test range"
    assert store.version() == 2
    assert list_blocks(store) == [first, second]
    assert store.controls().blocks == Blocklist([first, second])

    removed = remove_block(store, first.id, "cli:bo")
    assert (removed.active, removed.removed_by) == (False, "cli:bo")
    assert store.version() == 3
    assert list_blocks(store) == [second]
    assert [b.id for b in list_blocks(store, include_removed=True)] == [first.id, second.id]
    assert list_blocks(store, include_removed=True)[0] == removed
    assert store.controls().blocks == Blocklist([second])

    log = store.audit_log(kind="block")
    assert [(e.action, e.name, e.actor, e.version) for e in log] == [
        ("remove", "203.0.113.0/24", "cli:bo", 3),
        ("add", "2001:db8::/32", "http:admin-key", 2),
        ("add", "203.0.113.0/24", "cli:ana", 1),
    ]
    assert log[0].before is not None
    assert log[0].after is not None
    assert (log[0].before["active"], log[0].after["active"]) == (True, False)
    assert log[2].before is None
    assert log[2].after == first.as_dict()
    assert log[0].as_dict()["changed"] == ["active", "removed_at", "removed_by"]

    # the same network may be blocked again once lifted
    again = add_block(store, "203.0.113.0/24", "back again", "cli:ana")
    assert again.id not in (first.id, second.id)


@pytest.mark.parametrize(
    ("network", "reason", "error", "says"),
    [
        ("10.1.2.3/8", "x", DefinitionError, "10.0.0.0/8"),
        ("10.0.0.0/8", "", DefinitionError, "say why"),
        ("10.0.0.0/8", "   ", DefinitionError, "say why"),
        ("10.0.0.0/8", "x" * 501, DefinitionError, "keep it to 500"),
        ("192.0.2.0/24", "twice", Conflict, "192.0.2.0/24 is blocked already (block 1)"),
    ],
)
def test_refused_changes_write_nothing(
    store: ControlStore, network: str, reason: str, error: type[Exception], says: str
) -> None:
    add_block(store, "192.0.2.0/24", "first", "cli:ana")
    with pytest.raises(error, match=r".") as caught:
        add_block(store, network, reason, "cli:ana")
    assert says in str(caught.value)
    assert store.version() == 1
    assert len(list_blocks(store, include_removed=True)) == 1
    assert len(store.audit_log(kind="block")) == 1


def test_removing_unknown_or_removed_blocks(store: ControlStore) -> None:
    with pytest.raises(NotFound, match="no block 7"):
        remove_block(store, 7, "cli:ana")
    block = add_block(store, "192.0.2.0/24", "x", "cli:ana")
    remove_block(store, block.id, "cli:ana")
    with pytest.raises(Conflict, match=f"block {block.id} \\(192.0.2.0/24\\) was removed already"):
        remove_block(store, block.id, "cli:bo")
    assert store.version() == 2


def test_the_collector_stream_cannot_be_a_stream_name() -> None:
    assert NAME_PATTERN.match(COLLECTOR_STREAM) is None


def _block(n: int, network: str, at: dt.datetime = T0, removed: dt.datetime | None = None) -> Block:
    return Block(n, network, "r", at, "t", removed, None if removed is None else "t")


@pytest.mark.parametrize(
    ("networks", "address", "expected"),
    [
        ([], "10.0.0.1", None),
        (["10.0.0.0/8"], "10.255.255.255", "10.0.0.0/8"),
        (["10.0.0.0/8"], "11.0.0.0", None),
        (["10.0.0.0/8", "10.1.0.0/16"], "10.1.2.3", "10.1.0.0/16"),  # the most specific
        (["10.0.0.0/8", "10.1.0.0/16"], "10.2.2.3", "10.0.0.0/8"),
        (["192.0.2.7/32"], "192.0.2.7", "192.0.2.7/32"),
        (["0.0.0.0/0"], "8.8.8.8", "0.0.0.0/0"),
        (["0.0.0.0/0"], "2001:db8::1", None),  # IPv4 blocks never match IPv6
        (["2001:db8::/32"], "2001:db8:ffff::1", "2001:db8::/32"),
        (["::/0"], "10.0.0.1", None),
    ],
)
def test_blocklist_matches(networks: list[str], address: str, expected: str | None) -> None:
    blocklist = Blocklist(_block(n, net) for n, net in enumerate(networks))
    found = blocklist.match(ipaddress.ip_address(address))
    assert (found.network if found else None) == expected


def test_removed_blocks_are_not_compiled() -> None:
    assert not Blocklist([_block(1, "10.0.0.0/8", removed=T0)])


_v4_networks = st.builds(
    lambda addr, prefix: ipaddress.ip_network(f"{ipaddress.IPv4Address(addr)}/{prefix}", False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_v6_networks = st.builds(
    lambda addr, prefix: ipaddress.ip_network(f"{ipaddress.IPv6Address(addr)}/{prefix}", False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(
    st.lists(st.one_of(_v4_networks, _v6_networks), max_size=12),
    st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
            st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
        ),
        max_size=20,
    ),
)
def test_blocklist_agrees_with_ipaddress_membership(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    blocks = [_block(n, str(net)) for n, net in enumerate(networks)]
    blocklist = Blocklist(blocks)
    for address in addresses:
        containing = [b for b, net in zip(blocks, networks, strict=True) if address in net]
        found = blocklist.match(address)
        if not containing:
            assert found is None
        else:
            # the longest prefix, and of equal networks the oldest
            best = max(containing, key=lambda b: (ipaddress.ip_network(b.network).prefixlen, -b.id))
            assert found == best
    # members of the networks themselves (the tests above rarely hit a small network)
    for net in networks:
        found = blocklist.match(net.network_address)
        assert found is not None
        assert ipaddress.ip_network(found.network).prefixlen >= net.prefixlen


def test_hits_count_the_declined_rows_of_each_block(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    minute = dt.timedelta(minutes=1)
    old = _block(1, "10.0.0.0/8", T0, removed=T0 + 10 * minute)
    new = _block(2, "10.0.0.0/8", T0 + 20 * minute)
    other = _block(3, "192.0.2.0/24", T0)
    quiet = _block(4, "198.51.100.0/24", T0)

    def row(at: dt.datetime, name: str, count: int, reason: str = BLOCKED) -> dict[str, object]:
        return {
            "received_ts": at,
            "stream": COLLECTOR_STREAM,
            "reason": reason,
            "name": name,
            "count": count,
        }

    lake.write_declined(
        [
            row(T0 - minute, "10.0.0.0/8", 100),  # before any block: not counted
            row(T0 + minute, "10.0.0.0/8", 3),
            row(T0 + 11 * minute, "10.0.0.0/8", 2),  # a collector had not seen the removal
            row(T0 + 21 * minute, "10.0.0.0/8", 5),
            row(T0 + 22 * minute, "10.0.0.0/8", 1),
            row(T0 + 2 * minute, "192.0.2.0/24", 7),
            row(T0 + 3 * minute, "192.0.2.0/24", 9, RATE_LIMITED),
            {**row(T0 + 3 * minute, "192.0.2.0/24", 9), "stream": "web"},
        ],
        "test",
    )
    assert hits(lake, [new, quiet, old, other]) == {
        1: Hits(5, T0 + 11 * minute),
        2: Hits(6, T0 + 22 * minute),
        3: Hits(7, T0 + 2 * minute),
        4: Hits(0, None),
    }
    assert hits(lake, []) == {}
    assert hits(Lake(tmp_path / "empty"), [quiet]) == {4: Hits(0, None)}
