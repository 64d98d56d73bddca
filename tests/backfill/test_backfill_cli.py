"""``tally import`` and ``tally export`` through the command line."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from tallystick.cli import app
from tallystick.store.lake import Lake
from tallystick.store.reader import count_events


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env={"TALLYSTICK_DATA": None})


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.UUID(int=i + 1)),
            "event": "page.view",
            "timestamp": f"2025-04-0{1 + i % 5}T12:00:00+02:00",
            "user_id": f"u-{i}",
            "properties": {"pageTitle": f"Page {i}"},
        }
        for i in range(start, start + n)
    ]


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_commands_are_registered() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "import" in result.stdout
    assert "export" in result.stdout


def test_import_prints_a_summary_and_exits_0(tmp_path: Path, data: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", rows(3))
    b = write_jsonl(tmp_path / "b.jsonl", rows(2, start=2))
    result = invoke("import", a, b, "--data", data, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == [
        {"file": str(a), "format": "jsonl", "rows": 3, "added": 3, "duplicates": 0, "failed": 0},
        {"file": str(b), "format": "jsonl", "rows": 2, "added": 1, "duplicates": 1, "failed": 0},
        {"file": "total", "format": "", "rows": 5, "added": 4, "duplicates": 1, "failed": 0},
    ]
    assert count_events(Lake(data / "lake")) == 4
    again = invoke("import", a, "--data", data, "--format", "csv")
    assert again.exit_code == 0
    assert f"{a},jsonl,3,0,3,0" in again.stdout.splitlines()


def test_import_table_output(tmp_path: Path, data: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", rows(2))
    result = invoke("import", a, "--data", data)
    assert result.exit_code == 0, result.output
    assert "duplicates" in result.stdout
    assert "total" in result.stdout


def test_bad_rows_are_listed_and_exit_1(tmp_path: Path, data: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [*rows(2), "{oops", {"event": "x"}])
    result = invoke("import", path, "--data", data, "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["failed"] == 2
    assert f"{path}:3: malformed_json: " in result.stderr
    assert f"{path}:4: missing_field: " in result.stderr
    assert "failed-events store" in result.stderr
    assert count_events(Lake(data / "lake")) == 2


def test_many_bad_rows_are_cut_short(tmp_path: Path, data: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", ["nope"] * 25)
    result = invoke("import", path, "--data", data, "--format", "json")
    assert result.exit_code == 1
    assert result.stderr.count("malformed_json") == 20
    assert "5 more bad rows" in result.stderr


@pytest.mark.parametrize(
    ("name", "needle"),
    [("missing.jsonl", "no such file"), ("events.xml", "--input-format")],
)
def test_usage_errors_exit_2(tmp_path: Path, data: Path, name: str, needle: str) -> None:
    ok = write_jsonl(tmp_path / "ok.jsonl", rows(1))
    path = tmp_path / name
    if name.endswith(".xml"):
        path.write_text("<events/>")
    result = invoke("import", ok, path, "--data", data)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert not (data / "lake").exists()  # nothing imported before the check


def test_input_format_override(tmp_path: Path, data: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_text("name,timestamp\npage.view,2025-01-01T00:00:00Z\n")
    result = invoke("import", path, "--input-format", "csv", "--data", data, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["added"] == 1


def test_export_to_stdout(tmp_path: Path, data: Path) -> None:
    invoke("import", write_jsonl(tmp_path / "a.jsonl", rows(5)), "--data", data)
    result = invoke("export", "--data", data, "--from", "2025-04-02", "--to", "2025-04-03")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["user"]["id"] for e in events] == ["u-1", "u-2"]
    assert events[0]["data"] == {"page_title": "Page 1"}
    assert "exported 2 events" in result.stderr
    csv_out = invoke("export", "--data", data, "--format", "csv", "-o", "-")
    assert csv_out.stdout.splitlines()[0].startswith("event_id,name,client_ts,")
    assert len(csv_out.stdout.splitlines()) == 6


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_import_round_trip(tmp_path: Path, data: Path, fmt: str) -> None:
    invoke("import", write_jsonl(tmp_path / "a.jsonl", rows(7)), "--data", data)
    out = tmp_path / f"events.{fmt}"
    result = invoke("export", "--data", data, "--format", fmt, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fresh = tmp_path / "fresh"
    back = invoke("import", out, "--data", fresh, "--format", "json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout)[0]["added"] == 7
    first = invoke("export", "--data", data)
    second = invoke("export", "--data", fresh)
    assert first.stdout == second.stdout
    assert len(first.stdout.splitlines()) == 7
    if fmt == "parquet":
        assert pq.read_table(out).num_rows == 7


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "parquet"], "--output"),
        (["--from", "yesterday"], "YYYY-MM-DD"),
        (["--from", "2025-02-01", "--to", "2025-01-01"], "after"),
        (["--output", "/nonexistent-dir/x.jsonl"], "does not exist"),
    ],
)
def test_export_usage_errors(data: Path, args: list[str], needle: str) -> None:
    result = invoke("export", "--data", data, *args)
    assert result.exit_code == 2
    assert needle in result.stderr


def test_export_help_explains_format() -> None:
    result = invoke("export", "--help")
    assert result.exit_code == 0
    text = re.sub(r"[\s│]+", " ", result.stdout)  # undo wrapping and table borders
    assert "--format here is the file format" in text
