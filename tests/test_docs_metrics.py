"""Every worked example in docs/metrics.md prints exactly what the page shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tallystick.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = (DOCS / "metrics.md").read_text()
EXAMPLES = re.findall(r"```sh\n(tally [^\n]+)\n```\n\n```text\n(.*?)\n```", PAGE, re.DOTALL)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("example")
    result = CliRunner().invoke(
        app, ["import", str(DOCS / "examples" / "metrics-example.jsonl"), "--data", str(target)]
    )
    assert result.exit_code == 0, result.output
    return target


def test_the_page_has_an_example_per_analysis() -> None:
    commands = {" ".join(cmd.split()[:3]) for cmd, _ in EXAMPLES}
    for name in ("core", "active", "count", "ratio", "percentile"):
        assert f"tally metrics {name}" in commands
    assert any(c.startswith("tally funnel") for c in commands)
    assert any(c.startswith("tally retention") for c in commands)


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_worked_example(data: Path, command: str, expected: str) -> None:
    args = [*shlex.split(command)[1:], "--data", str(data)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip("\n") == expected
