"""``tally experiments list|show|apply|start|stop|delete|plan`` against a real control database:
what apply reports, the place of a mistake, the lifecycle through the flags ruleset, and plan's
numbers against statsmodels."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

runner = CliRunner(env={"COLUMNS": "250"})

EXPERIMENT = """\
key: signin-dialog
name: "Sign-in dialog: e-mail pre-filled"
hypothesis: Pre-filling the e-mail lowers the bounce rate
owner: ux-lead@research-portal.eu
unit: user.anonymous_id
variations:
  - {key: a, name: "Control: empty e-mail field"}
  - {key: b, name: E-mail pre-filled}
metrics:
  primary: [bounce_rate]
  guardrails: [signin_latency]
mde: 0.05
planned_sample_size: 20000
"""


def tally(data: Path, *args: str, input: str | None = None) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)], input=input)


def ruleset(data: Path) -> dict[str, Any]:
    result = tally(data, "flags", "show", "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_apply_list_show_start_stop_delete(tmp_path: Path) -> None:
    data = tmp_path / "d"
    file = tmp_path / "signin.yaml"
    file.write_text(EXPERIMENT)
    applied = tally(data, "experiments", "apply", str(file))
    assert applied.exit_code == 0, applied.output
    assert "create signin-dialog (configuration version 1)" in applied.output
    assert "+ experiment signin-dialog (draft)" in applied.output
    again = tally(data, "experiments", "apply", str(file))
    assert "unchanged signin-dialog" in again.output

    listed = tally(data, "experiments", "list")
    assert listed.exit_code == 0, listed.output
    assert "signin-dialog" in listed.output
    assert "a 50% / b 50%" in listed.output
    assert "draft" in listed.output
    assert "ux-lead@research-portal.eu" in listed.output  # 250 columns: every column
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(
        cli, ["experiments", "list", "--data", str(data)]
    )
    assert "signin-dialog" in narrow.stdout
    assert "draft" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    rows = json.loads(tally(data, "experiments", "list", "--format", "json").stdout)
    assert [(r["key"], r["status"], r["unit"]) for r in rows] == [
        ("signin-dialog", "draft", "user.anonymous_id")
    ]
    assert tally(data, "experiments", "list", "--status", "running", "--format", "json").stdout == (
        "[]\n"
    )

    shown = tally(data, "experiments", "show", "signin-dialog")
    assert shown.exit_code == 0, shown.output
    assert "Pre-filling the e-mail lowers the bounce rate" in shown.output
    assert "flags attribute anonymous_id" in shown.output
    assert "(set when started)" in shown.output
    as_yaml = yaml.safe_load(
        tally(data, "experiments", "show", "signin-dialog", "--format", "yaml").stdout
    )
    assert as_yaml["key"] == "signin-dialog"
    assert as_yaml["weights"] == [0.5, 0.5]
    as_json = json.loads(
        tally(data, "experiments", "show", "signin-dialog", "--format", "json").stdout
    )
    assert as_json == as_yaml

    started = tally(data, "experiments", "start", "signin-dialog")
    assert started.exit_code == 0, started.output
    assert "start signin-dialog (configuration version 2)" in started.output
    assert "rule experiment-signin-dialog written to dev, prod" in started.output
    assert "created flag 'signin-dialog'" in started.output
    rules = ruleset(data)["flags"]["signin-dialog"]["environments"]["prod"]["rules"]
    assert [r["id"] for r in rules] == ["experiment-signin-dialog"]
    evaluated = tally(data, "flags", "evaluate", "signin-dialog", "--attr", "anonymous_id=anon-1")
    assert json.loads(evaluated.stdout)["reason"] == "experiment"

    stopped = tally(data, "experiments", "stop", "signin-dialog")
    assert stopped.exit_code == 0, stopped.output
    assert "rule experiment-signin-dialog removed from prod" in stopped.output
    assert ruleset(data)["flags"]["signin-dialog"]["environments"]["prod"]["rules"] == []
    restart = tally(data, "experiments", "start", "signin-dialog")
    assert restart.exit_code == 1
    assert "cannot be restarted" in restart.output
    assert "new key" in restart.output

    refused = tally(data, "experiments", "delete", "signin-dialog", input="n\n")
    assert refused.exit_code == 1
    assert "nothing was changed" in refused.output
    deleted = tally(data, "experiments", "delete", "signin-dialog", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "delete signin-dialog" in deleted.output
    missing = tally(data, "experiments", "show", "signin-dialog")
    assert missing.exit_code == 1
    assert "no experiment 'signin-dialog'" in missing.output

    with ControlStore.for_settings(Settings(data=data)) as store:
        actions = [(e.kind, e.action) for e in store.audit_log(kind="experiments")]
    assert actions == [
        ("experiments", "delete"),
        ("experiments", "stop"),
        ("experiments", "start"),
        ("experiments", "create"),
    ]


def test_apply_a_list_and_report_a_mistake_with_its_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    second = EXPERIMENT.replace("key: signin-dialog", "key: onboarding").replace(
        "unit: user.anonymous_id", "unit: account"
    )
    listed = yaml.safe_load(EXPERIMENT), yaml.safe_load(second)
    file = tmp_path / "all.yaml"
    file.write_text(yaml.safe_dump(list(listed), sort_keys=False))
    bad = tally(data, "experiments", "apply", str(file))
    assert bad.exit_code == 2
    line = next(
        i + 1 for i, text in enumerate(file.read_text().splitlines()) if "unit: account" in text
    )
    assert f"all.yaml:{line}: [1].unit: unit is one of user.id" in bad.output
    assert "nothing was changed" in bad.output
    assert json.loads(tally(data, "experiments", "list", "--format", "json").stdout) == []

    good = json.dumps([listed[0], {**listed[1], "unit": "session"}])
    (tmp_path / "all.json").write_text(good)
    applied = tally(data, "experiments", "apply", str(tmp_path / "all.json"))
    assert applied.exit_code == 0, applied.output
    assert "create signin-dialog" in applied.output
    assert "create onboarding" in applied.output
    rows = json.loads(tally(data, "experiments", "list", "--format", "json").stdout)
    assert {r["key"]: r["unit"] for r in rows} == {
        "onboarding": "session.id",
        "signin-dialog": "user.anonymous_id",
    }

    edited = tmp_path / "edit.yaml"
    edited.write_text(EXPERIMENT.replace("mde: 0.05", "mde: 0.1") + "status: running\n")
    update = tally(data, "experiments", "apply", str(edited))
    assert update.exit_code == 0, update.output
    assert "~ mde: 0.05 → 0.1" in update.output
    assert "status stays draft" in update.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("key: [", "not valid YAML"),
        ("", "is empty"),
        (
            "key: x\nhypothesis: h\nowner: o\nvariations: [a, b]\n"
            "metrics: {primary: [m]}\nmde: -1\n",
            "edit.yaml:6: mde: mde is a number with 0 < mde",
        ),
    ],
)
def test_apply_refuses_a_bad_file(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "edit.yaml"
    file.write_text(text)
    result = tally(tmp_path / "d", "experiments", "apply", str(file))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_plan_matches_statsmodels(tmp_path: Path) -> None:
    NormalIndPower = pytest.importorskip("statsmodels.stats.power").NormalIndPower
    data = tmp_path / "d"
    file = tmp_path / "signin.yaml"
    file.write_text(EXPERIMENT)
    assert tally(data, "experiments", "apply", str(file)).exit_code == 0
    result = tally(
        data, "experiments", "plan", "signin-dialog", "--baseline", "0.3", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    p, delta = 0.3, 0.3 * 0.05
    per_group = NormalIndPower().solve_power(
        effect_size=delta / math.sqrt(p * (1 - p)), alpha=0.05, power=0.8, ratio=1
    )
    assert plan["per_variation"] == [math.ceil(per_group)] * 2
    assert plan["total"] == 2 * math.ceil(per_group)
    assert plan["absolute_effect"] == pytest.approx(delta)
    # the MDE 20,000 units reach: statsmodels gives it the power asked for (10,000 per group)
    reached = NormalIndPower().power(
        effect_size=plan["planned_mde"] * p / math.sqrt(p * (1 - p)),
        nobs1=10_000,
        alpha=0.05,
        ratio=1,
    )
    assert reached == pytest.approx(0.8, abs=1e-9)

    table = tally(data, "experiments", "plan", "signin-dialog", "--baseline", "0.3")
    assert table.exit_code == 0, table.output
    assert f"{math.ceil(per_group):,}" in table.output
    assert "with the planned 20,000 units" in table.output

    mean = tally(
        data, "experiments", "plan", "signin-dialog", "--baseline", "12", "--kind", "mean",
        "--std", "30", "--format", "json",
    )  # fmt: skip
    n = NormalIndPower().solve_power(effect_size=12 * 0.05 / 30, alpha=0.05, power=0.8, ratio=1)
    assert json.loads(mean.stdout)["per_variation"] == [math.ceil(n)] * 2

    no_std = tally(
        data, "experiments", "plan", "signin-dialog", "--baseline", "12", "--kind", "mean"
    )
    assert no_std.exit_code == 2
    assert "needs --std" in no_std.output
    bad_rate = tally(data, "experiments", "plan", "signin-dialog", "--baseline", "3")
    assert bad_rate.exit_code == 2
    assert "between 0 and 1" in bad_rate.output
