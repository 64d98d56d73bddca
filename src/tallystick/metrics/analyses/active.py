"""Active units: per period, distinct units with an event of any active action (``active``);
and per calendar month, average daily active units over monthly active units (``stickiness``)."""

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
from tallystick.metrics.sql import col, count_distinct, cte, events_cte, lit, period


def _check_active(active: tuple[str, ...], unit: str, what: str) -> None:
    if not active:
        raise MetricError(f"{what} needs at least one active action, e.g. --active login")
    if unit == EVENT_UNIT:
        raise MetricError(f"{what} counts units: use --unit user.id or another field")


def _events(
    source: exp.Expr, active: tuple[str, ...], scope: Scope
) -> tuple[tuple[str, exp.Expr], ...]:
    return events_cte(
        source,
        tuple(dict.fromkeys(active)),
        day_from=scope.date_from,
        day_to=scope.date_to,
        unit=scope.unit,
        where=scope.where,
        breakdown=scope.breakdown,
    )


@dataclass(frozen=True, slots=True)
class Active(Analysis):
    """``period``, ``active_users`` (and ``breakdown``) per period.

    ``active_users`` is the number of distinct units with at least one event of any of the
    ``active`` actions in the period; anonymous events count for no unit (but their breakdown
    values are reported).
    """

    name: ClassVar[str] = "active"
    active: tuple[str, ...]
    grain: Grain
    scope: Scope

    def __post_init__(self) -> None:
        check_grain(self.grain)
        _check_active(self.active, self.scope.unit, "active")

    def build(self, source: exp.Expr) -> exp.Expr:
        # Every event in ``ev`` is an active one, so grouping all of them also yields every
        # breakdown value seen (with 0 units where only anonymous events carry it).
        query = (
            exp.select(
                exp.alias_(period(col("ts"), self.grain), "period"),
                col("bd"),
                exp.alias_(count_distinct(col("unit")), "active_users"),
            )
            .from_("ev")
            .group_by("period", "bd")
        )
        return cte(query, *_events(source, self.active, self.scope))

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        act: dict[tuple[dt.date, str | None], int] = defaultdict(int)
        for r in rows:
            act[as_date(r["period"]), r["bd"]] = int(r["active_users"])
        seen = {r["bd"] for r in rows}
        return [
            with_breakdown({"period": p, "active_users": act[p, b]}, s.breakdown, b)
            for p in periods_between(s.date_from, s.date_to, self.grain)
            for b in breakdown_values(seen, s.breakdown)
        ]


def _month_days(month: dt.date, date_from: dt.date, date_to: dt.date) -> list[dt.date]:
    """The days of ``month`` inside ``[date_from, date_to]``."""
    first = max(month, date_from)
    last = min(add_periods(month, "month", 1) - dt.timedelta(days=1), date_to)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class Stickiness(Analysis):
    """``period`` (a month), ``dau_mean``, ``mau``, ``stickiness`` (and ``breakdown``).

    For every calendar month intersecting the range, over D = the month's days inside the
    range: ``dau_mean`` = sum of the daily distinct active units over D / len(D) (days without
    activity count as 0), ``mau`` = distinct units active on any day of D, ``stickiness`` =
    ``dau_mean / mau`` (``None`` when ``mau`` is 0).
    """

    name: ClassVar[str] = "stickiness"
    active: tuple[str, ...]
    scope: Scope

    def __post_init__(self) -> None:
        _check_active(self.active, self.scope.unit, "stickiness")

    def build(self, source: exp.Expr) -> exp.Expr:
        daily = (
            exp.select(
                exp.alias_(lit("day"), "kind"),
                exp.alias_(col("day"), "period"),
                col("bd"),
                exp.alias_(count_distinct(col("unit")), "units"),
            )
            .from_("ev")
            .group_by("day", "bd")
        )
        # ``ev`` holds only in-range days, so a month's distinct units are those of its days D.
        monthly = (
            exp.select(
                exp.alias_(lit("month"), "kind"),
                exp.alias_(period(col("ts"), "month"), "period"),
                col("bd"),
                exp.alias_(count_distinct(col("unit")), "units"),
            )
            .from_("ev")
            .group_by("period", "bd")
        )
        query = daily.union(monthly, distinct=False)
        return cte(
            exp.select("*").from_(query.subquery("parts")),
            *_events(source, self.active, self.scope),
        )

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        daily: dict[tuple[dt.date, str | None], int] = defaultdict(int)
        monthly: dict[tuple[dt.date, str | None], int] = defaultdict(int)
        for r in rows:
            target = daily if r["kind"] == "day" else monthly
            target[as_date(r["period"]), r["bd"]] = int(r["units"])
        seen = {r["bd"] for r in rows}
        out: list[Row] = []
        for month in periods_between(s.date_from, s.date_to, "month"):
            days = _month_days(month, s.date_from, s.date_to)
            for b in breakdown_values(seen, s.breakdown):
                dau_mean = sum(daily[d, b] for d in days) / len(days)
                mau = monthly[month, b]
                row: Row = {
                    "period": month,
                    "dau_mean": dau_mean,
                    "mau": mau,
                    "stickiness": div(dau_mean, mau),
                }
                out.append(with_breakdown(row, s.breakdown, b))
        return out
