"""The ``X-Tally-Flags`` response header: which flags and experiment variations a response was
made with, so that logs and analyses can tell them apart (pure).

The server's ``POST /v1/flags/evaluate`` sets it, and so do the SDK's middlewares
(:mod:`tallystick.sdk.middleware`) for the flags an application evaluated during one request.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Final

from tallystick.flags.evaluate import Evaluation

__all__ = ["ACTIVE_HEADER", "active_header"]

ACTIVE_HEADER: Final = "X-Tally-Flags"
"""The response header listing a unit's active flags and experiment variations."""
_HEADER_SAFE: Final = "-._~:/"


def active_header(evaluations: Mapping[str, Evaluation]) -> str:
    """``key=variation`` for each experiment assignment and ``key=value`` for each targeted or
    rolled-out value that is a boolean, string or number (``true``/``false``; a string
    percent-encoded); flags at their default, killed, disabled, unknown or with a JSON value are
    left out. Comma-separated, in flag-key order."""
    parts: list[str] = []
    for key in sorted(evaluations):
        e = evaluations[key]
        if e.reason == "experiment" and e.variation_key is not None:
            shown = urllib.parse.quote(e.variation_key, safe=_HEADER_SAFE)
        elif e.reason in ("targeted", "rollout") and isinstance(e.value, bool):
            shown = "true" if e.value else "false"
        elif e.reason in ("targeted", "rollout") and isinstance(e.value, int | float | str):
            shown = urllib.parse.quote(str(e.value), safe=_HEADER_SAFE)
        else:
            continue
        parts.append(f"{key}={shown}")
    return ",".join(parts)
