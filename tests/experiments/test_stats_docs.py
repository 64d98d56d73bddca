"""docs/experiment-statistics.md stays honest: its example runs and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tallystick.experiments import MetricStats, analyze

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


def test_the_sql_sketch_computes_the_sufficient_statistics() -> None:
    """The doc's SQL, run in DuckDB on generated exposures and events, gives the sums numpy
    computes per unit, and feeds analyze() (variant B lowers the bounce rate)."""
    import duckdb
    import pyarrow as pa

    sql = DOC.read_text().split("```sql\n", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(4)
    units = 3_000
    variation = rng.integers(0, 2, units)
    first = rng.uniform(20, 30, units)  # days
    exposures = [(u, int(variation[u]), float(first[u])) for u in range(units)]
    exposures += [(u, int(variation[u]), float(first[u]) + 1) for u in range(0, units, 7)]
    exposures += [(units, 0, 21.0), (units, 1, 22.0)]  # seen in both: left out
    events: list[tuple[int, str, float]] = []
    y, d, x = np.zeros(units), np.zeros(units), np.zeros(units)
    for u in range(units):
        bounce = 0.4 if variation[u] == 0 else 0.3
        for ts in rng.uniform(0, 60, rng.poisson(4)):
            bounced = rng.random() < bounce
            events.append((u, "session.start", float(ts)))
            if bounced:
                events.append((u, "session.bounce", float(ts)))
            if ts >= first[u]:
                d[u] += 1
                y[u] += bounced
            elif ts >= first[u] - 14:
                x[u] += bounced
    con = duckdb.connect()
    for name, rows in (("exposures", exposures), ("events", events)):
        cols = list(zip(*rows, strict=True))
        table = pa.table(
            {k: list(c) for k, c in zip(("unit", "variation", "ts"), cols, strict=True)}
        )
        if name == "events":
            table = table.rename_columns(["unit", "name", "ts"])
        con.register(name, table)
    # the doc's timestamps are TIMESTAMPs; here days as DOUBLE
    fetched = con.execute(sql.replace("INTERVAL 14 DAY", "14")).fetchnumpy()
    got = {k: np.asarray(v, dtype=np.float64) for k, v in fetched.items()}
    for v in (0, 1):
        m = variation == v
        row = {k: float(col[v]) for k, col in got.items() if k != "variation"}
        assert row["n"] == m.sum()
        np.testing.assert_allclose(
            [row["sum"], row["sum_squares"], row["denominator_sum"]],
            [y[m].sum(), (y[m] ** 2).sum(), d[m].sum()],
        )
        np.testing.assert_allclose(
            [row["denominator_sum_squares"], row["main_denominator_sum_product"]],
            [(d[m] ** 2).sum(), (y[m] * d[m]).sum()],
        )
        np.testing.assert_allclose(
            [row["covariate_sum"], row["covariate_sum_squares"], row["main_covariate_sum_product"]],
            [x[m].sum(), (x[m] ** 2).sum(), (y[m] * x[m]).sum()],
        )
    stats = MetricStats.of(**{k: col[None, :] for k, col in got.items() if k != "variation"})
    result = analyze(stats, got["n"], [0.5, 0.5], inverse=True)
    rec = result.records()[0]
    assert rec["effect"] < 0
    assert rec["chance_to_win"] > 0.95
