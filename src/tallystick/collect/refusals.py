"""Requests the collector refused before reading them (blocked IP range, rate limit), counted.

A flood must not cost one spool write and fsync per refused request, so each worker adds the
refusals up in memory and writes them at most once a second (and at shutdown) as ``DECLINED``
spool frames: ``{stream: COLLECTOR_STREAM, reason, name, count}``, where ``reason`` is
``blocked`` (``name``: the block's network) or ``rate_limited`` (``name``: ``ip`` or ``key``,
the limit that was hit). Each row carries the time of the last refusal it counts. The loader
puts them in the lake's declined table, where ``tally block list`` finds them.
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec

from tallystick.control.blocks import COLLECTOR_STREAM
from tallystick.store import spool

log = logging.getLogger("tallystick.collector")

FLUSH_SECONDS: Final = 1.0
_encode = msgspec.json.Encoder().encode


class Refusals:
    """Counts by (reason, name), with the time of the last one (µs since the epoch)."""

    __slots__ = ("_counts", "_last", "total")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], int] = {}
        self.total = 0
        """Every refusal counted by this worker since it started (never reset)."""

    def __bool__(self) -> bool:
        return bool(self._counts)

    def add(self, reason: str, name: str, at_us: int) -> None:
        key = (reason, name)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._last[key] = at_us
        self.total += 1

    def take_frames(self) -> list[bytes]:
        """The counts so far as spool frames (one per reason and name, stamped with its last
        refusal), and start counting afresh."""
        counts, last = self._counts, self._last
        self._counts, self._last = {}, {}
        return [
            spool.frame(
                spool.DECLINED,
                last[key],
                _encode(
                    [{"stream": COLLECTOR_STREAM, "reason": key[0], "name": key[1], "count": n}]
                ),
            )
            for key, n in counts.items()
        ]


def write_quietly(writer: spool.SpoolWriter, frames: list[bytes]) -> None:
    """Hand counts to the spool without waiting; a failed write is logged (the counts are lost,
    the requests were refused either way)."""
    if frames:
        writer.submit(frames, _report)


def _report(error: BaseException | None) -> None:
    if error is not None:
        log.warning("could not record the refused requests' counts: %s", error)
