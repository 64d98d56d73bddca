"""Funnels: how many units go through a sequence of steps, each within a window of the first.

Semantics (see the reference's module docstring): an *attempt* starts at every step-1 event
dated in the range; step k+1 is the earliest event, in ``(ts, event_id)`` order, named as step
k+1 with ``t_k <= ts <= t_1 + window`` that the attempt has not used yet; a unit counts once, at
the furthest step any of its attempts reaches, and its *counted attempt* is the earliest one to
reach it (durations and the breakdown value come from that attempt).

The SQL plan uses only equi-joins, sorts and running window aggregates, so its cost grows with
the number of events (n log n) and not with the square of the events of a heavy unit:

``g<i>`` (one per distinct step name)
    The name's events grouped by ``(unit, ts)``, with the ``m`` smallest event ids at that
    instant as ``i1 .. im`` (``m`` = how often the name occurs in the steps).
``x<k>`` (one per step k >= 2)
    For every instant ``(unit, ts)`` of step k-1's name: ``t_next``, the first instant strictly
    after ``ts`` of step k's name, and ``next_id``, its smallest id (running ``min`` and
    ``arg_min`` over the union of both, newest first).
``r1``
    The attempts: step-1 events dated in the range, with their deadline ``t1 + window``.
``r<k>``
    ``r<k-1>`` plus the step-k match ``t<k>``/``id<k>`` (NULL when the attempt stopped). The
    match is at ``t<k-1>`` itself when an event of the name has that timestamp and is not used by
    the attempt (only the ids among ``i1 .. im`` can be used, as every used event lies at or
    before ``t<k-1>``, and an attempt uses at most ``m - 1`` of them); otherwise it is the
    smallest id at ``t_next``, provided ``t_next <= deadline``. Every join is on
    ``(unit, timestamp)``; stopped attempts match nothing (NULL keys).
``counted``
    One attempt per unit: the furthest reached, then the earliest ``(t1, id1)``.

When every step has its own name (the common case) a simpler plan gives the same answer:
``r<k>`` is ``r<k-1>`` ASOF-joined to the events of step k (the first at or after ``t<k-1>``),
kept when within the deadline; no ids are needed because no event can serve two steps.

The result has one row per breakdown value: ``users_<k>`` and ``median_<k>`` per step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar, Final

from sqlglot import exp

from tallystick.metrics.analysis import Analysis, Row, breakdown_values, div, with_breakdown
from tallystick.metrics.params import EVENT_UNIT, MetricError, Scope
from tallystick.metrics.sql import (
    add_micros,
    col,
    cte,
    date,
    events_cte,
    lit,
    parse,
    quantile,
    seconds_between,
    when,
)

_MICROSECOND: Final = dt.timedelta(microseconds=1)


def _and(*conditions: exp.Expr) -> exp.Expr:
    return exp.and_(*conditions)


def _eq(a: exp.Expr, b: exp.Expr) -> exp.Expr:
    return exp.EQ(this=a, expression=b)


def _not_null(value: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Is(this=value, expression=exp.Null()))


def _instants(name: str, ids: int) -> exp.Select:
    """Events named ``name`` with a unit, one row per ``(unit, ts)``: the ``ids`` smallest
    event ids at that instant, ascending, as ``i1 .. i<ids>`` (NULL when fewer)."""
    base = _and(_eq(col("name"), lit(name)), _not_null(col("unit")))
    if ids == 1:
        return (
            exp.select(col("unit"), col("ts"), exp.alias_(exp.Min(this=col("event_id")), "i1"))
            .from_("ev")
            .where(base)
            .group_by("unit", "ts")
        )
    ranked = (
        exp.select(
            col("unit"),
            col("ts"),
            col("event_id"),
            exp.alias_(parse("row_number() OVER (PARTITION BY unit, ts ORDER BY event_id)"), "rn"),
        )
        .from_("ev")
        .where(base)
    )
    picks = [
        exp.alias_(
            exp.Max(this=exp.Case(ifs=[exp.If(this=_eq(col("rn"), lit(i)), true=col("event_id"))])),
            f"i{i}",
        )
        for i in range(1, ids + 1)
    ]
    return (
        exp.select(col("unit"), col("ts"), *picks)
        .from_(ranked.subquery("ranked"))
        .where(exp.LTE(this=col("rn"), expression=lit(ids)))
        .group_by("unit", "ts")
    )


def _next_instant(prev: str, this: str) -> exp.Select:
    """For every instant ``(unit, ts)`` of CTE ``prev``: ``t_next``, the first instant of CTE
    ``this`` strictly after ``ts``, and ``next_id``, its smallest event id (NULLs when none).

    Newest first, running aggregates over the union of both see exactly the instants of
    ``this`` that are later; at equal timestamps the row of ``prev`` (kind 0) sorts first, so
    an instant of ``this`` at the same time is not "after". Rows of ``prev`` carry NULLs, which
    ``min`` and ``arg_min`` skip.
    """
    union = (
        exp.select(col("unit"), col("ts"), exp.alias_(lit(0), "kind"), exp.alias_(col("i1"), "id"))
        .from_(prev)
        .union(
            exp.select(
                col("unit"), col("ts"), exp.alias_(lit(1), "kind"), exp.alias_(col("i1"), "id")
            ).from_(this),
            distinct=False,
        )
    )
    frame = (
        "OVER (PARTITION BY unit ORDER BY ts DESC, kind "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    )
    running = exp.select(
        col("unit"),
        col("ts"),
        col("kind"),
        exp.alias_(parse(f"min(CASE WHEN kind = 1 THEN ts END) {frame}"), "t_next"),
        exp.alias_(
            parse(
                f"arg_min(CASE WHEN kind = 1 THEN id END, CASE WHEN kind = 1 THEN ts END) {frame}"
            ),
            "next_id",
        ),
    ).from_(union.subquery("instants"))
    return (
        exp.select(col("unit"), col("ts"), col("t_next"), col("next_id"))
        .from_(running.subquery("running"))
        .where(_eq(col("kind"), lit(0)))
    )


def _events_named(name: str) -> exp.Select:
    """The events named ``name`` with a unit: ``unit``, ``ts``."""
    return (
        exp.select(col("unit"), col("ts"))
        .from_("ev")
        .where(_and(_eq(col("name"), lit(name)), _not_null(col("unit"))))
    )


def _asof_step(k: int, events: str, carried: list[str]) -> exp.Select:
    """CTE ``r<k>`` when every step has its own name: the first event of step k at or after
    step k-1 (an ASOF join), kept when it is within the deadline. With distinct names no event
    can serve two steps, and which of several events at the same instant is taken does not
    change any time, so the event ids are not needed."""
    within = exp.LTE(this=col("ts", "s"), expression=col("deadline", "r"))
    return (
        exp.select(
            *(exp.alias_(col(c, "r"), c) for c in carried),
            exp.alias_(when(within, col("ts", "s")), f"t{k}"),
        )
        .from_(exp.alias_(exp.to_table(f"r{k - 1}"), "r", table=True))
        .join(
            exp.alias_(exp.to_table(events), "s", table=True),
            on=_and(
                _eq(col("unit", "s"), col("unit", "r")),
                exp.GTE(this=col("ts", "s"), expression=col(f"t{k - 1}", "r")),
            ),
            join_type="asof left",
        )
    )


@dataclass(frozen=True, slots=True)
class Funnel(Analysis):
    """Per step (and breakdown value): ``step``, ``name``, ``users``,
    ``conversion_from_previous``, ``conversion_from_start``, ``median_seconds_from_previous``.
    """

    name: ClassVar[str] = "funnel"
    steps: tuple[str, ...]
    window: dt.timedelta
    scope: Scope

    def __post_init__(self) -> None:
        if not self.steps or any(not s.strip() for s in self.steps):
            raise MetricError("a funnel needs at least one step, e.g. --steps signup,activate")
        if self.window < dt.timedelta(0):
            raise MetricError("the funnel window must not be negative")
        if self.scope.unit == EVENT_UNIT:
            raise MetricError("a funnel follows units: use --unit user.id or another field")

    def read_window(self) -> tuple[dt.date | None, dt.date | None]:
        """The range, extended by the window (later steps may fall after ``date_to``)."""
        s = self.scope
        end = dt.datetime.combine(s.date_to, dt.time.max, dt.UTC) + self.window
        return s.date_from, end.date()

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        day_from, day_to = self.read_window()
        names = tuple(dict.fromkeys(self.steps))
        ctes: list[tuple[str, exp.Expr]] = list(
            events_cte(
                source,
                names,
                day_from=day_from,
                day_to=day_to,
                unit=s.unit,
                where=s.where,
                breakdown=s.breakdown,
            )
        )
        distinct = len(names) == len(self.steps)
        group = {n: f"g{i}" for i, n in enumerate(names, start=1)}
        if distinct:
            ctes += [(group[n], _events_named(n)) for n in names[1:]]
        else:
            ctes += [(group[n], _instants(n, self.steps.count(n))) for n in names]

        first = (
            exp.select(
                col("unit"),
                exp.alias_(col("event_id"), "id1"),
                exp.alias_(col("ts"), "t1"),
                col("bd"),
                exp.alias_(add_micros(col("ts"), self.window // _MICROSECOND), "deadline"),
            )
            .from_("ev")
            .where(
                _and(
                    _eq(col("name"), lit(self.steps[0])),
                    _not_null(col("unit")),
                    exp.GTE(this=col("day"), expression=date(s.date_from)),
                    exp.LTE(this=col("day"), expression=date(s.date_to)),
                )
            )
        )
        ctes.append(("r1", first))
        carried = ["unit", "id1", "t1", "bd", "deadline"]
        for k in range(2, len(self.steps) + 1):
            prev, name = self.steps[k - 2], self.steps[k - 1]
            if distinct:
                ctes.append((f"r{k}", _asof_step(k, group[name], carried)))
                carried.append(f"t{k}")
                continue
            ctes.append((f"x{k}", _next_instant(group[prev], group[name])))
            ctes.append((f"r{k}", self._step(k, group[name], carried)))
            carried += [f"t{k}", f"id{k}"]
        ctes += [("counted", self._counted()), ("agg", self._aggregate())]
        return cte(exp.select("*").from_("agg"), *ctes)

    def _step(self, k: int, instants: str, carried: list[str]) -> exp.Select:
        """CTE ``r<k>``: ``r<k-1>`` with the step-k match ``t<k>``, ``id<k>`` (or NULLs)."""
        name, t_prev = self.steps[k - 1], col(f"t{k - 1}", "r")
        used = [col(f"id{j}", "r") for j in range(1, k) if self.steps[j - 1] == name]
        # The smallest id at t<k-1> not used by the attempt: used ids are never NULL on a
        # running attempt, and at most len(used) of the first len(used) + 1 ids are used.
        ifs = []
        for i in range(1, len(used) + 2):
            candidate = col(f"i{i}", "g")
            ok = [_not_null(candidate.copy())]
            ok += [exp.NEQ(this=candidate.copy(), expression=u.copy()) for u in used]
            ifs.append(exp.If(this=_and(*ok), true=candidate.copy()))
        same: exp.Expr = exp.Case(ifs=ifs)
        later = exp.LTE(this=col("t_next", "x"), expression=col("deadline", "r"))
        same_found = _not_null(col("same"))
        inner = (
            exp.select(
                # Aliased: ClickHouse names a column "r.unit" after two joins.
                *(exp.alias_(col(c, "r"), c) for c in carried),
                exp.alias_(same, "same"),
                exp.alias_(when(later, col("t_next", "x")), "later_ts"),
                exp.alias_(when(later.copy(), col("next_id", "x")), "later_id"),
            )
            .from_(exp.alias_(exp.to_table(f"r{k - 1}"), "r", table=True))
            .join(
                exp.alias_(exp.to_table(instants), "g", table=True),
                on=_and(
                    _eq(col("unit", "g"), col("unit", "r")), _eq(col("ts", "g"), t_prev.copy())
                ),
                join_type="left",
            )
            .join(
                exp.alias_(exp.to_table(f"x{k}"), "x", table=True),
                on=_and(
                    _eq(col("unit", "x"), col("unit", "r")), _eq(col("ts", "x"), t_prev.copy())
                ),
                join_type="left",
            )
        )
        return exp.select(
            *(col(c) for c in carried),
            exp.alias_(
                exp.Case(
                    ifs=[exp.If(this=same_found.copy(), true=col(f"t{k - 1}"))],
                    default=col("later_ts"),
                ),
                f"t{k}",
            ),
            exp.alias_(
                exp.Case(
                    ifs=[exp.If(this=same_found.copy(), true=col("same"))],
                    default=col("later_id"),
                ),
                f"id{k}",
            ),
        ).from_(inner.subquery("m"))

    def _counted(self) -> exp.Select:
        """One attempt per unit: furthest step reached, then earliest start ``(t1, id1)``."""
        n = len(self.steps)
        reached: exp.Expr = lit(1)
        for k in range(2, n + 1):
            step = exp.Case(ifs=[exp.If(this=_not_null(col(f"t{k}")), true=lit(1))], default=lit(0))
            reached = exp.Add(this=reached, expression=step)
        times = [col(f"t{k}") for k in range(1, n + 1)]
        ranked = exp.select(
            col("unit"), col("bd"), *times, exp.alias_(reached, "reached"), col("id1")
        ).from_(f"r{n}")
        return (
            exp.select(col("bd"), *(col(f"t{k}") for k in range(1, n + 1)))
            .from_(ranked.subquery("attempts"))
            .qualify(
                _eq(
                    parse("row_number() OVER (PARTITION BY unit ORDER BY reached DESC, t1, id1)"),
                    lit(1),
                )
            )
        )

    def _aggregate(self) -> exp.Select:
        """Per breakdown value: ``users_<k>`` (units whose furthest step is >= k) and
        ``median_<k>`` (median seconds from step k-1 to step k in the counted attempts)."""
        columns: list[exp.Expr] = [col("bd"), exp.alias_(exp.Count(this=exp.Star()), "users_1")]
        for k in range(2, len(self.steps) + 1):
            gap = seconds_between(col(f"t{k}"), col(f"t{k - 1}"))
            columns += [
                exp.alias_(exp.Count(this=col(f"t{k}")), f"users_{k}"),
                exp.alias_(quantile(gap, 0.5), f"median_{k}"),
            ]
        return exp.select(*columns).from_("counted").group_by("bd")

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        by_bd = {r["bd"]: r for r in rows}
        out: list[Row] = []
        for b in breakdown_values(by_bd, s.breakdown):
            got = by_bd.get(b, {})
            users = [int(got.get(f"users_{k}") or 0) for k in range(1, len(self.steps) + 1)]
            for k, name in enumerate(self.steps, start=1):
                median = got.get(f"median_{k}") if k > 1 else None
                row: Row = {
                    "step": k,
                    "name": name,
                    "users": users[k - 1],
                    "conversion_from_previous": div(users[k - 1], users[max(k - 2, 0)]),
                    "conversion_from_start": div(users[k - 1], users[0]),
                    "median_seconds_from_previous": None if median is None else float(median),
                }
                out.append(with_breakdown(row, s.breakdown, b))
        return out
