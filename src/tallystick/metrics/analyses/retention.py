"""Retention: of the units whose first cohort event falls in a period, how many return in each
of the following periods.

A unit's *first cohort event* is its earliest ``cohort_event`` event (``(ts, event_id)`` order)
over everything up to ``date_to`` (after the filters), so the read window is unbounded below; the
unit belongs to the cohort of that event's period when the event is dated in the range. A unit
is retained in period ``cohort + k`` (1 <= k <= ``periods``) when it has an event named in
``return_events`` there, dated up to ``date_to``.

The SQL counts, per cohort, breakdown value (of the first cohort event) and k, the distinct
units (``k = 0``: the cohort's size); ``shape`` builds the grid of cohorts and breakdown values
and marks the periods that start after ``date_to`` as ``None``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from sqlglot import exp

from tallystick.metrics.analysis import (
    Analysis,
    Row,
    as_date,
    breakdown_values,
    div,
    with_breakdown,
)
from tallystick.metrics.params import EVENT_UNIT, Grain, MetricError, Scope, check_grain
from tallystick.metrics.periods import add_periods, periods_between
from tallystick.metrics.sql import (
    col,
    count_distinct,
    cte,
    date,
    events_cte,
    is_in,
    lit,
    parse,
    period,
    period_index,
)


def _not_null(value: exp.Expr) -> exp.Expr:
    return exp.Not(this=exp.Is(this=value, expression=exp.Null()))


@dataclass(frozen=True, slots=True)
class Retention(Analysis):
    """Per cohort period (and breakdown value): ``cohort``, ``size``, ``retained``, ``rates``.

    ``retained`` and ``rates`` have ``periods + 1`` entries: ``retained[0]`` is the size,
    ``retained[k]`` the units back in period ``cohort + k`` (``None`` when that period starts
    after ``date_to``); ``rates[k] = retained[k] / size`` (``None`` for an empty cohort).
    """

    name: ClassVar[str] = "retention"
    cohort_event: str
    return_events: tuple[str, ...]
    grain: Grain
    periods: int
    scope: Scope

    def __post_init__(self) -> None:
        check_grain(self.grain)
        if not self.cohort_event.strip():
            raise MetricError("retention needs a cohort event, e.g. --cohort-event signup")
        if not self.return_events:
            raise MetricError("retention needs return events, e.g. --return-events login")
        if self.periods < 0:
            raise MetricError("periods must not be negative")
        if self.scope.unit == EVENT_UNIT:
            raise MetricError("retention follows units: use --unit user.id or another field")

    def read_window(self) -> tuple[dt.date | None, dt.date | None]:
        """Everything up to ``date_to``: the first cohort event may precede the range."""
        return None, self.scope.date_to

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        names = tuple(dict.fromkeys((self.cohort_event, *self.return_events)))
        steps = events_cte(
            source,
            names,
            day_from=None,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=s.breakdown,
        )
        first = (
            exp.select(col("unit"), col("ts"), col("day"), col("bd"))
            .from_("ev")
            .where(
                exp.and_(
                    exp.EQ(this=col("name"), expression=lit(self.cohort_event)),
                    _not_null(col("unit")),
                )
            )
            .qualify(
                exp.EQ(
                    this=parse("row_number() OVER (PARTITION BY unit ORDER BY ts, event_id)"),
                    expression=lit(1),
                )
            )
        )
        members = (
            exp.select(col("unit"), exp.alias_(period(col("ts"), self.grain), "cohort"), col("bd"))
            .from_("firsts")
            .where(
                exp.and_(
                    exp.GTE(this=col("day"), expression=date(s.date_from)),
                    exp.LTE(this=col("day"), expression=date(s.date_to)),
                )
            )
        )
        returns = (
            exp.select(col("unit"), exp.alias_(period(col("ts"), self.grain), "back"))
            .distinct()
            .from_("ev")
            .where(exp.and_(is_in(col("name"), self.return_events), _not_null(col("unit"))))
        )
        k = period_index(col("back", "r"), col("cohort", "m"), self.grain)
        sizes = (
            exp.select(
                col("cohort"),
                col("bd"),
                exp.alias_(exp.cast(lit(0), "bigint"), "k"),
                exp.alias_(exp.Count(this=exp.Star()), "units"),
            )
            .from_("members")
            .group_by("cohort", "bd")
        )
        back = (
            exp.select(
                exp.alias_(col("cohort", "m"), "cohort"),
                exp.alias_(col("bd", "m"), "bd"),
                exp.alias_(exp.cast(k, "bigint"), "k"),
                exp.alias_(count_distinct(col("unit", "m")), "units"),
            )
            .from_(exp.alias_(exp.to_table("members"), "m", table=True))
            .join(
                exp.alias_(exp.to_table("returns"), "r", table=True),
                on=exp.EQ(this=col("unit", "r"), expression=col("unit", "m")),
            )
            .where(
                exp.and_(
                    exp.GT(this=col("back", "r"), expression=col("cohort", "m")),
                    exp.LTE(this=k.copy(), expression=lit(self.periods)),
                )
            )
            .group_by(col("cohort", "m"), col("bd", "m"), k.copy())
        )
        query = exp.select("*").from_(sizes.union(back, distinct=False).subquery("counts"))
        return cte(query, *steps, ("firsts", first), ("members", members), ("returns", returns))

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        got: dict[tuple[dt.date, str | None, int], int] = defaultdict(int)
        seen: set[str | None] = set()
        for r in rows:
            k = int(r["k"])
            got[as_date(r["cohort"]), r["bd"], k] = int(r["units"])
            if k == 0:
                seen.add(r["bd"])
        out: list[Row] = []
        for cohort in periods_between(s.date_from, s.date_to, self.grain):
            for b in breakdown_values(seen, s.breakdown):
                size = got[cohort, b, 0]
                retained: list[int | None] = [size]
                for k in range(1, self.periods + 1):
                    start = add_periods(cohort, self.grain, k)
                    retained.append(None if start > s.date_to else got[cohort, b, k])
                rates = [None if n is None else div(n, size) for n in retained]
                row: Row = {"cohort": cohort, "size": size, "retained": retained, "rates": rates}
                out.append(with_breakdown(row, s.breakdown, b))
        return out
