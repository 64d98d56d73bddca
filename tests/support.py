"""Helpers shared by tests (imported as ``support``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.store.loader import Loader

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` in a thread of its own: a browser test that ran earlier on the
    same pytest-xdist worker may have left an event loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def make_event(name: str = "project.commit", **fields: Any) -> dict[str, Any]:
    """A valid monoschema event; keyword arguments override or add fields."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "client_ts": dt.datetime.now(dt.UTC).isoformat(),
        "user": {"id": "u-1"},
        "session": {"id": "s-1", "seq": 1},
        "data": {"files": 3},
    }
    event.update(fields)
    return event


def load(settings: Settings, collector: Collector | None = None) -> None:
    """Move everything in the spool into the lake (what the loader process does)."""
    if collector is not None:
        collector.spool.seal()
    Loader(settings).load_once()


def refusals(
    events: list[dict[str, Any]],
    code: str,
    message: str,
    refuse: Callable[[dict[str, Any]], bool] = lambda _event: True,
) -> list[dict[str, Any]]:
    """The collector's per-event ``errors`` for the events ``refuse`` picks (for fake servers)."""
    return [
        {"index": i, "event_id": e["event_id"], "code": code, "message": message}
        for i, e in enumerate(events)
        if refuse(e)
    ]
