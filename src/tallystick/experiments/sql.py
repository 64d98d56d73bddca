"""From the lake's events to the sufficient statistics the engine takes (SQL, built with sqlglot).

One query per experiment computes, per metric × variation, the columns :meth:`MetricStats.of`
takes (``n``, ``sum``, ``sum_squares``, ``denominator_sum``, ``denominator_sum_squares``,
``main_denominator_sum_product``, ``covariate_sum``, ``covariate_sum_squares``,
``main_covariate_sum_product``); a second counts the exposed units per variation and those seen
in two or more variations; a third the units newly exposed per day and variation (by the UTC date
of their first exposure). The trees are dialect-neutral (``metrics.sql``): DuckDB and ClickHouse
(chDB) run the same query.

Semantics:

- an **exposure** is an event named ``experiment.exposure`` (``flags.exposures``) whose
  ``experiments`` map (the lake's ``experiments`` column: experiment key → variation, as the
  demo's web events carry ``{"signin-dialog": "b"}``) names the experiment, or whose
  ``data.experiment`` is the experiment (the variation then in ``data.variation``); it is dated
  in ``[start, end)`` when given;
- a unit (``user.id`` by default; events without it are left out) is in the variation of its
  exposures from its **first exposure** on; a unit exposed to two or more variations is left
  out of every metric and counted (``ExperimentData.multiple_variations``);
- a unit's metric value is computed from its events at or after its first exposure (and before
  ``end``): a *conversion* is 1 when it did the event, else 0; a *mean* is the number of events
  (or the sum of a numeric field over them); a *ratio* has such a value for its numerator and
  for its denominator (bounced sessions / sessions); a metric's ``where`` filters keep only the
  events they match (on both sides of a ratio, and in the covariate), ``numerator_where`` /
  ``denominator_where`` narrow one side of a ratio (``session.end`` with ``data.pageviews=1``
  over ``session.end``);
- with ``cuped_days``, the covariate is the same value over the ``cuped_days`` days before the
  unit's first exposure (CUPED; not for ratio metrics, as in the engine);
- events are de-duplicated and bots, quarantined data and hidden streams left out as in every
  analysis (``metrics.sql.events_cte``, ``metrics.exclusion``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from sqlglot import exp

from tallystick.experiments.moments import MetricStats
from tallystick.metrics.engines import Engine
from tallystick.metrics.params import Filter, MetricError, check_unit
from tallystick.metrics.sql import (
    add_micros,
    col,
    cte,
    events_cte,
    field_text,
    filter_condition,
    instant,
    is_in,
    json_number,
    lit,
    utc_date,
)

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule

EXPOSURE_EVENT: Final = "experiment.exposure"
STAT_COLUMNS: Final = (
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
"""The statistics columns of :func:`build_stats`, named as :meth:`MetricStats.of` takes them."""

Kind: TypeAlias = Literal["conversion", "mean", "ratio"]
_US_PER_DAY: Final = 86_400_000_000
_PLACEHOLDER: Final = "tally_events_source"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of an experiment, computed per unit from its events after first exposure.

    ``event``: the conversion event, the counted (or summed) event of a mean, the numerator's
    event of a ratio; ``value``: a numeric field summed over those events (``data.amount``;
    None: count them); ``denominator`` / ``denominator_value`` likewise for a ratio's
    denominator; ``cuped_days``: the pre-exposure window of the CUPED covariate (None: none).
    ``where``: filters every event of the metric must match (both sides of a ratio, and the
    covariate's); ``numerator_where`` / ``denominator_where``: more filters for one side of a
    ratio (the numerator's events / the denominator's; the two events may then be the same).
    """

    key: str
    kind: Kind
    event: str
    value: str | None = None
    denominator: str | None = None
    denominator_value: str | None = None
    cuped_days: int | None = None
    where: tuple[Filter, ...] = ()
    numerator_where: tuple[Filter, ...] = ()
    denominator_where: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("conversion", "mean", "ratio"):
            raise MetricError(f"metric {self.key}: kind {self.kind!r} is not conversion/mean/ratio")
        if (self.kind == "ratio") != (self.denominator is not None):
            raise MetricError(f"metric {self.key}: a ratio (and only a ratio) has a denominator")
        if self.kind == "conversion" and self.value is not None:
            raise MetricError(f"metric {self.key}: a conversion has no value field")
        if self.cuped_days is not None and (self.kind == "ratio" or self.cuped_days <= 0):
            raise MetricError(f"metric {self.key}: CUPED needs a positive window, not a ratio")
        if self.kind != "ratio" and (self.numerator_where or self.denominator_where):
            raise MetricError(
                f"metric {self.key}: numerator_where / denominator_where are for a ratio; "
                "filter a conversion or a mean with where"
            )
        for f in (*self.where, *self.numerator_where, *self.denominator_where):
            if not isinstance(f, Filter):
                raise MetricError(f"metric {self.key}: filters must be Filter objects, got {f!r}")

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(e for e in (self.event, self.denominator) if e is not None)

    @property
    def filters(self) -> tuple[Filter, ...]:
        """Every filter it applies, each once (the fields they read)."""
        return tuple(dict.fromkeys((*self.where, *self.numerator_where, *self.denominator_where)))

    def side_filters(self, side: Literal["numerator", "denominator"]) -> tuple[Filter, ...]:
        """The filters the events of one side match: ``where`` and that side's own (the
        numerator side is the event of a conversion or a mean)."""
        own = self.numerator_where if side == "numerator" else self.denominator_where
        return tuple(dict.fromkeys((*self.where, *own)))


@dataclass(frozen=True, slots=True)
class ExperimentQuery:
    """An experiment's readout: its key, variations (control first) and metrics.

    ``start`` / ``end`` bound the exposures (``[start, end)``) and ``end`` the metric events;
    None is unbounded.
    """

    experiment: str
    variations: tuple[str, ...]
    metrics: tuple[Metric, ...]
    unit: str = "user.id"
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    include_bots: bool = False
    exposure_event: str = EXPOSURE_EVENT

    def __post_init__(self) -> None:
        check_unit(self.unit)
        if len(self.variations) < 2 or len(set(self.variations)) != len(self.variations):
            raise MetricError("an experiment needs two or more distinct variations")
        if not self.metrics or len({m.key for m in self.metrics}) != len(self.metrics):
            raise MetricError("an experiment needs metrics with distinct keys")

    def read_window(self) -> tuple[dt.date | None, dt.date | None]:
        """The client dates read: from the earliest pre-exposure window to ``end``."""
        before = max((m.cuped_days or 0 for m in self.metrics), default=0)
        day_from = None
        if self.start is not None:
            day_from = self.start.astimezone(dt.UTC).date() - dt.timedelta(days=before)
        day_to = None if self.end is None else self.end.astimezone(dt.UTC).date()
        return day_from, day_to

    # -- SQL -----------------------------------------------------------------------------

    def _steps(self, source: exp.Expr) -> tuple[tuple[str, exp.Expr], ...]:
        """The events CTEs and ``fe``: one row per exposed unit (``unit``, ``first_ts``,
        ``variation``, ``k`` = its distinct variations)."""
        names = [self.exposure_event] + [e for m in self.metrics for e in m.events]
        # The variation: the event's experiments map, else data.variation when data.experiment
        # names the experiment (flags.exposures writes both; the map only for keys that fit
        # the event schema's pattern).
        in_map = exp.Nullif(
            this=exp.Bracket(this=col("experiments"), expressions=[lit(self.experiment)]),
            expression=lit(""),
        )
        in_data = exp.Case(
            ifs=[
                exp.If(
                    this=exp.EQ(
                        this=field_text("data.experiment"), expression=lit(self.experiment)
                    ),
                    true=field_text("data.variation"),
                )
            ]
        )
        extra: dict[str, exp.Expr] = {"xv": exp.Coalesce(this=in_map, expressions=[in_data])}
        paths = ["experiments", "data.experiment", "data.variation"]
        for i, m in enumerate(self.metrics):
            for name, path in ((f"v{i}", m.value), (f"dv{i}", m.denominator_value)):
                if path is not None:
                    extra[name] = json_number(path)
                    paths.append(path)
            for name, filters in _filter_columns(i, m):
                extra[name] = exp.and_(*(filter_condition(f) for f in filters))
            paths += [f.field for f in m.filters]
        day_from, day_to = self.read_window()
        steps = events_cte(
            source,
            tuple(dict.fromkeys(names)),
            day_from=day_from,
            day_to=day_to,
            unit=self.unit,
            where=(),
            breakdown=None,
            extra=extra,
            extra_paths=paths,
        )
        exposed: list[exp.Expr] = [
            exp.EQ(this=col("name"), expression=lit(self.exposure_event)),
            exp.Not(this=exp.Is(this=col("unit"), expression=exp.Null())),
            exp.Not(this=exp.Is(this=col("xv"), expression=exp.Null())),
        ]
        if self.start is not None:
            exposed.append(exp.GTE(this=col("ts"), expression=instant(self.start)))
        if self.end is not None:
            exposed.append(exp.LT(this=col("ts"), expression=instant(self.end)))
        fe = (
            exp.select(
                col("unit"),
                exp.alias_(exp.Min(this=col("ts")), "first_ts"),
                exp.alias_(exp.Min(this=col("xv")), "variation"),
                exp.alias_(exp.Count(this=exp.Distinct(expressions=[col("xv")])), "k"),
            )
            .from_("ev")
            .where(exp.and_(*exposed))
            .group_by(col("unit"))
        )
        return (*steps, ("fe", fe))

    def build_exposures(self, source: exp.Expr) -> exp.Expr:
        """``variation``, ``units``: exposed units per variation, and (``variation`` NULL) the
        units seen in two or more variations."""
        single = exp.EQ(this=col("k"), expression=lit(1))
        query = (
            exp.select(
                exp.alias_(exp.Case(ifs=[exp.If(this=single, true=col("variation"))]), "v"),
                exp.alias_(exp.Count(this=exp.Star()), "units"),
            )
            .from_("fe")
            .group_by(col("v"))
        )
        return cte(query, *self._steps(source))

    def build_daily(self, source: exp.Expr) -> exp.Expr:
        """``day``, ``variation``, ``units``: the units newly exposed per UTC day (the date of
        their first exposure) and variation; units seen in two or more variations are left
        out."""
        query = (
            exp.select(
                exp.alias_(utc_date(col("first_ts")), "day"),
                col("variation"),
                exp.alias_(exp.Count(this=exp.Star()), "units"),
            )
            .from_("fe")
            .where(exp.EQ(this=col("k"), expression=lit(1)))
            .group_by(col("day"), col("variation"))
        )
        return cte(query, *self._steps(source))

    def build_stats(self, source: exp.Expr) -> exp.Expr:
        """``metric``, ``variation`` and :data:`STAT_COLUMNS`, one row per metric × variation
        with exposed units (as DOUBLE; NULL where a metric has no denominator or covariate)."""
        after: list[exp.Expr] = [exp.GTE(this=col("ts", "e"), expression=col("first_ts", "f"))]
        if self.end is not None:
            after.append(exp.LT(this=col("ts", "e"), expression=instant(self.end)))
        columns: list[exp.Expr] = [col("unit", "f"), col("variation", "f")]
        for i, m in enumerate(self.metrics):
            filtered = dict(_filter_columns(i, m))
            num = [col(f"w{i}", "e")] if f"w{i}" in filtered else []
            den = [col(f"dw{i}", "e")] if f"dw{i}" in filtered else []
            y = _unit_value(m.kind, m.event, f"v{i}" if m.value else None, [*after, *num])
            columns.append(exp.alias_(y, f"y{i}"))
            if m.denominator is not None:
                dv = f"dv{i}" if m.denominator_value else None
                d = _unit_value("mean", m.denominator, dv, [*after, *den])
                columns.append(exp.alias_(d, f"d{i}"))
            if m.cuped_days is not None:
                start = add_micros(col("first_ts", "f"), -m.cuped_days * _US_PER_DAY)
                before: list[exp.Expr] = [
                    exp.LT(this=col("ts", "e"), expression=col("first_ts", "f")),
                    exp.GTE(this=col("ts", "e"), expression=start),
                    *num,
                ]
                x = _unit_value(m.kind, m.event, f"v{i}" if m.value else None, before)
                columns.append(exp.alias_(x, f"x{i}"))
        metric_events = [e for m in self.metrics for e in m.events]
        joined = (
            exp.select("unit", "name", "ts", *_value_columns(self.metrics))
            .from_("ev")
            .where(is_in(col("name"), tuple(dict.fromkeys(metric_events))))
        )
        per_unit = (
            exp.select(*columns)
            .from_(exp.alias_(exp.to_table("fe"), "f"))
            .join(
                exp.alias_(exp.to_table("me"), "e"),
                on=exp.EQ(this=col("unit", "e"), expression=col("unit", "f")),
                join_type="left",
            )
            .where(exp.EQ(this=col("k", "f"), expression=lit(1)))
            .group_by(col("unit", "f"), col("variation", "f"))
        )
        parts = [self._metric_select(i, m) for i, m in enumerate(self.metrics)]
        query: exp.Query = parts[0]
        for part in parts[1:]:
            query = query.union(part, distinct=False)
        assert isinstance(query, (exp.Select, exp.Union))
        outer = exp.select("*").from_(query.subquery("s"))
        return cte(outer, *self._steps(source), ("me", joined), ("pu", per_unit))

    def _metric_select(self, i: int, m: Metric) -> exp.Select:
        def total(e: exp.Expr | None) -> exp.Expr:
            value = exp.Null() if e is None else exp.Sum(this=e)
            return exp.cast(value, exp.DataType.build("double"))

        def y() -> exp.Expr:
            return col(f"y{i}")

        def sq(a: exp.Expr, b: exp.Expr) -> exp.Expr:
            return exp.Mul(this=a, expression=b)

        d = col(f"d{i}") if m.denominator is not None else None
        x = col(f"x{i}") if m.cuped_days is not None else None
        stats: dict[str, exp.Expr] = {
            "n": exp.Count(this=exp.Star()),
            "sum": total(y()),
            "sum_squares": total(sq(y(), y())),
            "denominator_sum": total(d),
            "denominator_sum_squares": total(None if d is None else sq(d, d.copy())),
            "main_denominator_sum_product": total(None if d is None else sq(y(), d.copy())),
            "covariate_sum": total(x),
            "covariate_sum_squares": total(None if x is None else sq(x, x.copy())),
            "main_covariate_sum_product": total(None if x is None else sq(y(), x.copy())),
        }
        return (
            exp.select(
                exp.alias_(lit(m.key), "metric"),
                col("variation"),
                *(exp.alias_(e, name) for name, e in stats.items()),
            )
            .from_("pu")
            .group_by(col("variation"))
        )

    # -- running -------------------------------------------------------------------------

    def run(
        self,
        engine: Engine,
        rules: tuple[Rule, ...] | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> ExperimentData:
        """Run the three queries on ``engine`` and collect the statistics for ``analyze``,
        leaving out bots (unless ``include_bots``), what the quarantine ``rules`` match
        (default: the engine's rules in force now) and the rows of the ``hidden`` streams."""
        stats_rows, sql = _run(self, engine, self.build_stats, rules, hidden)
        exposure_rows, _ = _run(self, engine, self.build_exposures, rules, hidden)
        daily_rows, _ = _run(self, engine, self.build_daily, rules, hidden)
        return self.collect(stats_rows, exposure_rows, sql, daily_rows)

    def collect(
        self,
        stats_rows: Sequence[dict[str, Any]],
        exposure_rows: Sequence[dict[str, Any]],
        sql: str,
        daily_rows: Sequence[dict[str, Any]] = (),
    ) -> ExperimentData:
        """:class:`ExperimentData` from the rows of :meth:`build_stats`,
        :meth:`build_exposures` and :meth:`build_daily` (variations outside ``variations`` are
        left out)."""
        shape = (len(self.metrics), len(self.variations))
        arrays = {c: np.zeros(shape) for c in STAT_COLUMNS}
        metric_index = {m.key: i for i, m in enumerate(self.metrics)}
        variation_index = {v: j for j, v in enumerate(self.variations)}
        for i, m in enumerate(self.metrics):
            if m.denominator is None:
                for c in STAT_COLUMNS[3:6]:
                    arrays[c][i] = np.nan
            if m.cuped_days is None:
                for c in STAT_COLUMNS[6:]:
                    arrays[c][i] = np.nan
        for row in stats_rows:
            j = variation_index.get(row["variation"])
            if j is None:
                continue
            i = metric_index[row["metric"]]
            for c in STAT_COLUMNS:
                if row[c] is not None:
                    arrays[c][i, j] = float(row[c])
        units = np.zeros(len(self.variations))
        multiple = other = 0
        for row in exposure_rows:
            if row["v"] is None:
                multiple += int(row["units"])
            elif row["v"] in variation_index:
                units[variation_index[row["v"]]] = int(row["units"])
            else:
                other += int(row["units"])
        binomial = np.array([[m.kind == "conversion"] for m in self.metrics])
        stats = MetricStats.of(**arrays, binomial=binomial, covariate_binomial=binomial)
        return ExperimentData(
            daily=_daily(daily_rows, variation_index),
            experiment=self.experiment,
            metrics=tuple(m.key for m in self.metrics),
            variations=self.variations,
            stats=stats,
            units=units,
            multiple_variations=multiple,
            other_variations=other,
            sql=sql,
        )


@dataclass(frozen=True, slots=True)
class ExperimentData:
    """An experiment's sufficient statistics, shape ``(metrics, variations)``, control first:
    ``analyze(data.stats, units=data.units, weights=...)``. ``multiple_variations`` counts the
    units left out for being exposed to two or more variations, ``other_variations`` those
    exposed only to a variation the experiment does not list."""

    experiment: str
    metrics: tuple[str, ...]
    variations: tuple[str, ...]
    stats: MetricStats
    units: NDArray[np.float64]
    multiple_variations: int = 0
    other_variations: int = 0
    sql: str = field(default="", repr=False)
    daily: tuple[tuple[dt.date, tuple[int, ...]], ...] = ()
    """Units newly exposed per UTC day, per variation (in ``variations`` order): every day
    from the first exposure's to the last's, days without one as zeros."""


def _daily(
    rows: Sequence[dict[str, Any]], variation_index: dict[str, int]
) -> tuple[tuple[dt.date, tuple[int, ...]], ...]:
    from tallystick.metrics.analysis import as_date

    got: dict[dt.date, list[int]] = {}
    for row in rows:
        j = variation_index.get(row["variation"])
        if j is None:
            continue
        day = as_date(row["day"])
        got.setdefault(day, [0] * len(variation_index))[j] += int(row["units"])
    if not got:
        return ()
    out: list[tuple[dt.date, tuple[int, ...]]] = []
    day, last = min(got), max(got)
    while day <= last:
        out.append((day, tuple(got.get(day, [0] * len(variation_index)))))
        day += dt.timedelta(days=1)
    return tuple(out)


def _filter_columns(i: int, m: Metric) -> list[tuple[str, tuple[Filter, ...]]]:
    """The boolean columns of metric ``i``'s filters: ``w{i}`` for its (numerator) events,
    ``dw{i}`` for a ratio's denominator events; none for a side without filters."""
    out: list[tuple[str, tuple[Filter, ...]]] = []
    if m.side_filters("numerator"):
        out.append((f"w{i}", m.side_filters("numerator")))
    if m.denominator is not None and m.side_filters("denominator"):
        out.append((f"dw{i}", m.side_filters("denominator")))
    return out


def _unit_value(kind: Kind, event: str, value: str | None, conds: Sequence[exp.Expr]) -> exp.Expr:
    """A unit's value over its joined events ``e`` matching ``conds``: 1/0 for a conversion,
    else the number of ``event`` events (or the sum of their ``value`` column)."""
    cond = exp.and_(
        exp.EQ(this=col("name", "e"), expression=lit(event)), *(c.copy() for c in conds)
    )
    amount: exp.Expr = lit(1)
    if value is not None:
        amount = exp.Coalesce(this=col(value, "e"), expressions=[lit(0)])
    case = exp.Case(ifs=[exp.If(this=cond, true=amount)], default=lit(0))
    agg: exp.Expr = exp.Max(this=case) if kind == "conversion" else exp.Sum(this=case)
    return exp.cast(agg, exp.DataType.build("double"))


def _value_columns(metrics: Sequence[Metric]) -> list[str]:
    out: list[str] = []
    for i, m in enumerate(metrics):
        if m.value is not None:
            out.append(f"v{i}")
        if m.denominator_value is not None:
            out.append(f"dv{i}")
        out += [name for name, _ in _filter_columns(i, m)]
    return out


def _run(
    query: ExperimentQuery,
    engine: Engine,
    build: Callable[[exp.Expr], exp.Expr],
    rules: tuple[Rule, ...] | None,
    hidden: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], str]:
    """Run one of ``query``'s trees on ``engine`` over its source, with the exclusions every
    analysis applies (bots unless ``include_bots``, quarantine ``rules``: default the engine's,
    the rows of the ``hidden`` streams)."""
    from tallystick.metrics.exclusion import Exclusion, apply

    if rules is None:
        quarantine = getattr(engine, "quarantine", None)
        rules = quarantine.rules() if quarantine is not None else ()
    tree = build(exp.to_table(_PLACEHOLDER))
    source = apply(
        engine.source(*query.read_window()), Exclusion(query.include_bots, rules, hidden)
    )
    for table in list(tree.find_all(exp.Table)):
        if table.name == _PLACEHOLDER and not table.args.get("db"):
            table.replace(source.copy())
    table, sql = engine.run(tree)
    return table.to_pylist(), sql
