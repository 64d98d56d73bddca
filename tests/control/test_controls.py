"""The collector's snapshot: where an event is stored and what each stream keeps (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tallystick.control.controls import Controls, Placement, kept_attributes
from tallystick.control.definitions import parse_stream
from tallystick.control.sampling import keep

AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
EVENT: dict[str, Any] = {
    "event_id": "e1",
    "name": "project.commit",
    "client_ts": "2026-06-01T00:00:00Z",
    "app": {"id": "web", "environment": "production"},
    "user": {"id": "u1"},
    "session": {"id": "s1", "seq": 2},
    "page": {"url": "https://x.org/", "referrer": "https://r.org/"},
    "locale": "de-DE",
    "data": {"files": 3},
}


def controls(*streams: dict[str, Any]) -> Controls:
    return Controls.build(1, [parse_stream(s) for s in streams])


def test_no_streams_means_everything_as_sent_to_unrouted() -> None:
    c = controls()
    assert c.passthrough
    assert c.place(EVENT, AT) == [Placement("unrouted", None)]


def test_several_streams_each_get_their_copy() -> None:
    c = controls(
        {"name": "a", "events": ["project.*"]},
        {"name": "b", "events": ["project.commit"], "keep": ["user"]},
    )
    placed = {p.stream: p.event for p in c.place(EVENT, AT)}
    assert placed["a"] is None
    assert placed["b"] == {
        "event_id": "e1",
        "name": "project.commit",
        "client_ts": "2026-06-01T00:00:00Z",
        "user": {"id": "u1"},
        "data": {"files": 3},
    }
    assert not c.by_name_only


def test_keep_a_field_inside_a_group() -> None:
    kept = kept_attributes(EVENT, ["page.url", "locale"])
    assert kept["page"] == {"url": "https://x.org/"}
    assert kept["locale"] == "de-DE"
    assert "session" not in kept
    assert "app" not in kept


def test_a_sampled_copy_records_its_rate() -> None:
    c = controls({"name": "s", "events": ["*"], "sample": {"unit": "session", "rate": 0.5}})
    placed = c.place(EVENT, AT)
    if keep("session", "s1", 0.5):
        assert placed[0].event is not None
        assert placed[0].event["sample"] == {"unit": "session", "rate": 0.5}
    else:
        assert placed == []


def test_a_client_sampled_event_combines_rates() -> None:
    ids = [f"s{i}" for i in range(50)]
    sampled = next(i for i in ids if keep("session", i, 0.5) and keep("user", "u1", 1))
    event = EVENT | {"session": {"id": sampled}, "sample": {"unit": "user", "rate": 0.2}}
    c = controls({"name": "s", "events": ["*"], "sample": {"unit": "session", "rate": 0.5}})
    (placed,) = c.place(event, AT)
    assert placed.event is not None
    assert placed.event["sample"] == {"unit": "session", "rate": 0.1}  # independent units
    same_unit = event | {"sample": {"unit": "session", "rate": 0.8}}
    (placed,) = c.place(same_unit, AT)
    assert placed.event is not None
    assert placed.event["sample"] == {"unit": "session", "rate": 0.5}  # nested: the smaller


def test_rate_one_changes_nothing_and_routing_by_name_suffices() -> None:
    c = controls({"name": "s", "events": ["*"], "sample": {"unit": "session", "rate": 1}})
    assert c.by_name_only
    assert c.place(EVENT, AT) == [Placement("s", None)]


def test_declared_but_not_collecting_is_not_stored_anywhere() -> None:
    c = controls({"name": "s", "events": ["project.*"], "expires": "2026-05-01"})
    assert c.place(EVENT, AT) == []
    assert c.place(EVENT | {"name": "other.thing"}, AT) == [Placement("unrouted", None)]


def test_streams_that_leave_out_the_user_agent_or_the_session_are_known() -> None:
    controls = Controls.build(
        1,
        [
            parse_stream({"name": "all", "events": ["*"]}),
            parse_stream({"name": "ids", "events": ["*"], "keep": ["user.id"]}),
            parse_stream({"name": "visits", "events": ["*"], "keep": ["session.id", "agent"]}),
        ],
    )
    assert controls.drops_user_agent == {"ids"}
    assert controls.drops_session == {"ids"}
