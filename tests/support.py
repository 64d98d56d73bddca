"""Helpers shared by tests (imported as ``support``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import math
import urllib.error
import urllib.request
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


def http_call(
    base: str,
    method: str,
    path: str,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], Any]:
    """One request to a test server: (status, headers lower-cased, the JSON body or None).
    ``key`` goes in ``Authorization: Bearer``; ``body`` is sent as JSON, ``raw`` as it is."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(base + path, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload, status = response.read(), response.status
            got = dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        payload, status, got = exc.read(), exc.code, dict(exc.headers.items())
    return status, {k.lower(): v for k, v in got.items()}, json.loads(payload) if payload else None


def same_json(a: Any, b: Any) -> bool:
    """Equal JSON documents, numbers to 1e-9 (an engine may sum in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        )
    return bool(a == b)
