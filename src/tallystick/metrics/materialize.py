"""Materialised metrics: each catalog metric's results per week and per month, as Parquet files
that pandas, DuckDB and every other Parquet reader open directly.

Layout under the lake root (beside ``events/``, which no reader of events looks past)::

    metrics/<name>/grain=<grain>/<name>.parquet   one row per period (x action, step, breakdown)
    metrics/<name>/grain=<grain>/_state.json      what each period was computed from

Each period is computed by running the metric's analysis over that period alone:

* ``core``, ``active``, ``count``, ``ratio``, ``percentile``: the analysis's rows of the period.
* ``active`` with ``stickiness``: monthly by definition, so only ``grain=month``.
* ``funnel``: the funnel of the attempts that start in the period (later steps may fall after it,
  within the window), one row per step (and breakdown value).
* ``retention``: the cohort of the period, followed for ``periods`` periods after it (one row).

The analysis range of a period is the period clipped to the lake's dates (its first and last
event dates), so the first and the current period are partial exactly as in an analysis over the
whole history; a retention cohort's range runs to the end of its last followed period. (The
cohorts of one run are computed by one analysis, which gives each the same row.)

Incremental: a period is computed again only when its *input fingerprint* changes: a hash of the
definition (type and parameters), the grain, the analysis range, every lake event file (path,
size, modification time) in the dates the analysis reads (``Analysis.read_window``) and the
quarantine rules in force (results leave out quarantined data, as every analysis does: adding or
lifting a rule recomputes every period). Editing a
definition recomputes every period and drops the results computed with the old one. The results
file and the state file are written atomically (temporary file, fsync, rename), results first, so
an interrupted run only leaves periods to recompute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from tallystick.metrics.analysis import Analysis, Row
from tallystick.metrics.api import run
from tallystick.metrics.catalog import Catalog, MetricDef
from tallystick.metrics.engines import DuckDBEngine, Engine
from tallystick.metrics.params import Grain
from tallystick.metrics.periods import add_periods, periods_between
from tallystick.store.durable import replace_durably
from tallystick.store.lake import Lake

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule

FORMAT: Final = 1
"""Version of the layout and of the computation; a new one recomputes everything."""
METRICS: Final = "metrics"
STATE: Final = "_state.json"
GRAINS: Final[tuple[Grain, ...]] = ("week", "month")
"""The grains every metric is materialised at (plus ``day`` for a metric whose grain is day)."""

Kind: TypeAlias = Literal["period", "funnel", "retention"]
_ONE_DAY: Final = dt.timedelta(days=1)
#: result columns whose type cannot be inferred when every value is null
_TEXT_COLUMNS: Final = frozenset({"breakdown", "action", "name"})


def results_path(name: str, grain: Grain) -> str:
    """The results file of metric ``name`` at ``grain``, relative to the lake root."""
    return f"{METRICS}/{name}/grain={grain}/{name}.parquet"


def grains_for(metric: MetricDef) -> tuple[Grain, ...]:
    """The grains ``metric`` is materialised at."""
    if metric.analysis == "stickiness":
        return ("month",)
    return ("day", *GRAINS) if metric.grain == "day" else GRAINS


def kind_of(analysis: Analysis) -> Kind:
    if analysis.name == "funnel":
        return "funnel"
    if analysis.name == "retention":
        return "retention"
    return "period"


def select(catalog: Catalog, names: Sequence[str] = ()) -> list[MetricDef]:
    """The metrics named (MetricError for an unknown name), or every one not in draft."""
    if names:
        return [catalog.find(n) for n in dict.fromkeys(names)]
    return [m for m in catalog if m.status != "draft"]


class Inputs:
    """The lake's event files by date, each stat'ed at most once: a snapshot for one run."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.by_day: dict[dt.date, list[str]] = dict(sorted(lake.partitions().items()))
        self._stats: dict[str, tuple[int, int]] = {}

    @property
    def first(self) -> dt.date | None:
        return next(iter(self.by_day), None)

    @property
    def last(self) -> dt.date | None:
        return next(reversed(self.by_day), None)

    def _stat(self, path: str) -> tuple[int, int]:
        if path not in self._stats:
            try:
                st = (self.lake.root / path).stat()
                self._stats[path] = (st.st_size, st.st_mtime_ns)
            except FileNotFoundError:  # compacted away since the listing: recompute next time
                self._stats[path] = (-1, -1)
        return self._stats[path]

    def files(self, lo: dt.date | None, hi: dt.date | None) -> list[tuple[str, int, int]]:
        """``(path, size, mtime_ns)`` of every event file dated in ``[lo, hi]``."""
        return [
            (path, *self._stat(path))
            for day, paths in self.by_day.items()
            if (lo is None or day >= lo) and (hi is None or day <= hi)
            for path in sorted(paths)
        ]


@dataclass(frozen=True, slots=True)
class Period:
    """One period to materialise: its first date, the analysis range, the input fingerprint."""

    start: dt.date
    date_from: dt.date
    date_to: dt.date
    fingerprint: str
    files: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run does for one metric and grain."""

    metric: MetricDef
    grain: Grain
    path: str
    """The results file, relative to the lake root."""
    periods: tuple[Period, ...]
    """Every period from the start (the lake's first date, or ``since``) to the lake's last."""
    todo: tuple[Period, ...]
    """The periods to compute: changed inputs, new periods, or all of them."""
    reset: bool
    """Whether earlier results are dropped (a new definition, or no usable earlier state)."""
    kind: Kind = "period"
    rules: tuple[Rule, ...] = ()
    """The quarantine rules the periods are computed with (part of each fingerprint)."""


@dataclass(frozen=True, slots=True)
class Report:
    """What a run did for one metric and grain."""

    metric: str
    grain: Grain
    path: Path
    periods: int
    computed: tuple[dt.date, ...]
    rows: int
    written: bool


def _period_range(
    start: dt.date, grain: Grain, kind: Kind, followed: int, first: dt.date, last: dt.date
) -> tuple[dt.date, dt.date]:
    span = followed + 1 if kind == "retention" else 1
    end = add_periods(start, grain, span) - _ONE_DAY
    return max(start, first), min(end, last)


def _fingerprint(
    metric: MetricDef,
    grain: Grain,
    lo: dt.date,
    hi: dt.date,
    files: list[tuple[str, int, int]],
    rules: Sequence[Rule] = (),
) -> str:
    from tallystick.control.quarantine import rules_key

    items: list[Any] = [FORMAT, metric.definition_hash(), grain, lo.isoformat(), hi.isoformat()]
    items.append(files)
    if rules:  # without rules, fingerprints stay those of earlier versions
        items.append(repr(rules_key(rules)))
    text = json.dumps(items, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _state_path(lake: Lake, path: str) -> Path:
    return (lake.root / path).parent / STATE


def read_state(lake: Lake, metric: str, grain: Grain) -> dict[str, Any] | None:
    """The state of ``metric`` at ``grain`` (``None`` when missing or unreadable)."""
    try:
        state = json.loads(_state_path(lake, results_path(metric, grain)).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def plan(
    lake: Lake,
    metric: MetricDef,
    grain: Grain,
    *,
    inputs: Inputs | None = None,
    full: bool = False,
    since: dt.date | None = None,
    rules: tuple[Rule, ...] = (),
) -> Plan:
    """The periods of ``metric`` at ``grain`` and which of them need computing, with the
    quarantine ``rules`` in force."""
    inputs = inputs or Inputs(lake)
    path = results_path(metric.name, grain)
    first, last = inputs.first, inputs.last
    if first is None or last is None:
        return Plan(metric, grain, path, (), (), False, kind_of(metric.build(grain=grain)), rules)
    probe = metric.build(grain=grain, date_from=first, date_to=last)
    kind = kind_of(probe)
    followed = int(getattr(probe, "periods", 0))
    start = max(since, first) if since is not None else first
    periods: list[Period] = []
    for p in periods_between(start, last, grain) if start <= last else []:
        lo, hi = _period_range(p, grain, kind, followed, first, last)
        analysis = metric.build(grain=grain, date_from=lo, date_to=hi)
        files = inputs.files(*analysis.read_window())
        fingerprint = _fingerprint(metric, grain, lo, hi, files, rules)
        periods.append(Period(p, lo, hi, fingerprint, len(files)))
    state = read_state(lake, metric.name, grain)
    usable = (
        state is not None
        and state.get("format") == FORMAT
        and state.get("definition") == metric.definition_hash()
        and (lake.root / path).exists()
    )
    if full or not usable:
        todo = periods
    else:
        assert state is not None
        done = state.get("periods", {})
        # periods retention removed (``store.retention``) stay gone until a full run
        expired = str(state.get("expired_before") or "")
        todo = [
            p
            for p in periods
            if (add_periods(p.start, grain, 1) - _ONE_DAY).isoformat() >= expired
            and (
                not isinstance(done.get(p.start.isoformat()), dict)
                or done[p.start.isoformat()].get("fingerprint") != p.fingerprint
            )
        ]
    return Plan(metric, grain, path, tuple(periods), tuple(todo), not usable, kind, rules)


def _stamp(plan: Plan, period: dt.date, rows: list[Row], computed_at: dt.datetime) -> list[Row]:
    return [
        {
            "metric": plan.metric.name,
            "grain": plan.grain,
            "period": period,
            **{k: v for k, v in r.items() if k != "period"},
            "computed_at": computed_at,
        }
        for r in rows
    ]


def compute(
    plan: Plan,
    engine: Engine,
    periods: Sequence[Period],
    computed_at: dt.datetime,
    on_period: Callable[[Period], None] | None = None,
) -> list[Row]:
    """The result rows of ``periods``: ``metric``, ``grain``, ``period``, the analysis's
    columns, ``computed_at``.

    Each period is its own analysis, except retention cohorts: one analysis up to the last
    cohort's end gives every cohort's row as its own analysis would (a cohort's values do not
    depend on events after its last followed period), and costs about as much as one cohort,
    since each reads the whole history before it.
    """
    metric, grain = plan.metric, plan.grain
    out: list[Row] = []
    if periods and plan.kind == "retention":
        analysis = metric.build(
            grain=grain,
            date_from=min(p.date_from for p in periods),
            date_to=max(p.date_to for p in periods),
        )
        # engine errors as QueryFailed, retried after compaction
        rows = run(analysis, engine, plan.rules).rows
        for period in periods:
            cohort = [r for r in rows if r["cohort"] == period.start]
            out += _stamp(plan, period.start, cohort, computed_at)
            if on_period is not None:
                on_period(period)
        return out
    for period in periods:
        analysis = metric.build(grain=grain, date_from=period.date_from, date_to=period.date_to)
        rows = run(analysis, engine, plan.rules).rows
        if plan.kind == "period":
            rows = [r for r in rows if r["period"] == period.start]
        out += _stamp(plan, period.start, rows, computed_at)
        if on_period is not None:
            on_period(period)
    return out


def _column_type(name: str, values: list[Any], previous: pa.DataType | None) -> pa.Array:
    if previous is not None and not pa.types.is_null(previous):
        try:
            return pa.array(values, type=previous)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    array = pa.array(values)
    if pa.types.is_null(array.type):
        return pa.array(values, type=pa.string() if name in _TEXT_COLUMNS else pa.float64())
    if pa.types.is_list(array.type) and pa.types.is_null(array.type.value_type):
        return pa.array(values, type=pa.list_(pa.float64()))
    return array


def to_table(rows: Sequence[Row], previous: pa.Schema | None = None) -> pa.Table:
    """``rows`` as a table; columns keep ``previous``'s types where the values allow."""
    names: dict[str, None] = dict.fromkeys(["metric", "grain", "period"])
    for row in rows:
        names.update(dict.fromkeys(row))
    names.pop("computed_at", None)
    names["computed_at"] = None
    fixed = {
        "metric": pa.string(),
        "grain": pa.string(),
        "period": pa.date32(),
        "computed_at": pa.timestamp("us", tz="UTC"),
    }
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        if name in fixed:
            arrays[name] = pa.array(values, type=fixed[name])
        else:
            prev = previous.field(name).type if previous and name in previous.names else None
            arrays[name] = _column_type(name, values, prev)
    return pa.table(arrays)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    replace_durably(path, lambda tmp: tmp.write_text(text))


def execute(
    lake: Lake,
    plan: Plan,
    engine: Engine,
    *,
    now: dt.datetime | None = None,
    on_period: Callable[[Period], None] | None = None,
) -> Report:
    """Compute the plan's periods and rewrite its results and state (nothing when none)."""
    target = lake.root / plan.path
    if not plan.todo:
        return Report(plan.metric.name, plan.grain, target, len(plan.periods), (), 0, False)
    computed_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    fresh = compute(plan, engine, plan.todo, computed_at, on_period)
    redone = {p.start for p in plan.todo}
    kept: list[Row] = []
    previous: pa.Schema | None = None
    state = None if plan.reset else read_state(lake, plan.metric.name, plan.grain)
    if not plan.reset and target.exists():
        old = pq.read_table(target)
        previous = old.schema
        kept = [r for r in old.to_pylist() if r["period"] not in redone]
    rows = sorted([*kept, *fresh], key=lambda r: r["period"])  # stable: keeps each period's order
    lake.storage.write_table(plan.path, to_table(rows, previous))
    periods: dict[str, Any] = dict(state.get("periods", {})) if state else {}
    for p in plan.todo:
        periods[p.start.isoformat()] = {
            "fingerprint": p.fingerprint,
            "from": p.date_from.isoformat(),
            "to": p.date_to.isoformat(),
            "files": p.files,
            "computed_at": computed_at.isoformat(),
        }
    _write_json(
        _state_path(lake, plan.path),
        {
            "format": FORMAT,
            "metric": plan.metric.name,
            "grain": plan.grain,
            "definition": plan.metric.definition_hash(),
            "type": plan.metric.type,
            "params": plan.metric.to_dict()["params"],
            "periods": dict(sorted(periods.items())),
            **(
                {"expired_before": state["expired_before"]}
                if state and state.get("expired_before")
                else {}
            ),
        },
    )
    return Report(
        plan.metric.name,
        plan.grain,
        target,
        len(plan.periods),
        tuple(sorted(redone)),
        len(rows),
        True,
    )


def plan_all(
    lake: Lake,
    metrics: Iterable[MetricDef],
    *,
    full: bool = False,
    since: dt.date | None = None,
    rules: tuple[Rule, ...] = (),
) -> list[Plan]:
    """The plans of every metric at each of its grains, from one snapshot of the lake (and of
    the quarantine ``rules``)."""
    inputs = Inputs(lake)
    return [
        plan(lake, m, g, inputs=inputs, full=full, since=since, rules=rules)
        for m in metrics
        for g in grains_for(m)
    ]


def materialize(
    lake: Lake,
    metrics: Iterable[MetricDef],
    *,
    full: bool = False,
    since: dt.date | None = None,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
) -> list[Report]:
    """Materialise ``metrics`` (every grain of each) with ``engine``'s quarantine rules; see the
    module docstring."""
    engine = engine or DuckDBEngine(lake)
    rules = engine.quarantine.rules() if engine.quarantine is not None else ()
    plans = plan_all(lake, metrics, full=full, since=since, rules=rules)
    return [execute(lake, p, engine, now=now) for p in plans]
