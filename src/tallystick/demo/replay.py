"""Replaying the demo's history through a collector today, as real clients would have sent it.

The generator stamps each event's ``sent_ts`` in the simulated past (when the client would have
sent it). Sent through a collector now, that history would look like clients whose clocks are
days behind, and the collector's clock correction (``enrich_clock``) would move every event to
today. So the replay stamps ``sent_ts`` with the time of sending, as the SDKs do, and gives a few
devices a clock that is off — 1.5 % are 47 minutes ahead, 1 % five hours behind — shifting both
their ``client_ts`` and ``sent_ts``: the collector measures the skew, corrects those events
back to the time they happened (within the transit time), and ``tally quality skew`` has
something to show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

AHEAD: Final = dt.timedelta(minutes=47)
BEHIND: Final = -dt.timedelta(hours=5)


def clock_offset(device: str) -> dt.timedelta:
    """How far off the clock of ``device`` (a user or anonymous id) is: mostly not at all."""
    bucket = int(hashlib.md5(device.encode(), usedforsecurity=False).hexdigest()[:8], 16) % 1000
    if bucket < 15:
        return AHEAD
    if bucket < 25:
        return BEHIND
    return dt.timedelta(0)


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _device(event: dict[str, Any]) -> str:
    user = event.get("user") or {}
    return str(user.get("anonymous_id") or user.get("id") or event.get("event_id"))


def as_sent_now(
    events: Iterable[dict[str, Any]],
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Iterator[dict[str, Any]]:
    """``events`` with ``sent_ts`` set to ``clock()`` when each is taken (just before it is sent)
    and, on devices whose clock is off, ``client_ts`` and ``sent_ts`` read from that clock."""
    for event in events:
        offset = clock_offset(_device(event))
        out = dict(event)
        out["sent_ts"] = _stamp(clock() + offset)
        if offset:
            happened = dt.datetime.fromisoformat(str(event["client_ts"]).replace("Z", "+00:00"))
            out["client_ts"] = _stamp(happened + offset)
        yield out
