"""Exporting events from the lake, and exports that import back unchanged."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tallystick.backfill.exporter import CSV_HEADER, export_events, parquet_schema
from tallystick.backfill.formats import ExportFormat, InputFormat
from tallystick.backfill.importer import Source, import_file
from tallystick.config import Settings
from tallystick.schema import FIELDS, FIELDS_BY_PATH, Event
from tallystick.store.lake import Lake, events_to_table
from tallystick.store.reader import count_events

T0 = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)


def eid(i: int) -> str:
    return str(uuid.UUID(int=i))


FULL: dict[str, Any] = {
    "event_id": eid(1),
    "name": "project.commit",
    "client_ts": "2025-03-01T09:30:00.250Z",
    "sent_ts": "2025-03-01T09:30:01Z",
    "app": {"id": "portal", "version": "4.2", "environment": "production", "instance": "uni-x"},
    "client": {"library": "tallystick-js", "library_version": "0.1.0", "platform": "web"},
    "user": {"id": "0042", "anonymous_id": "a-1", "is_logged_in": True},
    "session": {"id": "s-1", "seq": 7},
    "page": {"pageview_id": "pv-1", "url": "https://x.org/a?b=1,2", "referrer": "https://y.org/"},
    "agent": {"user_agent": 'Mozilla/5.0 "quoted", comma'},
    "locale": "de-DE",
    "experiments": {"signin-dialog": "b", "new.nav": "control"},
    "sample": {"unit": "session", "rate": 0.25},
    "data": {
        "files": 3,
        "ratio": 0.1,
        "ok": False,
        "none": None,
        "tags": ["a", "b"],
        "note": 'zwei\nZeilen, "zitiert" – ü',
    },
}

EVENTS: list[dict[str, Any]] = [
    FULL,
    {"event_id": eid(2), "name": "page.view", "client_ts": "2025-03-01T08:00:00Z"},
    {
        "event_id": eid(3),
        "name": "page.view",
        "client_ts": "2025-03-01T08:00:00Z",
        "user": {"is_logged_in": False},
        "session": {"seq": 1},
    },
    {
        "event_id": eid(4),
        "name": "signup.done",
        "client_ts": "2025-03-02T23:59:59.999999Z",
        "data": {"plan": "pro"},
    },
    {"event_id": eid(5), "name": "signup.done", "client_ts": "2025-03-03T00:00:00Z"},
    {"event_id": eid(6), "name": "signup.done", "client_ts": "2025-02-28T23:59:59+01:00"},
]


#: what the collector would have added to FULL (an export carries it; an import keeps it)
ENRICHED: dict[str, Any] = {
    "agent_browser": "Chrome",
    "agent_browser_version": "131",
    "agent_os": "Windows",
    "agent_os_version": "10",
    "agent_device": "Other",
    "agent_is_bot": False,
    "geo_country": "DE",
    "geo_region": "DE-BW",
    "geo_network": "203.0.113.0/24",
    "session_inferred": False,
    "page_previous_pageview_id": "pv-0",
    "clock_skew_ms": 750,
    "client_ts_original": dt.datetime(2025, 3, 1, 7, 30, tzinfo=dt.UTC),
}


def write(lake: Lake, events: list[dict[str, Any]], name: str, received: dt.datetime) -> None:
    typed = [msgspec.convert(e, Event) for e in events]
    stamps = [received + dt.timedelta(milliseconds=i) for i in range(len(typed))]
    table = events_to_table(typed, stamps)
    for column, value in ENRICHED.items():  # the first row is FULL, as the loader enriched it
        index = table.schema.get_field_index(column)
        kind = table.schema.field(index).type
        values = pa.array([value] + [None] * (table.num_rows - 1), kind)
        table = table.set_column(index, table.schema.field(index), values)
    lake.write_events(table, name)


@pytest.fixture
def source_lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "source" / "lake")
    write(lake, EVENTS, "first", T0)
    # a re-sent copy of FULL, received later: exports must keep only the first copy
    write(lake, [{**FULL, "data": {"resent": True}}], "resent", T0 + dt.timedelta(hours=1))
    return lake


def export_bytes(lake: Lake, fmt: ExportFormat, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    export_events(lake, buf, fmt, **kwargs)
    return buf.getvalue()


def jsonl(lake: Lake, **kwargs: Any) -> list[dict[str, Any]]:
    text = export_bytes(lake, ExportFormat.jsonl, **kwargs).decode()
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_is_nested_monoschema_without_nulls(source_lake: Lake) -> None:
    rows = jsonl(source_lake)
    assert [r["event_id"] for r in rows] == [eid(6), eid(2), eid(3), eid(1), eid(4), eid(5)]
    full = rows[3]
    assert full["data"] == FULL["data"]  # the first received copy
    assert full["received_ts"] == "2025-03-01T09:30:00Z"
    assert full["client_ts"] == "2025-03-01T09:30:00.250000Z"
    for key in ("app", "client", "user", "session", "page", "agent", "sample"):
        fields = full[key].items()
        sent = {k: v for k, v in fields if FIELDS_BY_PATH[f"{key}.{k}"].origin == "client"}
        assert sent == FULL[key]
    # what the collector added is exported too, in the same nested shape
    assert full["agent"]["browser"] == "Chrome"
    assert full["geo"] == {"country": "DE", "region": "DE-BW", "network": "203.0.113.0/24"}
    assert full["clock_skew_ms"] == 750
    assert full["experiments"] == FULL["experiments"]
    assert full["data"] == FULL["data"]
    assert rows[1] == {**EVENTS[1], "received_ts": "2025-03-01T09:30:00.001000Z"}
    assert rows[2]["user"] == {"is_logged_in": False}
    assert all(None not in r.values() for r in rows)
    for row in rows:  # what the client sent is a valid event; the rest the collector set
        sent = {k: v for k, v in row.items() if not _server(k)}
        for group in ("agent", "session", "page"):
            if group in sent:
                sent[group] = {k: v for k, v in sent[group].items() if not _server(f"{group}.{k}")}
        assert isinstance(msgspec.convert(sent, Event), Event)


def _server(path: str) -> bool:
    field = FIELDS_BY_PATH.get(path)
    return path == "geo" or (field is not None and field.origin == "server")


def test_csv_has_one_column_per_dotted_field(source_lake: Lake) -> None:
    text = export_bytes(source_lake, ExportFormat.csv).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(text.splitlines()[0].split(",")) == CSV_HEADER
    assert CSV_HEADER[:3] == ("event_id", "name", "client_ts")
    assert "user.id" in CSV_HEADER
    full = rows[3]
    assert full["user.id"] == "0042"
    assert full["user.is_logged_in"] == "true"
    assert full["session.seq"] == "7"
    assert json.loads(full["data"]) == FULL["data"]
    assert json.loads(full["experiments"]) == FULL["experiments"]
    assert full["agent.user_agent"] == FULL["agent"]["user_agent"]
    assert rows[1]["user.id"] == ""


def test_parquet_is_nested(source_lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    path.write_bytes(export_bytes(source_lake, ExportFormat.parquet))
    table = pq.read_table(path)
    assert table.schema.equals(parquet_schema())
    assert pa.types.is_struct(table.schema.field("user").type)
    assert table.schema.field("data").type == pa.json_()
    rows = table.to_pylist(maps_as_pydicts="strict")
    assert rows[3]["user"] == FULL["user"]
    assert json.loads(rows[3]["data"]) == FULL["data"]
    assert rows[1]["user"] is None


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (dt.date(2025, 3, 1), dt.date(2025, 3, 1), [eid(2), eid(3), eid(1)]),
        (dt.date(2025, 3, 2), None, [eid(4), eid(5)]),
        (None, dt.date(2025, 2, 28), [eid(6)]),  # 23:59:59+01:00 is 22:59:59 UTC
        (dt.date(2025, 3, 2), dt.date(2025, 3, 2), [eid(4)]),  # --to is inclusive
        (dt.date(2024, 1, 1), dt.date(2024, 12, 31), []),
    ],
)
def test_date_range_is_inclusive_on_utc_dates(
    source_lake: Lake, start: dt.date | None, end: dt.date | None, expected: list[str]
) -> None:
    rows = jsonl(source_lake, date_from=start, date_to=end)
    assert [r["event_id"] for r in rows] == expected


def test_small_batches_give_the_same_output(source_lake: Lake) -> None:
    seen: list[int] = []
    small = export_bytes(source_lake, ExportFormat.csv, batch_rows=2, progress=seen.append)
    assert small == export_bytes(source_lake, ExportFormat.csv)
    assert seen[-1] == len(EVENTS)


def test_an_empty_lake_exports_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "empty")
    assert export_bytes(lake, ExportFormat.jsonl) == b""
    assert export_bytes(lake, ExportFormat.csv).decode().splitlines() == [",".join(CSV_HEADER)]
    path = tmp_path / "empty.parquet"
    path.write_bytes(export_bytes(lake, ExportFormat.parquet))
    assert pq.read_table(path).num_rows == 0


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_round_trip(source_lake: Lake, tmp_path: Path, fmt: ExportFormat) -> None:
    path = tmp_path / f"export.{fmt.value}"
    path.write_bytes(export_bytes(source_lake, fmt))
    settings = Settings(data=tmp_path / "fresh")
    target = Lake(settings.lake_dir)
    report = import_file(Source(path, InputFormat(fmt.value), False), target, settings)
    assert (report.added, report.failed, report.duplicates) == (len(EVENTS), 0, 0)
    assert count_events(target) == len(EVENTS)
    assert jsonl(target) == jsonl(source_lake)
    if fmt is not ExportFormat.parquet:
        assert export_bytes(target, fmt) == export_bytes(source_lake, fmt)
    else:
        again = tmp_path / "again.parquet"
        again.write_bytes(export_bytes(target, fmt))
        assert pq.read_table(again).equals(pq.read_table(path))


def test_every_field_is_exported() -> None:
    assert set(CSV_HEADER) == {f.path for f in FIELDS}
