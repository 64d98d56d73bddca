"""When to try again: exponential backoff with full jitter, and ``Retry-After`` (pure).

Full jitter (a uniformly random delay between 0 and the exponential cap) spreads the retries of
many clients that failed at the same moment, so a collector coming back from an outage is not hit
by all of them at once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from collections.abc import Callable
from typing import Final

#: ``Retry-After`` values above this many seconds are clamped (a day).
MAX_RETRY_AFTER: Final = 86_400.0


def backoff_cap(attempt: int, base: float, maximum: float) -> float:
    """The largest delay before retry number ``attempt`` (0-based): ``min(maximum, base·2**n)``."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0 or maximum <= 0:
        return 0.0
    # 2**attempt overflows a float for huge attempts; past the cap the result is the cap anyway.
    if attempt >= 1024 or base * math.ldexp(1.0, attempt) >= maximum:
        return maximum
    return base * math.ldexp(1.0, attempt)


def backoff_delay(
    attempt: int,
    base: float,
    maximum: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """A random delay in ``[0, min(maximum, base·2**attempt)]`` before retry ``attempt`` (0-based).

    ``rand`` returns a float in ``[0, 1)``; pass your own for deterministic tests.
    """
    cap = backoff_cap(attempt, base, maximum)
    return min(cap, max(0.0, rand() * cap))


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Returns ``None`` when the header is missing or unreadable; never a negative number.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        current = now if now is not None else dt.datetime.now(dt.UTC)
        seconds = (when - current).total_seconds()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
