"""Alert rules in stream definitions: every setting, a precise place for every problem, and the
round trips through ``tally config export/apply`` YAML, plans and the control-plane API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from query.responses import valid
from tallystick.admin.app import ControlApi
from tallystick.config import Settings
from tallystick.control.config_file import ConfigFileError, dump, load
from tallystick.control.definitions import (
    Alert,
    DefinitionError,
    parse_configuration,
    parse_stream,
)
from tallystick.control.plan import plan

ALERTS: list[dict[str, Any]] = [
    {"rule": "volume", "drop": 0.5, "spike": None, "weeks": 3},
    {"rule": "volume", "window_hours": 1, "spike": 2.5},
    {"rule": "keys", "keys": {"data.project_id": "string", "user.id": "any", "data.a.b": "array"}},
    {"rule": "keys", "keys": ["session.seq"], "max_rate": 0, "window_hours": 6},
    {"rule": "failed_rate", "max_rate": 0.01, "min_events": 100},
    {"rule": "loss_rate", "window_hours": 6},
]


def test_alert_rules_take_their_defaults_and_are_written_back_whole() -> None:
    stream = parse_stream({"name": "product", "events": ["project.*"], "alerts": ALERTS})
    assert stream.alerts == (
        Alert("volume", 24.0, drop=0.5, spike=None, weeks=3, min_events=20),
        Alert("volume", 1.0, drop=0.5, spike=2.5, weeks=4, min_events=20),
        Alert(
            "keys",
            24.0,
            keys=(("data.project_id", "string"), ("user.id", "any"), ("data.a.b", "array")),
            max_rate=0.05,
        ),
        Alert("keys", 6.0, keys=(("session.seq", "any"),), max_rate=0.0),
        Alert("failed_rate", 24.0, max_rate=0.01, min_events=100),
        Alert("loss_rate", 6.0, max_rate=0.02),
    )
    assert [a.label for a in stream.alerts] == [
        "volume(24h)",
        "volume(1h)",
        "keys(data.project_id,user.id,data.a.b)",
        "keys(session.seq; 6h)",
        "failed_rate(24h)",
        "loss_rate(6h)",
    ]
    written = stream.as_dict()["alerts"]
    assert written[0] == {
        "rule": "volume",
        "window_hours": 24.0,
        "drop": 0.5,
        "spike": None,
        "weeks": 3,
        "min_events": 20,
    }
    assert written[2]["keys"] == {
        "data.project_id": "string",
        "user.id": "any",
        "data.a.b": "array",
    }
    assert parse_stream(stream.as_dict()) == stream
    assert "alerts" not in parse_stream({"name": "plain"}).as_dict()


def test_alerts_round_trip_through_the_yaml_file_and_show_in_a_plan() -> None:
    config = parse_configuration({"streams": [{"name": "product", "alerts": ALERTS}]})
    text = dump(config)
    assert load(text) == config
    assert load(dump(load(text))) == config
    before = parse_configuration({"streams": [{"name": "product", "alerts": ALERTS[:1]}]})
    changes = plan(before, config)
    assert [(c.kind, c.name, c.action, c.changed_keys) for c in changes] == [
        ("stream", "product", "update", ["alerts"])
    ]


def test_a_problem_in_the_yaml_file_names_its_line() -> None:
    text = dump(parse_configuration({"streams": [{"name": "product", "alerts": ALERTS}]}))
    broken = text.replace("max_rate: 0.01", "max_rate: 1.5")
    with pytest.raises(ConfigFileError) as caught:
        load(broken)
    assert caught.value.line == broken.splitlines().index("    max_rate: 1.5") + 1
    assert "streams[0].alerts[4].max_rate: must be at least 0 and below 1" in str(caught.value)


@pytest.mark.parametrize(
    ("alerts", "where", "message"),
    [
        ({"rule": "volume"}, "alerts", "alerts must be a list"),
        (["volume"], "alerts[0]", "an alert rule must be a mapping"),
        ([{"drop": 0.5}], "alerts[0].rule", "unknown alert rule None; use one of volume, keys"),
        ([{"rule": "freshness"}], "alerts[0].rule", "unknown alert rule 'freshness'"),
        ([{"rule": "volume", "max_rate": 0.1}], "alerts[0].max_rate", "a volume rule has no"),
        ([{"rule": "loss_rate", "keys": ["user.id"]}], "alerts[0].keys", "a loss_rate rule has no"),
        ([{"rule": "volume", "drop": 1.5}], "alerts[0].drop", "more than 0 and at most 1"),
        ([{"rule": "volume", "drop": 0}], "alerts[0].drop", "more than 0 and at most 1"),
        ([{"rule": "volume", "spike": -1}], "alerts[0].spike", "more than 0 (1.0 = +100 %)"),
        ([{"rule": "volume", "spike": "lots"}], "alerts[0].spike", "must be a number"),
        (
            [{"rule": "volume", "drop": None, "spike": None}],
            "alerts[0]",
            "give `drop` or `spike`",
        ),
        ([{"rule": "volume", "weeks": 0}], "alerts[0].weeks", "whole number of weeks (1 or"),
        ([{"rule": "volume", "weeks": 2.5}], "alerts[0].weeks", "whole number of weeks"),
        ([{"rule": "volume", "window_hours": 0}], "alerts[0].window_hours", "more than 0"),
        ([{"rule": "volume", "window_hours": 200}], "alerts[0].window_hours", "at most 168"),
        ([{"rule": "volume", "window_hours": "1d"}], "alerts[0].window_hours", "number of hours"),
        ([{"rule": "failed_rate", "max_rate": 1}], "alerts[0].max_rate", "below 1 (0.05 = 5 %)"),
        ([{"rule": "failed_rate", "max_rate": True}], "alerts[0].max_rate", "a number from 0"),
        ([{"rule": "loss_rate", "min_events": 0}], "alerts[0].min_events", "(1 or more)"),
        ([{"rule": "keys"}], "alerts[0].keys", "is required: the keys every event must have"),
        ([{"rule": "keys", "keys": {}}], "alerts[0].keys", "list at least one key"),
        ([{"rule": "keys", "keys": "user.id"}], "alerts[0].keys", "list the keys as"),
        (
            [{"rule": "keys", "keys": {"data.id": "uuid"}}],
            "alerts[0].keys.data.id",
            "unknown type 'uuid'; use one of any, string, number",
        ),
        (
            [{"rule": "keys", "keys": {"data.bad key": "any"}}],
            "alerts[0].keys.data.bad key",
            "is not a data key",
        ),
        ([{"rule": "keys", "keys": {"data.": "any"}}], "alerts[0].keys.data.", "not a data key"),
        (
            [{"rule": "keys", "keys": {"user.name": "string"}}],
            "alerts[0].keys.user.name",
            "no field 'user.name'",
        ),
        (
            [{"rule": "keys", "keys": {"session.seq": "string"}}],
            "alerts[0].keys.session.seq",
            "always holds a int (the schema checks it when events arrive): require integer or",
        ),
        ([{"rule": "keys", "keys": [3]}], "alerts[0].keys", "a key is a field name"),
        (
            [{"rule": "keys", "keys": ["user.id", "user.id"]}],
            "alerts[0].keys",
            "'user.id' is listed twice",
        ),
        (
            [{"rule": "volume"}, {"rule": "volume", "drop": 0.2}],
            "alerts[1]",
            "the stream has this rule already (alerts[0], volume(24h))",
        ),
    ],
)
def test_alert_problems_name_their_place(alerts: Any, where: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_stream({"name": "s", "alerts": alerts}, "streams[2]")
    assert caught.value.where == f"streams[2].{where}"
    assert message in caught.value.message


def test_a_keys_rule_cannot_require_what_the_stream_does_not_keep() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_stream(
            {
                "name": "s",
                "keep": ["app", "page.url"],
                "alerts": [{"rule": "keys", "keys": {"data.x": "any", "page.referrer": "any"}}],
            }
        )
    assert caught.value.where == "alerts[0].keys.page.referrer"
    assert "does not keep page.referrer (keep: app, page.url)" in caught.value.message
    kept = parse_stream(
        {"name": "s", "keep": ["page"], "alerts": [{"rule": "keys", "keys": ["page.referrer"]}]}
    )
    assert kept.alerts[0].keys == (("page.referrer", "any"),)


@pytest.fixture
def local(settings: Settings) -> Iterator[TestClient]:
    """The control-plane API, called from this machine."""
    api = ControlApi(settings)
    try:
        with TestClient(api, base_url="http://127.0.0.1", client=("127.0.0.1", 50123)) as c:
            yield c
    finally:
        api.close()


def test_the_control_plane_api_takes_and_answers_alert_rules(local: TestClient) -> None:
    stream = {"name": "product", "events": ["project.*"], "alerts": ALERTS[:2]}
    created = local.post("/v1/admin/streams", json=stream)
    assert created.status_code == 201, created.text
    assert created.json()["stream"]["alerts"][1]["spike"] == 2.5
    valid("StreamChanged", created.json())  # the OpenAPI document describes them
    valid("Stream", local.get("/v1/admin/streams/product").json())
    valid("StreamDefinition", {"name": "x", "alerts": ALERTS})
    patched = local.patch("/v1/admin/streams/product", json={"alerts": [{"rule": "loss_rate"}]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["stream"]["alerts"] == [
        {"rule": "loss_rate", "window_hours": 24.0, "max_rate": 0.02, "min_events": 20}
    ]
    assert patched.json()["changes"][0]["changed"] == ["alerts"]
    refused = local.put(
        "/v1/admin/streams/product", json={"alerts": [{"rule": "keys", "keys": {"x": "any"}}]}
    )
    assert refused.status_code == 400
    assert "alerts[0].keys.x" in refused.text
