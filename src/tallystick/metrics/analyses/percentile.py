"""Percentiles of a numeric field: per period, exact percentiles (linear interpolation, as
``numpy.percentile``) of the numeric values of one field over the events with one name."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlglot import exp

from tallystick.metrics.analysis import Analysis, Row, as_date, breakdown_values, with_breakdown
from tallystick.metrics.params import (
    EVENT_UNIT,
    Grain,
    MetricError,
    Scope,
    check_field,
    check_grain,
    percentile_key,
)
from tallystick.metrics.periods import periods_between
from tallystick.metrics.sql import col, cte, events_cte, json_number, period, quantile
from tallystick.schema import FIELDS_BY_PATH

_NUMERIC_KINDS = ("int", "float")


def check_numeric_field(path: str) -> str:
    """``path`` if it is ``data.<key>`` or a numeric (int or float) column, else MetricError."""
    if path.startswith("data."):
        return check_field(path, "percentile field")
    known = FIELDS_BY_PATH.get(path)
    numeric = sorted(f.path for f in FIELDS_BY_PATH.values() if f.kind in _NUMERIC_KINDS)
    if known is None or known.kind not in _NUMERIC_KINDS:
        what = "is not a field" if known is None else f"holds {known.kind} values"
        raise MetricError(
            f"percentile field {path!r} {what}: use data.<key> (only JSON numbers count) "
            f"or a numeric field ({', '.join(numeric)})"
        )
    return path


@dataclass(frozen=True, slots=True)
class Percentile(Analysis):
    """``period``, ``count``, ``p50``, ``p90``, ... (and ``breakdown``) per period.

    Over the events named ``event`` (anonymous ones included; there is no unit, so the scope's
    unit is ignored): ``count`` = number of events whose ``field`` is a number (JSON numbers
    for ``data.<key>``; strings, booleans, lists and missing values are ignored); ``p<P>``
    (key from :func:`~tallystick.metrics.params.percentile_key`) = the exact ``P``-th
    percentile of those values with linear interpolation, as ``numpy.percentile``; a float,
    ``None`` for a period without values.
    """

    name: ClassVar[str] = "percentile"
    event: str
    field: str
    percentiles: tuple[float, ...]
    grain: Grain
    scope: Scope

    def __post_init__(self) -> None:
        check_grain(self.grain)
        if not self.event.strip():
            raise MetricError("percentile needs an event name, e.g. --event page.load")
        check_numeric_field(self.field)
        if not self.percentiles:
            raise MetricError("give at least one percentile, e.g. 50,90,99")
        for p in self.percentiles:
            if not 0 <= p <= 100:
                raise MetricError(f"percentile {p:g} is outside 0..100")
        if len({percentile_key(p) for p in self.percentiles}) != len(self.percentiles):
            raise MetricError("each percentile may be given only once")

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        steps = events_cte(
            source,
            (self.event,),
            day_from=s.date_from,
            day_to=s.date_to,
            unit=EVENT_UNIT,  # no unit: every event counts, so user.id is not even read
            where=s.where,
            breakdown=s.breakdown,
            extra={"num": json_number(self.field)},
            extra_paths=(self.field,),
        )
        columns: list[exp.Expr] = [
            exp.alias_(period(col("ts"), self.grain), "period"),
            col("bd"),
            exp.alias_(exp.Count(this=col("num")), "n"),
        ]
        columns += [
            exp.alias_(quantile(col("num"), p / 100), f"q{i}")
            for i, p in enumerate(self.percentiles)
        ]
        query = exp.select(*columns).from_("ev").group_by("period", "bd")
        return cte(query, *steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        s = self.scope
        got: dict[tuple[dt.date, str | None], Row] = {}
        for r in rows:
            got[as_date(r["period"]), r["bd"]] = r
        seen = {r["bd"] for r in rows}
        out: list[Row] = []
        for p in periods_between(s.date_from, s.date_to, self.grain):
            for b in breakdown_values(seen, s.breakdown):
                found = got.get((p, b))
                n = 0 if found is None else int(found["n"])
                row: Row = {"period": p, "count": n}
                for i, q in enumerate(self.percentiles):
                    row[percentile_key(q)] = _value(found, f"q{i}") if n else None
                out.append(with_breakdown(row, s.breakdown, b))
        return out


def _value(found: Row | None, key: str) -> float | None:
    value: Any = None if found is None else found[key]
    return None if value is None else float(value)
