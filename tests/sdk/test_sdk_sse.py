"""The SDK's event-stream parser against the HTML standard's rules, fed whole and byte by byte."""

from __future__ import annotations

import pytest

from tallystick.sdk.sse import EventParser, ServerEvent

STREAM = (
    b"retry: 1000\n\n"
    b": keep-alive\n\n"
    b'event: ruleset\nid: 12\ndata: {"version":12}\n\n'
    b"data: first\r\ndata:second\r\n\r\n"  # CRLF; no space after the colon
    b"event: ping\n\n"  # no data: not dispatched
    b"id: 13\nevent: ruleset\ndata: {}\nunknown: field\n\n"
    b"data: pending"  # not finished
)
EXPECTED = [
    ServerEvent("ruleset", '{"version":12}', "12"),
    ServerEvent("message", "first\nsecond", "12"),
    ServerEvent("ruleset", "{}", "13"),
]


def test_events_whole() -> None:
    parser = EventParser()
    assert parser.feed(STREAM) == EXPECTED
    assert parser.retry_ms == 1000
    assert parser.last_id == "13"
    assert parser.feed(b"\n\n") == [ServerEvent("message", "pending", "13")]


def test_events_byte_by_byte() -> None:
    parser = EventParser()
    got = []
    for i in range(len(STREAM)):
        got += parser.feed(STREAM[i : i + 1])
    assert got == EXPECTED


def test_a_line_too_long_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tallystick.sdk.sse.MAX_LINE_BYTES", 10)
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        EventParser().feed(b"data: " + b"x" * 20)
