"""``tally flags show|apply|evaluate`` against a real control database: the change list, the
audit actor, the place of a mistake (file, line, path) and local evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

runner = CliRunner(env={"COLUMNS": "250"})

RULES = """\
environments: [dev, prod]
flags:
  new-signin:
    type: boolean
    default: false
    environments:
      prod:
        rules:
          - id: staff
            condition: {attribute: email, op: regex, value: "@example\\\\.org$"}
            value: true
  dialog:
    type: string
    default: A
    environments:
      prod:
        rules:
          - id: ab
            experiment: {variations: [{key: A, value: A}, {key: B, value: B}]}
"""


def tally(data: Path, *args: str) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)])


def test_apply_show_evaluate(tmp_path: Path) -> None:
    data = tmp_path / "d"
    file = tmp_path / "flags.yaml"
    file.write_text(RULES)
    applied = tally(data, "flags", "apply", str(file), "--yes")
    assert applied.exit_code == 0, applied.output
    assert "+ flag dialog (string)" in applied.output
    assert "+ flag new-signin (boolean)" in applied.output
    assert "environments written: dev, prod" in applied.output
    again = tally(data, "flags", "apply", str(file), "--yes")
    assert "no changes" in again.output

    shown = json.loads(tally(data, "flags", "show", "--format", "json").output)
    assert shown["environments"] == ["dev", "prod"]
    assert set(shown["flags"]) == {"dialog", "new-signin"}
    prod = json.loads(tally(data, "flags", "show", "-e", "prod", "--format", "json").output)
    assert prod["environments"] == ["prod"]
    assert "killed: false" in tally(data, "flags", "show").output

    staff = tally(data, "flags", "evaluate", "new-signin", "--attr", "email=ada@example.org")
    assert json.loads(staff.output) == {
        "flag": "new-signin",
        "value": True,
        "reason": "targeted",
        "rule": "staff",
    }
    dev = tally(data, "flags", "evaluate", "new-signin", "-a", "email=ada@example.org", "-e", "dev")
    assert json.loads(dev.output)["reason"] == "default"
    ab = json.loads(tally(data, "flags", "evaluate", "dialog", "--attr", "id=user-42").output)
    assert ab["reason"] == "experiment"
    assert ab["exposure"] is True
    assert ab["variation_key"] == ab["value"]
    local = tally(tmp_path, "flags", "evaluate", "dialog", "--file", str(file), "-a", "id=user-42")
    assert json.loads(local.output) == ab
    unknown = tally(data, "flags", "evaluate", "nope")
    assert unknown.exit_code == 1
    assert "no flag 'nope'" in unknown.output

    file.write_text(
        RULES.replace("killed", "x").replace("default: false", "default: false\n    killed: true")
    )
    killed = tally(data, "flags", "apply", str(file), "--yes")
    assert "~ flag new-signin: KILLED" in killed.output
    with ControlStore.for_settings(Settings(data=data)) as store:
        entries = store.audit_log(kind="flags")
    assert {e.name for e in entries} == {"dev", "prod"}
    assert all(e.actor.startswith("cli:") for e in entries)


def test_a_mistake_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    file = tmp_path / "flags.yaml"
    file.write_text(RULES.replace("default: A", "default: 3"))
    refused = tally(data, "flags", "apply", str(file), "--yes")
    assert refused.exit_code == 2
    assert "flags.yaml:14: flags.dialog.default" in refused.output.replace("\n", "")
    assert "nothing was changed" in refused.output.replace("\n", "")
    assert json.loads(tally(data, "flags", "show", "--format", "json").output)["flags"] == {}
    assert tally(data, "flags", "show", "-e", "staging").exit_code == 1
    bad_attr = tally(data, "flags", "evaluate", "x", "--attr", "novalue")
    assert bad_attr.exit_code == 2
