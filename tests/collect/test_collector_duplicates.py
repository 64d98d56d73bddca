"""A re-sent event (same event_id) counts once, in queries and in exports."""

from __future__ import annotations

import io
import json

from starlette.testclient import TestClient

from support import load, make_event
from tallystick.backfill.exporter import export_events
from tallystick.backfill.formats import ExportFormat
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.store.lake import Lake
from tallystick.store.reader import connect, count_events


def test_resent_events_count_once(
    app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    event = make_event()
    other = make_event()
    for body in ([event], [event, other], [event]):
        assert collector.post("/v1/events", json=body).status_code == 200
        load(settings, app)  # each time into a separate Parquet file
    raw = connect(lake).execute("SELECT count(*) FROM raw_events").fetchone()
    assert raw == (4,)
    assert count_events(lake) == 2
    out = io.BytesIO()
    assert export_events(lake, out, ExportFormat.jsonl) == 2
    ids = [json.loads(line)["event_id"] for line in out.getvalue().splitlines()]
    assert sorted(ids) == sorted([event["event_id"], other["event_id"]])
