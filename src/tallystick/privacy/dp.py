"""Differentially private releases of counts and distinct counts (OpenDP's Laplace mechanism).

A release answers ``count`` (events and distinct units per period) or ``active`` (distinct active
units per period) with noise calibrated so that adding or removing any one unit's data (a user,
with the default ``unit`` user.id) changes the probability of any output by at most a factor
``e^epsilon``. Four steps:

1. **Contribution bounding**, in the SQL (:class:`BoundedCount`, :class:`BoundedActive`): only
   events with a unit count (anonymous events have no one to bound, so they are left out); a
   unit's events count at most ``max_events_per_user`` times over the whole release (which ones
   is decided per unit by a hash of the unit and the event id, so clipping spreads over the
   periods instead of keeping the earliest); a unit counts at most once per period (a distinct
   count) and in at most ``max_periods_per_user`` periods (chosen the same way).
2. **Sensitivity**: one unit's data moves the released vector (every period's values at once)
   by at most ``max_events_per_user + max_periods_per_user`` in L1 distance for ``count``
   (events, and units), ``max_periods_per_user`` for ``active``.
3. **Noise**: OpenDP's Laplace measurement over the whole vector, with scale
   ``b = sensitivity / epsilon``; OpenDP checks that its privacy map gives at most ``epsilon``
   and draws from the operating system's randomness (no seed anyone could replay). Each released
   value is within ``b * ln 20`` (about ``3b``) of the bounded count with probability 95 %.
4. **Post-processing** (free, privacy-wise): values rounded to whole numbers and clamped at 0.

Breakdowns are refused: the set of breakdown values seen would itself tell who is in the data.
The periods are public (they follow from ``from``, ``to`` and ``grain``), so every period is
released, empty ones included. Which dataset a release spends from is :func:`dataset`.

OpenDP (a large native library) is imported on the first release only: the collector, the CLI's
``--help`` and every non-private query never load it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlglot import exp

from tallystick.metrics.analysis import Analysis, Outcome, Row, as_date
from tallystick.metrics.params import EVENT_UNIT, Grain, MetricError, Scope, check_grain
from tallystick.metrics.periods import periods_between
from tallystick.metrics.registry import normalise
from tallystick.metrics.sql import KeyHash, col, cte, events_cte, lit, period

if TYPE_CHECKING:
    from tallystick.control.dp_ledger import Budget, Ledger
    from tallystick.control.dp_ledger import Release as LedgerEntry

EPSILON: Final = "dp_epsilon"
MAX_EVENTS: Final = "dp_max_events_per_user"
MAX_PERIODS: Final = "dp_max_periods_per_user"
ALL_PARAMS: Final = (EPSILON, MAX_EVENTS, MAX_PERIODS)
#: analysis -> the differential-privacy parameters it takes
PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "count": (EPSILON, MAX_EVENTS, MAX_PERIODS),
    "active": (EPSILON, MAX_PERIODS),
}
DEFAULT_MAX_EVENTS: Final = 10
MECHANISM: Final = "laplace"
LAKE: Final = "lake"
"""The dataset of analyses that read the events of every stream (all of them, for now)."""
INTERVAL_95: Final = math.log(20)
"""``P(|Laplace(b)| <= b ln 20) = 0.95``."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a caller asked for: ``epsilon`` and the optional bounds (``None``: the default)."""

    epsilon: float
    max_events_per_user: int | None = None
    max_periods_per_user: int | None = None


def requested(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` ask for a differentially private release."""
    return any(k in ALL_PARAMS for k in normalise(params))


def _epsilon(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise MetricError(
            f"{EPSILON} must be a number above 0 such as 0.5 or 1, got {value!r}: smaller means "
            "more noise and more privacy"
        )
    return number


def _bound(value: Any, name: str) -> int:
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    else:
        number = None
    if number is None or number < 1:
        raise MetricError(f"{name} must be a whole number of at least 1, got {value!r}")
    return number


def split(name: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], Request | None]:
    """``params`` without the differential-privacy ones, and the :class:`Request` they make
    (``None`` when they ask for none); MetricError when they do not fit ``name``."""
    p = normalise(params)
    given = [k for k in ALL_PARAMS if k in p]
    if not given:
        return p, None
    if EPSILON not in p:
        raise MetricError(
            f"{', '.join(given)} bound a differentially private release: add {EPSILON} (e.g. 1.0)"
        )
    if name not in PARAMS:
        raise MetricError(
            f"differentially private releases are made of count and active (distinct units), "
            f"not of {name}: drop {EPSILON}"
        )
    if name == "active" and MAX_EVENTS in p:
        raise MetricError(
            f"active counts a unit at most once per period: bound it with {MAX_PERIODS}, "
            f"not {MAX_EVENTS}"
        )
    request = Request(
        epsilon=_epsilon(p.pop(EPSILON)),
        max_events_per_user=_bound(p.pop(MAX_EVENTS), MAX_EVENTS) if MAX_EVENTS in p else None,
        max_periods_per_user=_bound(p.pop(MAX_PERIODS), MAX_PERIODS) if MAX_PERIODS in p else None,
    )
    return p, request


# -- contribution bounding (SQL) -------------------------------------------------------------


def _known_unit() -> exp.Expr:
    return exp.Not(this=exp.Is(this=col("unit"), expression=exp.Null()))


def _rank(partition: str, *order: exp.Expr) -> exp.Expr:
    """``row_number() OVER (PARTITION BY partition ORDER BY hash(order...), order...)``: a
    per-unit order that depends on that unit's own data only."""
    keys = [col(partition), *order]
    return exp.Window(
        this=exp.RowNumber(),
        partition_by=[col(partition)],
        order=exp.Order(
            expressions=[
                exp.Ordered(this=KeyHash(expressions=[k.copy() for k in keys])),
                *(exp.Ordered(this=o.copy()) for o in order),
            ]
        ),
    )


def _units_part(grain: Grain, max_periods: int, kind: str) -> tuple[exp.Select, tuple[Any, ...]]:
    """Distinct units per period, each unit in at most ``max_periods`` periods."""
    unit_periods = (
        exp.select(exp.alias_(period(col("ts"), grain), "period"), col("unit"))
        .distinct()
        .from_("ev")
        .where(_known_unit())
    )
    ranked = exp.select(col("period"), exp.alias_(_rank("unit", col("period")), "j")).from_(
        "unit_periods"
    )
    query = (
        exp.select(
            exp.alias_(lit(kind), "kind"),
            col("period"),
            exp.alias_(exp.Count(this=exp.Star()), "n"),
        )
        .from_("ranked_periods")
        .where(exp.LTE(this=col("j"), expression=lit(max_periods)))
        .group_by("period")
    )
    return query, (("unit_periods", unit_periods), ("ranked_periods", ranked))


def _shape(rows: list[Row], scope: Scope, grain: Grain, kinds: Sequence[str]) -> list[Row]:
    got: dict[tuple[str, dt.date], int] = {}
    for r in rows:
        got[r["kind"], as_date(r["period"])] = int(r["n"])
    return [
        {"period": p, **{k: got.get((k, p), 0) for k in kinds}}
        for p in periods_between(scope.date_from, scope.date_to, grain)
    ]


class Bounded(Analysis):
    """An analysis with every unit's contribution bounded: the exact values a release adds
    noise to (never published as they are)."""

    columns: ClassVar[tuple[str, ...]]
    grain: Grain
    max_periods_per_user: int

    @property
    def sensitivity(self) -> int:
        """The L1 distance one unit's data can move the released vector by."""
        raise NotImplementedError

    def bounds(self) -> dict[str, int]:
        return {"max_periods_per_user": self.max_periods_per_user}

    def describe(self) -> dict[str, Any]:
        """The release's parameters, as recorded in the ledger."""
        s = self.scope
        return {
            "from": s.date_from.isoformat(),
            "to": s.date_to.isoformat(),
            "grain": self.grain,
            "unit": s.unit,
            "where": [str(f) for f in s.where],
            "include_bots": s.include_bots,
            **self.bounds(),
        }


@dataclass(frozen=True, slots=True)
class BoundedCount(Bounded):
    """``count`` with contributions bounded: per period, ``events`` (each unit's events counted
    at most ``max_events_per_user`` times over the release) and ``units``."""

    name: ClassVar[str] = "count"
    columns: ClassVar[tuple[str, ...]] = ("events", "units")
    event: str
    grain: Grain
    scope: Scope
    max_events_per_user: int
    max_periods_per_user: int

    @property
    def sensitivity(self) -> int:
        return self.max_events_per_user + self.max_periods_per_user

    def bounds(self) -> dict[str, int]:
        return {
            "max_events_per_user": self.max_events_per_user,
            "max_periods_per_user": self.max_periods_per_user,
        }

    def describe(self) -> dict[str, Any]:
        return {"event": self.event, **Bounded.describe(self)}

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        steps = events_cte(
            source,
            (self.event,),
            day_from=s.date_from,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=None,
        )
        ranked = (
            exp.select(
                exp.alias_(period(col("ts"), self.grain), "period"),
                exp.alias_(_rank("unit", col("event_id"), col("name")), "k"),
            )
            .from_("ev")
            .where(_known_unit())
        )
        events = (
            exp.select(
                exp.alias_(lit("events"), "kind"),
                col("period"),
                exp.alias_(exp.Count(this=exp.Star()), "n"),
            )
            .from_("ranked_events")
            .where(exp.LTE(this=col("k"), expression=lit(self.max_events_per_user)))
            .group_by("period")
        )
        units, unit_steps = _units_part(self.grain, self.max_periods_per_user, "units")
        parts = events.union(units, distinct=False)
        query = exp.select("*").from_(parts.subquery("parts"))
        return cte(query, *steps, ("ranked_events", ranked), *unit_steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        return _shape(rows, self.scope, self.grain, self.columns)


@dataclass(frozen=True, slots=True)
class BoundedActive(Bounded):
    """``active`` with contributions bounded: per period, ``active_users`` (each unit in at
    most ``max_periods_per_user`` periods)."""

    name: ClassVar[str] = "active"
    columns: ClassVar[tuple[str, ...]] = ("active_users",)
    active: tuple[str, ...]
    grain: Grain
    scope: Scope
    max_periods_per_user: int

    @property
    def sensitivity(self) -> int:
        return self.max_periods_per_user

    def describe(self) -> dict[str, Any]:
        return {"active": list(self.active), **Bounded.describe(self)}

    def build(self, source: exp.Expr) -> exp.Expr:
        s = self.scope
        steps = events_cte(
            source,
            tuple(dict.fromkeys(self.active)),
            day_from=s.date_from,
            day_to=s.date_to,
            unit=s.unit,
            where=s.where,
            breakdown=None,
        )
        units, unit_steps = _units_part(self.grain, self.max_periods_per_user, "active_users")
        return cte(units, *steps, *unit_steps)

    def shape(self, rows: list[Row]) -> list[Row]:
        return _shape(rows, self.scope, self.grain, self.columns)


def bound(analysis: Analysis, request: Request) -> Bounded:
    """The bounded form of ``analysis`` (a ``count`` or ``active`` from the registry) for
    ``request``; MetricError for what cannot be released privately."""
    from tallystick.metrics.analyses.active import Active
    from tallystick.metrics.analyses.count import Count

    if not isinstance(analysis, Count | Active):
        raise MetricError(
            f"differentially private releases are made of count and active per period, not of "
            f"{analysis.name}: drop {EPSILON}"
        )
    scope = analysis.scope
    if scope.breakdown is not None:
        raise MetricError(
            "a differentially private release has no breakdown: the breakdown values present "
            "would themselves reveal who is in the data; drop the breakdown, or filter (where) "
            "on one value per release"
        )
    if scope.unit == EVENT_UNIT:
        raise MetricError("a differentially private release needs a unit such as user.id")
    grain = check_grain(analysis.grain)
    n = len(periods_between(scope.date_from, scope.date_to, grain))
    max_periods = min(request.max_periods_per_user or n, n)
    if isinstance(analysis, Count):
        return BoundedCount(
            event=analysis.event,
            grain=grain,
            scope=scope,
            max_events_per_user=request.max_events_per_user or DEFAULT_MAX_EVENTS,
            max_periods_per_user=max_periods,
        )
    return BoundedActive(
        active=analysis.active, grain=grain, scope=scope, max_periods_per_user=max_periods
    )


def dataset(analysis: Analysis) -> str:
    """The dataset whose budget a release of ``analysis`` spends: ``lake`` (every analysis reads
    the events of all streams, and filters do not keep anyone's data out of reach of the next
    release, so they share one budget)."""
    return LAKE


# -- the mechanism ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Noise:
    """Noisy values and the Laplace scale of their noise."""

    values: list[float]
    scale: float


def laplace(values: Sequence[float], sensitivity: float, epsilon: float) -> Noise:
    """``values`` plus Laplace noise of scale ``sensitivity / epsilon`` on each, through
    OpenDP's measurement over float vectors in L1 distance; the measurement's privacy map must
    give at most ``epsilon`` for ``sensitivity``."""
    from opendp.domains import atom_domain, vector_domain
    from opendp.measurements import make_laplace
    from opendp.metrics import l1_distance
    from opendp.mod import enable_features

    enable_features("contrib")
    if sensitivity <= 0 or epsilon <= 0:
        raise ValueError("sensitivity and epsilon must be above 0")
    domain = vector_domain(atom_domain(T=float, nan=False))
    scale = float(sensitivity) / float(epsilon)
    for _ in range(8):
        measurement = make_laplace(domain, l1_distance(T=float), scale=scale)
        if measurement.map(float(sensitivity)) <= epsilon:  # type: ignore[no-untyped-call]
            break
        scale = math.nextafter(scale, math.inf) * (1 + 1e-12)
    else:  # pragma: no cover - OpenDP's map is exact for this measurement
        raise RuntimeError(f"no Laplace scale found for epsilon {epsilon}")
    noisy = measurement([float(v) for v in values])
    return Noise([float(v) for v in noisy], scale)


def publish(value: float) -> int:
    """A noisy count as released: rounded to a whole number, at least 0 (post-processing)."""
    return max(0, math.floor(value + 0.5))


# -- a release ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """A published release: the noisy rows, the SQL that computed the bounded counts, and
    the ``dp`` block that says what was spent and how much noise there is."""

    analysis: str
    engine: str
    rows: list[Row]
    sql: str
    dp: dict[str, Any]


def noisy_rows(bounded: Bounded, rows: list[Row], epsilon: float) -> tuple[list[Row], float]:
    """``rows`` (the bounded, exact ones) with every value of ``bounded.columns`` noised
    together in one measurement, and the noise scale."""
    cols = bounded.columns
    flat = [float(r[c]) for c in cols for r in rows]
    noise = laplace(flat, bounded.sensitivity, epsilon)
    out = [dict(r) for r in rows]
    for i, c in enumerate(cols):
        for j, r in enumerate(out):
            r[c] = publish(noise.values[i * len(out) + j])
    return out, noise.scale


def report(bounded: Bounded, epsilon: float, scale: float) -> dict[str, Any]:
    """The ``dp`` block of a release (before the ledger's figures)."""
    return {
        "epsilon": epsilon,
        "mechanism": MECHANISM,
        "unit": bounded.scope.unit,
        "sensitivity": bounded.sensitivity,
        "scale": scale,
        "interval95": scale * INTERVAL_95,
        **bounded.bounds(),
        "anonymous_events": "excluded",
        "dataset": dataset(bounded),
    }


def finish(
    bounded: Bounded,
    request: Request,
    outcome: Outcome,
    ledger: Ledger,
    actor: str,
) -> Release:
    """Spend ``request.epsilon`` from the ledger (BudgetExhausted: nothing is released), then
    noise ``outcome`` (the rows of ``bounded``) and make the release."""
    entry, budget = ledger.spend(
        dataset(bounded),
        request.epsilon,
        actor=actor,
        analysis=bounded.name,
        params=bounded.describe(),
    )
    rows, scale = noisy_rows(bounded, outcome.rows, request.epsilon)
    block = report(bounded, request.epsilon, scale) | _spent(entry, budget)
    return Release(bounded.name, outcome.engine, rows, outcome.sql, block)


def _spent(entry: LedgerEntry, budget: Budget) -> dict[str, Any]:
    return {
        "release": entry.id,
        "budget": budget.total,
        "spent": budget.spent,
        "remaining": budget.remaining,
    }


def release(
    analysis: Analysis,
    request: Request,
    run: Callable[[Analysis], Outcome],
    ledger: Ledger,
    actor: str,
) -> Release:
    """A differentially private release of ``analysis``: bound it, check the budget, compute
    the bounded values with ``run``, spend, noise. BudgetExhausted or MetricError when it
    cannot be made (nothing is spent then)."""
    bounded = bound(analysis, request)
    ledger.check(dataset(bounded), request.epsilon)
    return finish(bounded, request, run(bounded), ledger, actor)
