"""``tally block add|list|remove`` against a real control database: what is printed, exit codes
for bad input (2) and for a conflict or an unknown block (1), the audit actor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

runner = CliRunner(env={"COLUMNS": "250"})


def tally(data: Path, *args: str) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)])


def test_add_list_remove(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert "No IP ranges are blocked" in tally(data, "block", "list").output
    added = tally(data, "block", "add", "2001:DB8::/32", "--reason", "test range")
    assert added.exit_code == 0, added.output
    assert "blocked 2001:db8::/32 (block 1)" in added.output
    table = tally(data, "block", "list").output
    assert "2001:db8::/32" in table
    assert "test range" in table
    (row,) = json.loads(tally(data, "block", "list", "--format", "json").output)
    assert (row["id"], row["status"], row["requests_refused"], row["last_hit"]) == (
        1,
        "active",
        0,
        None,
    )
    assert row["created_by"].startswith("cli:")
    removed = tally(data, "block", "remove", "1")
    assert removed.exit_code == 0, removed.output
    assert "removed block 1 (2001:db8::/32)" in removed.output
    assert json.loads(tally(data, "block", "list", "--format", "json").output) == []
    (row,) = json.loads(tally(data, "block", "list", "--all", "--format", "json").output)
    assert row["status"] == "removed"
    with ControlStore.for_settings(Settings(data=data)) as store:
        assert [e.action for e in store.audit_log(kind="block")] == ["remove", "add"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["add", "10.1.2.3/8", "--reason", "x"], 2, "the network is 10.0.0.0/8"),
        (["add", "example.org", "--reason", "x"], 2, "is not an IP network"),
        (["add", "10.0.0.0/8", "--reason", " "], 2, "say why"),
        (["add", "192.0.2.0/24", "--reason", "again"], 1, "192.0.2.0/24 is blocked already"),
        (["remove", "99"], 1, "no block 99"),
    ],
)
def test_mistakes_exit_with_a_message(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    data = tmp_path / "d"
    if "again" in args:
        assert tally(data, "block", "add", "192.0.2.0/24", "--reason", "first").exit_code == 0
    result = tally(data, "block", *args)
    assert result.exit_code == code
    assert says in " ".join(result.output.split())
