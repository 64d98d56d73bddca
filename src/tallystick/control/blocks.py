"""Blocked IP ranges: the collector answers requests from them with 403 and counts them.

A block is a network (``203.0.113.0/24``, ``2001:db8::/32``, or one address) with a reason. Adding
or removing one writes an ``ip_blocks`` row change, an audit-log row (kind ``block``) and bumps the
configuration version in one transaction, so every running collector picks it up at its next
poll (``control_poll_seconds``). A removed block stays in the table (``removed_at``): the audit
trail and the counts of what it refused remain readable.

The collector matches addresses against a ``Blocklist`` (part of the ``Controls`` snapshot); what
it refused is written to the lake's declined table as ``(stream COLLECTOR_STREAM, reason
"blocked", name <network>)`` counts, which ``hits`` reads back for ``tally block list``.

SQLAlchemy and DuckDB are imported inside the functions that need them: the collector's request
path imports this module for ``Blocklist`` alone.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tallystick.control.definitions import DefinitionError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.control.store import ControlStore
    from tallystick.store.lake import Lake

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

COLLECTOR_STREAM: Final = "(collector)"
"""The stream name of the collector's own refusals in the declined table (blocked, rate
limited): not a valid stream name (``definitions.NAME_PATTERN``), so it never clashes."""
BLOCKED: Final = "blocked"
RATE_LIMITED: Final = "rate_limited"
REASON_MAX_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class Block:
    """One blocked range, active while ``removed_at`` is None."""

    id: int
    network: str
    reason: str
    created_at: dt.datetime
    created_by: str
    removed_at: dt.datetime | None = None
    removed_by: str | None = None

    @property
    def active(self) -> bool:
        return self.removed_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "network": self.network,
            "reason": self.reason,
            "active": self.active,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "removed_at": _iso(self.removed_at),
            "removed_by": self.removed_by,
        }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def parse_network(text: str) -> Network:
    """A network written as CIDR (or one address); raises ``DefinitionError`` saying what to
    write instead. Host bits must be clear: ``10.1.2.3/8`` is refused and the message names
    ``10.0.0.0/8``, so nobody blocks a range wider (or other) than they meant."""
    cleaned = text.strip() if isinstance(text, str) else ""
    if not cleaned:
        raise DefinitionError(
            "network", "give a network in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32"
        )
    try:
        return ipaddress.ip_network(cleaned, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(cleaned, strict=False)
    except ValueError:
        raise DefinitionError(
            "network",
            f"{cleaned!r} is not an IP network: write it in CIDR notation, such as "
            "203.0.113.0/24, 2001:db8::/32 or a single address",
        ) from None
    raise DefinitionError(
        "network",
        f"{cleaned} has host bits set: the network is {loose}; block {loose} "
        f"(or {cleaned.partition('/')[0]} alone)",
    )


def normalise_network(text: str) -> str:
    """The canonical text of a network (``parse_network``), as stored."""
    return str(parse_network(text))


def _check_reason(reason: str) -> str:
    cleaned = reason.strip() if isinstance(reason, str) else ""
    if not cleaned:
        raise DefinitionError("reason", "say why the range is blocked (--reason TEXT)")
    if len(cleaned) > REASON_MAX_CHARS:
        raise DefinitionError(
            "reason", f"the reason is {len(cleaned)} characters long; keep it to {REASON_MAX_CHARS}"
        )
    return cleaned


# -- the store -----------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _block(row: Any) -> Block:
    return Block(
        int(row.id),
        row.network,
        row.reason,
        row.created_at,
        row.created_by,
        row.removed_at,
        row.removed_by,
    )


def _audit(
    conn: sa.Connection,
    store: ControlStore,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    network: str,
    before: Block | None,
    after: Block | None,
) -> None:
    store.audit(
        conn,
        at=at,
        actor=actor,
        action=action,
        kind="block",
        name=network,
        before=None if before is None else before.as_dict(),
        after=None if after is None else after.as_dict(),
    )


def add_block(store: ControlStore, network: str, reason: str, actor: str) -> Block:
    """Block ``network`` (validated and normalised) for ``reason``. Raises ``DefinitionError``
    for a bad network or an empty reason, ``Conflict`` when that network is blocked already."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import Conflict

    canonical = normalise_network(network)
    why = _check_reason(reason)
    at = _now()
    c = t.ip_blocks.c
    with store.engine.begin() as conn:
        existing = conn.execute(
            sa.select(c.id).where(c.network == canonical, c.removed_at.is_(None))
        ).scalar_one_or_none()
        if existing is not None:
            raise Conflict(
                f"{canonical} is blocked already (block {existing}); `tally block list` shows it"
            )
        new_id = conn.execute(
            sa.insert(t.ip_blocks)
            .values(network=canonical, reason=why, created_at=at, created_by=actor)
            .returning(c.id)
        ).scalar_one()
        block = Block(int(new_id), canonical, why, at, actor)
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="add",
            network=canonical,
            before=None,
            after=block,
        )
    return block


def remove_block(store: ControlStore, block_id: int, actor: str) -> Block:
    """Lift block ``block_id``; its row stays, marked removed. Raises ``NotFound`` for an
    unknown id and ``Conflict`` for a block removed already."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import Conflict, NotFound

    at = _now()
    c = t.ip_blocks.c
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(t.ip_blocks).where(c.id == block_id)).one_or_none()
        if row is None:
            raise NotFound(f"no block {block_id}; `tally block list` shows the blocks")
        before = _block(row)
        if not before.active:
            assert before.removed_at is not None
            raise Conflict(
                f"block {block_id} ({before.network}) was removed already, at "
                f"{_iso(before.removed_at)} by {before.removed_by}"
            )
        conn.execute(
            sa.update(t.ip_blocks).where(c.id == block_id).values(removed_at=at, removed_by=actor)
        )
        after = Block(
            before.id,
            before.network,
            before.reason,
            before.created_at,
            before.created_by,
            at,
            actor,
        )
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="remove",
            network=before.network,
            before=before,
            after=after,
        )
    return after


def list_blocks(store: ControlStore, include_removed: bool = False) -> list[Block]:
    """The blocks, oldest first; removed ones too when asked."""
    with store.engine.connect() as conn:
        return read_blocks(conn, include_removed=include_removed)


def read_blocks(conn: sa.Connection, *, include_removed: bool = False) -> list[Block]:
    """``list_blocks`` inside a caller's transaction (``ControlStore.controls`` reads the blocks
    with the version they belong to)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    query = sa.select(t.ip_blocks).order_by(t.ip_blocks.c.id)
    if not include_removed:
        query = query.where(t.ip_blocks.c.removed_at.is_(None))
    return [_block(r) for r in conn.execute(query)]


# -- matching ------------------------------------------------------------------------------------


class Blocklist:
    """Active blocks compiled for matching one address in a few dictionary look-ups: one per
    distinct prefix length, whatever the number of blocks. Immutable once built."""

    __slots__ = ("_by_prefix", "blocks")

    def __init__(self, blocks: Iterable[Block] = ()) -> None:
        self.blocks: tuple[Block, ...] = tuple(b for b in blocks if b.active)
        by_prefix: dict[tuple[int, int], dict[int, Block]] = {}
        for block in self.blocks:
            net = ipaddress.ip_network(block.network, strict=False)
            table = by_prefix.setdefault((net.version, net.prefixlen), {})
            table.setdefault(int(net.network_address), block)  # the oldest block wins
        # longest prefix first: the most specific block is the one counted
        self._by_prefix = sorted(by_prefix.items(), key=lambda kv: -kv[0][1])

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        return f"Blocklist({[b.network for b in self.blocks]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blocklist) and self.blocks == other.blocks

    def __hash__(self) -> int:
        return hash(self.blocks)

    def match(self, address: Address) -> Block | None:
        """The block ``address`` falls in (the most specific one), or None."""
        if not self._by_prefix:
            return None
        version = address.version
        bits = 32 if version == 4 else 128
        value = int(address)
        for (net_version, prefix), table in self._by_prefix:
            if net_version != version:
                continue
            shift = bits - prefix
            found = table.get((value >> shift) << shift)
            if found is not None:
                return found
        return None


# -- what blocks refused -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hits:
    """Requests a block refused (from the lake's declined table) and the last one's time."""

    count: int = 0
    last: dt.datetime | None = None


def hits(lake: Lake, blocks: Iterable[Block]) -> dict[int, Hits]:
    """Per block id, the requests it refused: counted by the collectors, in the lake once the
    loader has taken them (within seconds). Counts are by network from the block's creation
    until a later block of the same network was created (a collector that has not yet seen a
    removal still refuses, and counts, for a poll interval); pass removed blocks too
    (``include_removed``) for exact counts of re-blocked networks."""
    from tallystick.store.reader import with_retry

    wanted = sorted(blocks, key=lambda b: (b.created_at, b.id))
    if not wanted:
        return {}
    ends: dict[int, dt.datetime | None] = {}
    latest: dict[str, Block] = {}
    for block in wanted:
        previous = latest.get(block.network)
        if previous is not None:
            ends[previous.id] = block.created_at
        latest[block.network] = block
        ends[block.id] = None

    def work(con: Any) -> dict[int, Hits]:
        out: dict[int, Hits] = {}
        for block in wanted:
            end = ends[block.id] or dt.datetime.max.replace(tzinfo=dt.UTC)
            count, last = con.execute(
                "SELECT coalesce(sum(count), 0), max(received_ts) FROM declined_events "
                "WHERE stream = ? AND reason = ? AND name = ? AND received_ts >= ? "
                "AND received_ts < ?",
                [COLLECTOR_STREAM, BLOCKED, block.network, block.created_at, end],
            ).fetchone()
            out[block.id] = Hits(int(count), last)
        return out

    return with_retry(lake, work)
