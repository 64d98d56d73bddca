"""Streams and models from plain data: every setting, and a precise place for every problem."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tallystick.control.definitions import (
    DefinitionError,
    parse_configuration,
    parse_model,
    parse_stream,
)

FULL_STREAM: dict[str, Any] = {
    "name": "product",
    "description": "What people do in the product",
    "owner": "ana@example.org",
    "events": ["project.*", "signin.open"],
    "sample": {"unit": "user", "rate": 0.25},
    "enabled": False,
    "starts": "2026-01-01T00:00:00Z",
    "expires": "2027-01-01T00:00:00Z",
    "keep": ["app", "session", "page.url"],
    "curation": [{"field": "app.environment", "op": "equals", "value": "test"}],
    "retention_days": 395,
}


def test_a_stream_round_trips_through_plain_data() -> None:
    stream = parse_stream(FULL_STREAM)
    assert stream.as_dict() == FULL_STREAM
    assert parse_stream(stream.as_dict()) == stream


def test_a_minimal_stream_collects_everything_it_routes() -> None:
    stream = parse_stream({"name": "s", "events": ["*"]})
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert stream.collecting(at)
    assert stream.status(at) == "collecting"
    assert stream.as_dict() == {"name": "s", "events": ["*"], "enabled": True}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"enabled": False}, "disabled"),
        ({"expires": "2026-01-01"}, "expired"),
        ({"expires": "2026-01-01T00:00:01Z"}, "collecting"),
        ({"starts": "2026-01-02"}, "scheduled"),
        ({"starts": "2026-01-01T02:00:00+02:00"}, "collecting"),  # = midnight UTC
    ],
)
def test_status_at_a_time(changes: dict[str, Any], status: str) -> None:
    stream = parse_stream({"name": "s", **changes})
    assert stream.status(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == status


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        ({"name": "Product"}, "name", "stream name 'Product' is invalid"),
        ({"name": "s", "events": ["Signin"]}, "events[0]", "cannot route 'Signin'"),
        ({"name": "s", "events": ["a", "a"]}, "events", "'a' is listed twice"),
        ({"name": "s", "events": "a"}, "events", "events must be a list"),
        ({"name": "s", "sample": {"rate": 1.5}}, "sample.rate", "from 0 to 1, got 1.5"),
        ({"name": "s", "sample": {"unit": "device", "rate": 0.1}}, "sample.unit", "no device id"),
        ({"name": "s", "sample": {"unit": "session"}}, "sample.rate", "is required"),
        ({"name": "s", "sample": {"rate": 0.1, "seed": 1}}, "sample.seed", "no setting 'seed'"),
        ({"name": "s", "enabled": "yes"}, "enabled", "true or false"),
        ({"name": "s", "expires": "next week"}, "expires", "is not a date or time"),
        (
            {"name": "s", "starts": "2026-02-01", "expires": "2026-01-01"},
            "expires",
            "later than `starts`",
        ),
        ({"name": "s", "keep": ["ip"]}, "keep[0]", "'ip' is not a contextual attribute"),
        (
            {"name": "s", "curation": [{"field": "x", "op": "like", "value": 1}]},
            "curation[0]",
            "like",
        ),
        ({"name": "s", "retention_days": 0}, "retention_days", "whole number of days"),
        ({"name": "s", "owner": 3}, "owner", "must be text"),
        ({"name": "s", "colour": "red"}, "colour", "a stream has no setting 'colour'"),
    ],
)
def test_stream_problems_name_their_place(raw: Any, where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_stream(raw, "streams[3]")
    assert caught.value.where == f"streams[3].{where}"
    assert message in caught.value.message


MODEL: dict[str, Any] = {
    "name": "signins",
    "stream": "product",
    "description": "Sign-ins by method",
    "owner": "ana",
    "materialize": "table",
    "fields": ["event_id", "user.id", {"field": "data.method", "as": "method"}, "client_ts"],
    "checks": [
        {"type": "not_null", "field": "user_id"},
        {"type": "accepted_values", "field": "method", "values": ["email", "sso"]},
        {"type": "range", "field": "method", "min": 0},
        {"type": "unique", "field": "event_id"},
        {"type": "freshness", "max_age_hours": 24},
        {"type": "row_count_change", "max_change": 0.5},
    ],
}


def test_a_model_round_trips_and_names_its_columns() -> None:
    model = parse_model(MODEL)
    assert [(f.source, f.name) for f in model.fields] == [
        ("event_id", "event_id"),
        ("user.id", "user_id"),
        ("data.method", "method"),
        ("client_ts", "client_ts"),
    ]
    assert parse_model(model.as_dict()) == model
    assert model.as_dict()["fields"][1] == {"field": "user.id", "as": "user_id"}


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"name": "sign-ins"}, "name", "no '-'"),
        ({"fields": []}, "fields", "at least one field"),
        ({"fields": ["user.idd"]}, "fields[0]", "no field 'user.idd'"),
        ({"fields": ["user.id", "user_id"]}, "fields[1]", "appears twice"),
        ({"fields": [{"field": "data.x", "as": "X"}]}, "fields[0].as", "not a column name"),
        ({"materialize": "cube"}, "materialize", "use view or table"),
        ({"checks": [{"type": "regex"}]}, "checks[0].type", "unknown check 'regex'"),
        ({"checks": [{"type": "not_null"}]}, "checks[0].field", "is required"),
        ({"checks": [{"type": "not_null", "field": "nope"}]}, "checks[0].field", "no column"),
        ({"checks": [{"type": "range", "field": "event_id"}]}, "checks[0]", "needs `min`"),
        (
            {"checks": [{"type": "range", "field": "event_id", "min": 2, "max": 1}]},
            "checks[0].max",
            "below `min`",
        ),
        ({"checks": [{"type": "freshness", "max_age_hours": 0}]}, "checks[0].max_age_hours", ""),
        (
            {"checks": [{"type": "accepted_values", "field": "event_id", "values": []}]},
            "checks[0].values",
            "at least one value",
        ),
    ],
)
def test_model_problems_name_their_place(change: dict[str, Any], where: str, message: str) -> None:
    raw = {"name": "m", "stream": "s", "fields": ["event_id"]} | change
    with pytest.raises(DefinitionError) as caught:
        parse_model(raw, "models[0]")
    assert caught.value.where == f"models[0].{where}"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("raw", "where", "message"),
    [
        ({"streams": [{"name": "a"}, {"name": "a"}]}, "streams[1].name", "already defined"),
        ({"streams": [{"name": "unrouted"}]}, "streams[0].name", "undeclared events"),
        (
            {"models": [{"name": "m", "stream": "gone", "fields": ["event_id"]}]},
            "models[0].stream",
            "no stream 'gone'",
        ),
        ({"version": 2}, "version", "unknown version"),
        ({"stream": []}, "stream", "no setting 'stream'"),
    ],
)
def test_configuration_problems(raw: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_configuration(raw)
    assert caught.value.where == where
    assert message in caught.value.message


def test_a_model_may_read_the_unrouted_stream() -> None:
    config = parse_configuration(
        {"models": [{"name": "m", "stream": "unrouted", "fields": ["name"]}]}
    )
    assert config.model("m") is not None
