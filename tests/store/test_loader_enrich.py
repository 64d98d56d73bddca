"""The loader end to end with enrichment: spool segments with request-context frames (and the
older frame kinds) → lake rows with the enriched columns, the raw user agent dropped when the
stream does not keep it, geo copied, clock skew corrected before partitioning, sessions that
continue across loads and restarts, and each file saying what enriched it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pyarrow.parquet as pq
from starlette.testclient import TestClient

from support import load, make_event
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.enrich.pipeline import enrichment_of
from tallystick.store import spool
from tallystick.store.lake import EVENTS, Lake
from tallystick.store.loader import Loader
from tallystick.store.reader import connect
from tallystick.store.spool import RequestContext, SpoolWriter

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


def _us(at: dt.datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _iso(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _spool(settings: Settings, frames: list[bytes]) -> None:
    writer = SpoolWriter(settings.spool_dir, rotate_seconds=60)
    writer.start()
    writer.append_sync(frames)
    writer.close()


def _rows(settings: Settings, where: str = "true") -> list[dict[str, Any]]:
    con = connect(Lake(settings.lake_dir))
    cursor = con.execute(f"SELECT * FROM raw_events WHERE {where} ORDER BY client_ts, event_id")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _event(minute: int, **fields: Any) -> dict[str, Any]:
    return make_event(client_ts=_iso(NOW + dt.timedelta(minutes=minute)), **fields)


def test_context_frames_load_enriched(settings: Settings) -> None:
    web = RequestContext(
        "web",
        keep_user_agent=True,
        user_agent=CHROME,
        country="GB",
        region="GB-ENG",
        network="81.2.69.0/24",
    )
    narrow = RequestContext("narrow", keep_user_agent=False, user_agent=BOT, country="DE")
    visitor = {"anonymous_id": "a-7"}
    sent = _iso(NOW - dt.timedelta(seconds=2))
    frames = [
        spool.context_frame(
            web,
            _us(NOW),
            msgspec.json.encode(
                [
                    _event(0, session={}, user=visitor, page={"pageview_id": "pv-1"}),
                    _event(1, session={}, user=visitor, page={"pageview_id": "pv-2"}),
                ]
            ),
        ),
        spool.context_frame(
            narrow, _us(NOW), msgspec.json.encode([_event(2, agent={"user_agent": BOT})])
        ),
        # frames written before request contexts still load, unenriched where it needs them
        spool.stream_frame("old", _us(NOW), msgspec.json.encode([_event(3, sent_ts=sent)])),
        spool.frame(spool.EVENTS, _us(NOW), msgspec.json.encode([_event(4, sent_ts=sent)])),
    ]
    _spool(settings, frames)
    assert Loader(settings).load_once().events == 5
    rows = _rows(settings)
    first, second, bot, old, oldest = rows
    assert [r["stream"] for r in rows] == ["web", "web", "narrow", "old", None]
    # the request's User-Agent header, parsed; events that sent none store none
    assert (first["agent_browser"], first["agent_os"], first["agent_device"]) == (
        "Chrome",
        "Mac OS X",
        "Mac",
    )
    assert (first["agent_user_agent"], first["agent_is_bot"]) == (None, False)
    assert (first["geo_country"], first["geo_region"], first["geo_network"]) == (
        "GB",
        "GB-ENG",
        "81.2.69.0/24",
    )
    # an inferred session, shared by the visitor's two page views, which link up
    assert first["session_inferred"] is True
    assert first["session_id"].startswith("s~")
    assert second["session_id"] == first["session_id"]
    assert (first["page_previous_pageview_id"], second["page_previous_pageview_id"]) == (
        None,
        "pv-1",
    )
    # the stream does not keep the raw user agent: parsed, flagged, dropped
    assert (bot["agent_user_agent"], bot["agent_browser"], bot["agent_is_bot"]) == (
        None,
        "bingbot",
        True,
    )
    assert (bot["geo_country"], bot["session_id"], bot["session_inferred"]) == ("DE", "s-1", False)
    for row in (old, oldest):
        assert (row["agent_browser"], row["agent_is_bot"], row["geo_country"]) == (None,) * 3
        assert row["clock_skew_ms"] == 2000


def test_clock_correction_moves_an_event_to_its_true_day(settings: Settings) -> None:
    """A client whose clock is two days behind: the event is stored under the corrected day,
    with the client's reading kept."""
    behind = dt.timedelta(days=2)
    event = make_event(client_ts=_iso(NOW - behind), sent_ts=_iso(NOW - behind))
    _spool(
        settings,
        [spool.context_frame(RequestContext("web"), _us(NOW), msgspec.json.encode([event]))],
    )
    Loader(settings).load_once()
    assert list(Lake(settings.lake_dir).partitions()) == [NOW.date()]
    [row] = _rows(settings)
    assert row["client_ts"] == NOW
    assert row["client_ts_original"] == NOW - behind
    assert row["clock_skew_ms"] == behind // dt.timedelta(milliseconds=1)


def test_sessions_continue_across_loads_and_restarts(settings: Settings) -> None:
    visitor = {"anonymous_id": "a-1"}
    for minute in (0, 20, 45, 120):
        event = _event(minute, session={}, user=visitor)
        at = _us(NOW + dt.timedelta(minutes=minute))
        _spool(
            settings, [spool.context_frame(RequestContext("web"), at, msgspec.json.encode([event]))]
        )
        Loader(settings).load_once()  # a new loader process each time
    ids = [r["session_id"] for r in _rows(settings)]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert (settings.data / "state" / "sessions.json").exists()


def test_files_say_what_enriched_them_and_compaction_keeps_it(settings: Settings) -> None:
    loader = Loader(settings)
    for minute in (0, 1):
        _spool(
            settings,
            [
                spool.context_frame(
                    RequestContext("web"), _us(NOW), msgspec.json.encode([_event(minute)])
                )
            ],
        )
        loader.load_once()
    lake = Lake(settings.lake_dir)
    [path, _] = lake.absolute(lake.files(EVENTS))
    [record] = enrichment_of(pq.read_schema(path).metadata)
    assert "crawler-user-agents" in record["packages"]
    assert loader.compact(min_files=2) == 2 + 2  # the events and the ledger
    [merged] = lake.absolute(lake.files(EVENTS))
    assert enrichment_of(pq.read_schema(merged).metadata) == [record]


def test_with_every_step_off_the_rows_are_as_decoded(settings: Settings) -> None:
    off = settings.with_changes(
        enrich_user_agent=False,
        enrich_bots=False,
        enrich_geo=False,
        enrich_clock=False,
        enrich_sessions=False,
    )
    ctx = RequestContext("web", keep_user_agent=True, user_agent=BOT, country="DE")
    event = _event(0, agent={"user_agent": CHROME}, session={}, user={"anonymous_id": "a"})
    event["sent_ts"] = _iso(NOW - dt.timedelta(days=1))
    _spool(off, [spool.context_frame(ctx, _us(NOW), msgspec.json.encode([event]))])
    Loader(off).load_once()
    [row] = _rows(off)
    assert row["agent_user_agent"] == CHROME
    enriched = [
        "agent_browser",
        "agent_is_bot",
        "geo_country",
        "clock_skew_ms",
        "client_ts_original",
        "session_inferred",
        "session_id",
        "page_previous_pageview_id",
    ]
    assert [row[c] for c in enriched] == [None] * len(enriched)
    assert row["client_ts"] == NOW
    assert not (off.data / "state").exists()


def test_through_the_collector(settings: Settings, app: Collector, collector: TestClient) -> None:
    """The real collector spools the request's User-Agent header with the events; an event
    without its own user agent is judged by it when a browser sent it, and is unknown when a
    script or backend did."""
    own = make_event(agent={"user_agent": CHROME}, session={}, user={"anonymous_id": "a-1"})
    bare = make_event(session={}, user={"anonymous_id": "a-1"})
    crawled = make_event(session={}, user={"anonymous_id": "a-2"})
    response = collector.post("/v1/events", json=[own, bare], headers={"User-Agent": "curl/8.5.0"})
    assert response.status_code == 200
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    response = collector.post("/v1/events", json=[crawled], headers={"User-Agent": googlebot})
    assert response.status_code == 200
    load(settings, app)
    rows = {r["event_id"]: r for r in _rows(settings)}
    assert (rows[own["event_id"]]["agent_browser"], rows[own["event_id"]]["agent_is_bot"]) == (
        "Chrome",
        False,
    )
    assert rows[own["event_id"]]["agent_user_agent"] == CHROME
    assert (rows[bare["event_id"]]["agent_user_agent"], rows[bare["event_id"]]["agent_is_bot"]) == (
        None,
        None,
    )
    assert (
        rows[crawled["event_id"]]["agent_browser"],
        rows[crawled["event_id"]]["agent_is_bot"],
    ) == (
        "Googlebot",
        True,
    )
    assert rows[own["event_id"]]["session_id"] == rows[bare["event_id"]]["session_id"]
