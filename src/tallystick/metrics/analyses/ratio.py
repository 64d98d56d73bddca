"""Ratio of two events: per period, distinct units (or events, with unit ``event``) with a
numerator event over those with a denominator event (``numerator_where`` narrows the numerator's
events only: bounced sessions over sessions)."""

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
from tallystick.metrics.params import Filter, Grain, MetricError, Scope, check_grain
from tallystick.metrics.periods import periods_between
from tallystick.metrics.sql import (
    col,
    count_distinct,
    cte,
    events_cte,
    filter_condition,
    lit,
    period,
    when,
)


def _side(event: str, alias: str, also: exp.Expr | None = None) -> exp.Expr:
    """Distinct units (event ids with unit ``event``) of the ``event`` events in the group
    (those where ``also`` holds, when given)."""
    cond: exp.Expr = exp.EQ(this=col("name"), expression=lit(event))
    if also is not None:
        cond = exp.and_(cond, also)
    return exp.alias_(count_distinct(when(cond, col("unit"))), alias)


@dataclass(frozen=True, slots=True)
class Ratio(Analysis):
    """``period``, ``numerator``, ``denominator``, ``ratio`` (and ``breakdown``) per period.

    With a field as unit, ``numerator`` / ``denominator`` are the distinct units with a
    ``numerator`` / ``denominator`` event in the period; with unit ``event`` they are the
    numbers of such events, anonymous ones included. ``ratio = numerator / denominator``
    (``None`` when the denominator is 0; it may exceed 1). The two events may be the same.
    ``numerator_where`` filters apply to the numerator's events only (after the scope's
    ``where``, which applies to both): ``session.end`` with ``data.pageviews=1`` over
    ``session.end`` is the bounce rate.
    """

    name: ClassVar[str] = "ratio"
    numerator: str
    denominator: str
    grain: Grain
    scope: Scope
    numerator_where: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        check_grain(self.grain)
        if not self.numerator.strip() or not self.denominator.strip():
            raise MetricError(
                "ratio needs two event names, e.g. --numerator project.share "
                "--denominator project.create"
            )

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        extra: dict[str, exp.Expr] = {}
        if self.numerator_where:
            extra["nw"] = exp.and_(*(filter_condition(f) for f in self.numerator_where))
        steps = events_cte(
            source,
            tuple(dict.fromkeys((self.numerator, self.denominator))),
            day_from=s.date_from,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=s.breakdown,
            extra=extra,
            extra_paths=[f.field for f in self.numerator_where],
        )
        query = (
            exp.select(
                exp.alias_(period(col("ts"), self.grain), "period"),
                col("bd"),
                _side(self.numerator, "num", col("nw") if self.numerator_where else None),
                _side(self.denominator, "den"),
            )
            .from_("ev")
            .group_by("period", "bd")
        )
        return cte(query, *steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        got: dict[tuple[dt.date, str | None], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for r in rows:
            got[as_date(r["period"]), r["bd"]] = (int(r["num"]), int(r["den"]))
        seen = {r["bd"] for r in rows}
        out: list[Row] = []
        for p in periods_between(s.date_from, s.date_to, self.grain):
            for b in breakdown_values(seen, s.breakdown):
                num, den = got[p, b]
                row: Row = {
                    "period": p,
                    "numerator": num,
                    "denominator": den,
                    "ratio": div(num, den),
                }
                out.append(with_breakdown(row, s.breakdown, b))
        return out
