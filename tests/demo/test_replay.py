"""The demo's replay: sent now, a few clocks off, and the collector's correction undoes them."""

from __future__ import annotations

import datetime as dt

from tallystick.demo.generator import generate
from tallystick.demo.replay import AHEAD, BEHIND, as_sent_now, clock_offset

NOW = dt.datetime(2026, 7, 1, 9, 30, tzinfo=dt.UTC)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_few_devices_have_clocks_off() -> None:
    offsets = [clock_offset(f"device-{i}") for i in range(20_000)]
    ahead = offsets.count(AHEAD) / len(offsets)
    behind = offsets.count(BEHIND) / len(offsets)
    assert 0.012 < ahead < 0.018
    assert 0.007 < behind < 0.013
    assert clock_offset("device-1") == clock_offset("device-1")


def test_sent_now_and_corrected_back_to_when_it_happened() -> None:
    events = list(generate(users=60, days=10, end=dt.date(2026, 6, 30), seed=3))
    replayed = list(as_sent_now(events, clock=lambda: NOW))
    assert len(replayed) == len(events)
    skewed = 0
    for original, sent in zip(events, replayed, strict=True):
        assert sent["event_id"] == original["event_id"]
        offset = _parse(sent["sent_ts"]) - NOW
        assert offset in (dt.timedelta(0), AHEAD, BEHIND)
        assert _parse(sent["client_ts"]) - _parse(original["client_ts"]) == offset
        # the collector: received (NOW, no transit here) - sent = -offset, added to client_ts
        corrected = _parse(sent["client_ts"]) + (NOW - _parse(sent["sent_ts"]))
        assert corrected == _parse(original["client_ts"])
        skewed += offset != dt.timedelta(0)
    assert 0 < skewed < len(events) * 0.2
