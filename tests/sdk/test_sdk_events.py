"""Building and encoding events (pure): the shape of the monoschema v1."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from importlib import metadata
from typing import Any

import msgspec
import pytest

from tallystick.schema import Event
from tallystick.sdk.events import (
    CONTEXT_KEYS,
    Defaults,
    batch_body,
    build_event,
    encode_event,
    format_ts,
    library_version,
    with_sent_ts,
    with_session,
)

DEFAULTS = Defaults(app_id="research-portal", app_version="4.2.1")


def _validate(raw: bytes) -> Event:
    return msgspec.json.decode(raw, type=Event)


def test_minimal_event_is_valid_and_has_no_empty_groups() -> None:
    event = build_event("app.open", defaults=Defaults())
    assert set(event) == {"event_id", "name", "client_ts", "client"}
    assert event["client"] == {
        "library": "tallystick-python",
        "library_version": library_version(),
        "platform": "python",
    }
    uuid.UUID(event["event_id"])
    parsed = _validate(encode_event(event))
    assert parsed.client_ts.tzinfo is not None
    assert abs(parsed.client_ts - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_library_version_is_the_installed_one() -> None:
    assert library_version() == metadata.version("tallystick")


def test_full_event() -> None:
    ts = dt.datetime(2026, 11, 2, 15, 3, 11, 250000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    event = build_event(
        "project.commit",
        defaults=DEFAULTS,
        user_id="u-1842",
        anonymous_id="a-7f3e9c",
        data={"project_id": "p-12", "files": 3, "tags": ["a", "b"], "ok": True, "none": None},
        context={
            "app_environment": "production",
            "app_instance": "uni",
            "platform": "web",
            "locale": "de-DE",
            "page_url": "https://app.example.org/p",
            "page_referrer": "https://example.org/",
            "pageview_id": "pv-1",
            "user_agent": "Mozilla/5.0",
            "experiments": {"signin-dialog": "b"},
            "sample_unit": "session",
            "sample_rate": 0.25,
            "client_ts": ts,
            "event_id": uuid.UUID("0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f"),
        },
    )
    assert event["client_ts"] == "2026-11-02T14:03:11.250000Z"
    assert event["event_id"] == "0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f"
    assert event["app"] == {
        "id": "research-portal",
        "version": "4.2.1",
        "environment": "production",
        "instance": "uni",
    }
    assert event["user"] == {"id": "u-1842", "anonymous_id": "a-7f3e9c", "is_logged_in": True}
    assert event["page"] == {
        "pageview_id": "pv-1",
        "url": "https://app.example.org/p",
        "referrer": "https://example.org/",
    }
    assert event["agent"] == {"user_agent": "Mozilla/5.0"}
    assert event["sample"] == {"unit": "session", "rate": 0.25}
    raw = with_sent_ts(with_session(encode_event(event), "s-1", 7), "2026-11-02T14:03:12.000000Z")
    parsed = _validate(raw)
    assert parsed.session is not None
    assert (parsed.session.id, parsed.session.seq) == ("s-1", 7)
    assert parsed.sent_ts == dt.datetime(2026, 11, 2, 14, 3, 12, tzinfo=dt.UTC)
    assert parsed.client is not None
    assert parsed.client.platform == "web"
    assert parsed.data["tags"] == ["a", "b"]


def test_is_logged_in_defaults() -> None:
    anon = build_event("a.b", defaults=DEFAULTS, anonymous_id="a-1")
    assert anon["user"] == {"anonymous_id": "a-1", "is_logged_in": False}
    explicit = build_event("a.b", defaults=DEFAULTS, user_id="u", context={"is_logged_in": False})
    assert explicit["user"]["is_logged_in"] is False
    assert "user" not in build_event("a.b", defaults=DEFAULTS)


def test_string_client_ts_is_passed_through() -> None:
    event = build_event("a.b", defaults=DEFAULTS, context={"client_ts": "2026-11-02T14:03:11Z"})
    assert event["client_ts"] == "2026-11-02T14:03:11Z"


def test_data_is_copied() -> None:
    data: dict[str, Any] = {"n": 1}
    event = build_event("a.b", defaults=DEFAULTS, data=data)
    data["n"] = 2
    assert event["data"] == {"n": 1}


def test_unknown_context_key_is_a_type_error_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match=r"'pageurl' \(did you mean 'page_url'\?\)"):
        build_event("a.b", defaults=DEFAULTS, context={"pageurl": "x"})
    with pytest.raises(TypeError, match="data="):
        build_event("a.b", defaults=DEFAULTS, context={"colour": "red"})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data": ["not", "a", "dict"]}, TypeError, "data must be a dict"),
        ({"data": {"when": dt.datetime(2026, 1, 1)}}, TypeError, "JSON"),
        ({"data": {"x": float("nan")}}, ValueError, "NaN"),
        ({"user_id": 42}, TypeError, "user_id must be a str"),
        ({"context": {"client_ts": dt.datetime(2026, 1, 1)}}, ValueError, "time zone"),
        ({"context": {"client_ts": 1234}}, TypeError, "client_ts"),
        ({"context": {"event_id": 5}}, TypeError, "event_id"),
        ({"context": {"experiments": ["b"]}}, TypeError, "experiments"),
        ({"context": {"sample_rate": 0.5}}, ValueError, "together"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        encode_event(build_event("a.b", defaults=DEFAULTS, **kwargs))


def test_name_must_be_a_string() -> None:
    bad: Any = 5
    with pytest.raises(TypeError, match="name"):
        build_event(bad, defaults=DEFAULTS)


def test_format_ts() -> None:
    assert format_ts(dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)) == (
        "2026-01-02T03:04:05.000006Z"
    )


def test_batch_body_is_the_envelope() -> None:
    raws = [encode_event(build_event("a.b", defaults=DEFAULTS)) for _ in range(3)]
    doc = json.loads(batch_body(raws, "2026-11-02T14:03:12.000000Z"))
    assert list(doc) == ["events"]
    assert [e["sent_ts"] for e in doc["events"]] == ["2026-11-02T14:03:12.000000Z"] * 3
    for e in doc["events"]:
        _validate(json.dumps(e).encode())


def test_session_id_with_quotes_is_escaped() -> None:
    raw = with_session(encode_event(build_event("a.b", defaults=DEFAULTS)), 'se"ss\\ion', 1)
    assert json.loads(raw)["session"] == {"id": 'se"ss\\ion', "seq": 1}


def test_context_keys_match_the_brief() -> None:
    assert {
        "app_version",
        "app_environment",
        "app_instance",
        "platform",
        "locale",
        "page_url",
        "page_referrer",
        "pageview_id",
        "user_agent",
        "is_logged_in",
        "experiments",
        "sample_unit",
        "sample_rate",
        "client_ts",
        "event_id",
    } == CONTEXT_KEYS
