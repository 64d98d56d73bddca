"""``tally quality loss``: the report in every format, and mistakes that exit 2."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from quality.lossgen import Log, generate
from tallystick.cli import app as cli
from tallystick.quality.loss import COLUMNS, weekly
from tallystick.store.lake import Lake, events_to_table


@pytest.fixture(scope="module")
def log() -> Log:
    return generate(random.Random(5), sessions=25, unsequenced=6)


@pytest.fixture(scope="module")
def data(log: Log, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loss-cli") / "data"
    events, received, streams = log.events()
    Lake(root / "lake").write_events(events_to_table(events, received, streams), "generated")
    return root


def tally(data: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["quality", "loss", "--data", str(data), *args])


def test_json_is_the_report(data: Path, log: Log) -> None:
    result = tally(data, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [r.as_row() for r in log.expected_report()]


def test_weeks_as_csv(data: Path, log: Log) -> None:
    result = tally(data, "--grain", "week", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = [r.as_row("week") for r in weekly(log.expected_report())]
    assert [list(r) for r in rows] == [["week", *COLUMNS]] * len(rows)
    plain = [{k: "" if v is None else str(v) for k, v in r.items()} for r in expected]
    assert rows == plain


def test_a_table_by_default_with_the_totals(data: Path, log: Log) -> None:
    result = tally(data, "--library", "tallystick-js", "--from", "2026-03-02")
    assert result.exit_code == 0, result.output
    rows = [
        r
        for r in log.expected_report()
        if r.library == "tallystick-js" and r.day.isoformat() >= "2026-03-02"
    ]
    lost = sum(r.lost for r in rows)
    expected = sum(r.expected for r in rows)
    text = " ".join(result.stdout.split())
    assert f"2026-03-02 to the last day, tallystick-js only: {lost} of {expected} messages" in text
    assert "%" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grain", "month"], "grain 'month' is not one of day, week for the loss report."),
        (["--from", "yesterday"], "from 'yesterday' is not a date: write YYYY-MM-DD."),
        (
            ["--from", "2026-03-02", "--to", "2026-03-01"],
            "to 2026-03-01 is before from 2026-03-02",
        ),
        (["--library", ""], "parameter 'library' is empty"),
    ],
)
def test_mistakes_exit_2_with_the_reason(data: Path, args: list[str], message: str) -> None:
    result = tally(data, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
