"""Flags benchmark: local flag evaluations per second per core, Tallystick's compiled ruleset
against the ``growthbook`` SDK, in the same process on the same flags and the same units.

The flags (the same definitions in both: Tallystick's ruleset and GrowthBook's features
payload, translated by :func:`to_growthbook`):

- **targeting**: a boolean flag, three rules with conditions (a saved segment with a regular
  expression, ``in`` and a semver comparison, numeric comparisons) and a default;
- **rollout**: a condition, then a 20 % percentage rollout;
- **experiment**: a condition (``not_in``), then an A/B/C experiment with weights and 80 %
  coverage: most units are hashed and assigned;
- **mix**: all three flags for each unit (the usual case: a request evaluates several flags).

Units are ``--units`` distinct attribute maps (id, email, country, app version, plan, age);
every unit is evaluated, so no per-unit result is cached anywhere. Before timing, every
evaluation of both sides is compared (value, and the variation for experiments); a difference
exits with an error. Each side then runs ``--repeat`` times, alternating; the figure is the
median **per CPU second** of the process (one thread: per core), wall time alongside.

GrowthBook is run as its documented synchronous use: one ``GrowthBook`` instance with the
features loaded, ``set_attributes(unit)`` once per unit, then ``eval_feature(key)`` per flag
(``set_attributes`` is charged once per unit, shared by the mix's three flags).

Run: ``.venv/bin/python bench/flags.py`` (``--units``, ``--repeat``). Prints a table and writes
``bench/results/flags-<time>.json`` and ``bench/results/flags-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from growthbook import GrowthBook
from rich.console import Console
from rich.table import Table

from tallystick.flags.evaluate import compile_ruleset

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
console = Console(width=120)
TARGET: Final = 4.0

RULESET: Final[dict[str, Any]] = {
    "environments": ["dev", "prod"],
    "segments": {
        "staff": {"attribute": "email", "op": "regex", "value": r"@example\.org$"},
        "dach": {"attribute": "country", "op": "in", "value": ["DE", "AT", "CH"]},
    },
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {"id": "staff", "condition": {"segment": "staff"}, "value": True},
                        {
                            "id": "dach-new-apps",
                            "condition": {
                                "and": [
                                    {"segment": "dach"},
                                    {
                                        "attribute": "app_version",
                                        "op": "semver_gte",
                                        "value": "2.3.0",
                                    },
                                ]
                            },
                            "value": True,
                        },
                        {
                            "id": "adults-pro",
                            "condition": {
                                "and": [
                                    {"attribute": "age", "op": "gte", "value": 18},
                                    {"attribute": "plan", "op": "equals", "value": "pro"},
                                ]
                            },
                            "value": True,
                        },
                    ]
                }
            },
        },
        "search-v2": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "not-enterprise",
                            "condition": {
                                "attribute": "plan",
                                "op": "equals",
                                "value": "enterprise",
                            },
                            "value": False,
                        },
                        {"id": "ramp", "value": True, "rollout": {"coverage": 0.2}},
                    ]
                }
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "condition": {
                                "attribute": "plan",
                                "op": "not_in",
                                "value": ["enterprise"],
                            },
                            "experiment": {
                                "key": "signin-dialog",
                                "variations": [
                                    {"key": "A", "value": "A"},
                                    {"key": "B", "value": "B"},
                                    {"key": "C", "value": "C"},
                                ],
                                "weights": [0.4, 0.3, 0.3],
                                "coverage": 0.8,
                            },
                        }
                    ]
                }
            },
        },
    },
}
WORKLOADS: Final = {
    "targeting (3 rules)": ("new-signin",),
    "rollout (2 rules)": ("search-v2",),
    "experiment": ("signin-dialog",),
    "mix (3 flags per unit)": ("new-signin", "search-v2", "signin-dialog"),
}
GB_OPS: Final = {"equals": "$eq", "in": "$in", "not_in": "$nin", "gte": "$gte",
                 "regex": "$regex", "semver_gte": "$vgte"}  # fmt: skip


def _gb_condition(doc: Mapping[str, Any], segments: Mapping[str, Any]) -> dict[str, Any]:
    if "segment" in doc:
        return _gb_condition(segments[doc["segment"]], segments)
    if "and" in doc:
        return {"$and": [_gb_condition(x, segments) for x in doc["and"]]}
    if "or" in doc:
        return {"$or": [_gb_condition(x, segments) for x in doc["or"]]}
    if "not" in doc:
        return {"$not": _gb_condition(doc["not"], segments)}
    return {doc["attribute"]: {GB_OPS[doc["op"]]: doc["value"]}}


def to_growthbook(doc: Mapping[str, Any], env: str) -> dict[str, Any]:
    """The same flags as a GrowthBook features payload."""
    features: dict[str, Any] = {}
    for key, f in doc["flags"].items():
        rules: list[dict[str, Any]] = []
        for rule in f["environments"][env]["rules"]:
            gr: dict[str, Any] = {}
            if "condition" in rule:
                gr["condition"] = _gb_condition(rule["condition"], doc["segments"])
            if "experiment" in rule:
                e = rule["experiment"]
                gr.update(
                    key=e["key"],
                    variations=[v["value"] for v in e["variations"]],
                    weights=e["weights"],
                    coverage=e["coverage"],
                    hashAttribute="id",
                    hashVersion=2,
                )
            else:
                gr["force"] = rule["value"]
                if "rollout" in rule:
                    gr.update(
                        coverage=rule["rollout"]["coverage"], hashAttribute="id", hashVersion=2
                    )
            rules.append(gr)
        features[key] = {"defaultValue": f["default"], "rules": rules}
    return features


def make_units(n: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    return [
        {
            "id": f"user-{rng.getrandbits(48):012x}",
            "email": rng.choice(["a@example.org", "b@mail.com", "c@uni.edu", "d@mail.com"]),
            "country": rng.choice(["DE", "AT", "FR", "US", "NL", "CH"]),
            "app_version": rng.choice(["2.2.9", "2.3.0", "2.10.1", "3.0.0-rc.1"]),
            "plan": rng.choice(["free", "pro", "enterprise"]),
            "age": rng.randint(13, 70),
        }
        for _ in range(n)
    ]


Runner = Callable[[list[dict[str, Any]], tuple[str, ...]], int]


def ours_runner() -> Runner:
    ruleset = compile_ruleset(RULESET, "prod")
    evaluate = ruleset.evaluate

    def run(units: list[dict[str, Any]], keys: tuple[str, ...]) -> int:
        for u in units:
            for k in keys:
                evaluate(k, u)
        return len(units) * len(keys)

    return run


def growthbook_runner() -> Runner:
    gb = GrowthBook(features=to_growthbook(RULESET, "prod"))

    def run(units: list[dict[str, Any]], keys: tuple[str, ...]) -> int:
        set_attributes, eval_feature = gb.set_attributes, gb.eval_feature
        for u in units:
            set_attributes(u)
            for k in keys:
                eval_feature(k)
        return len(units) * len(keys)

    return run


def verify(units: list[dict[str, Any]]) -> int:
    """Both sides give the same value (and variation) for every unit and flag."""
    ruleset = compile_ruleset(RULESET, "prod")
    gb = GrowthBook(features=to_growthbook(RULESET, "prod"))
    differences = 0
    for u in units:
        gb.set_attributes(u)
        for key in RULESET["flags"]:
            theirs, ours = gb.eval_feature(key), ruleset.evaluate(key, u)
            variation = theirs.experimentResult.variationId if theirs.experimentResult else None
            if theirs.value != ours.value or (ours.exposure and ours.variation != variation):
                differences += 1
                if differences <= 5:
                    console.print(f"[red]difference[/] {key} {u}: {ours} vs {theirs}")
    return differences


def measure(run: Runner, units: list[dict[str, Any]], keys: tuple[str, ...]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for one pass."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(units, keys)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=20_000, help="distinct units")
    parser.add_argument("--repeat", type=int, default=5, help="passes per side and workload")
    args = parser.parse_args()

    units = make_units(args.units)
    started = time.perf_counter()
    compile_ruleset(RULESET, "prod")
    compile_ms = (time.perf_counter() - started) * 1e3
    differences = verify(units)
    if differences:
        console.print(f"[red]{differences} evaluations differ from the growthbook SDK: not timed")
        sys.exit(1)
    console.print(
        f"verified: {len(units) * len(RULESET['flags']):,} evaluations equal on both sides"
    )
    ours, theirs = ours_runner(), growthbook_runner()
    rows: list[dict[str, Any]] = []
    for name, keys in WORKLOADS.items():
        measure(ours, units[:2000], keys)  # warm-up
        measure(theirs, units[:2000], keys)
        runs: dict[str, list[tuple[float, float]]] = {"tallystick": [], "growthbook": []}
        for _ in range(args.repeat):
            runs["tallystick"].append(measure(ours, units, keys))
            runs["growthbook"].append(measure(theirs, units, keys))
        n = len(units) * len(keys)
        row: dict[str, Any] = {"workload": name, "flags": list(keys), "evaluations": n}
        for side, side_runs in runs.items():
            cpu = statistics.median(r[0] for r in side_runs)
            wall = statistics.median(r[1] for r in side_runs)
            row[side] = {
                "per_cpu_second": n / cpu,
                "per_wall_second": n / wall,
                "cpu_us_per_eval": cpu / n * 1e6,
                "runs": side_runs,
            }
        row["ratio"] = row["tallystick"]["per_cpu_second"] / row["growthbook"]["per_cpu_second"]
        rows.append(row)
    table = Table(
        title=f"local flag evaluations per second per core, {len(units):,} distinct units, "
        f"median of {args.repeat} (CPU time; wall alongside)"
    )
    for col in ("workload", "tallystick /s", "µs", "growthbook /s", "µs ", "ratio", "wall ratio"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for r in rows:
        ours_, theirs_ = r["tallystick"], r["growthbook"]
        colour = "green" if r["ratio"] >= TARGET else "red"
        table.add_row(
            r["workload"],
            f"{ours_['per_cpu_second']:,.0f}",
            f"{ours_['cpu_us_per_eval']:.2f}",
            f"{theirs_['per_cpu_second']:,.0f}",
            f"{theirs_['cpu_us_per_eval']:.2f}",
            f"[{colour}]{r['ratio']:.1f}×[/]",
            f"{ours_['per_wall_second'] / theirs_['per_wall_second']:.1f}×",
        )
    console.print(table)
    console.print(
        f"target ≥ {TARGET:.0f}× the growthbook SDK; ruleset compiled in {compile_ms:.2f} ms"
    )
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "args": vars(args),
        "packages": {"growthbook": version("growthbook"), "msgspec": version("msgspec")},
        "compile_ms": compile_ms,
        "target_ratio": TARGET,
        "workloads": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"flags-{stamp}.json", "flags-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
