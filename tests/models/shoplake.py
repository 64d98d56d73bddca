"""A small real lake for the model tests: a ``shop`` stream, a ``web`` stream, copies of one
event in both, a re-sent copy, rows stored before streams existed (NULL stream, and a file
with no ``stream`` column at all).

Every expected number in the tests is counted by hand from ``SHOP`` below. ``NOW`` is
2030-01-10 12:00 UTC: the last complete UTC day is 2030-01-09, the day before 2030-01-08.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq

from metrics.lakerows import to_table
from tallystick.control.definitions import Model, Stream, parse_model
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake

NOW: Final = dt.datetime(2030, 1, 10, 12, tzinfo=dt.UTC)


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2030, 1, day, hour, tzinfo=dt.UTC)


def row(
    event_id: str,
    stream: str | None,
    client: dt.datetime,
    received: dt.datetime,
    user: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "name": "order.paid",
        "client_ts": client,
        "received_ts": received,
        "user_id": user,
        "page_url": f"https://shop.example/{event_id}",
        "stream": stream,
        "data": data,
    }


#: the shop stream's copies; o1 is also re-sent later (that copy must never count)
SHOP: Final = [
    row(
        "o1",
        "shop",
        at(9, 10),
        at(10, 8),
        "u1",
        {"amount": 10, "plan": "free", "qty": 1, "coupon": None},
    ),
    row(
        "o2",
        "shop",
        at(9, 11),
        at(10, 9),
        "u2",
        {"amount": 250, "plan": "pro", "qty": 2, "coupon": "SAVE"},
    ),
    row("o3", "shop", at(9, 12), at(10, 10), None, {"amount": -5, "plan": "gold", "qty": 3}),
    row("o4", "shop", at(8, 9), at(9, 0), "u1", {"amount": "n/a", "plan": "free", "qty": 1}),
    row("o5", "shop", at(1, 9), at(1, 10), "u3", {"amount": 40, "qty": 5}),
]
RESENT: Final = row("o1", "shop", at(9, 10), at(10, 11), "u9", {"amount": 999, "plan": "x"})
#: o2 routed to the web stream as well (its own copy), and an event only web has
WEB: Final = [
    row("o2", "web", at(9, 11), at(10, 9), None, {"amount": 250}),
    row("w1", "web", at(9, 13), at(10, 11), "u7", {"amount": 1}),
]
#: stored before streams existed
NO_STREAM: Final = [row("n1", None, at(9, 14), at(10, 11), None, {"amount": 77})]
OLD_FILE: Final = [row("n2", None, at(5, 9), at(5, 10), None, {"amount": 66})]


def write_shop(root: Path) -> Lake:
    """The lake above under ``root`` (the lake's root, e.g. ``DATA/lake``)."""
    lake = Lake(root)
    lake.write_events(to_table(SHOP), "shop-1")
    lake.write_events(to_table([RESENT, *WEB, *NO_STREAM]), "shop-2")
    old = to_table(OLD_FILE).drop_columns(["stream"])
    folder = root / "events" / "date=2030-01-05"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(old, folder / "before-streams.parquet")
    return lake


def orders(**changes: Any) -> Model:
    """The ``orders`` model of the shop stream (a view), with any key replaced."""
    raw: dict[str, Any] = {
        "name": "orders",
        "stream": "shop",
        "fields": [
            "user.id",
            {"field": "data.amount", "as": "amount"},
            "data.plan",
            "data.qty",
            "data.coupon",
            {"field": "client_ts", "as": "happened"},
        ],
    }
    raw.update(changes)
    return parse_model(raw)


def add_streams(store: ControlStore) -> None:
    for name in ("shop", "web"):
        store.put_stream(Stream(name=name, events=("order.*",)), "test")
