"""``tally experiments analyze KEY``: a stored, started experiment read from a real lake and
control database; the JSON is the readout of the stored definition (version included), the table
shows every metric × variation with its verdict, and an SRM line (red when flagged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from experiments.readout_lake import CATALOG_YAML, NOW, experiment_doc, lake_rows
from metrics.lakerows import write_rows
from tallystick.cli import app as cli
from tallystick.config import from_env
from tallystick.control.experiments import get_experiment
from tallystick.control.store import ControlStore
from tallystick.experiments.readout import readout
from tallystick.metrics.catalog import load_catalog
from tallystick.metrics.engines import DuckDBEngine
from tallystick.store.lake import Lake

runner = CliRunner(env={"COLUMNS": "250"})
AT = "2026-03-20T00:00:00Z"


def tally(data: Path, *args: str) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)])


def setup(data: Path, rows: list[dict[str, Any]], **changes: Any) -> None:
    """A data directory with ``rows`` in its lake, the test catalog, and the experiment applied
    (with its start) and started."""
    settings = from_env(data=data)
    write_rows(settings.lake_dir, rows)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "experiments.yaml").write_text(CATALOG_YAML)
    doc = experiment_doc(**changes)
    doc.pop("status")
    file = data.parent / "experiment.yaml"
    file.write_text(yaml.safe_dump(doc))
    for command in (("apply", str(file)), ("start", doc["key"])):
        result = tally(data, "experiments", *command)
        assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("analyze") / "d"
    setup(data, lake_rows())
    return data


def test_json_is_the_readout_of_the_stored_experiment(data: Path) -> None:
    result = tally(data, "experiments", "analyze", "signin-dialog", "--format", "json", "--at", AT)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    settings = from_env(data=data)
    store = ControlStore.for_settings(settings)
    try:
        stored = get_experiment(store, "signin-dialog")
    finally:
        store.close()
    engine = DuckDBEngine(Lake(settings.lake_dir))
    expected = readout(stored, load_catalog(settings.catalog_dir), engine, now=NOW)
    assert doc == json.loads(json.dumps(expected))
    assert doc["version"] == stored.version
    assert doc["experiment"]["status"] == "running"
    assert doc["window"] == {"start": "2026-03-10T00:00:00Z", "end": AT}
    assert doc["metrics"][0]["variations"][1]["verdict"] == "better"


def test_the_engines_agree(data: Path) -> None:
    pytest.importorskip("chdb")
    args = ("experiments", "analyze", "signin-dialog", "--format", "json", "--at", AT)
    duck = json.loads(tally(data, *args).stdout)
    chdb = tally(data, *args, "--engine", "clickhouse")
    assert chdb.exit_code == 0, chdb.output
    other = json.loads(chdb.stdout)
    for doc in (duck, other):
        doc.pop("analysed_at")
    assert other["variations"] == duck["variations"]
    assert other["exposures"] == duck["exposures"]
    assert _close(duck["metrics"], other["metrics"])


def _close(x: Any, y: Any) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return all(_close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float):
        return bool(x == pytest.approx(y, rel=1e-9))
    return bool(x == y)


def test_table_shows_each_metric_and_variation(data: Path) -> None:
    result = tally(data, "experiments", "analyze", "signin-dialog", "--at", AT)
    assert result.exit_code == 0, result.output
    out = result.stdout
    doc = json.loads(
        tally(
            data, "experiments", "analyze", "signin-dialog", "--format", "json", "--at", AT
        ).stdout
    )
    assert "signin-dialog — Sign-in dialog: e-mail pre-filled" in out
    assert "hypothesis: Pre-filling the e-mail lowers the bounce rate" in out
    assert "sample ratio: as planned (p = " in out
    assert "SAMPLE RATIO MISMATCH" not in out
    assert "lower is better" in out
    for m in doc["metrics"]:
        b = m["variations"][1]
        assert m["metric"] in out
        assert f"{b['effect']:+.1%}" in out
        assert f"[{b['ci'][0]:+.1%}, {b['ci'][1]:+.1%}]" in out
        chance = b["chance_to_win"]
        assert (">99.9%" if chance > 0.999 else f"{chance:.1%}") in out
    assert "b vs a" in out
    assert "better" in out
    assert "warning: 3 unit(s) were exposed to two or more variations" in out
    units = " · ".join(
        f"{v['key']}{' (control)' if v['control'] else ''} {v['units']:,}"
        for v in doc["variations"]
    )
    assert f"units: {units}" in out


def test_a_narrow_terminal_gets_a_block_per_comparison(data: Path) -> None:
    """Below 120 columns the effects are not squeezed into a table: a heading and two lines
    of numbers per metric × treatment, no line wider than the terminal."""
    narrow = CliRunner(env={"COLUMNS": "80"})
    result = narrow.invoke(
        cli, ["experiments", "analyze", "signin-dialog", "--data", str(data), "--at", AT]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    doc = json.loads(
        tally(
            data, "experiments", "analyze", "signin-dialog", "--format", "json", "--at", AT
        ).stdout
    )
    assert "┃" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for m in doc["metrics"]:
        b = m["variations"][1]
        role = m["role"] + (", lower is better" if m["inverse"] else "")
        assert f"{m['metric']} ({role}) b vs a: {b['verdict']}" in out
        assert (
            f"effect {b['effect']:+.1%}, 95% interval [{b['ci'][0]:+.1%}, {b['ci'][1]:+.1%}]" in out
        )


def test_a_skewed_split_is_shown_in_red(tmp_path: Path) -> None:
    data = tmp_path / "d"
    setup(data, lake_rows(units=500, seed=5, share_a=0.62, both=0))
    result = runner.invoke(
        cli,
        ["experiments", "analyze", "signin-dialog", "--at", AT, "--data", str(data)],
        color=True,
        env={"COLUMNS": "250", "FORCE_COLOR": "1", "TERM": "xterm-256color"},
    )
    assert result.exit_code == 0, result.output
    assert "SAMPLE RATIO MISMATCH: p = " in result.stdout
    line = next(x for x in result.stdout.splitlines() if "SAMPLE RATIO MISMATCH" in x)
    assert "\x1b[1;31m" in line  # bold red
    assert "do not trust these results" in line


def test_unknown_experiment_and_bad_options(data: Path) -> None:
    unknown = tally(data, "experiments", "analyze", "signin-dialg")
    assert unknown.exit_code == 1
    assert "no experiment 'signin-dialg'; did you mean 'signin-dialog'?" in unknown.output
    bad_at = tally(data, "experiments", "analyze", "signin-dialog", "--at", "yesterday")
    assert bad_at.exit_code == 2
    assert "--at 'yesterday' is not an ISO-8601 date-time" in bad_at.output
    bad_format = tally(data, "experiments", "analyze", "signin-dialog", "--format", "csv")
    assert bad_format.exit_code == 2
    assert "unknown format 'csv': use table or json" in bad_format.output


def test_a_metric_missing_from_the_catalog_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "d"
    setup(
        data,
        lake_rows(units=60),
        metrics={"primary": ["bounce_rate"], "guardrails": ["signin_latncy"]},
    )
    result = tally(data, "experiments", "analyze", "signin-dialog", "--at", AT)
    assert result.exit_code == 0, result.output
    assert "left out" in result.stdout
    assert "warning: metric signin_latncy (guardrail) is left out: no metric named" in result.stdout
    assert "did you mean 'signin_latency'?" in result.stdout
