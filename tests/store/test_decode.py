"""DuckDB's conversion of spooled JSON agrees with the plain-Python conversion, row for row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import make_event
from tallystick.schema import Event
from tallystick.store.decode import frames_to_table
from tallystick.store.lake import EVENT_SCHEMA, events_to_table

RECEIVED_US = 1_767_225_600_123_456


def _python(events: list[dict[str, Any]]) -> Any:
    decoded = [msgspec.json.decode(msgspec.json.encode(e), type=Event) for e in events]
    received = dt.datetime.fromtimestamp(RECEIVED_US / 1e6, tz=dt.UTC).replace(
        microsecond=RECEIVED_US % 1_000_000
    )
    return events_to_table(decoded, [received] * len(decoded))


EDGE_CASES: list[dict[str, Any]] = [
    make_event(),
    make_event(event_id="ABCDEF01-2345-6789-ABCD-EF0123456789"),
    make_event(client_ts="2026-01-01T01:00:00.5+02:00", sent_ts="2026-01-01T00:00:01Z"),
    make_event(data={}, experiments={}),
    make_event(data={"tags": ["a", 1, None, True, 2.5], "text": 'Grüße "quoted" \\ \n'}),
    make_event(
        app={"id": "a", "version": "1", "environment": "prod", "instance": "i"},
        client={"library": "l", "library_version": "2", "platform": "web"},
        user={"id": "u", "anonymous_id": "x", "is_logged_in": False},
        session={"id": "s", "seq": 9},
        page={"pageview_id": "p", "url": "https://e.org/?a=1", "referrer": "r"},
        agent={"user_agent": "Mozilla/5.0"},
        locale="de-DE",
        experiments={"signin-dialog": "b", "x.y": "1"},
        sample={"unit": "session", "rate": 0.25},
    ),
    {
        "event_id": "6f1c2c4e-8d0a-4a5e-9a57-5a4d7b1f3c11",
        "name": "a.b",
        "client_ts": "2026-03-01T00:00:00Z",
    },
]


def test_edge_cases_match_the_python_conversion() -> None:
    payload = msgspec.json.encode(EDGE_CASES)
    table = frames_to_table([payload], [RECEIVED_US])
    assert table.schema.equals(EVENT_SCHEMA)
    assert table.to_pylist() == _python(EDGE_CASES).to_pylist()


def test_several_frames_keep_their_receive_times() -> None:
    table = frames_to_table(
        [msgspec.json.encode([make_event()]), msgspec.json.encode([make_event(), make_event()])],
        [RECEIVED_US, RECEIVED_US + 1],
    )
    stamps = [t.timestamp() for t in table["received_ts"].to_pylist()]
    assert len(stamps) == 3
    assert stamps[0] < stamps[1] == stamps[2]


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@settings(max_examples=50, deadline=None)
@given(
    data=st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
        st.one_of(scalar, st.lists(scalar, max_size=4)),
        max_size=5,
    ),
    seq=st.integers(1, 2**40),
    instance=st.text(max_size=30),
)
def test_random_events_match(data: dict[str, Any], seq: int, instance: str) -> None:
    events = [make_event(data=data, session={"id": "s", "seq": seq}, app={"instance": instance})]
    table = frames_to_table([msgspec.json.encode(events)], [RECEIVED_US])
    expected = _python(events).to_pylist()[0]
    got = table.to_pylist()[0]
    assert msgspec.json.decode(got.pop("data") or "{}") == msgspec.json.decode(
        expected.pop("data") or "{}"
    )
    assert got == expected


@pytest.mark.parametrize("payloads", [[], [b"[]"]])
def test_nothing_in_nothing_out(payloads: list[bytes]) -> None:
    assert frames_to_table(payloads, [RECEIVED_US] * len(payloads)).num_rows == 0


def test_rfc3339_spellings_that_msgspec_accepts_load() -> None:
    spellings = [
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00-00:00",
        "2026-01-01T01:00:00+01:00",
    ]
    events = [make_event(client_ts=s) for s in spellings]
    table = frames_to_table([msgspec.json.encode(events)], [RECEIVED_US])
    assert {t.isoformat() for t in table["client_ts"].to_pylist()} == {"2026-01-01T00:00:00+00:00"}


def test_python_fallback_gives_the_same_rows() -> None:
    from tallystick.store import decode

    payload = msgspec.json.encode(EDGE_CASES)
    python, python_frames = decode._with_python([payload, payload], [RECEIVED_US] * 2, ["a", "b"])
    duck, duck_frames = decode._with_duckdb([payload, payload], [RECEIVED_US] * 2, ["a", "b"])
    assert python.to_pylist() == duck.to_pylist()
    assert python_frames.to_pylist() == duck_frames.to_pylist() == [0] * 7 + [1] * 7


def test_both_paths_give_the_same_enriched_rows(tmp_path: Path) -> None:
    """Enrichment runs after either path; with request contexts (user-agent header, geo,
    whether the raw user agent is kept) the rows are still identical."""
    from tallystick.config import Settings
    from tallystick.enrich.pipeline import Enricher
    from tallystick.store import decode
    from tallystick.store.spool import RequestContext

    events = [
        *EDGE_CASES,
        make_event(user={"anonymous_id": "a-1"}, page={"pageview_id": "pv-1"}),
        make_event(user={"anonymous_id": "a-1"}, sent_ts="2026-01-01T00:00:00Z"),
    ]
    payload = msgspec.json.encode(events)
    contexts = [
        RequestContext("web", keep_user_agent=False, user_agent=GOOGLEBOT, country="DE"),
        None,
    ]
    rows = []
    for path in (decode._with_python, decode._with_duckdb):
        table, frames = path([payload, payload], [RECEIVED_US] * 2, ["web", None])
        enricher = Enricher(Settings(data=tmp_path / path.__name__))
        rows.append(enricher.apply(table, frames, contexts).table.to_pylist())
    assert rows[0] == rows[1]
    assert rows[0][0]["geo_country"] == "DE"
    assert rows[0][0]["agent_is_bot"] is True  # no agent.user_agent: a browser-like header
    assert rows[0][len(events)]["geo_country"] is None


GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_a_duckdb_refusal_falls_back_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    from tallystick.store import decode

    def refuse(*_args: object) -> object:
        raise duckdb.ConversionException("pretend DuckDB disagrees")

    monkeypatch.setattr(decode, "_with_duckdb", refuse)
    table = frames_to_table([msgspec.json.encode(EDGE_CASES)], [RECEIVED_US])
    assert table.num_rows == len(EDGE_CASES)


@st.composite
def rfc3339(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    moment = draw(
        st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1))
    )
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    digits = draw(st.integers(0, 6))
    moment = moment.replace(
        microsecond=moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits)
    )
    sep = draw(st.sampled_from(["T", "t", " "]))
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    if minutes == 0 and draw(st.booleans()):
        text += draw(st.sampled_from(["Z", "z"]))
    else:
        sign = "+" if minutes >= 0 else "-"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    aware = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
    return text, aware


@settings(max_examples=60, deadline=None)
@given(stamp=rfc3339())
def test_timestamps_convert_like_msgspec(stamp: tuple[str, dt.datetime]) -> None:
    text, expected = stamp
    event = make_event(client_ts=text)
    msgspec.json.decode(msgspec.json.encode(event), type=Event)  # the collector accepts it
    table = frames_to_table([msgspec.json.encode([event])], [RECEIVED_US])
    assert table["client_ts"].to_pylist()[0] == expected
