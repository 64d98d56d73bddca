"""GET /v1/quality/loss, /v1/quality/skew and /v1/quality/alerts through the collector in-process:
the reports' rows as ``quality.reports`` computes them, the alert history as
``quality.alerts.history`` keeps it, their OpenAPI schemas, and mistakes answered with a 400."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from quality.lossgen import Log, generate
from query.responses import error_message, valid
from tallystick import messages
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.store import ControlStore
from tallystick.quality.alerts import AlertRun, record
from tallystick.quality.loss import total, weekly
from tallystick.quality.reports import skew_body, skew_query
from tallystick.store.lake import Lake, events_to_table

KEY = "quality-read-key"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def log() -> Log:
    return generate(random.Random(21), sessions=20, unsequenced=5)


def _runs() -> list[AlertRun]:
    spec = {"rule": "volume", "window": "1h"}
    return [
        AlertRun(T0, "web", "volume", "volume", spec, False, 120.0, 100.0, "normal volume"),
        AlertRun(
            T0 + dt.timedelta(hours=1),
            "web",
            "volume",
            "volume",
            spec,
            True,
            3.0,
            100.0,
            "volume fell to 3 events",
            {"notice": "fired", "log": True, "webhook": None},
        ),
        AlertRun(
            T0 + dt.timedelta(hours=2),
            "api",
            "loss_rate",
            "loss",
            {"rule": "loss_rate", "max": 0.05},
            False,
            0.01,
            0.05,
            "loss 1 %",
        ),
    ]


@pytest.fixture(scope="module")
def settings(log: Log, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data=tmp_path_factory.mktemp("quality") / "data", min_free_bytes=0)
    events, received, streams = log.events()
    Lake(settings.lake_dir).write_events(events_to_table(events, received, streams), "generated")
    store = ControlStore.for_settings(settings)
    try:
        record(store, _runs())
    finally:
        store.close()
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(Collector(settings), base_url="http://127.0.0.1") as client:
        yield client


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_loss_by_day_is_the_report(client: TestClient, log: Log) -> None:
    body = get(client, "/v1/quality/loss")
    valid("LossReport", body)
    truth = log.expected_report()
    assert body == {
        "grain": "day",
        "from": None,
        "to": None,
        "library": None,
        "rows": [r.as_row() for r in truth],
        "totals": total(truth),
    }
    assert body["totals"]["lost"] > 0
    assert body["totals"]["duplicates_natural"] > 0
    assert body["totals"]["duplicates_synthetic"] > 0


def test_loss_by_week_of_one_library(client: TestClient, log: Log) -> None:
    body = get(client, "/v1/quality/loss", grain="week", library="tallystick-js", to="2026-03-01")
    valid("LossReport", body)
    rows = [
        r
        for r in weekly([r for r in log.expected_report() if r.day <= dt.date(2026, 3, 1)])
        if r.library == "tallystick-js"
    ]
    assert body["rows"] == [r.as_row("week") for r in rows]
    assert body["rows"]
    assert (body["to"], body["library"]) == ("2026-03-01", "tallystick-js")


@pytest.mark.parametrize("grain", ["all", "day", "week"])
def test_skew_is_the_report(client: TestClient, settings: Settings, grain: str) -> None:
    body = get(client, "/v1/quality/skew", grain=grain)
    valid("SkewReport", body)
    assert body == skew_body(Lake(settings.lake_dir), skew_query({"grain": grain}))
    assert sum(r["events"] for r in body["rows"]) > 0
    assert get(client, "/v1/quality/skew/")["grain"] == "all"


def test_the_alert_history_newest_first(client: TestClient) -> None:
    body = get(client, "/v1/quality/alerts")
    valid("AlertHistory", body)
    assert [a["message"] for a in body["alerts"]] == [r.message for r in reversed(_runs())]
    assert body["alerts"][1]["notice"] == "fired"
    assert (body["since"], body["limit"], body["stream"], body["notices"]) == (
        None,
        200,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("params", "messages_"),
    [
        ({"limit": "1"}, ["loss 1 %"]),
        ({"stream": "web"}, ["volume fell to 3 events", "normal volume"]),
        ({"notices": "true"}, ["volume fell to 3 events"]),
        ({"since": "2026-03-02T10:00:00Z"}, ["loss 1 %", "volume fell to 3 events"]),
        ({"since": "2026-03-02T10:30:00+01:00"}, ["loss 1 %", "volume fell to 3 events"]),
        ({"since": "2026-03-02T11:30:00+01:00"}, ["loss 1 %"]),
        ({"since": "2026-03-03"}, []),
    ],
)
def test_the_alert_history_narrowed(
    client: TestClient, params: dict[str, str], messages_: list[str]
) -> None:
    body = get(client, "/v1/quality/alerts", **params)
    valid("AlertHistory", body)
    assert [a["message"] for a in body["alerts"]] == messages_


BAD = [
    ("/v1/quality/loss", {"grain": "month"}, "grain 'month' is not one of day, week"),
    ("/v1/quality/loss", {"from": "2026-3-1"}, "from '2026-3-1' is not a date: write YYYY-MM-DD"),
    (
        "/v1/quality/loss",
        {"from": "2026-03-05", "to": "2026-03-01"},
        "to 2026-03-01 is before from 2026-03-05",
    ),
    ("/v1/quality/loss", {"event": "x"}, "the loss report does not take event; it takes grain"),
    ("/v1/quality/loss", {"library": ""}, "parameter 'library' is empty"),
    ("/v1/quality/skew", {"grain": "month"}, "grain 'month' is not one of day, week, all"),
    ("/v1/quality/alerts", {"limit": "0"}, "limit '0' must be a whole number from 1 to 1000"),
    ("/v1/quality/alerts", {"limit": "many"}, "limit 'many' must be a whole number"),
    ("/v1/quality/alerts", {"notices": "maybe"}, "notices 'maybe' must be true or false"),
    ("/v1/quality/alerts", {"since": "last week"}, "since 'last week' is not a date or a time"),
    ("/v1/quality/alerts", {"from": "2026-03-01"}, "the alert history does not take from"),
]


@pytest.mark.parametrize(("path", "params", "message"), BAD, ids=[m for *_, m in BAD])
def test_mistakes_are_400s_that_say_what_to_write(
    client: TestClient, path: str, params: dict[str, str], message: str
) -> None:
    response = client.get(path, params=params)
    assert message in error_message(response, 400, messages.INVALID_QUERY)


def test_a_parameter_given_twice(client: TestClient) -> None:
    response = client.get("/v1/quality/loss?library=a&library=b")
    assert "give it once" in error_message(response, 400, messages.INVALID_QUERY)


@pytest.mark.parametrize("path", ["/v1/quality/loss", "/v1/quality/skew", "/v1/quality/alerts"])
def test_only_get(client: TestClient, path: str) -> None:
    response = client.post(path, json={})
    error_message(response, 405, messages.METHOD_NOT_ALLOWED)
    assert response.headers["allow"] == "GET"


def test_an_unknown_quality_path_is_a_404(client: TestClient) -> None:
    error_message(client.get("/v1/quality/nothing"), 404, messages.NOT_FOUND)


def test_reads_need_the_read_key(settings: Settings, tmp_path: Path) -> None:
    keyed = Settings(data=settings.data, min_free_bytes=0, read_key=KEY)
    with TestClient(Collector(keyed), base_url="http://127.0.0.1") as client:
        for path in ("/v1/quality/loss", "/v1/quality/skew", "/v1/quality/alerts"):
            error_message(client.get(path), 401, messages.UNAUTHORIZED)
            ok = client.get(path, headers={"Authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200, ok.text


def test_openapi_describes_the_routes(client: TestClient) -> None:
    paths = get(client, "/openapi.json")["paths"]
    for path, schema in (
        ("/v1/quality/loss", "LossReport"),
        ("/v1/quality/skew", "SkewReport"),
        ("/v1/quality/alerts", "AlertHistory"),
    ):
        operation = paths[path]["get"]
        assert operation["tags"] == ["quality"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{schema}"}
        assert "400" in operation["responses"]
