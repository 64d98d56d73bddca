"""The demo's control-plane configuration and its extra events: what `tally audit` should find
in the demo, checked without sending anything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from tallystick import messages
from tallystick.catalog.audit import Facts, readers
from tallystick.collect.validate import check_event
from tallystick.control.definitions import Configuration, parse_configuration
from tallystick.control.routing import Router
from tallystick.demo import catalog as demo_catalog
from tallystick.demo.extras import INVALID_EVENTS, UNDECLARED_EVENT, invalid, undeclared
from tallystick.demo.generator import EVENT_NAMES
from tallystick.demo.streams import EXPIRES_IN_DAYS, configuration, definitions, is_demo
from tallystick.metrics.catalog import load_catalog
from tallystick.schema import Event

TODAY = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def config() -> Configuration:
    return configuration(TODAY)


def test_every_kind_of_stream_is_there(config: Configuration) -> None:
    by_name = {s.name: s for s in config.streams}
    assert by_name["product"].retention_days == 395
    sampled = by_name["page_performance"].sample
    assert sampled is not None
    assert (sampled.unit, sampled.rate) == ("session", 0.1)
    assert by_name["kpi_minimal"].keep == ("app", "user.id")
    [rule] = by_name["signin_experiment"].curation
    assert (rule.field, rule.op, rule.value) == ("data.trigger", "equals", "monitor")
    assert by_name["signin_experiment"].expires == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    assert TODAY + dt.timedelta(days=EXPIRES_IN_DAYS) == dt.date(2026, 12, 6)
    assert {m.stream for m in config.models} == {"product"}
    assert all(m.checks for m in config.models)


def test_it_is_a_configuration_file_as_export_writes_it(config: Configuration) -> None:
    assert parse_configuration(config.as_dict()) == config
    assert parse_configuration(definitions(TODAY)) == config


def test_every_product_event_is_routed_and_the_debug_event_is_not(config: Configuration) -> None:
    router = Router.build({s.name: s.events for s in config.streams}, config.unrouted_stream)
    assert [e for e in EVENT_NAMES if "product" not in router.streams(e)] == []
    assert not router.declared(UNDECLARED_EVENT)


def test_one_stream_is_read_by_nothing(config: Configuration, tmp_path: Path) -> None:
    demo_catalog.install(tmp_path)
    catalog = load_catalog(tmp_path)
    read = readers(Facts(metrics=tuple(catalog), configuration=config))
    assert [s.name for s in config.streams if s.name not in read] == ["session_study"]


@pytest.mark.parametrize(
    ("streams", "models", "expected"),
    [
        ((), (), True),
        (("product", "session_study"), ("workflow_runs",), True),
        (("mine",), (), False),
    ],
)
def test_is_demo(streams: tuple[str, ...], models: tuple[str, ...], expected: bool) -> None:
    raw = {
        "streams": [{"name": n, "events": ["x.*"]} for n in streams],
        "models": [{"name": n, "stream": streams[0], "fields": ["user.id"]} for n in models],
    }
    assert is_demo(parse_configuration(raw)) is expected


def _checked(event: dict[str, object]) -> Event | messages.Problem:
    return check_event(
        msgspec.json.encode(event),
        max_event_bytes=32 * 1024,
        latest_client_ts=dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
    )


def test_the_undeclared_events_are_valid_and_before_the_end() -> None:
    events = undeclared(end=TODAY, days=30, seed=3)
    assert events == undeclared(end=TODAY, days=30, seed=3)
    assert events != undeclared(end=TODAY, days=30, seed=4)
    assert 14 * 2 <= len(events) <= 14 * 5
    assert {e["name"] for e in events} == {UNDECLARED_EVENT}
    days = {str(e["client_ts"])[:10] for e in events}
    assert min(days) == "2026-11-08"
    assert max(days) == "2026-11-21"
    assert all(isinstance(_checked(e), Event) for e in events)
    # a short history: no event before its window
    assert {str(e["client_ts"])[:10] for e in undeclared(end=TODAY, days=3)} <= {
        "2026-11-20",
        "2026-11-21",
    }
    assert undeclared(end=TODAY, days=1) == []


def test_the_invalid_events_are_refused_for_their_data_keys() -> None:
    events = invalid(end=TODAY)
    assert len(events) == INVALID_EVENTS
    codes = [getattr(_checked(e), "code", "accepted") for e in events]
    assert codes == [messages.INVALID_FIELD] * INVALID_EVENTS
    assert len({e["event_id"] for e in events}) == INVALID_EVENTS
