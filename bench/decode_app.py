"""A bare decode-only endpoint for the ingest benchmark: the same body handling and validation as
the collector, but no spool, no fsync. Its throughput is the ceiling the collector is compared to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from tallystick.collect.body import read_body
from tallystick.collect.validate import check_array, split_events
from tallystick.messages import Problem

Message = MutableMapping[str, Any]
_encode = msgspec.json.Encoder().encode


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    if scope["path"] == "/readyz":
        status, payload = 200, b'{"status":"ready"}'
    else:
        body = await read_body(receive, 1 << 20, None)
        assert isinstance(body, bytes)
        array = split_events(body)
        now = dt.datetime.now(dt.UTC)
        checked = (
            array
            if isinstance(array, Problem)
            else check_array(
                array, max_event_bytes=32768, max_events=1000, now=now, max_future_seconds=86400
            )
        )
        if isinstance(checked, Problem):
            status, payload = 400, _encode({"error": checked.as_dict()})
        else:
            status = 200
            payload = _encode({"accepted": len(checked.events), "rejected": len(checked.rejected)})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
