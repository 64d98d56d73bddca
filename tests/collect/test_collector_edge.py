"""The collector's edge in-process (the app with its lifespan, a real SQLite control plane, the
real spool and loader): what is kept of a request's origin, blocked ranges, rate limits and the
counts of what was refused. ``test_collector_edge_live.py`` does the same through `tally serve`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import load, make_event
from tallystick import messages
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.blocks import (
    BLOCKED,
    COLLECTOR_STREAM,
    RATE_LIMITED,
    add_block,
    hits,
    list_blocks,
)
from tallystick.control.definitions import parse_stream
from tallystick.control.store import ControlStore
from tallystick.store import spool
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

DATA = Path(__file__).resolve().parents[1] / "data" / "maxmind"
CITY = DATA / "GeoIP2-City-Test.mmdb"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari"


@pytest.fixture
def store(settings: Settings) -> Iterator[ControlStore]:
    with ControlStore.for_settings(settings) as s:
        yield s


def client_at(app: Collector, address: str) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", client=(address, 40_000))


def segments(settings: Settings) -> list[spool.Frame]:
    return [
        fr
        for path in sorted(settings.spool_dir.glob("*.ready"))
        for fr in spool.read_segment(path).frames
    ]


def spool_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(settings.spool_dir.glob("*.ready")))


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def lake_rows(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    con = connect(lake)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("changes", "address", "expected"),
    [
        ({"geoip_database": CITY}, "81.2.69.160", ("GB", "GB-ENG", "81.2.69.0/24")),
        ({"geoip_database": CITY}, "::ffff:81.2.69.160", ("GB", "GB-ENG", "81.2.69.0/24")),
        ({"geoip_database": CITY}, "2001:218::1", ("JP", None, "2001:218::/48")),
        ({"geoip_database": CITY}, "10.1.2.3", (None, None, "10.1.2.0/24")),
        ({"geoip_database": CITY}, "testclient", (None, None, None)),
        ({}, "81.2.69.160", (None, None, "81.2.69.0/24")),  # no database: the network only
        ({"geoip_database": CITY, "enrich_geo": False}, "81.2.69.160", (None, None, None)),
    ],
)
def test_origin_is_spooled_as_country_region_and_network_never_the_address(
    settings: Settings,
    changes: dict[str, Any],
    address: str,
    expected: tuple[str | None, str | None, str | None],
) -> None:
    settings = dataclasses.replace(settings, **changes)
    app = Collector(settings)
    events = [make_event(), make_event("signin.open", agent={"user_agent": "sdk/1"})]
    with client_at(app, address) as client:
        response = client.post("/v1/events", json=events, headers={"User-Agent": UA})
        assert response.json() == {"accepted": 2, "rejected": 0}
        app.spool.seal()
        (frame,) = segments(settings)
    assert frame.kind == spool.CONTEXT_EVENTS
    context, _ = spool.split_context_payload(frame.payload)
    assert (context.country, context.region, context.network) == expected
    assert (context.stream, context.keep_user_agent, context.user_agent) == ("unrouted", True, UA)
    assert address.encode() not in spool_bytes(settings)


def test_origin_reaches_the_lake_and_the_address_no_file(settings: Settings) -> None:
    settings = dataclasses.replace(settings, geoip_database=CITY)
    app = Collector(settings)
    with client_at(app, "81.2.69.160") as client:
        client.post("/v1/events", json=[make_event(), make_event()], headers={"User-Agent": UA})
        client.post("/v1/events", content=b"[{broken")  # a failed event: no address either
        load(settings, app)
    lake = Lake(settings.lake_dir)
    assert lake_rows(
        lake, "SELECT geo_country, geo_region, geo_network, count(*) FROM raw_events GROUP BY ALL"
    ) == [("GB", "GB-ENG", "81.2.69.0/24", 2)]
    assert lake_rows(lake, "SELECT count(*) FROM failed_events") == [(1,)]
    assert files_holding(settings.data, b"81.2.69.160") == []


def test_the_user_agent_header_is_cut_to_2048_characters(
    app: Collector, settings: Settings
) -> None:
    with client_at(app, "192.0.2.1") as client:
        client.post("/v1/events", json=[make_event()], headers={"User-Agent": "x" * 5000})
        app.spool.seal()
        (frame,) = segments(settings)
    context, _ = spool.split_context_payload(frame.payload)
    assert context.user_agent == "x" * 2048


def test_a_stream_that_does_not_keep_the_user_agent_still_spools_it_for_parsing(
    app: Collector, settings: Settings, store: ControlStore
) -> None:
    store.put_stream(parse_stream({"name": "lean", "events": ["*"], "keep": ["session"]}), "t")
    store.put_stream(parse_stream({"name": "full", "events": ["*"]}), "t")
    event = make_event(agent={"user_agent": UA}, page={"url": "https://x.org/"})
    with client_at(app, "192.0.2.1") as client:
        app.reload_controls()
        client.post("/v1/events", json=[event])
        app.spool.seal()
        frames = {
            ctx.stream: (ctx, body)
            for ctx, body in (
                spool.split_context_payload(f.payload)
                for f in segments(settings)
                if f.kind == spool.CONTEXT_EVENTS
            )
        }
        load(settings, app)
    lean_context, lean_body = frames["lean"]
    assert not lean_context.keep_user_agent
    assert UA.encode() in lean_body  # for the loader to parse, then drop
    assert b"https://x.org/" not in lean_body  # the rest of what it does not keep is gone
    assert frames["full"][0].keep_user_agent
    rows = lake_rows(
        Lake(settings.lake_dir),
        "SELECT stream, agent_user_agent, agent_browser, page_url FROM raw_events ORDER BY 1",
    )
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("full", UA, "https://x.org/"),
        ("lean", None, None),
    ]
    assert rows[1][2] == rows[0][2]  # parsed all the same (when user-agent parsing is on)


def test_blocked_ranges_get_403_before_the_body_is_read_and_are_counted(
    app: Collector, settings: Settings, store: ControlStore
) -> None:
    block = add_block(store, "198.51.100.0/24", "flood", "test")
    add_block(store, "2001:db8::/32", "test range", "test")
    started = time.monotonic()
    with TestClient(app):
        app.reload_controls()
        blocked, also = client_at(app, "198.51.100.77"), client_at(app, "198.51.100.78")
        for n in range(30):
            # not even JSON: never read, so not a failed event either
            response = (blocked if n % 2 else also).post("/v1/events", content=b"{not json")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == messages.IP_BLOCKED
        free = client_at(app, "198.51.101.1")
        assert free.post("/v1/events", json=[make_event()]).status_code == 200
    elapsed = time.monotonic() - started  # the app has shut down: the counts are in the spool
    declined = [f for f in segments(settings) if f.kind == spool.DECLINED]
    # at most one write a second, and one at shutdown; never one per request
    assert 1 <= len(declined) <= int(elapsed) + 2
    load(settings)
    assert lake_rows(
        Lake(settings.lake_dir),
        "SELECT stream, reason, name, sum(count) FROM declined_events GROUP BY ALL",
    ) == [(COLLECTOR_STREAM, BLOCKED, "198.51.100.0/24", 30)]
    assert lake_rows(Lake(settings.lake_dir), "SELECT count(*) FROM failed_events") == [(0,)]
    counted = hits(Lake(settings.lake_dir), list_blocks(store))
    assert counted[block.id].count == 30
    assert counted[block.id].last is not None


@pytest.mark.parametrize(
    ("limits", "first", "second", "limited_by"),
    [
        # per IP: the same address with different keys; another address is not limited
        ({"rate_limit_per_ip": 0.001}, ("192.0.2.1", "wk-a7f3"), ("192.0.2.2", "wk-a7f3"), "ip"),
        ({"rate_limit_per_ip": 0.001}, ("192.0.2.1", None), ("192.0.2.2", None), "ip"),
        # an IPv6 client is limited by its /64
        ({"rate_limit_per_ip": 0.001}, ("2001:db8:1:2::1", None), ("2001:db8:1:3::1", None), "ip"),
        # per key: one key from several addresses; another key is not limited
        ({"rate_limit_per_key": 0.001}, ("192.0.2.1", "wk-a7f3"), ("192.0.2.1", "wk-93c1"), "key"),
    ],
)
def test_rate_limits_answer_429_with_retry_after(
    settings: Settings,
    limits: dict[str, float],
    first: tuple[str, str | None],
    second: tuple[str, str | None],
    limited_by: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings.with_changes(rate_limit_burst=3, **limits)
    app = Collector(settings)

    def post(address: str, key: str | None, n: int) -> Any:
        if limited_by == "ip" and ":" in address:  # other hosts of the same /64
            address = address.rsplit(":", 1)[0] + f":{n + 1:x}"
        elif limited_by == "key":
            address = f"192.0.2.{n + 1}"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return client_at(app, address).post("/v1/events", json=[make_event()], headers=headers)

    with TestClient(app):
        answers = [post(*first, n) for n in range(5)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
        refused = answers[3]
        assert refused.json()["error"]["code"] == messages.RATE_LIMITED
        who = "your address" if limited_by == "ip" else "your write key"
        assert who in refused.json()["error"]["message"]
        assert 990 <= int(refused.headers["retry-after"]) <= 1000  # one token per 1,000 s
        assert post(*second, 9).status_code == 200
    assert b"Bearer" not in spool_bytes(settings)
    for _, key in (first, second):
        assert key is None or key not in caplog.text
    if limited_by == "key":  # the counts (the loader is slow to start: once is enough here)
        load(settings)
        assert lake_rows(
            Lake(settings.lake_dir),
            "SELECT stream, reason, name, sum(count) FROM declined_events GROUP BY ALL",
        ) == [(COLLECTOR_STREAM, RATE_LIMITED, "key", 2)]


def test_requests_without_a_known_address_or_key_skip_those_limits(settings: Settings) -> None:
    settings = dataclasses.replace(
        settings, rate_limit_per_ip=0.001, rate_limit_per_key=0.001, rate_limit_burst=1
    )
    app = Collector(settings)
    with client_at(app, "testclient") as client:
        codes = [client.post("/v1/events", json=[make_event()]).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
