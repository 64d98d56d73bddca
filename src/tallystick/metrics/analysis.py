"""What every analysis is: parameters, a SQL tree over the lake, and the shaping of its rows.

An analysis builds one sqlglot tree (``build``) from an engine's source relation; the engine
runs it; ``shape`` turns the returned rows into the documented result: the full grid of periods
(x actions x breakdown values) with zeros where nothing happened, and every ratio computed the
same way whatever engine ran the SQL (``None`` when its denominator is 0).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from sqlglot import exp

from tallystick.metrics.engines import Engine
from tallystick.metrics.params import Scope

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule

Row: TypeAlias = dict[str, Any]

_PLACEHOLDER = "tally_events_source"


@dataclass(frozen=True, slots=True)
class Outcome:
    """An analysis's result rows and the SQL that produced them."""

    rows: list[Row]
    sql: str
    engine: str


class Analysis(ABC):
    """One analysis with its parameters. Subclasses are frozen dataclasses with a ``scope``."""

    name: ClassVar[str]
    scope: Scope

    def read_window(self) -> tuple[dt.date | None, dt.date | None]:
        """The client dates whose events the analysis reads (``None``: no bound)."""
        return self.scope.date_from, self.scope.date_to

    @abstractmethod
    def build(self, source: exp.Expr) -> exp.Expr:
        """The SQL tree, reading events from ``source``."""

    @abstractmethod
    def shape(self, rows: list[Row]) -> list[Row]:
        """The documented result rows from the rows the SQL returned."""

    def run(
        self,
        engine: Engine,
        rules: tuple[Rule, ...] | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Run on ``engine``, leaving out the rows of the ``hidden`` streams (private streams
        the reader may not see), bots (unless the scope includes them) and what the
        quarantine ``rules`` match (default: the engine's rules in force now)."""
        from tallystick.metrics.exclusion import Exclusion, apply

        if rules is None:
            quarantine = getattr(engine, "quarantine", None)
            rules = quarantine.rules() if quarantine is not None else ()
        # Build over a placeholder and put the engine's source (which may list hundreds of
        # files) in at the end: sqlglot's builders copy the tree at each step.
        tree = self.build(exp.to_table(_PLACEHOLDER))
        source = apply(
            engine.source(*self.read_window()),
            Exclusion(self.scope.include_bots, rules, hidden),
        )
        for table in list(tree.find_all(exp.Table)):
            if table.name == _PLACEHOLDER and not table.args.get("db"):
                table.replace(source.copy())
        table, sql = engine.run(tree)
        return Outcome(rows=self.shape(table.to_pylist()), sql=sql, engine=engine.name)


def div(num: float, den: float) -> float | None:
    """``num / den``, or ``None`` when ``den`` is 0."""
    return None if den == 0 else num / den


def breakdown_order(value: str | None) -> tuple[bool, str]:
    """Sort key for breakdown values: ascending, ``None`` last."""
    return (value is None, value or "")


def breakdown_values(seen: Iterable[str | None], breakdown: str | None) -> list[str | None]:
    """The breakdown values to report (``[None]``, one group, without a breakdown)."""
    if breakdown is None:
        return [None]
    return sorted(set(seen), key=breakdown_order)


def with_breakdown(row: Row, breakdown: str | None, value: str | None) -> Row:
    if breakdown is not None:
        row["breakdown"] = value
    return row


def as_date(value: Any) -> dt.date:
    """A period value from an engine (DATE, or a timestamp at midnight) as a ``date``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"not a date: {value!r}")


def unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
