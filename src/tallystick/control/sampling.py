"""Deterministic, nested sampling: keep a unit (a session, a user, a page view) or not.

A unit's id is hashed once, with its unit type as salt, to a point in [0, 2**64); a stream with
rate ``r`` keeps the units whose point is below ``r * 2**64``. So the decision is the same on
every run, in every process and on every collector (no randomness, no Python ``hash()``); a 5 %
stream keeps a subset of what a 10 % stream of the same unit keeps (same point, lower
threshold); and streams of different unit types decide independently. Comparing integers (not
a float in [0, 1)) makes rate 1 keep everything and rate 0 nothing.

The same decision in DuckDB SQL, to check or re-derive a sample from the lake:
``('0x' || left(sha256('session:' || session_id), 16))::UBIGINT < <threshold(rate)>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias

Unit: TypeAlias = Literal["session", "user", "pageview"]

#: where each unit's id is in an event (dotted paths of the monoschema); a user is its
#: ``user.id``, or the browser's ``user.anonymous_id`` before it signs in
UNIT_FIELDS: Final[dict[Unit, tuple[str, ...]]] = {
    "session": ("session.id",),
    "user": ("user.id", "user.anonymous_id"),
    "pageview": ("page.pageview_id",),
}
SPACE: Final = 2**64


class SamplingError(ValueError):
    """A unit or rate that cannot be sampled on."""


def check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise SamplingError(f"a sample rate is a number from 0 to 1, got {rate!r}")
    return float(rate)


def check_unit(unit: str) -> Unit:
    if unit not in UNIT_FIELDS:
        raise SamplingError(
            f"cannot sample by {unit!r}: use one of {', '.join(UNIT_FIELDS)}"
            + (" (events carry no device id)" if unit == "device" else "")
        )
    return unit


@lru_cache(maxsize=65_536)
def point(unit: Unit, unit_id: str) -> int:
    """The unit's place in [0, 2**64): the first 8 bytes of sha256("<unit>:<id>") (remembered
    for recent units: a session's events arrive together)."""
    digest = hashlib.sha256(f"{unit}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def threshold(rate: float) -> int:
    """Points below this are kept at ``rate``."""
    return round(check_rate(rate) * SPACE)


def keep(unit: Unit, unit_id: str, rate: float) -> bool:
    """Whether a stream sampling ``unit`` at ``rate`` keeps the unit ``unit_id``."""
    return point(unit, unit_id) < threshold(rate)


_UNIT_PATHS: Final = {
    u: tuple(tuple(p.split(".")) for p in paths) for u, paths in UNIT_FIELDS.items()
}


def unit_id(event: Mapping[str, Any], unit: Unit) -> str | None:
    """The id of the event's ``unit`` (the first non-empty of its fields), or None."""
    for path in _UNIT_PATHS[unit]:
        value: Any = event
        for part in path:
            value = value.get(part) if isinstance(value, dict | Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def keeps_event(event: Mapping[str, Any], unit: Unit, rate: float) -> bool:
    """Whether a stream sampling ``unit`` at ``rate`` keeps ``event``. An event without the
    unit's id cannot be attributed to a unit and is kept: sampling never silently drops what
    it cannot re-weight."""
    found = unit_id(event, unit)
    return True if found is None else keep(unit, found, rate)
