"""Core-action metric: per period and action, distinct units who did the action, and that number
as a share of the distinct units active in the same period."""

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
from tallystick.metrics.params import Grain, MetricError, Scope
from tallystick.metrics.periods import periods_between
from tallystick.metrics.sql import col, count_distinct, cte, events_cte, is_in, lit, period


def _part(kind: str, names: tuple[str, ...], grain: Grain, by_action: bool) -> exp.Select:
    action: exp.Expr = col("name") if by_action else exp.cast(exp.Null(), "text")
    return (
        exp.select(
            exp.alias_(lit(kind), "kind"),
            exp.alias_(period(col("ts"), grain), "period"),
            exp.alias_(action, "action"),
            col("bd"),
            exp.alias_(count_distinct(col("unit")), "units"),
        )
        .from_("ev")
        .where(is_in(col("name"), names))
        .group_by(*(["period", "action", "bd"] if by_action else ["period", "bd"]))
    )


def seen_breakdowns() -> exp.Select:
    """Rows ``kind='seen'`` naming every breakdown value on the analysis's events."""
    return (
        exp.select(
            exp.alias_(lit("seen"), "kind"),
            exp.alias_(exp.cast(exp.Null(), "date"), "period"),
            exp.alias_(exp.cast(exp.Null(), "text"), "action"),
            col("bd"),
            exp.alias_(exp.cast(lit(0), "bigint"), "units"),
        )
        .from_("ev")
        .group_by("bd")
    )


@dataclass(frozen=True, slots=True)
class Core(Analysis):
    """``period``, ``action``, ``users``, ``active_users``, ``share`` per period and action."""

    name: ClassVar[str] = "core"
    actions: tuple[str, ...]
    active: tuple[str, ...]
    grain: Grain
    scope: Scope

    def __post_init__(self) -> None:
        if self.scope.unit == "event":
            raise MetricError("core counts units: use --unit user.id or another field")

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        names = tuple(dict.fromkeys((*self.actions, *self.active)))
        steps = events_cte(
            source,
            names,
            day_from=s.date_from,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=s.breakdown,
        )
        query: exp.Query = _part("did", self.actions, self.grain, True).union(
            _part("act", self.active, self.grain, False), distinct=False
        )
        if s.breakdown is not None:
            query = query.union(seen_breakdowns(), distinct=False)
        return cte(exp.select("*").from_(query.subquery("parts")), *steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        did: dict[tuple[dt.date, str, str | None], int] = defaultdict(int)
        act: dict[tuple[dt.date, str | None], int] = defaultdict(int)
        seen: set[str | None] = set()
        for r in rows:
            seen.add(r["bd"])
            if r["kind"] == "did":
                did[as_date(r["period"]), r["action"], r["bd"]] = int(r["units"])
            elif r["kind"] == "act":
                act[as_date(r["period"]), r["bd"]] = int(r["units"])
        out: list[Row] = []
        for p in periods_between(s.date_from, s.date_to, self.grain):
            for a in self.actions:
                for b in breakdown_values(seen, s.breakdown):
                    users, actives = did[p, a, b], act[p, b]
                    row: Row = {
                        "period": p,
                        "action": a,
                        "users": users,
                        "active_users": actives,
                        "share": div(users, actives),
                    }
                    out.append(with_breakdown(row, s.breakdown, b))
        return out
