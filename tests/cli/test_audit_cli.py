"""``tally audit``: every format on stdout or in a file, and mistakes that exit 2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from metrics.lakerows import write_rows
from tallystick.catalog.audit import SECTION_KEYS
from tallystick.cli import app as cli

CATALOG = """\
- name: opens
  title: Sign-in opens
  type: count
  params: {event: signin.open}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit") / "data"
    rows = [
        {
            "event_id": f"e{i}",
            "name": "signin.open",
            "client_ts": dt.datetime(2026, 3, 2 + i, tzinfo=dt.UTC),
            "user_id": f"u{i}",
        }
        for i in range(3)
    ]
    write_rows(root / "lake", rows)
    (root / "config" / "metrics").mkdir(parents=True)
    (root / "config" / "metrics" / "all.yaml").write_text(CATALOG)
    return root


def tally(*args: str) -> Result:
    return CliRunner().invoke(cli, ["audit", *args])


def test_markdown_on_stdout_by_default(data: Path) -> None:
    result = tally("--data", str(data), "--today", "2026-03-16")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Audit and gap report\n")
    assert "as of 2026-03-16" in result.stdout
    headings = [line for line in result.stdout.splitlines() if line.startswith("## ")]
    assert len(headings) == len(SECTION_KEYS)
    # no owner, no streams: the metric is unowned and signin.open is undeclared
    assert "| opens | no owner; no description or calculation | metrics/all.yaml:1 |" in (
        result.stdout
    )
    assert "| signin.open | 3 | 2026-03-02 | 2026-03-04 |" in result.stdout


def test_json_to_a_file(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "audit.json"
    result = tally("--data", str(data), "--format", "json", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    report = json.loads(target.read_text())
    assert [s["key"] for s in report["sections"]] == list(SECTION_KEYS)
    busy = sum(1 for s in report["sections"] if s["count"])
    assert result.stderr == (
        f"Wrote the audit to {target}: {report['total']} items in {busy} of 9 sections.\n"
    )
    assert not list(target.parent.glob(".*"))


def test_html_has_no_scripts(data: Path) -> None:
    result = tally("--data", str(data), "--format", "HTML")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert "<script" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--today", "16/03/2026"], "--today '16/03/2026' is not a date: write it as YYYY-MM-DD"),
        (["--format", "pdf"], "'pdf' is not one of"),
    ],
)
def test_mistakes_exit_2(data: Path, args: list[str], message: str) -> None:
    result = tally("--data", str(data), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_a_missing_data_directory_exits_2(tmp_path: Path) -> None:
    result = tally("--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "no data directory at" in result.stderr
    assert not (tmp_path / "nowhere").exists()
