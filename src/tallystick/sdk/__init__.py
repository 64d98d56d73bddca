"""The Python SDK: send events to a tallystick collector.

>>> from tallystick.sdk import Tracker
>>> with Tracker("http://127.0.0.1:8000", app_id="research-portal") as tracker:  # doctest: +SKIP
...     tracker.track("project.commit", user_id="u-1842", session_id="s-5f1a0e",
...                   data={"project_id": "p-12", "files": 3})

``track()`` is cheap and thread-safe: it queues the event in memory and returns its ``event_id``.
One background thread sends batches to ``POST {endpoint}/v1/events``, retries with backoff when
the collector is unreachable, and keeps undelivered batches on disk so a restarted process sends
them. ``close()`` (also run at interpreter exit) delivers what is left. See
:mod:`tallystick.sdk.tracker` for the delivery rules.

Feature flags (``Tracker(..., flags_environment="prod")``, then ``tracker.flag(...)`` and
``tracker.variant(...)``) are evaluated locally from a polled (or, with ``flags_stream=True``,
streamed) ruleset: :mod:`tallystick.sdk.flags` (``FlagClient`` is imported from it on first use).
:mod:`tallystick.sdk.middleware` sets ``X-Tally-Flags`` on an ASGI or WSGI application's
responses, listing the flags and variations evaluated for each request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tallystick.sdk.events import TrackContext
from tallystick.sdk.tracker import Tracker, TrackerStats

if TYPE_CHECKING:
    from tallystick.sdk.flags import FlagClient

__all__ = ["FlagClient", "TrackContext", "Tracker", "TrackerStats"]


def __getattr__(name: str) -> Any:
    if name == "FlagClient":  # imported lazily: the flags engine is only loaded when used
        from tallystick.sdk.flags import FlagClient

        return FlagClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
