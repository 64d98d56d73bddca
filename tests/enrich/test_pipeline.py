"""The enrichment steps on decoded tables: clock skew, which user agent is parsed and kept, geo
from the request context, steps switched off, and what each table records about them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings

from enrich.sessiongen import TIMEOUT, histories
from support import make_event
from tallystick.config import Settings
from tallystick.enrich.pipeline import (
    METADATA_KEY,
    Enricher,
    enrichment_of,
    merged_metadata,
    shared_agent_parser,
)
from tallystick.enrich.sessions import Answer, Row, session_id
from tallystick.store.decode import decode_frames
from tallystick.store.spool import RequestContext

RECEIVED = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
RECEIVED_US = int(RECEIVED.timestamp() * 1_000_000)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def _iso(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def enrich(
    tmp_path: Path,
    frames: list[tuple[list[dict[str, Any]], RequestContext | None]],
    **settings: Any,
) -> list[dict[str, Any]]:
    """Decode frames of events (each with its request context) and enrich them."""
    payloads = [msgspec.json.encode(events) for events, _ in frames]
    table, index = decode_frames(payloads, [RECEIVED_US] * len(frames))
    enricher = Enricher(Settings(data=tmp_path / "data", **settings))
    enriched = enricher.apply(table, index, [ctx for _, ctx in frames])
    enriched.commit()
    rows: list[dict[str, Any]] = enriched.table.to_pylist()
    return rows


S = dt.timedelta(seconds=1)
# (client_ts, sent_ts) relative to the receive time → (clock_skew_ms, corrected client_ts)
CLOCK_CASES = [
    pytest.param(-5 * S, None, None, -5 * S, id="no sent_ts: nothing measured"),
    pytest.param(-5 * S, -2 * S, 2000, -5 * S, id="transit time only"),
    pytest.param(-90 * S, -60 * S, 60_000, -90 * S, id="exactly the threshold: kept"),
    pytest.param(
        -90 * S,
        -60 * S - dt.timedelta(milliseconds=1),
        60_001,
        -30 * S + 0.001 * S,
        id="beyond it: corrected",
    ),
    pytest.param(3599 * S, 3600 * S, -3_600_000, -S, id="client clock an hour ahead"),
    pytest.param(-2 * 3600 * S, -3600 * S, 3_600_000, -3600 * S, id="an hour behind"),
    pytest.param(0 * S, -dt.timedelta(microseconds=1500), 1, 0 * S, id="whole ms, toward zero (+)"),
    pytest.param(0 * S, dt.timedelta(microseconds=1500), -1, 0 * S, id="whole ms, toward zero (-)"),
]


@pytest.mark.parametrize(("client", "sent", "skew_ms", "corrected"), CLOCK_CASES)
def test_clock_skew(
    tmp_path: Path,
    client: dt.timedelta,
    sent: dt.timedelta | None,
    skew_ms: int | None,
    corrected: dt.timedelta,
) -> None:
    event = make_event(client_ts=_iso(RECEIVED + client))
    if sent is not None:
        event["sent_ts"] = _iso(RECEIVED + sent)
    [row] = enrich(tmp_path, [([event], None)])
    assert row["clock_skew_ms"] == skew_ms
    assert row["client_ts"] == RECEIVED + corrected
    changed = corrected != client
    assert row["client_ts_original"] == (RECEIVED + client if changed else None)


def test_the_clock_threshold_is_a_setting(tmp_path: Path) -> None:
    event = make_event(client_ts=_iso(RECEIVED - 20 * S), sent_ts=_iso(RECEIVED - 15 * S))
    [row] = enrich(tmp_path, [([event], None)], clock_skew_threshold_seconds=10.0)
    assert row["client_ts"] == RECEIVED - 5 * S
    [row] = enrich(tmp_path, [([event], None)], enrich_clock=False)
    assert (row["client_ts"], row["clock_skew_ms"]) == (RECEIVED - 20 * S, None)


def _agent(ua: str | None = None, **user: Any) -> dict[str, Any]:
    event = make_event(client_ts=_iso(RECEIVED), user=user or {"id": "u-1"})
    if ua is not None:
        event["agent"] = {"user_agent": ua}
    return event


def test_which_user_agent_is_parsed_and_which_is_kept(tmp_path: Path) -> None:
    kept = RequestContext("web", keep_user_agent=True, user_agent=FIREFOX)
    dropped = RequestContext("narrow", keep_user_agent=False, user_agent="curl/8.5.0")
    rows = enrich(
        tmp_path,
        [
            ([_agent(CHROME), _agent(), _agent("")], kept),
            ([_agent(CHROME), _agent()], dropped),
            ([_agent(CHROME), _agent()], None),  # written before request contexts
            ([_agent()], RequestContext("web", user_agent=None)),
        ],
    )
    got = [(r["agent_user_agent"], r["agent_browser"], r["agent_is_bot"]) for r in rows]
    assert got == [
        (CHROME, "Chrome", False),  # the event's own user agent
        (None, "Firefox", False),  # none: the request's header (never stored)
        ("", "Firefox", False),  # an empty one counts as none
        (None, "Chrome", False),  # parsed, then dropped: the stream does not keep it
        (None, None, None),  # the header of a script or backend says nothing of the device
        (CHROME, "Chrome", False),
        (None, None, None),  # nothing to judge: unknown, not "no bot"
        (None, None, None),  # a request without a User-Agent header: unknown too
    ]
    assert rows[0]["agent_browser_version"] == "131"
    assert (rows[0]["agent_os"], rows[0]["agent_os_version"], rows[0]["agent_device"]) == (
        "Windows",
        "10",
        "Other",
    )


def test_steps_switched_off_leave_their_columns_null(tmp_path: Path) -> None:
    ctx = RequestContext("web", keep_user_agent=False, country="DE", region="DE-BW")
    events = [_agent("Googlebot/2.1 (+http://www.google.com/bot.html)", anonymous_id="a-1")]
    [row] = enrich(
        tmp_path,
        [(events, ctx)],
        enrich_user_agent=False,
        enrich_geo=False,
        enrich_sessions=False,
    )
    assert row["agent_is_bot"] is True
    assert row["agent_browser"] is None
    assert row["agent_user_agent"] is None  # still dropped: keeping is the stream's choice
    assert row["geo_country"] is None
    assert (row["session_id"], row["session_inferred"]) == ("s-1", None)
    [row] = enrich(tmp_path, [(events, ctx)], enrich_bots=False)
    assert (row["agent_browser"], row["agent_is_bot"]) == ("Googlebot", None)
    assert (row["geo_country"], row["geo_region"]) == ("DE", "DE-BW")


def test_geo_comes_from_the_request(tmp_path: Path) -> None:
    ctx = RequestContext("web", country="GB", region="GB-ENG", network="81.2.69.0/24")
    rows = enrich(tmp_path, [([_agent(), _agent()], ctx), ([_agent()], None)])
    assert [(r["geo_country"], r["geo_region"], r["geo_network"]) for r in rows] == [
        ("GB", "GB-ENG", "81.2.69.0/24"),
        ("GB", "GB-ENG", "81.2.69.0/24"),
        (None, None, None),
    ]


def test_sessions_use_the_corrected_time(tmp_path: Path) -> None:
    """A client whose clock is a day behind: its events are sessionized at the corrected time
    (and the state remembers that time)."""
    behind = dt.timedelta(days=1)
    events = [
        make_event(
            client_ts=_iso(RECEIVED - behind - 10 * S),
            sent_ts=_iso(RECEIVED - behind),
            user={"anonymous_id": "a-1"},
            session={},
        )
    ]
    [row] = enrich(tmp_path, [(events, None)])
    start = int((RECEIVED - 10 * S).timestamp() * 1_000_000)
    assert (row["session_id"], row["session_inferred"]) == (session_id("a:a-1", start), True)
    state = json.loads((tmp_path / "data" / "state" / "sessions.json").read_text())
    assert list(state["tracks"]) == ["a:a-1"]


def test_copies_of_streams_that_do_not_keep_the_session_are_not_sessionized(
    tmp_path: Path,
) -> None:
    """A stream whose keep list leaves session.id out chose not to store one: its copy of an
    event is not given an inferred session (the event did not arrive without one)."""
    event = make_event(user={"id": "u-1"}, session={})
    narrow = RequestContext("kpi", keep_session=False)
    wide = RequestContext("product")
    rows = enrich(tmp_path, [([event], narrow), ([event], wide)])
    assert [(r["session_id"] is None, r["session_inferred"]) for r in rows] == [
        (True, False),
        (False, True),
    ]


def test_each_table_records_what_enriched_it(tmp_path: Path) -> None:
    payload = msgspec.json.encode([make_event()])
    table, index = decode_frames([payload], [RECEIVED_US])
    enriched = Enricher(Settings(data=tmp_path)).apply(table, index, [None])
    [record] = enrichment_of(enriched.table.schema.metadata)
    assert record["steps"] == ["user_agent", "bots", "geo", "clock", "sessions"]
    assert record["packages"]["crawler-user-agents"].count(".") == 2
    assert record["packages"]["ua-parser-builtins"].isdigit()
    assert record["parser"] == shared_agent_parser().backend
    assert record["session_timeout_minutes"] == 30.0
    off = Enricher(Settings(data=tmp_path, enrich_user_agent=False, enrich_bots=False))
    [bare] = enrichment_of(off.apply(table, index, [None]).table.schema.metadata)
    assert "packages" not in bare
    merged = merged_metadata([enriched.table.schema.metadata, None, enriched.table.schema.metadata])
    assert merged is not None
    assert enrichment_of(merged) == [record]
    assert enrichment_of({METADATA_KEY: json.dumps([record, bare]).encode()}) == [record, bare]


def test_chunked_tables_are_enriched_row_by_row(tmp_path: Path) -> None:
    """Decoded batches arrive in several chunks: each row still gets its own user agent's
    answer and its own frame's context."""
    import pyarrow as pa

    agents = [CHROME, FIREFOX, "curl/8.5.0", "", CHROME]
    parts = []
    contexts = []
    for n, ua in enumerate(agents):
        payload = msgspec.json.encode([_agent(ua), _agent()])
        table, _ = decode_frames([payload], [RECEIVED_US])
        parts.append(table)
        contexts.append(RequestContext("web", user_agent=agents[-1 - n], country=str(n)))
    table = pa.concat_tables(parts)
    frames = pa.array([n for n in range(len(agents)) for _ in range(2)], pa.int32())
    rows = Enricher(Settings(data=tmp_path)).apply(table, frames, contexts).table.to_pylist()
    parser = shared_agent_parser()
    expected: list[str | None] = []
    for n, ua in enumerate(agents):
        header = agents[-1 - n] if agents[-1 - n].startswith("Mozilla/") else None
        used = [ua or header, header]  # the event's own, else a browser's header
        expected += [None if u is None else parser(u).browser for u in used]
    assert [r["agent_browser"] for r in rows] == expected
    assert [r["geo_country"] for r in rows] == [str(n) for n in range(len(agents)) for _ in "ab"]


@settings(max_examples=40, deadline=None)
@given(rows=histories)
def test_arrow_keys_and_order_agree_with_the_python_path(rows: list[Row]) -> None:
    """The loader computes track keys and the order in Arrow; same answers as the plain path."""
    import pyarrow as pa

    from tallystick.enrich.pipeline import session_keys
    from tallystick.enrich.sessions import Sessionizer, Sorted

    def column(name: str) -> pa.Array:
        return pa.array([getattr(r, name) for r in rows], pa.string())

    keys = session_keys(
        column("session_id"), column("anonymous_id"), column("user_id"), column("pageview_id")
    ).to_pylist()
    order = sorted(
        (i for i, k in enumerate(keys) if k is not None),
        key=lambda i: (keys[i], rows[i].time, rows[i].received, i),
    )
    sorted_rows = Sorted(
        [keys[i] for i in order],
        [rows[i].time for i in order],
        [rows[i].received for i in order],
        [rows[i].pageview_id for i in order],
        order,
    )
    answers, _ = Sessionizer(TIMEOUT).assign(rows)
    sessions, inferred, previous, _ = Sessionizer(TIMEOUT).assign_sorted(sorted_rows, len(rows))
    assert [
        Answer(s, f, p) if s is not None else Answer(r.session_id or None, False, None)
        for s, f, p, r in zip(sessions, inferred, previous, rows, strict=True)
    ] == answers
