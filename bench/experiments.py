"""Experiment readout benchmark: ``ExperimentQuery.run`` and ``readout()`` on a large lake.

A generated lake (by default 200,000 users and ~10M events over 42 days; ``--quick``: 20,000
users, ~1M events) in the real layout and schema, written by the lake's own writer, with one
experiment, ``checkout-redesign`` (``--variations`` 3: a, b, c, equal weights, 28 days from
2026-04-06, after 14 days of pre-period for CUPED):

- 85% of the users are exposed (``experiment.exposure`` with the ``experiments`` map and
  ``data.experiment``/``data.variation``, as the SDK logs it) on a uniform day of the first 21,
  40% again later; 0.2% are then exposed to a second variation (left out and counted), 1% had an
  exposure before the start (ignored); 0.5% of the users are bots (``agent.is_bot``, left out);
- sessions (Gamma-distributed activity per user, uniform over the 42 days): ``session.start``,
  1 page view (a bounce, 40%; 37% in b after exposure) or 2 and more, searches, sometimes a
  ``purchase`` with ``data.amount`` (a multiple of 0.25), ``session.end`` with
  ``data.pageviews``; anonymous page views (no ``user_id``); 0.5% of the rows re-sent copies;

and five metrics: **purchased** (conversion), **revenue** (mean of ``data.amount``), **bounce_rate**
(ratio ``session.end`` with ``data.pageviews=1`` over ``session.end``), **pages** (mean page
views with CUPED over 14 pre-exposure days) and **order_value** (ratio: amount per purchase).

Before anything is timed, each engine's result is checked against a plain numpy computation on
the generated arrays (units per variation, units left out, and per metric × variation ``n``, the
sums, sums of squares and cross products, exactly); a difference stops the run with an error.
Timed: ``--repeat`` rounds after that check, each running every workload once in turn (so a
change in the machine's load hits all alike; median wall time and process CPU time):

- **run**: ``ExperimentQuery(...).run(engine)`` with the five metrics — its three queries
  (statistics, exposures per variation, new exposures per day) — on DuckDB, and on chDB when
  installed;
- **readout**: ``readout(experiment, catalog, engine)`` for a stored-style definition whose
  catalog metrics are the four a catalog can express (not revenue), as ``tally experiments
  analyze`` runs it: the query, the statistics and the document;
- the parts: each of the three queries alone (on DuckDB; ``--parts duckdb,chdb`` on both),
  ``analyze()`` on the statistics, and a floor: one hand-written DuckDB pass over the same
  files reading the columns the readout reads;

and each run/readout once more in a fresh process for its peak RSS (``VmHWM``).

Run: ``make bench`` (or ``.venv/bin/python bench/experiments.py --help``; ``--quick`` for a
~1M-event run). The lake is generated once per parameter set under ``bench/data/`` (not
committed) and reused; the reference is recomputed from the same seeded arrays on every run.
Prints a table and writes ``bench/results/experiments-<time>.json`` and
``bench/results/experiments-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from tallystick.experiments import analyze
from tallystick.experiments.definition import Experiment, parse_experiment
from tallystick.experiments.readout import readout
from tallystick.experiments.sql import EXPOSURE_EVENT, ExperimentData, ExperimentQuery, Metric
from tallystick.experiments.sql import _run as run_tree
from tallystick.metrics.catalog import Catalog, parse_text
from tallystick.metrics.engines import ChDBEngine, DuckDBEngine, Engine
from tallystick.metrics.params import Filter
from tallystick.store.lake import EVENT_SCHEMA, EVENTS, Lake

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / "data"
console = Console()

GENERATOR: Final = 1  # bump when the generated data changes: the cached lakes are then stale
KEY: Final = "checkout-redesign"
US: Final = 1_000_000
DAY_US: Final = 86_400 * US
PRE_DAYS: Final = 14
EXPOSE_DAYS: Final = 21
RUN_DAYS: Final = 28
LAKE_START: Final = dt.datetime(2026, 3, 23, tzinfo=dt.UTC)
START: Final = LAKE_START + dt.timedelta(days=PRE_DAYS)
STOP: Final = START + dt.timedelta(days=RUN_DAYS)
CUPED_DAYS: Final = 14
EXPOSED_SHARE: Final = 0.85
BOT_SHARE: Final = 0.005
SWITCHED_SHARE: Final = 0.002
EARLY_SHARE: Final = 0.01
COPY_SHARE: Final = 0.005
ANONYMOUS_SHARE: Final = 0.02

NAMES: Final = (
    EXPOSURE_EVENT,
    "session.start",
    "page.view",
    "session.end",
    "purchase",
    "search.query",
)
EXPOSURE, SESSION_START, PAGE_VIEW, SESSION_END, PURCHASE, SEARCH = range(len(NAMES))
MAX_PAGES: Final = 60
MAX_AMOUNT_STEPS: Final = 480  # amounts are 0.25 × an integer up to this
PATHS: Final = 50

METRICS: Final = (
    Metric("purchased", "conversion", "purchase"),
    Metric("revenue", "mean", "purchase", value="data.amount"),
    Metric(
        "bounce_rate",
        "ratio",
        "session.end",
        denominator="session.end",
        numerator_where=(Filter("data.pageviews", "=", ("1",)),),
    ),
    Metric("pages", "mean", "page.view", cuped_days=CUPED_DAYS),
    Metric("order_value", "ratio", "purchase", value="data.amount", denominator="purchase"),
)
"""The metrics of the timed ``ExperimentQuery`` (and of the reference)."""

CATALOG_YAML: Final = """\
- name: purchased
  title: Purchased
  type: count
  params: {event: purchase}
- name: pages
  title: Page views
  type: count
  params: {event: page.view}
- name: order_value
  title: Order value
  type: percentile
  params: {event: purchase, field: data.amount, p: [50]}
- name: bounce_rate
  title: Bounce rate
  type: ratio
  direction: lower
  params:
    numerator: session.end
    denominator: session.end
    unit: event
    numerator_where: [data.pageviews=1]
"""
"""The readout's catalog: every metric of :data:`METRICS` but revenue (a catalog count metric
counts events; a mean of a field per unit is not a catalog type)."""

Row = dict[str, Any]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# The data


@dataclass(frozen=True, slots=True)
class Spec:
    """The parameters of one generated lake (same parameters, same lake)."""

    units: int
    events: int
    variations: int
    seed: int

    @property
    def name(self) -> str:
        return (
            f"experiments-g{GENERATOR}-u{self.units}-e{self.events}-v{self.variations}-s{self.seed}"
        )

    @property
    def variation_keys(self) -> tuple[str, ...]:
        return tuple("abcdefgh"[: self.variations])


@dataclass(frozen=True, slots=True)
class Sim:
    """The generated events (distinct: copies are added when writing) and the users."""

    unit: IntArray  # index of the user; -1: anonymous
    name: NDArray[np.int8]  # index into NAMES
    ts: IntArray  # client_ts, µs since the epoch
    variation: NDArray[np.int8]  # exposures: the variation's index; else -1
    pageviews: NDArray[np.int16]  # session.end: data.pageviews; else 0
    amount_steps: NDArray[np.int16]  # purchase: data.amount / 0.25; else 0
    path: NDArray[np.int16]  # page.view: its data.path index; else -1
    session: IntArray  # the session's index; -1 for exposures and anonymous events
    bot: NDArray[np.bool_]  # per user

    @property
    def rows(self) -> int:
        return len(self.ts)

    @property
    def amount(self) -> FloatArray:
        return self.amount_steps.astype(np.float64) * 0.25


def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * US


def simulate(spec: Spec) -> Sim:
    """The lake's events as numpy arrays, from ``spec.seed`` only (vectorised; a few seconds
    for 10M events)."""
    rng = np.random.default_rng(spec.seed)
    users, nv = spec.units, spec.variations
    lake_start, start, stop = _us(LAKE_START), _us(START), _us(STOP)
    bot = rng.random(users) < BOT_SHARE
    exposed = rng.random(users) < EXPOSED_SHARE
    var = rng.integers(0, nv, users).astype(np.int8)
    t1 = start + rng.integers(0, EXPOSE_DAYS * DAY_US, users)
    parts: list[dict[str, Any]] = []

    def exposures(who: IntArray, at: IntArray, variation: NDArray[np.int8]) -> None:
        parts.append({"unit": who, "name": EXPOSURE, "ts": at, "variation": variation})

    ex = np.flatnonzero(exposed)
    exposures(ex, t1[ex], var[ex])
    again = ex[rng.random(len(ex)) < 0.4]  # later exposures: same variation
    later = t1[again] + (rng.random(len(again)) * (stop - t1[again])).astype(np.int64)
    exposures(again, later, var[again])
    switched = ex[rng.random(len(ex)) < SWITCHED_SHARE]  # then another variation: left out
    later = t1[switched] + (rng.random(len(switched)) * (stop - t1[switched])).astype(np.int64)
    exposures(switched, later, ((var[switched] + 1) % nv).astype(np.int8))
    early = ex[rng.random(len(ex)) < EARLY_SHARE]  # before the start: ignored
    exposures(early, start - rng.integers(3600 * US, 3 * DAY_US, len(early)), var[early])
    n_exposures = sum(len(p["unit"]) for p in parts)

    # Sessions: ~5.6 events each (start, pages, end, searches, sometimes a purchase).
    per_session = 2 + (0.4 + 0.6 * 4) + 0.8 + 0.04
    sessions_wanted = max(spec.events * (1 - ANONYMOUS_SHARE) - n_exposures, 0) / per_session
    activity = rng.gamma(1.5, 1.0, users)
    counts = rng.poisson(activity * sessions_wanted / activity.sum())
    s_unit = np.repeat(np.arange(users), counts)
    n_sessions = len(s_unit)
    span = (PRE_DAYS + RUN_DAYS) * DAY_US - 2 * 3600 * US
    s_ts = lake_start + rng.integers(0, span, n_sessions)
    s_var = var[s_unit]
    treated = exposed[s_unit] & (s_ts >= t1[s_unit])
    bounce_p = np.where(treated & (s_var == 1), 0.37, 0.40)
    bounced = rng.random(n_sessions) < bounce_p
    more = rng.geometric(np.where(treated & (s_var == 2), 0.30, 1 / 3))
    pages = np.where(bounced, 1, np.minimum(1 + more, MAX_PAGES)).astype(np.int64)
    buy_p = np.where(treated & (s_var == 1), 0.045, 0.04)
    buys = rng.random(n_sessions) < buy_p
    searches = rng.poisson(0.8, n_sessions)

    # Page views 5-60 s apart from the start; the end 10 s after the last.
    pv_session = np.repeat(np.arange(n_sessions), pages)
    gaps = rng.integers(5 * US, 60 * US, len(pv_session))
    cum = np.cumsum(gaps)
    first_pv = np.cumsum(pages) - pages
    before = np.where(first_pv > 0, cum[np.maximum(first_pv - 1, 0)], 0)
    pv_ts = s_ts[pv_session] + cum - np.repeat(before, pages)
    last_pv = pv_ts[np.cumsum(pages) - 1]
    end_ts = last_pv + 10 * US
    parts.append({"unit": s_unit, "name": SESSION_START, "ts": s_ts, "session": "all"})
    parts.append(
        {
            "unit": s_unit[pv_session],
            "name": PAGE_VIEW,
            "ts": pv_ts,
            "session": pv_session,
            "path": rng.integers(0, PATHS, len(pv_session)).astype(np.int16),
        }
    )
    parts.append(
        {
            "unit": s_unit,
            "name": SESSION_END,
            "ts": end_ts,
            "session": "all",
            "pageviews": pages.astype(np.int16),
        }
    )
    b = np.flatnonzero(buys)
    low = np.where(treated[b] & (s_var[b] == 2), 22, 20)  # c: a little more per order
    steps = rng.integers(low, np.where(low == 22, MAX_AMOUNT_STEPS, 400) + 1)
    parts.append(
        {
            "unit": s_unit[b],
            "name": PURCHASE,
            "ts": end_ts[b] - US,
            "session": b,
            "amount_steps": steps.astype(np.int16),
        }
    )
    q_session = np.repeat(np.arange(n_sessions), searches)
    q_ts = s_ts[q_session] + (rng.random(len(q_session)) * (end_ts - s_ts)[q_session]).astype(
        np.int64
    )
    parts.append({"unit": s_unit[q_session], "name": SEARCH, "ts": q_ts, "session": q_session})

    # Anonymous page views (no user_id): never in a metric.
    anon = max(spec.events - n_exposures - sum(len(p["ts"]) for p in parts[-5:]), 0)
    anon = min(anon, int(spec.events * ANONYMOUS_SHARE * 1.5))
    parts.append(
        {
            "unit": np.full(anon, -1, np.int64),
            "name": PAGE_VIEW,
            "ts": lake_start + rng.integers(0, span, anon),
            "path": rng.integers(0, PATHS, anon).astype(np.int16),
        }
    )

    def column(key: str, dtype: Any, missing: int) -> NDArray[Any]:
        out = []
        for p in parts:
            n = len(p["ts"])
            value = p.get(key)
            if value is None:
                out.append(np.full(n, missing, dtype))
            elif isinstance(value, str):  # "all": one per session, in order
                out.append(np.arange(n, dtype=dtype))
            elif np.ndim(value) == 0:
                out.append(np.full(n, value, dtype))
            else:
                out.append(np.asarray(value, dtype))
        return np.concatenate(out)

    return Sim(
        unit=column("unit", np.int64, -1),
        name=column("name", np.int8, -1),
        ts=column("ts", np.int64, 0),
        variation=column("variation", np.int8, -1),
        pageviews=column("pageviews", np.int16, 0),
        amount_steps=column("amount_steps", np.int16, 0),
        path=column("path", np.int16, -1),
        session=column("session", np.int64, -1),
        bot=bot,
    )


def _uuid_strings(raw: NDArray[np.uint8]) -> pa.Array:
    """Version 4 UUID text (36 characters) of 16 random bytes per row, vectorised."""
    n = len(raw)
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexdigits = np.frombuffer(b"0123456789abcdef", np.uint8)
    nibbles = np.empty((n, 32), np.uint8)
    nibbles[:, 0::2] = hexdigits[raw >> 4]
    nibbles[:, 1::2] = hexdigits[raw & 0x0F]
    text = np.full((n, 36), ord("-"), np.uint8)
    at = 0
    for start, width in ((0, 8), (9, 4), (14, 4), (19, 4), (24, 12)):
        text[:, start : start + width] = nibbles[:, at : at + width]
        at += width
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _strings(codes: NDArray[Any], dictionary: list[str]) -> pa.Array:
    """Text column from ``codes`` into ``dictionary`` (-1: null), built in C."""
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask)
    return pc.cast(pa.DictionaryArray.from_arrays(indices, pa.array(dictionary)), pa.string())


def to_table(sim: Sim, spec: Spec) -> pa.Table:
    """The lake rows of ``sim`` (plus re-sent copies), in ``client_ts`` order, EVENT_SCHEMA."""
    rng = np.random.default_rng(spec.seed + 1_000_003)
    n = sim.rows
    copies = np.flatnonzero(rng.random(n) < COPY_SHARE)
    src = np.concatenate([np.arange(n), copies])
    is_copy = np.concatenate([np.zeros(n, bool), np.ones(len(copies), bool)])
    order = np.lexsort((is_copy, sim.ts[src]))
    src, is_copy = src[order], is_copy[order]
    ts = sim.ts[src]
    delay = (80_000 * np.exp(0.9 * rng.standard_normal(len(src)))).astype(np.int64)
    resent = np.where(is_copy, rng.integers(3 * US, 900 * US, len(src)), 0)
    received = ts + delay + resent
    ids = _uuid_strings(rng.integers(0, 256, (n, 16), dtype=np.uint8)[src])
    unit, name = sim.unit[src], sim.name[src]
    variation = sim.variation[src]
    keys = spec.variation_keys
    users = [f"u-{u:07d}" for u in range(spec.units)]
    # data: one dictionary of every JSON text the generator writes.
    texts = [json.dumps({"experiment": KEY, "variation": v}, separators=(",", ":")) for v in keys]
    pv_base = len(texts)
    texts += [f'{{"pageviews":{k}}}' for k in range(MAX_PAGES + 1)]
    amount_base = len(texts)
    texts += [f'{{"amount":{k * 0.25}}}' for k in range(MAX_AMOUNT_STEPS + 1)]
    path_base = len(texts)
    texts += [f'{{"path":"/p/{k}"}}' for k in range(PATHS)]
    data = np.full(len(src), -1, np.int64)
    data = np.where(name == EXPOSURE, variation, data)
    data = np.where(name == SESSION_END, pv_base + sim.pageviews[src], data)
    data = np.where(name == PURCHASE, amount_base + sim.amount_steps[src], data)
    data = np.where((name == PAGE_VIEW) & (sim.path[src] >= 0), path_base + sim.path[src], data)
    exposure = name == EXPOSURE
    offsets = np.concatenate([[0], np.cumsum(exposure)]).astype(np.int32)
    n_map = int(exposure.sum())
    experiments = pa.MapArray.from_arrays(
        pa.array(offsets),
        pc.cast(pa.DictionaryArray.from_arrays(np.zeros(n_map, np.int32), [KEY]), pa.string()),
        _strings(variation[exposure], list(keys)),
        mask=pa.array(~exposure),
    )
    session = sim.session[src]
    session_ids = pc.binary_join_element_wise(
        "s-", pc.cast(pa.array(session, mask=session < 0), pa.string()), ""
    )
    is_bot = np.where(unit >= 0, sim.bot[np.maximum(unit, 0)], False)

    def ts_array(us: IntArray) -> pa.Array:
        return pa.array(us, type=pa.timestamp("us", tz="UTC"))

    constant = np.zeros(len(src), np.int32)
    columns: dict[str, pa.Array] = {
        "event_id": ids,
        "name": _strings(name, list(NAMES)),
        "client_ts": ts_array(ts),
        "sent_ts": ts_array(ts + delay // 2 + resent),
        "received_ts": ts_array(received),
        "app_id": _strings(constant, ["shop-web"]),
        "app_version": _strings(constant, ["2.8.0"]),
        "app_environment": _strings(constant, ["production"]),
        "client_library": _strings(constant, ["tallystick-js"]),
        "client_platform": _strings(constant, ["web"]),
        "user_id": _strings(unit, users),
        "user_is_logged_in": pa.array(unit >= 0),
        "session_id": session_ids,
        "agent_is_bot": pa.array(is_bot),
        "experiments": experiments,
        "data": _strings(data, texts),
        "schema_version": pa.array(np.ones(len(src), np.int16)),
    }
    arrays = [
        columns[f.name] if f.name in columns else pa.nulls(len(src), f.type) for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(
        [a.cast(f.type) for a, f in zip(arrays, EVENT_SCHEMA, strict=True)],
        schema=EVENT_SCHEMA,
    )


def write_lake(table: pa.Table, lake: Lake) -> None:
    """One file per UTC date (the table is in ``client_ts`` order) through the lake's writer
    (zstd Parquet, 256k-row groups, atomic). Events only: the delivery ledger, which
    ``write_events`` writes as well and no query reads, would cost as much again."""
    us = pc.cast(table.column("client_ts"), pa.int64()).to_numpy()
    days = us // DAY_US
    bounds = np.flatnonzero(np.diff(days)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(days)], strict=True):
        lake.write(EVENTS, table.slice(int(lo), int(hi - lo)), "bench")


def ensure_lake(spec: Spec, sim: Sim) -> tuple[Lake, dict[str, Any], bool]:
    """The lake of ``spec`` under ``bench/data/``, generated unless a complete one exists."""
    root = DATA / spec.name
    meta = root / "lake.json"
    if meta.exists():
        return Lake(root / "lake"), json.loads(meta.read_text()), True
    console.print(f"writing {spec.name} …")
    tmp = root.with_name(f".{root.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "lake").mkdir(parents=True)
    began = time.perf_counter()
    table = to_table(sim, spec)
    built = time.perf_counter() - began
    write_lake(table, Lake(tmp / "lake"))
    files = sorted((tmp / "lake" / "events").rglob("*.parquet"))
    info = {
        "spec": asdict(spec),
        "rows": table.num_rows,
        "distinct_events": sim.rows,
        "copies": table.num_rows - sim.rows,
        "by_name": {NAMES[k]: int((sim.name == k).sum()) for k in range(len(NAMES))},
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "table_seconds": round(built, 1),
        "write_seconds": round(time.perf_counter() - began - built, 1),
        "generated": dt.datetime.now(dt.UTC).isoformat(),
    }
    del table
    (tmp / "lake.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return Lake(root / "lake"), info, False


# --------------------------------------------------------------------------------------------
# The reference: plain numpy on the generated arrays


@dataclass(frozen=True, slots=True)
class Reference:
    units: IntArray  # per variation
    multiple: int
    stats: dict[str, FloatArray]  # STAT_COLUMNS → (metrics, variations), METRICS order


def reference(sim: Sim, spec: Spec) -> Reference:
    """The readout's numbers by their definitions (docs/experiments.md), from ``sim``."""
    start, stop, nv, users = _us(START), _us(STOP), spec.variations, spec.units
    has_unit = sim.unit >= 0
    counted = has_unit & ~sim.bot[np.maximum(sim.unit, 0)]
    ex = counted & (sim.name == EXPOSURE) & (sim.ts >= start) & (sim.ts < stop)
    u, t, v = sim.unit[ex], sim.ts[ex], sim.variation[ex].astype(np.int64)
    first = np.full(users, np.iinfo(np.int64).max)
    np.minimum.at(first, u, t)
    lo, hi = np.full(users, nv), np.full(users, -1)
    np.minimum.at(lo, u, v)
    np.maximum.at(hi, u, v)
    seen = hi >= 0
    single = seen & (lo == hi)
    units = np.bincount(lo[single], minlength=nv)
    unit = np.maximum(sim.unit, 0)
    in_test = counted & single[unit]
    f = first[unit]
    post = in_test & (sim.ts >= f) & (sim.ts < stop)
    pre = in_test & (sim.ts < f) & (sim.ts >= f - CUPED_DAYS * DAY_US)
    amount = sim.amount

    def per_unit(mask: NDArray[np.bool_], weights: FloatArray | None = None) -> FloatArray:
        w = None if weights is None else weights[mask]
        return np.bincount(sim.unit[mask], weights=w, minlength=users).astype(np.float64)

    is_name = {k: sim.name == k for k in range(len(NAMES))}
    bounced = sim.pageviews == 1
    values: dict[str, tuple[FloatArray, FloatArray | None, FloatArray | None]] = {
        "purchased": (np.minimum(per_unit(post & is_name[PURCHASE]), 1.0), None, None),
        "revenue": (per_unit(post & is_name[PURCHASE], amount), None, None),
        "bounce_rate": (
            per_unit(post & is_name[SESSION_END] & bounced),
            per_unit(post & is_name[SESSION_END]),
            None,
        ),
        "pages": (per_unit(post & is_name[PAGE_VIEW]), None, per_unit(pre & is_name[PAGE_VIEW])),
        "order_value": (
            per_unit(post & is_name[PURCHASE], amount),
            per_unit(post & is_name[PURCHASE]),
            None,
        ),
    }
    assert tuple(values) == tuple(m.key for m in METRICS)
    members = np.flatnonzero(single)
    group = lo[members]

    def by_variation(x: FloatArray | None) -> FloatArray:
        if x is None:
            return np.full(nv, np.nan)
        return np.bincount(group, weights=x[members], minlength=nv).astype(np.float64)

    rows: dict[str, list[FloatArray]] = {c: [] for c in _STATS}
    for y, d, x in values.values():
        rows["n"].append(units.astype(np.float64))
        rows["sum"].append(by_variation(y))
        rows["sum_squares"].append(by_variation(y * y))
        rows["denominator_sum"].append(by_variation(d))
        rows["denominator_sum_squares"].append(by_variation(None if d is None else d * d))
        rows["main_denominator_sum_product"].append(by_variation(None if d is None else y * d))
        rows["covariate_sum"].append(by_variation(x))
        rows["covariate_sum_squares"].append(by_variation(None if x is None else x * x))
        rows["main_covariate_sum_product"].append(by_variation(None if x is None else y * x))
    return Reference(
        units=units,
        multiple=int((seen & ~single).sum()),
        stats={c: np.array(r) for c, r in rows.items()},
    )


_STATS: Final = (
    "n",
    "sum",
    "sum_squares",
    "denominator_sum",
    "denominator_sum_squares",
    "main_denominator_sum_product",
    "covariate_sum",
    "covariate_sum_squares",
    "main_covariate_sum_product",
)


def check_run(data: ExperimentData, ref: Reference) -> list[str]:
    """Differences between an engine's statistics and the reference (none: equal)."""
    out: list[str] = []
    if not np.array_equal(data.units, ref.units):
        out.append(f"units per variation {data.units.tolist()} != {ref.units.tolist()}")
    if data.multiple_variations != ref.multiple:
        out.append(f"units in two variations {data.multiple_variations} != {ref.multiple}")
    daily = np.sum([counts for _, counts in data.daily], axis=0) if data.daily else None
    if daily is None or not np.array_equal(daily, ref.units):
        out.append(f"new exposures per day sum to {daily}, not {ref.units.tolist()}")
    for c in _STATS:
        got, want = getattr(data.stats, c), ref.stats[c]
        if got.shape != want.shape or not np.allclose(
            got, want, rtol=1e-12, atol=0, equal_nan=True
        ):
            bad = np.argwhere(~np.isclose(got, want, rtol=1e-12, atol=0, equal_nan=True))
            for i, j in bad[:5].tolist():
                out.append(f"{METRICS[i].key} × {j}: {c} {got[i, j]!r} != {want[i, j]!r}")
    return out


def check_readout(doc: dict[str, Any], ref: Reference, spec: Spec) -> list[str]:
    """Differences between a readout document and the reference: units per variation, the
    units left out, per metric and variation ``n`` and the (unadjusted) mean."""
    out: list[str] = []
    keys = spec.variation_keys
    got_units = [v["units"] for v in doc["variations"]]
    if got_units != ref.units.tolist():
        out.append(f"readout units {got_units} != {ref.units.tolist()}")
    if doc["multiple_variations"] != ref.multiple:
        out.append(f"readout multiple_variations {doc['multiple_variations']} != {ref.multiple}")
    index = {m.key: i for i, m in enumerate(METRICS)}
    for metric in doc["metrics"]:
        i = index[metric["metric"]]
        if metric.get("error") or len(metric["variations"]) != len(keys):
            out.append(f"readout {metric['metric']}: {metric.get('error')}")
            continue
        for j, row in enumerate(metric["variations"]):
            s = ref.stats
            den = s["denominator_sum"][i, j] if METRICS[i].kind == "ratio" else s["n"][i, j]
            want_mean = s["sum"][i, j] / den
            if row["variation"] != keys[j] or row["n"] != int(s["n"][i, j]):
                out.append(f"readout {metric['metric']} {row['variation']}: n {row['n']}")
            elif not np.isclose(row["mean"], want_mean, rtol=1e-9, atol=0):
                out.append(
                    f"readout {metric['metric']} {row['variation']}: mean {row['mean']!r} "
                    f"!= {want_mean!r}"
                )
    return out


# --------------------------------------------------------------------------------------------
# The workloads


def query(spec: Spec) -> ExperimentQuery:
    return ExperimentQuery(KEY, spec.variation_keys, METRICS, start=START, end=STOP)


def catalog() -> Catalog:
    metrics, problems = parse_text(CATALOG_YAML, "metrics/bench.yaml")
    if problems:
        raise SystemExit(f"the bench catalog does not parse: {problems}")
    return Catalog(Path("metrics"), tuple(metrics))


def experiment(spec: Spec) -> Experiment:
    return parse_experiment(
        {
            "key": KEY,
            "name": "Checkout redesign",
            "hypothesis": "A one-page checkout sells more",
            "owner": "growth@shop.example",
            "unit": "user.id",
            "variations": [{"key": k, "name": f"Variation {k}"} for k in spec.variation_keys],
            "status": "stopped",
            "start": START.isoformat().replace("+00:00", "Z"),
            "stop": STOP.isoformat().replace("+00:00", "Z"),
            "metrics": {
                "primary": [{"metric": "purchased", "kind": "conversion"}],
                "secondary": [{"metric": "pages", "cuped_days": CUPED_DAYS}, "order_value"],
                "guardrails": ["bounce_rate"],
            },
        }
    )


def engine_of(name: str, lake: Lake, threads: int | None) -> Engine:
    return DuckDBEngine(lake, threads=threads) if name == "duckdb" else ChDBEngine(lake)


def has_chdb() -> bool:
    try:
        import chdb  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    engine: str
    title: str
    fn: Callable[[], object]
    rss: bool = True  # measured again in a fresh process for its peak RSS


def floor_sql(lake: Lake, q: ExperimentQuery) -> str:
    """One pass over the files the readout reads, reading its columns: the I/O and decoding
    every engine query pays at least once."""
    files = ", ".join(f"'{p}'" for p in lake.absolute(lake.files()))
    names = ", ".join(f"'{n}'" for n in dict.fromkeys([EXPOSURE_EVENT, *NAMES[1:]]))
    return (
        "SELECT count(*), sum(hash(event_id, name)), max(received_ts), count(DISTINCT user_id), "
        f"count(experiments['{q.experiment}']), sum(length(data)), count(*) FILTER (agent_is_bot) "
        f"FROM read_parquet([{files}]) WHERE name IN ({names})"
    )


def workloads(
    spec: Spec,
    lake: Lake,
    threads: int | None,
    engines: list[str],
    parts: list[str],
    data: ExperimentData,
) -> list[Workload]:
    """The timed workloads: run and readout per engine, run's three queries alone on the
    ``parts`` engines, analyze() and the floor."""
    q, e, cat = query(spec), experiment(spec), catalog()

    def run(name: str) -> Callable[[], object]:
        return lambda: q.run(engine_of(name, lake, threads))

    def read(name: str) -> Callable[[], object]:
        return lambda: readout(e, cat, engine_of(name, lake, threads), now=STOP)

    out: list[Workload] = []
    for name in engines:
        out.append(Workload("run", name, "ExperimentQuery.run: 3 queries, 5 metrics", run(name)))
        out.append(Workload("readout", name, "readout(): 4 catalog metrics", read(name)))

    def part(name: str, build: Callable[[Any], Any]) -> Callable[[], object]:
        engine = engine_of(name, lake, threads)
        return lambda: run_tree(q, engine, build, ())

    for name in parts:
        out += [
            Workload(
                "stats query", name, "run's statistics query", part(name, q.build_stats), False
            ),
            Workload(
                "exposures query",
                name,
                "units per variation",
                part(name, q.build_exposures),
                False,
            ),
            Workload("daily query", name, "new units per day", part(name, q.build_daily), False),
        ]
    weights = np.ones(spec.variations)
    out.append(
        Workload(
            "analyze()",
            "numpy",
            "statistics of the 5 metrics",
            lambda: analyze(data.stats, units=data.units, weights=weights).records(),
            False,
        )
    )
    sql = floor_sql(lake, q)

    def scan() -> object:
        con = duckdb.connect(":memory:")
        try:
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            return con.sql(sql).fetchall()
        finally:
            con.close()

    out.append(
        Workload("floor: one scan", "duckdb", "hand-written: read the columns once", scan, False)
    )
    return out


# --------------------------------------------------------------------------------------------
# Measuring


def cpu_seconds() -> float:
    """CPU time of this process (all threads, user + system)."""
    t = os.times()
    return t.user + t.system


def timed(plan: list[Workload], repeat: int) -> list[dict[str, Any]]:
    """Median wall and CPU seconds of ``repeat`` runs of each workload, round-robin (a change
    in the machine's load hits every workload alike). run and readout were warmed up by the
    check; the others get one untimed run first."""
    for w in plan:
        if not w.rss:
            w.fn()
    walls: list[list[float]] = [[] for _ in plan]
    cpus: list[list[float]] = [[] for _ in plan]
    for i in range(repeat):
        for k, w in enumerate(plan):
            console.print(f"run {i + 1}/{repeat}: {w.name} ({w.engine}) …")
            cpu, began = cpu_seconds(), time.perf_counter()
            w.fn()
            walls[k].append(time.perf_counter() - began)
            cpus[k].append(cpu_seconds() - cpu)
    return [
        {
            "workload": w.name,
            "engine": w.engine,
            "title": w.title,
            "seconds": statistics.median(walls[k]),
            "cpu_seconds": statistics.median(cpus[k]),
            "runs": walls[k],
            "cpu_runs": cpus[k],
        }
        for k, w in enumerate(plan)
    ]


def _status_mb(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` (peak RSS of this program image) from ``/proc/self/status``, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(workload: str, engine: str, spec: Spec, threads: int | None) -> None:
    """``--child``: run one workload once in this fresh process; print its memory as JSON."""
    lake = Lake(DATA / spec.name / "lake")
    eng = engine_of(engine, lake, threads)
    fn: Callable[[], object]
    if workload == "run":
        fn = lambda: query(spec).run(eng)  # noqa: E731
    else:
        e, cat = experiment(spec), catalog()
        fn = lambda: readout(e, cat, eng, now=STOP)  # noqa: E731
    before = _status_mb("VmRSS")
    began = time.perf_counter()
    fn()
    seconds = time.perf_counter() - began
    print(json.dumps({"before_mb": before, "peak_mb": _status_mb("VmHWM"), "seconds": seconds}))


def peak_rss(workload: str, engine: str, spec: Spec, threads: int | None) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", workload, engine]
    cmd += ["--units", str(spec.units), "--events", str(spec.events)]
    cmd += ["--variations", str(spec.variations), "--seed", str(spec.seed)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def verify(
    spec: Spec, lake: Lake, ref: Reference, engines: list[str], threads: int | None
) -> tuple[ExperimentData, dict[str, Any]]:
    """Run and read out once on every engine (the warm-up) and compare with the reference;
    exit on a difference. The DuckDB statistics and each engine's readout summary."""
    data: ExperimentData | None = None
    summary: dict[str, Any] = {}
    problems: list[str] = []
    for name in engines:
        console.print(f"{name}: check against the numpy reference …")
        got = query(spec).run(engine_of(name, lake, threads))
        problems += [f"{name} run: {p}" for p in check_run(got, ref)]
        doc = readout(experiment(spec), catalog(), engine_of(name, lake, threads), now=STOP)
        problems += [f"{name} readout: {p}" for p in check_readout(doc, ref, spec)]
        summary[name] = {
            "srm": doc["srm"],
            "warnings": doc["warnings"],
            "metrics": {
                m["metric"]: [
                    {k: r.get(k) for k in ("variation", "n", "mean", "effect", "p_value")}
                    for r in m["variations"]
                ]
                for m in doc["metrics"]
            },
        }
        if name == "duckdb":
            data = got
    if problems:
        for p in problems:
            console.print(f"[red]{p}[/]")
        sys.exit("the readout disagrees with the numpy reference (see above)")
    console.print("[green]every engine agrees with the numpy reference[/]")
    assert data is not None
    return data, summary


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "load_average": os.getloadavg(),
        "uptime": uptime(),
    }
    if has_chdb():
        import chdb

        info["chdb"] = getattr(chdb, "__version__", "?")
    return info


def report(results: list[dict[str, Any]], lake_info: dict[str, Any], spec: Spec) -> None:
    table = Table(
        title=f"experiment readout: {lake_info['rows']:,} events, {spec.units:,} users, "
        f"{spec.variations} variations; {os.cpu_count()} cores",
        caption="median of the timed runs; CPU = process CPU time (all threads); peak RSS of "
        "a fresh process running the workload once",
    )
    for column in ("workload", "engine", "median s", "runs s", "CPU s", "peak RSS MB", "what"):
        left = column in ("workload", "engine", "what")
        table.add_column(column, justify="left" if left else "right", no_wrap=column != "what")
    for r in results:
        runs = r["runs"]
        small = r["seconds"] < 0.1

        def fmt(x: float, small: bool = small) -> str:
            return f"{x * 1000:.1f} ms" if small else f"{x:.2f}"

        table.add_row(
            r["workload"],
            r["engine"],
            fmt(r["seconds"]),
            " / ".join(fmt(x) for x in runs),
            fmt(r["cpu_seconds"]),
            f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else "-",
            r["title"],
        )
    Console(width=max(console.width, 130)).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--units", type=int, default=200_000, help="users")
    parser.add_argument("--events", type=int, default=10_000_000, help="events (about)")
    parser.add_argument("--variations", type=int, default=3, choices=range(2, 9))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20k users, ~1M events")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per workload")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    parser.add_argument(
        "--engines", default="", help="comma-separated: duckdb,chdb (default: both if installed)"
    )
    parser.add_argument(
        "--parts", default="duckdb", help="engines to time run's three queries alone on"
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes")
    parser.add_argument("--generate-only", action="store_true", help="only make the lake")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.units, args.events = 20_000, 1_000_000
    spec = Spec(args.units, args.events, args.variations, args.seed)
    if args.child:
        child(args.child[0], args.child[1], spec, args.threads)
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] or (
        ["duckdb", "chdb"] if has_chdb() else ["duckdb"]
    )
    parts = [e.strip() for e in args.parts.split(",") if e.strip()]
    if "chdb" in engines + parts and not has_chdb():
        sys.exit("chDB is not installed: pip install 'tallystick[clickhouse]'")
    if any(e not in ("duckdb", "chdb") for e in engines + parts):
        sys.exit("--engines and --parts take duckdb and chdb")
    if "duckdb" not in engines:
        engines.insert(0, "duckdb")  # analyze() takes DuckDB's statistics
    load_before = os.getloadavg()
    uptime_before = uptime()

    began = time.perf_counter()
    sim = simulate(spec)
    simulate_s = time.perf_counter() - began
    lake, lake_info, cached = ensure_lake(spec, sim)
    console.print(
        f"lake {spec.name}: {lake_info['rows']:,} rows in {lake_info['files']} files, "
        f"{lake_info['bytes'] / 1e6:,.0f} MB; arrays in {simulate_s:.1f} s"
        + (
            " (lake reused)"
            if cached
            else f", table {lake_info['table_seconds']} s, "
            f"written in {lake_info['write_seconds']} s"
        )
    )
    if args.generate_only:
        return
    began = time.perf_counter()
    ref = reference(sim, spec)
    reference_s = time.perf_counter() - began
    console.print(
        f"reference in {reference_s:.1f} s: units per variation {ref.units.tolist()}, "
        f"{ref.multiple} in two variations"
    )
    del sim
    data, summary = verify(spec, lake, ref, engines, args.threads)

    plan = workloads(spec, lake, args.threads, engines, parts, data)
    results = timed(plan, args.repeat)
    for w, result in zip(plan, results, strict=True):
        if w.rss and not args.no_rss:
            console.print(f"peak RSS of {w.name} ({w.engine}) in a fresh process …")
            mem = peak_rss(w.name, w.engine, spec, args.threads)
            result["peak_rss_mb"], result["rss_before_mb"] = mem["peak_mb"], mem["before_mb"]
    report(results, lake_info, spec)
    info = machine()
    info["load_average_before"] = load_before
    info["uptime_before"] = uptime_before
    if load_before[0] > (os.cpu_count() or 1) / 2:  # after: this run's own threads count
        console.print(
            f"[yellow]the machine was busy (load average {load_before[0]:.1f} before the run): "
            "timings are noisy[/]"
        )
    out = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": info,
        "args": vars(args),
        "lake": {**lake_info, "reused": cached, "path": str(lake.root)},
        "simulate_seconds": simulate_s,
        "reference_seconds": reference_s,
        "reference": {"units": ref.units.tolist(), "multiple_variations": ref.multiple},
        "readout": summary,
        "workloads": results,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"experiments-{stamp}.json", "experiments-latest.json"):
        (RESULTS / name).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
