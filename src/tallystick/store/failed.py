"""Failed events: every rejected event is kept with its reason, never dropped silently."""

from __future__ import annotations

import datetime as dt

import msgspec

SOURCE_HTTP = "http"
SOURCE_IMPORT = "import"


class FailedEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One rejected event: what was wrong, when, where from, and its raw payload (truncated)."""

    received_ts: dt.datetime
    source: str
    error_code: str
    error_message: str
    raw: str
    raw_truncated: bool = False
    index: int | None = None
    event_id: str | None = None
    origin: str | None = None


def truncate_raw(raw: bytes | str, limit: int) -> tuple[str, bool]:
    """The payload as text, cut to ``limit`` bytes; invalid UTF-8 is shown with replacements."""
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    cut = len(data) > limit
    return data[:limit].decode("utf-8", "replace"), cut
