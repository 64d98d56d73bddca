"""The metrics engine: analyses over the lake, rendered per engine (DuckDB, ClickHouse)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tallystick.metrics.api import (
        QueryFailed,
        active,
        core,
        count,
        frame,
        funnel,
        percentile,
        query,
        ratio,
        retention,
        stickiness,
    )

# The Python API (tallystick.metrics.api), imported on first use so that importing a submodule
# (the CLI does, to stay fast) does not load the engines.
__all__ = [
    "QueryFailed",
    "active",
    "core",
    "count",
    "frame",
    "funnel",
    "percentile",
    "query",
    "ratio",
    "retention",
    "stickiness",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tallystick.metrics import api

        return getattr(api, name)
    raise AttributeError(f"module 'tallystick.metrics' has no attribute {name!r}")
