"""Statistics benchmark: 1,000 metric × variation analyses in one vectorised pass (target < 50 ms).

The workload is an experiment readout as the engine will run it: ``--metrics`` metrics (by
default 500: a quarter each mean, binomial, ratio and CUPED mean, sufficient statistics from
seeded random data) × ``--variations`` variations (by default 3: control and two treatments),
so 500 × 2 = 1,000 treatment-vs-control comparisons. Timed, each as ``--repeat`` runs after a
warm-up (median wall time and process CPU time):

- **analyze**: the full readout, ``analyze()`` — Welch t-test with absolute and relative effects,
  CUPED, Bayesian chance to win and risk, Holm-adjusted p-values, the SRM check and the rows
  (``records()``); this is the figure the target applies to;
- **analyze, sequential**: the same with always-valid intervals;
- each method alone on the same 1,000 comparisons (frequentist, sequential, Bayesian);
- **gbstats loop** (when gbstats is installed): the same comparisons through gbstats 0.8.0's
  ``TwoSidedTTest`` and ``EffectBayesianABTest``, one object per comparison, as GrowthBook runs
  them — the reference for the speed-up; the first comparisons are checked to agree.

Run: ``.venv/bin/python bench/stats.py`` (``--metrics``, ``--variations``, ``--repeat``). Prints a
table and writes ``bench/results/stats-<time>.json`` and ``bench/results/stats-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from rich.console import Console
from rich.table import Table

from tallystick.experiments import MetricStats, analyze, bayesian, frequentist, sequential

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
console = Console()
TARGET_MS: Final = 50.0


def workload(metrics: int, variations: int, seed: int = 1) -> tuple[MetricStats, np.ndarray]:
    """Sufficient statistics of shape (metrics, variations) for a mix of metric kinds."""
    rng = np.random.default_rng(seed)
    shape = (metrics, variations)
    n = rng.integers(2_000, 50_000, size=shape).astype(np.float64)
    kind = np.arange(metrics) % 4  # 0 mean, 1 binomial, 2 ratio, 3 CUPED mean
    mean = rng.uniform(1, 20, size=(metrics, 1)) * rng.normal(1, 0.02, size=shape)
    sd = mean * rng.uniform(0.5, 2, size=(metrics, 1))
    rate = rng.uniform(0.02, 0.5, size=(metrics, 1)) * rng.normal(1, 0.03, size=shape)
    s = np.where(kind[:, None] == 1, np.round(rate * n), mean * n)
    ss = np.where(kind[:, None] == 1, s, (sd**2 + mean**2) * n)
    ratio = (kind == 2)[:, None]
    d_mean = rng.uniform(1, 4, size=shape)
    d_sum = np.where(ratio, d_mean * n, np.nan)
    d_ss = np.where(ratio, (d_mean**2 + 1) * n, np.nan)
    md = np.where(ratio, (mean * d_mean + 0.3 * sd) * n, np.nan)
    cuped = (kind == 3)[:, None]
    x_mean = mean * rng.normal(1, 0.01, size=shape)
    x_sum = np.where(cuped, x_mean * n, np.nan)
    x_ss = np.where(cuped, (sd**2 + x_mean**2) * n, np.nan)
    xy = np.where(cuped, (0.7 * sd**2 + mean * x_mean) * n, np.nan)
    stats = MetricStats.of(
        n,
        s,
        ss,
        binomial=(kind == 1)[:, None],
        denominator_sum=d_sum,
        denominator_sum_squares=d_ss,
        main_denominator_sum_product=md,
        covariate_sum=x_sum,
        covariate_sum_squares=x_ss,
        main_covariate_sum_product=xy,
    )
    return stats, n[0]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, list[float]]:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), walls


def gbstats_loop(stats: MetricStats, limit: int | None = None) -> list[tuple[float, float, float]]:
    """(relative estimate, p-value, chance to win) per comparison through gbstats' classes."""
    from gbstats.bayesian.tests import EffectBayesianABTest  # type: ignore[import-untyped]
    from gbstats.frequentist.tests import TwoSidedTTest  # type: ignore[import-untyped]
    from gbstats.models.statistics import (  # type: ignore[import-untyped]
        ProportionStatistic,
        RatioStatistic,
        RegressionAdjustedStatistic,
        SampleMeanStatistic,
    )

    def stat(m: int, v: int) -> Any:
        n = int(stats.n[m, v])
        if stats.binomial[m, v]:
            main: Any = ProportionStatistic(n=n, sum=float(stats.sum[m, v]))
        else:
            main = SampleMeanStatistic(
                n=n, sum=float(stats.sum[m, v]), sum_squares=float(stats.sum_squares[m, v])
            )
        if stats.is_ratio[m, v]:
            den = SampleMeanStatistic(
                n=n,
                sum=float(stats.denominator_sum[m, v]),
                sum_squares=float(stats.denominator_sum_squares[m, v]),
            )
            return RatioStatistic(
                n=n,
                m_statistic=main,
                d_statistic=den,
                m_d_sum_of_products=float(stats.main_denominator_sum_product[m, v]),
            )
        if stats.has_covariate[m, v]:
            pre = SampleMeanStatistic(
                n=n,
                sum=float(stats.covariate_sum[m, v]),
                sum_squares=float(stats.covariate_sum_squares[m, v]),
            )
            return RegressionAdjustedStatistic(
                n=n,
                post_statistic=main,
                pre_statistic=pre,
                post_pre_sum_of_products=float(stats.main_covariate_sum_product[m, v]),
                theta=0,
            )
        return main

    out = []
    metrics, variations = stats.shape
    for m in range(metrics):
        for v in range(1, variations):
            freq = TwoSidedTTest(stat(m, 0), stat(m, v)).compute_result()
            bayes = EffectBayesianABTest(stat(m, 0), stat(m, v)).compute_result()
            out.append((freq.expected, freq.p_value, bayes.chance_to_win))
            if limit is not None and len(out) >= limit:
                return out
    return out


def versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "scipy", "gbstats"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=500, help="metrics in the readout")
    parser.add_argument("--variations", type=int, default=3, help="variations incl. control")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per workload")
    args = parser.parse_args()

    stats, units = workload(args.metrics, args.variations)
    comparisons = args.metrics * (args.variations - 1)
    weights = np.ones(args.variations)
    control = stats[:, np.zeros(args.variations - 1, dtype=np.intp)]
    treatment = stats[:, 1:]
    result = analyze(stats, units, weights)
    assert (result.frequentist.status == 0).all(), "the workload has undefined comparisons"
    plan: list[tuple[str, Callable[[], object]]] = [
        ("analyze", lambda: analyze(stats, units, weights).records()),
        (
            "analyze, sequential",
            lambda: analyze(stats, units, weights, sequential_testing=True).records(),
        ),
        ("frequentist", lambda: frequentist(control, treatment)),
        ("sequential", lambda: sequential(control, treatment)),
        ("bayesian", lambda: bayesian(control, treatment)),
    ]
    rows: list[dict[str, Any]] = []
    for name, fn in plan:
        console.print(f"timing: {name} …")
        wall, cpu, runs = timed(fn, args.repeat)
        rows.append({"workload": name, "seconds": wall, "cpu_seconds": cpu, "runs": runs})

    have_gbstats = versions()["gbstats"] != "not installed"
    if have_gbstats:
        console.print("timing: gbstats loop …")
        check = gbstats_loop(stats, limit=40)
        rec = result.records()
        ours = [(r["effect"], r["p_value"], r["chance_to_win"]) for r in rec[: len(check)]]
        np.testing.assert_allclose(np.array(ours), np.array(check), rtol=1e-6, atol=1e-9)
        started, cpu = time.perf_counter(), time.process_time()
        gbstats_loop(stats)
        rows.append(
            {
                "workload": "gbstats loop (t-test + Bayesian)",
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "runs": [],
            }
        )
    base = rows[0]["seconds"]
    table = Table(
        title=f"statistics engine: {args.metrics} metrics × {args.variations} variations = "
        f"{comparisons:,} comparisons, {os.cpu_count()} cores, median of {args.repeat}"
    )
    for col in ("workload", "ms", "CPU ms", "µs/comparison", "vs target", "vs analyze"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for r in rows:
        ms = r["seconds"] * 1e3
        r["us_per_comparison"] = r["seconds"] / comparisons * 1e6
        table.add_row(
            r["workload"],
            f"{ms:.2f}",
            f"{r['cpu_seconds'] * 1e3:.2f}",
            f"{r['us_per_comparison']:.2f}",
            "" if r["workload"].startswith("gbstats") else f"{ms / TARGET_MS:.0%}",
            f"{r['seconds'] / base:.1f}×",
        )
    console.print(table)
    out = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "args": vars(args),
        "comparisons": comparisons,
        "target_ms": TARGET_MS,
        "packages": versions(),
        "workloads": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"stats-{stamp}.json", "stats-latest.json"):
        (RESULTS / name).write_text(json.dumps(out, indent=2))
    if rows[0]["seconds"] * 1e3 >= TARGET_MS:
        raise SystemExit(f"analyze took {rows[0]['seconds'] * 1e3:.1f} ms (target {TARGET_MS} ms)")


if __name__ == "__main__":
    main()
