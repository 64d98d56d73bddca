"""docs/experiment-statistics.md stays honest: its example runs and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "experiment-statistics.md"
HERE = Path(__file__).resolve().parent


def test_the_example_runs() -> None:
    text = DOC.read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, str(DOC), "exec"), {})


def test_every_cited_test_exists() -> None:
    text = DOC.read_text()
    current = ""
    cited = 0
    for file, name in re.findall(r"`(?:(test_stats_\w+\.py))?::?(test_\w+)`", text):
        current = file or current
        source = (HERE / current).read_text()
        assert f"def {name}(" in source, f"{current}::{name} is cited but does not exist"
        cited += 1
    assert cited >= 10
