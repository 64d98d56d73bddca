"""``tally catalog fields|search`` on a small real lake, control store and metric catalog."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from metrics.lakerows import to_table
from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.definitions import Stream
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake

CATALOG = """\
- name: signin_funnel
  title: Sign-in funnel
  type: funnel
  params: {steps: [signin.open, signin.completed]}
  owner: ux@example.org
  teams: [ux]
- name: views
  title: Page views
  description: Every page view, signed in or not.
  type: count
  params: {event: page.view}
"""


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for day in range(1, 11):
        ts = dt.datetime(2026, 6, day, 12, tzinfo=dt.UTC)
        rows.append(
            {
                "event_id": str(uuid.uuid4()),
                "name": "signin.open",
                "client_ts": ts,
                "stream": "signin",
                "user_id": f"u-{day}",
                "data": {"contact": f"p{day}@example.com", "step": day},
            }
        )
    return rows


@pytest.fixture
def data(tmp_path: Path) -> Path:
    settings = Settings(data=tmp_path / "data")
    Lake(settings.lake_dir).write_events(to_table(_rows()), "fixture")
    (settings.catalog_dir).mkdir(parents=True)
    (settings.catalog_dir / "m.yaml").write_text(CATALOG)
    with ControlStore.for_settings(settings) as store:
        store.put_stream(
            Stream("signin", events=("signin.*",), description="The sign-in dialog."), "test"
        )
    return settings.data


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})


def test_fields_measures_the_lake_on_first_use_then_shows_the_stored_catalog(data: Path) -> None:
    first = run("catalog", "fields", "--json", "--today", "2026-06-11", "--data", str(data))
    assert first.exit_code == 0, first.output
    fields = {f["name"]: f for f in json.loads(first.stdout)}
    assert "measured" in first.stderr
    contact = fields["data.contact"]
    assert contact["personal"] == "values look like e-mail addresses"
    assert contact["examples"] == ["[redacted]"]
    assert contact["events"] == 10
    assert contact["per_day"] == 1.0  # 06-04..06-10: 7 events
    assert contact["streams"] == ["signin"]
    assert fields["data.step"]["type"] == "integer"
    assert fields["user.id"]["personal"] == "name suggests a personal identifier (user id)"

    again = run("catalog", "fields", "--json", "--data", str(data))
    assert again.exit_code == 0, again.output
    assert "measured" not in again.stderr  # the stored catalog, as of 2026-06-11
    assert {f["as_of"] for f in json.loads(again.stdout)} == {"2026-06-11"}

    refreshed = run("catalog", "fields", "--refresh", "--json", "--data", str(data))
    assert refreshed.exit_code == 0, refreshed.output
    assert "measured" in refreshed.stderr
    assert {f["as_of"] for f in json.loads(refreshed.stdout)} == {
        dt.datetime.now(dt.UTC).date().isoformat()
    }


def test_fields_table(data: Path) -> None:
    result = run("catalog", "fields", "--today", "2026-06-11", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert "Fields ever seen" in result.stdout
    assert "data.contact" in result.stdout
    assert "PERSONAL: values look like e-mail addresses" in result.stdout
    assert "example.com" not in result.stdout


def test_search_finds_streams_fields_and_metrics_by_rank(data: Path) -> None:
    result = run("catalog", "search", "signin", "--json", "--data", str(data))
    assert result.exit_code == 0, result.output
    hits = [(h["kind"], h["name"], h["matched"]) for h in json.loads(result.stdout)]
    assert hits[:2] == [("stream", "signin", ["name"]), ("metric", "signin_funnel", ["name"])]
    assert ("field", "data.contact", ["events"]) in hits

    only = run("catalog", "search", "signin", "--kind", "metric", "--json", "--data", str(data))
    assert [h["name"] for h in json.loads(only.stdout)] == ["signin_funnel"]

    table = run("catalog", "search", "page view", "--data", str(data))
    assert table.exit_code == 0, table.output
    assert "views" in table.stdout
    assert "Page views" in table.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["catalog", "search", "  "], 2, "give a word to search for"),
        (["catalog", "search", "x", "--kind", "metrics"], 2, "'metrics' is not one of"),
        (["catalog", "fields", "--today", "June"], 2, "--today 'June' is not a date"),
    ],
)
def test_bad_input_says_what_to_do(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = run(*args, "--data", str(tmp_path / "data"))
    assert result.exit_code == code, result.output
    assert message in result.output


def test_nothing_found_is_not_an_error(data: Path) -> None:
    result = run("catalog", "search", "zebra", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert "nothing matches 'zebra'" in result.stderr
