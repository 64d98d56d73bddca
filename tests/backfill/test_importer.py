"""Importing JSONL, CSV and Parquet files into the lake."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tallystick import messages
from tallystick.backfill.formats import InputFormat
from tallystick.backfill.importer import (
    FileReport,
    Source,
    UsageError,
    detect_source,
    import_file,
)
from tallystick.config import Settings
from tallystick.store.failed import SOURCE_IMPORT
from tallystick.store.lake import Lake
from tallystick.store.reader import count_events, with_retry

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data")


@pytest.fixture
def store(cfg: Settings) -> Lake:
    return Lake(cfg.lake_dir)


def run(path: Path, store: Lake, cfg: Settings, **kwargs: Any) -> FileReport:
    return import_file(detect_source(path), store, cfg, now=NOW, **kwargs)


def flat_row(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=i + 1)),
        "event": "page.view",
        "timestamp": f"2025-05-{1 + i % 3:02d}T10:00:{i % 60:02d}Z",
        "user_id": f"u-{i}",
        "properties": {"page": f"/p/{i}"},
        **extra,
    }


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def failed_rows(store: Lake) -> list[tuple[Any, ...]]:
    def work(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        return con.execute(
            "SELECT origin, error_code, error_message, source, raw, event_id "
            "FROM failed_events ORDER BY origin"
        ).fetchall()

    return with_retry(store, work)


def stored(store: Lake, columns: str = "event_id, name, user_id, data") -> list[tuple[Any, ...]]:
    def work(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        return con.execute(f"SELECT {columns} FROM events ORDER BY event_id").fetchall()

    return with_retry(store, work)


def test_jsonl_import_adds_events(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [flat_row(i) for i in range(5)])
    report = run(path, store, cfg)
    assert (report.rows, report.added, report.duplicates, report.failed) == (5, 5, 0, 0)
    assert count_events(store) == 5
    assert stored(store)[0] == (str(uuid.UUID(int=1)), "page.view", "u-0", '{"page":"/p/0"}')


def test_importing_the_same_file_twice_adds_nothing(
    tmp_path: Path, store: Lake, cfg: Settings
) -> None:
    rows = [{k: v for k, v in flat_row(i).items() if k != "event_id"} for i in range(6)]
    path = write_jsonl(tmp_path / "no-ids.jsonl", rows)  # ids derived from content
    first = run(path, store, cfg)
    files = sorted(store.files())
    second = run(path, store, cfg)
    assert first.added == 6
    assert (second.added, second.duplicates, second.failed) == (0, 6, 0)
    assert second.written == []
    assert sorted(store.files()) == files
    assert count_events(store) == 6


def test_a_broken_jsonl_line_is_reported_and_the_rest_kept(
    tmp_path: Path, store: Lake, cfg: Settings
) -> None:
    lines: list[Any] = [flat_row(0), flat_row(1), "{not json", "", flat_row(2), "[1]"]
    path = write_jsonl(tmp_path / "broken.jsonl", lines)
    report = run(path, store, cfg)
    assert (report.rows, report.added, report.failed) == (5, 3, 2)
    assert [(p.line, p.code) for p in report.problems] == [
        (3, messages.MALFORMED_JSON),
        (6, messages.NOT_AN_OBJECT),
    ]
    assert str(report.problems[0]).startswith(f"{path}:3: malformed_json: ")
    assert count_events(store) == 3
    failed = failed_rows(store)
    assert [(f[0], f[1], f[3], f[4]) for f in failed] == [
        (f"{path}:3", messages.MALFORMED_JSON, SOURCE_IMPORT, "{not json"),
        (f"{path}:6", messages.NOT_AN_OBJECT, SOURCE_IMPORT, "[1]"),
    ]


def test_a_bad_csv_row_is_reported_with_its_line(
    tmp_path: Path, store: Lake, cfg: Settings
) -> None:
    header = ["event", "timestamp", "user_id", "properties", "session_seq"]
    rows = [
        ["signup.done", "2025-05-01T10:00:00Z", "u-1", '{"note": "two\nlines"}', "1"],
        ["signup.done", "not a time", "u-2", "", ""],
        ["signup.done", "1746093600", "u-3", "", "2"],
        ["Bad Name", "1746093600", "u-4", "", ""],
        ["signup.done", "1746093600", "u-5"],
    ]
    path = write_csv(tmp_path / "export.csv", header, rows)
    report = run(path, store, cfg)
    assert (report.rows, report.added, report.failed) == (5, 2, 3)
    # the first record spans lines 2-3, so the bad one starts on line 4
    assert [(p.line, p.code) for p in report.problems] == [
        (4, messages.INVALID_FIELD),
        (6, messages.INVALID_FIELD),
        (7, messages.INVALID_ROW),
    ]
    assert "not a time" in report.problems[0].message
    failed = failed_rows(store)
    assert failed[0][0] == f"{path}:4"
    assert failed[0][4] == "signup.done,not a time,u-2,,"
    assert sorted(stored(store, "user_id, session_seq, data")) == [
        ("u-1", 1, '{"note":"two\\nlines"}'),
        ("u-3", 2, None),
    ]


def test_gzip_jsonl_and_csv(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    jsonl = write_jsonl(tmp_path / "a.jsonl.gz", [flat_row(i) for i in range(3)])
    rows = [["page.view", "2025-05-01T00:00:00Z", f"c-{i}"] for i in range(4)]
    csv_gz = write_csv(tmp_path / "b.csv.gz", ["name", "timestamp", "user_id"], rows)
    assert detect_source(jsonl) == Source(jsonl, InputFormat.jsonl, True)
    assert run(jsonl, store, cfg).added == 3
    assert run(csv_gz, store, cfg).added == 4
    assert count_events(store) == 7


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    full = gzip.compress(
        "\n".join(json.dumps(flat_row(i)) for i in range(2000)).encode(), compresslevel=1
    )
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    report = run(path, store, cfg)
    assert report.problems[-1].code == messages.INVALID_GZIP
    assert report.failed == 1
    assert 0 < report.added < 2000


def test_parquet_input(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    table = pa.table(
        {
            "event_id": [str(uuid.UUID(int=i + 1)) for i in range(3)],
            "event": ["page.view", "page.view", "BAD NAME"],
            "timestamp": pa.array(
                [dt.datetime(2025, 5, 1, 10, i) for i in range(3)], pa.timestamp("ms")
            ),
            "user_id": pa.array([1, 2, 3], pa.int64()),
            "properties": pa.array(
                [{"pageTitle": "Home", "n": 1}, {"pageTitle": "About", "n": None}, None],
                pa.struct([("pageTitle", pa.string()), ("n", pa.int64())]),
            ),
            "experiments": pa.array(
                [[("exp-1", "a")], None, None], pa.map_(pa.string(), pa.string())
            ),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    report = run(path, store, cfg)
    assert (report.rows, report.added, report.failed) == (3, 2, 1)
    assert [(p.line, p.code) for p in report.problems] == [(3, messages.INVALID_FIELD)]
    assert failed_rows(store)[0][0] == f"{path}:3"
    assert stored(store, "user_id, data, experiments, client_ts::VARCHAR") == [
        ("1", '{"page_title":"Home","n":1}', {"exp-1": "a"}, "2025-05-01 10:00:00+00"),
        ("2", '{"page_title":"About"}', None, "2025-05-01 10:01:00+00"),
    ]


def test_duplicates_inside_a_file_are_dropped(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    rows = [flat_row(0), flat_row(1), flat_row(0), flat_row(2), flat_row(1)]
    path = write_jsonl(tmp_path / "dupes.jsonl", rows)
    report = run(path, store, cfg)
    assert (report.rows, report.added, report.duplicates) == (5, 3, 2)
    assert count_events(store) == 3

    def copies(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT count(*) FROM raw_events").fetchone()
        return int(row[0]) if row else 0

    assert with_retry(store, copies) == 3  # nothing stored twice


def test_duplicates_across_chunks_and_files(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    rows = [flat_row(i % 4) for i in range(10)]
    path = write_jsonl(tmp_path / "chunked.jsonl", rows)
    report = run(path, store, cfg, chunk_rows=3)
    assert (report.rows, report.added, report.duplicates) == (10, 4, 6)
    other = write_jsonl(tmp_path / "other.jsonl", [flat_row(3), flat_row(4)])
    again = run(other, store, cfg)
    assert (again.added, again.duplicates) == (1, 1)
    assert count_events(store) == 5


def test_one_id_under_two_names_is_two_events(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    # An event is its id and name (docs/storage.md): a client that reuses an id for another
    # event gets both stored, in the same file and across imports.
    first = write_jsonl(tmp_path / "a.jsonl", [flat_row(0), flat_row(0, event="signup")])
    report = run(first, store, cfg)
    assert (report.added, report.duplicates) == (2, 0)
    again = write_jsonl(tmp_path / "b.jsonl", [flat_row(0, event="signup"), flat_row(0, event="x")])
    report = run(again, store, cfg)
    assert (report.added, report.duplicates) == (1, 1)
    assert count_events(store) == 3


def test_rows_are_validated_like_the_collector(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    future = (NOW + dt.timedelta(days=2)).isoformat()
    big = {"event": "a.b", "timestamp": 0, "properties": {"blob": "x" * 40_000}}
    lines = [flat_row(0), {"event": "a.b", "timestamp": future}, big]
    report = run(write_jsonl(tmp_path / "rules.jsonl", lines), store, cfg)
    assert [p.code for p in report.problems] == [
        messages.CLIENT_TS_IN_FUTURE,
        messages.EVENT_TOO_LARGE,
    ]
    raw = failed_rows(store)[1][4]
    assert len(raw.encode()) <= cfg.failed_raw_max_bytes


def test_monoschema_rows_keep_received_ts(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    event = {
        "event_id": str(uuid.UUID(int=99)),
        "name": "project.commit",
        "client_ts": "2025-05-01T10:00:00Z",
        "received_ts": "2025-05-01T10:00:02.5Z",
        "user": {"id": "u-1", "is_logged_in": True},
        "experiments": {"exp": "b"},
        "data": {"files": 3},
    }
    run(write_jsonl(tmp_path / "mono.ndjson", [event]), store, cfg)
    assert stored(store, "received_ts::VARCHAR, user_is_logged_in, experiments") == [
        ("2025-05-01 10:00:02.5+00", True, {"exp": "b"})
    ]


def test_a_json_array_file_is_reported(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps([flat_row(0), flat_row(1)], indent=2))
    report = run(path, store, cfg)
    assert [p.code for p in report.problems] == [messages.WRONG_SHAPE]
    assert "jq" in report.problems[0].message


@pytest.mark.parametrize(
    ("name", "override", "expected"),
    [
        ("a.jsonl", None, InputFormat.jsonl),
        ("a.ndjson", None, InputFormat.jsonl),
        ("a.JSON", None, InputFormat.jsonl),
        ("a.csv.gz", None, InputFormat.csv),
        ("a.parquet", None, InputFormat.parquet),
        ("a.txt", InputFormat.csv, InputFormat.csv),
        ("a.csv", InputFormat.jsonl, InputFormat.jsonl),
    ],
)
def test_detect_source(
    tmp_path: Path, name: str, override: InputFormat | None, expected: InputFormat
) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert detect_source(path, override).format is expected


@pytest.mark.parametrize(
    ("name", "needle"),
    [("missing.jsonl", "no such file"), ("a.txt", "--input-format"), ("a.parquet.gz", "gunzip")],
)
def test_detect_source_usage_errors(tmp_path: Path, name: str, needle: str) -> None:
    path = tmp_path / name
    if name != "missing.jsonl":
        path.write_bytes(b"x")
    with pytest.raises(UsageError, match=needle):
        detect_source(path)


def test_csv_header_and_field_count_problems(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    dup = write_csv(tmp_path / "dup.csv", ["event", "event"], [["a.b", "a.b"]])
    report = run(dup, store, cfg)
    assert [(p.line, p.code) for p in report.problems] == [(1, messages.INVALID_ROW)]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert run(empty, store, cfg).rows == 0


def test_invalid_utf8_in_csv_is_reported(tmp_path: Path, store: Lake, cfg: Settings) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"event,timestamp,city\na.b,0,M\xfcnchen\na.b,1,Bonn\n")
    report = run(path, store, cfg)
    assert [(p.line, p.code) for p in report.problems] == [(2, messages.INVALID_UTF8)]
    assert report.added == 1


def test_imported_events_get_user_agents_parsed_and_bots_flagged(
    tmp_path: Path, store: Lake, cfg: Settings
) -> None:
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    )
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    rows = [flat_row(0), flat_row(1), flat_row(2)]
    rows[0]["agent.user_agent"] = chrome
    rows[1]["agent.user_agent"] = googlebot
    rows[2]["sent_ts"] = "2020-01-01T00:00:00Z"  # long before the import: not a clock to correct
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    assert run(path, store, cfg).added == 3

    def work(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        return con.execute(
            "SELECT agent_browser, agent_os, agent_is_bot, client_ts_original, session_inferred "
            "FROM raw_events ORDER BY event_id"
        ).fetchall()

    assert with_retry(store, work) == [
        ("Chrome", "Windows", False, None, None),
        ("Googlebot", "Other", True, None, None),
        (None, None, None, None, None),  # no user agent to judge
    ]
