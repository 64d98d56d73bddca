"""Event counts: per period, the number of (de-duplicated) events with one name and the number
of distinct units among them."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from sqlglot import exp

from tallystick.metrics.analysis import Analysis, Row, as_date, breakdown_values, with_breakdown
from tallystick.metrics.params import EVENT_UNIT, Grain, MetricError, Scope, check_grain
from tallystick.metrics.periods import periods_between
from tallystick.metrics.sql import col, count_distinct, cte, events_cte, period


@dataclass(frozen=True, slots=True)
class Count(Analysis):
    """``period``, ``events``, ``units`` (and ``breakdown``) per period.

    ``events`` counts the de-duplicated events named ``event``, anonymous ones included;
    ``units`` counts the distinct non-empty units among them.
    """

    name: ClassVar[str] = "count"
    event: str
    grain: Grain
    scope: Scope

    def __post_init__(self) -> None:
        check_grain(self.grain)
        if not self.event.strip():
            raise MetricError("count needs an event name, e.g. --event project.create")
        if self.scope.unit == EVENT_UNIT:
            raise MetricError(
                "count already reports events; its unit must be a field such as user.id"
            )

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        steps = events_cte(
            source,
            (self.event,),
            day_from=s.date_from,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=s.breakdown,
        )
        query = (
            exp.select(
                exp.alias_(period(col("ts"), self.grain), "period"),
                col("bd"),
                exp.alias_(exp.Count(this=exp.Star()), "events"),
                exp.alias_(count_distinct(col("unit")), "units"),
            )
            .from_("ev")
            .group_by("period", "bd")
        )
        return cte(query, *steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        got: dict[tuple[dt.date, str | None], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for r in rows:
            got[as_date(r["period"]), r["bd"]] = (int(r["events"]), int(r["units"]))
        seen = {r["bd"] for r in rows}
        out: list[Row] = []
        for p in periods_between(s.date_from, s.date_to, self.grain):
            for b in breakdown_values(seen, s.breakdown):
                events, units = got[p, b]
                row: Row = {"period": p, "events": events, "units": units}
                out.append(with_breakdown(row, s.breakdown, b))
        return out
