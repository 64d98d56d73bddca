"""``tally quality check`` and ``tally quality alerts`` end to end: a data directory with a real
lake and control database, a webhook receiver on 127.0.0.1, and the exit codes cron sees."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from quality import alertgen as g
from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.store.lake import Lake

runner = CliRunner(env={"COLUMNS": "250", "TALLYSTICK_ALERT_WEBHOOK_URL": None})
AT = "2026-03-30T12:00:00Z"


def tally(data: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli, ["quality", *args, "--data", str(data)], env=env)


@pytest.fixture(scope="module")
def normal() -> g.Data:
    return g.normal(days=2)


@pytest.fixture(scope="module")
def base(normal: g.Data, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return normal.lake(tmp_path_factory.mktemp("base") / "lake")


def directory(root: Path, data: g.Data, base: Lake, config: dict[str, Any]) -> Path:
    """A data directory holding ``data`` and a control plane configured with ``config``."""
    data.lake(Settings(data=root).lake_dir, base)
    g.control_store(root / "control.db", config).close()
    return root


@pytest.fixture
def quiet(tmp_path: Path, normal: g.Data, base: Lake) -> Path:
    return directory(tmp_path / "quiet", normal, base, g.CONFIG)


@pytest.fixture
def firing(tmp_path: Path, normal: g.Data, base: Lake) -> Path:
    return directory(tmp_path / "firing", g.missing_key(normal), base, g.CONFIG)


def test_all_quiet_exits_0(quiet: Path) -> None:
    result = tally(quiet, "check", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "6 rules: 0 firing, 6 quiet" in result.stderr
    assert "not enough baseline" in result.stdout  # two days of data: volume cannot judge yet
    assert "keys(data.project_id,user.id)" in result.stdout


def test_a_firing_rule_exits_1_and_is_announced_once(firing: Path) -> None:
    with g.Receiver() as hook:
        first = tally(firing, "check", "--at", AT, "--format", "json", "--webhook", hook.url)
        again = tally(firing, "check", "--at", AT, "--webhook", hook.url)
    assert first.exit_code == 1, first.output
    runs = json.loads(first.stdout)
    assert [(r["stream"], r["label"], r["notice"]) for r in runs if r["fired"]] == [
        ("product", "keys(data.project_id,user.id)", "fired")
    ]
    assert "6 rules: 1 firing, 5 quiet; 1 change announced" in first.stderr
    assert "alert fired: stream product, keys(data.project_id,user.id)" in first.stderr
    assert again.exit_code == 1  # still firing: cron still sees it...
    assert "FIRING" in again.stdout
    assert len(hook.bodies) == 1  # ...but nobody is paged twice
    assert hook.bodies[0]["notice"] == "fired"

    history = tally(firing, "alerts", "--format", "json")
    assert history.exit_code == 0, history.output
    assert len(json.loads(history.stdout)) == 12
    notices = json.loads(tally(firing, "alerts", "--notices", "--format", "json").stdout)
    assert [(n["label"], n["notice"], n["delivery"]["webhook"]["status"]) for n in notices] == [
        ("keys(data.project_id,user.id)", "fired", "sent")
    ]
    table = tally(firing, "alerts", "--stream", "product", "--notices", "--limit", "5")
    assert table.exit_code == 0
    assert "FIRING" in table.stdout
    assert "fired, webhook sent" in table.stdout
    newest = json.loads(tally(firing, "alerts", "--limit", "2", "--format", "json").stdout)
    assert [r["id"] for r in newest] == [12, 11]
    recent = json.loads(tally(firing, "alerts", "--since", "1d", "--format", "json").stdout)
    assert recent == []  # evaluated "at" 2026-03-30, long before the last day


def test_the_webhook_setting_is_the_default(firing: Path) -> None:
    with g.Receiver() as hook:
        result = tally(firing, "check", "--at", AT, env={"TALLYSTICK_ALERT_WEBHOOK_URL": hook.url})
    assert result.exit_code == 1
    assert len(hook.bodies) == 1


def test_a_dry_run_records_nothing(firing: Path) -> None:
    with g.Receiver() as hook:
        result = tally(firing, "check", "--at", AT, "--no-deliver", "--webhook", hook.url)
    assert result.exit_code == 1
    assert "1 change not sent (--no-deliver)" in result.stderr
    assert "fired, not sent (--no-deliver)" in result.stdout
    assert hook.bodies == []
    assert "No alert evaluations recorded yet" in tally(firing, "alerts").stderr


def test_one_stream(firing: Path) -> None:
    result = tally(firing, "check", "--at", AT, "--stream", "signin", "--format", "json")
    assert result.exit_code == 0
    assert {r["stream"] for r in json.loads(result.stdout)} == {"signin"}


def test_no_rules_is_quiet_and_says_how_to_add_some(
    tmp_path: Path, normal: g.Data, base: Lake
) -> None:
    data = directory(tmp_path / "plain", normal, base, {"streams": [{"name": "product"}]})
    result = tally(data, "check", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "No alert rules to evaluate: no stream has any (add `alerts:`" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--stream", "nope"], "no stream 'nope'"),
        (["check", "--at", "yesterday"], "--at: 'yesterday' is not a date or time"),
        (["check", "--webhook", "ftp://example.org/x"], "--webhook: the webhook must be an http"),
        (["check", "--webhook", "http://"], "with a host"),
        (["alerts", "--since", "last week"], "--since: 'last week' is not a date or time"),
        (["check", "--format", "yaml"], "Invalid value for '--format'"),
    ],
)
def test_usage_errors_exit_2(quiet: Path, args: list[str], message: str) -> None:
    result = tally(quiet, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_bad_webhook_setting_exits_2(quiet: Path) -> None:
    env = {"TALLYSTICK_ALERT_WEBHOOK_URL": "hooks.example.org/x"}
    result = tally(quiet, "check", env=env)
    assert result.exit_code == 2
    assert "alert_webhook_url: the webhook must be an http" in result.output
    assert os.environ.get("TALLYSTICK_ALERT_WEBHOOK_URL") is None


def test_what_stops_the_evaluation_exits_2_so_that_1_always_means_firing(quiet: Path) -> None:
    bad_url = tally(quiet, "check", "--control-url", "nosuchdb://nowhere")
    assert bad_url.exit_code == 2
    assert "cannot open the control plane's database" in bad_url.output
    broken = quiet / "lake" / "events" / "date=2026-03-30" / "broken.parquet"
    broken.write_bytes(b"not parquet")
    unreadable = tally(quiet, "check", "--at", AT)
    assert unreadable.exit_code == 2
    assert "cannot read the lake in" in " ".join(unreadable.output.split())
