"""Converting flat tracker-export rows (and monoschema rows) into monoschema events."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import msgspec
import pytest

from tallystick import messages
from tallystick.backfill.flat import (
    IMPORT_NAMESPACE,
    Converted,
    convert_row,
    deterministic_event_id,
    from_epoch,
    is_monoschema,
    parse_timestamp,
    to_snake_case,
)
from tallystick.collect.validate import check_event
from tallystick.messages import Problem
from tallystick.schema import Event

FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def ok(row: dict[str, Any]) -> Converted:
    result = convert_row(row)
    assert isinstance(result, Converted), result
    return result


def problem(row: dict[str, Any]) -> Problem:
    result = convert_row(row)
    assert isinstance(result, Problem), result
    return result


def validated(row: dict[str, Any]) -> Event:
    raw = msgspec.json.encode(ok(row).event)
    event = check_event(raw, max_event_bytes=32 * 1024, latest_client_ts=FAR_FUTURE)
    assert isinstance(event, Event), event
    return event


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-11-02T14:03:11Z", "2025-11-02T14:03:11Z"),
        ("2025-11-02T14:03:11.250Z", "2025-11-02T14:03:11.250000Z"),
        ("2025-11-02T16:03:11+02:00", "2025-11-02T14:03:11Z"),
        ("2025-11-02T09:03:11-05:00", "2025-11-02T14:03:11Z"),
        ("2025-11-02T14:03:11", "2025-11-02T14:03:11Z"),  # naive = UTC
        ("2025-11-02 14:03:11", "2025-11-02T14:03:11Z"),
        ("2025-11-02T14:03:11.123456789Z", "2025-11-02T14:03:11.123456Z"),  # nanoseconds
        (1762092191, "2025-11-02T14:03:11Z"),  # epoch seconds
        (1762092191250, "2025-11-02T14:03:11.250000Z"),  # epoch milliseconds
        (1762092191.25, "2025-11-02T14:03:11.250000Z"),  # fractional seconds
        (1762092191250000, "2025-11-02T14:03:11.250000Z"),  # epoch microseconds
        ("1762092191", "2025-11-02T14:03:11Z"),  # epoch seconds as CSV text
        ("1762092191250", "2025-11-02T14:03:11.250000Z"),  # epoch ms as CSV text
    ],
)
def test_timestamps_become_utc(value: object, expected: str) -> None:
    event = ok({"event": "page.view", "timestamp": value}).event
    assert event["client_ts"] == expected


@pytest.mark.parametrize("value", ["yesterday", "2025-13-40T00:00:00Z", "", True, [1], 1e300])
def test_unreadable_timestamps_are_reported(value: object) -> None:
    found = problem({"event": "page.view", "timestamp": value})
    assert found.code == messages.INVALID_FIELD
    assert "`timestamp`" in found.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        (86_400, dt.datetime(1970, 1, 2, tzinfo=dt.UTC)),
        (1_700_000_000_000, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)),
        (1_700_000_000_000_000_000, dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)),
        (float("nan"), None),
    ],
)
def test_from_epoch(value: int | float, expected: dt.datetime | None) -> None:
    assert from_epoch(value) == expected


def test_parse_timestamp_keeps_aware_datetimes() -> None:
    aware = dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert parse_timestamp(aware) == aware
    assert parse_timestamp(dt.datetime(2025, 1, 1)) == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert parse_timestamp(None) is None


@pytest.mark.parametrize(
    ("row", "name"),
    [
        ({"event": "page.view"}, "page.view"),
        ({"name": "page.view"}, "page.view"),
        ({"name": "page.view", "event": "page.view"}, "page.view"),
    ],
)
def test_event_or_name(row: dict[str, Any], name: str) -> None:
    assert ok({**row, "timestamp": 0}).event["name"] == name


def test_event_and_name_that_differ_are_reported() -> None:
    found = problem({"name": "a.b", "event": "c.d", "timestamp": 0})
    assert found.code == messages.INVALID_ROW
    assert "`name`" in found.message
    assert "`event`" in found.message


@pytest.mark.parametrize(
    "properties",
    [
        {"plan": "pro", "seats": 3, "tags": ["a", "b"]},
        '{"plan": "pro", "seats": 3, "tags": ["a", "b"]}',
    ],
)
def test_properties_as_object_or_json_text(properties: object) -> None:
    event = ok({"event": "plan.chosen", "timestamp": 0, "properties": properties}).event
    assert event["data"] == {"plan": "pro", "seats": 3, "tags": ["a", "b"]}


@pytest.mark.parametrize("properties", ["{not json", "[1, 2]", 7])
def test_properties_that_are_not_objects_are_reported(properties: object) -> None:
    found = problem({"event": "plan.chosen", "timestamp": 0, "properties": properties})
    assert found.code == messages.INVALID_FIELD
    assert "`properties`" in found.message


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("plan", "plan"),
        ("a__b", "a__b"),
        ("pageTitle", "page_title"),
        ("HTTPStatus", "http_status"),
        ("userID", "user_id"),
        ("pageURLPath", "page_url_path"),
        ("utm-source", "utm_source"),
        ("utm source", "utm_source"),
        ("Page  Title", "page_title"),
        ("$browser", "browser"),
        ("café", "cafe"),
        ("2fa", "_2fa"),
        ("_Internal", "_internal"),
        ("!!!", None),
    ],
)
def test_to_snake_case(key: str, expected: str | None) -> None:
    assert to_snake_case(key) == expected


def test_property_keys_are_converted_to_snake_case() -> None:
    row = {"event": "page.view", "timestamp": 0, "properties": {"pageTitle": "Home", "x-y": 1}}
    assert ok(row).event["data"] == {"page_title": "Home", "x_y": 1}


def test_property_keys_that_collide_are_reported() -> None:
    properties = {"pageTitle": "a", "page_title": "b"}
    row = {"event": "page.view", "timestamp": 0, "properties": properties}
    found = problem(row)
    assert found.code == messages.INVALID_ROW
    assert "data.page_title" in found.message


def test_missing_event_id_is_deterministic() -> None:
    row = {"event": "page.view", "timestamp": "2025-01-01T00:00:00Z", "properties": {"a": 1}}
    row["properties"] = {"a": 1, "b": 2}
    first = ok(row).event["event_id"]
    reordered = {"properties": {"b": 2, "a": 1}, "timestamp": 1735689600, "event": "page.view"}
    assert ok(reordered).event["event_id"] == first  # same content, other order and spelling
    assert ok({**row, "user_id": "u-1"}).event["event_id"] != first
    parsed = uuid.UUID(first)
    assert parsed.version == 5
    event = ok(row).event
    assert parsed == uuid.uuid5(IMPORT_NAMESPACE, _canonical(event))
    assert deterministic_event_id(event) == first


def _canonical(event: dict[str, Any]) -> str:
    content = {k: v for k, v in event.items() if k != "event_id"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_given_event_id_is_kept() -> None:
    given = "0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f"
    assert ok({"event_id": given, "event": "a.b", "timestamp": 0}).event["event_id"] == given


@pytest.mark.parametrize(
    ("column", "value", "path", "expected"),
    [
        ("user_id", "u-1", ("user", "id"), "u-1"),
        ("user_id", 1842, ("user", "id"), "1842"),  # numeric ids become strings
        ("anonymous_id", "a-7", ("user", "anonymous_id"), "a-7"),
        ("session_id", "s-1", ("session", "id"), "s-1"),
        ("session_seq", "7", ("session", "seq"), 7),
        ("session.seq", 7.0, ("session", "seq"), 7),
        ("app_id", "portal", ("app", "id"), "portal"),
        ("app.instance", "uni-x", ("app", "instance"), "uni-x"),
        ("page_url", "https://x.org/", ("page", "url"), "https://x.org/"),
        ("user_is_logged_in", "true", ("user", "is_logged_in"), True),
        ("user.is_logged_in", "0", ("user", "is_logged_in"), False),
        ("sample_rate", "0.25", ("sample", "rate"), 0.25),
        ("locale", "de-DE", ("locale",), "de-DE"),
        ("experiments", '{"signin-dialog": "b"}', ("experiments",), {"signin-dialog": "b"}),
        ("sent_ts", "2025-01-01T00:00:01+01:00", ("sent_ts",), "2024-12-31T23:00:01Z"),
    ],
)
def test_flat_columns_map_to_fields(
    column: str, value: object, path: tuple[str, ...], expected: object
) -> None:
    found: Any = ok({"event": "a.b", "timestamp": 0, column: value}).event
    for part in path:
        found = found[part]
    assert found == expected


def test_converted_flat_rows_pass_the_collector_validation() -> None:
    event = validated(
        {
            "event": "page.view",
            "timestamp": "2025-03-01T10:00:00+01:00",
            "user_id": 17,
            "anonymous_id": "a-1",
            "session_id": "s-1",
            "session_seq": "2",
            "app_id": "portal",
            "page_url": "https://x.org/",
            "locale": "de-DE",
            "sample.unit": "session",
            "sample_rate": "0.5",
            "properties": '{"pageTitle": "Home"}',
            "referrer_kind": "search",
        }
    )
    assert event.user is not None
    assert event.user.id == "17"
    assert event.session is not None
    assert event.session.seq == 2
    assert event.sample is not None
    assert event.sample.rate == 0.5
    assert event.client_ts == dt.datetime(2025, 3, 1, 9, tzinfo=dt.UTC)
    assert event.data == {"page_title": "Home", "referrer_kind": "search"}


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("pageTitle", "Home", messages.UNKNOWN_FIELD),  # extra columns must be snake_case
        ("extra", {"a": 1}, messages.UNKNOWN_FIELD),  # ... and scalars
        ("extra", [1, 2], messages.UNKNOWN_FIELD),
        ("schema_version", 9, messages.INVALID_ROW),
    ],
)
def test_unmappable_extra_columns_are_reported(column: str, value: object, code: str) -> None:
    found = problem({"event": "a.b", "timestamp": 0, column: value})
    assert found.code == code
    assert f"`{column}`" in found.message or repr(value) in found.message


def test_snake_case_scalar_extra_columns_go_into_data() -> None:
    event = ok({"event": "a.b", "timestamp": 0, "plan": "pro", "seats": 3, "gone": None}).event
    assert event["data"] == {"plan": "pro", "seats": 3}


def test_unknown_nested_field_is_reported() -> None:
    found = problem({"event": "a.b", "timestamp": 0, "user": "x", "app": {"name": "y"}})
    assert found.code == messages.UNKNOWN_FIELD
    assert "app.name" in found.message


@pytest.mark.parametrize(
    ("row", "needle"),
    [({"timestamp": 0}, "`name`"), ({"event": "a.b"}, "`timestamp`")],
)
def test_missing_name_or_time_is_reported(row: dict[str, Any], needle: str) -> None:
    found = problem(row)
    assert found.code == messages.MISSING_FIELD
    assert needle in found.message


def test_monoschema_rows_are_kept_as_they_are() -> None:
    row = {
        "event_id": "0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f",
        "name": "project.commit",
        "client_ts": "2025-11-02T14:03:11+01:00",
        "received_ts": "2025-11-02T13:03:12Z",
        "user": {"id": "u-1"},
        "data": {"files": 3},
    }
    assert is_monoschema(row)
    converted = ok(row)
    assert converted.shape == "monoschema"
    assert converted.received_ts == dt.datetime(2025, 11, 2, 13, 3, 12, tzinfo=dt.UTC)
    assert converted.event == {k: v for k, v in row.items() if k != "received_ts"}


def test_monoschema_rows_are_judged_strictly() -> None:
    row = {
        "name": "a.b",
        "client_ts": "2025-01-01T00:00:00Z",
        "user": {"id": "u"},
        "data": {"pageTitle": 1},
    }
    raw = msgspec.json.encode(ok(row).event)
    result = check_event(raw, max_event_bytes=32 * 1024, latest_client_ts=FAR_FUTURE)
    assert isinstance(result, Problem)
    assert result.code == messages.INVALID_FIELD


def test_monoschema_json_text_data_is_decoded_and_id_filled_in() -> None:
    row = {
        "name": "a.b",
        "client_ts": "2025-01-01T00:00:00Z",
        "user": {"id": "u"},
        "data": '{"x": 1}',
        "experiments": '{"e": "b"}',
    }
    event = ok(row).event
    assert event["data"] == {"x": 1}
    assert event["experiments"] == {"e": "b"}
    assert event["event_id"] == ok(dict(reversed(row.items()))).event["event_id"]
