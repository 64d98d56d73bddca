"""Plain-Python reference implementation of Tallystick's metric semantics (a test oracle).

The SQL engine is checked against this module. It is written for clarity, not speed: no SQL, no
numpy, no I/O. Every function takes a sequence of *rows*: mappings keyed by lake column
(``event_id``, ``name``, ``client_ts``, ``received_ts``, ``user_id``, ``app_instance``,
``session_id``, ``data``, ...). ``client_ts`` must be a timezone-aware ``datetime``; ``data`` is the
JSON text of the event's ``data`` object (a ``dict`` is accepted too) or ``None``. Results are
lists of plain dicts. Tests import it as ``from analyses import reference`` (``tests`` is on the
path; ``tests/analyses`` has no ``__init__.py``).

Semantics, precisely
====================

Pipeline
    Every analysis applies, in this order: (1) it *reads* the events named in it whose UTC date
    lies in its read window (the date range; for funnels the range extended by the window; for
    retention everything up to ``date_to``); (2) de-duplication of what it read; (3) the
    ``where`` filters; (4) the analysis itself. Only the event's own time, ``client_ts``, is
    used for periods, ranges, funnels and retention.

Time and periods
    All times are converted to UTC first; an event's *date* is its UTC calendar date. Grains are
    ``day``, ``week`` (Monday 00:00 UTC to the next Monday) and ``month`` (calendar month, UTC).
    A period is identified by its first date (a ``datetime.date``). Example: Sunday
    ``23:30-02:00`` is Monday ``01:30Z`` and belongs to the next week.

Date range
    ``date_from`` and ``date_to`` are inclusive UTC dates. The reported periods are every period
    that intersects ``[date_from, date_to]``, in ascending order, including empty ones (reported
    with zero counts). Events whose UTC date is outside the range are ignored, so the first and
    last periods may be partial (only their in-range days count). Exceptions: funnels (later steps
    may fall after ``date_to``) and retention (first cohort event over all history); see there.

De-duplication
    Copies of an event share its ``event_id`` and ``name`` (re-sends, re-imports); rows sharing
    both are one event. The copy kept is the one with the smallest ``received_ts`` (a missing
    ``received_ts`` sorts last), then the smallest ``client_ts``; remaining ties are unspecified
    (the copies are then the same event). Two rows with one ``event_id`` but different names are
    two events (a client bug that is counted, not hidden). De-duplication happens within what an
    analysis reads (step 1), so it never needs the whole history.

Fields and values
    A field is a dotted monoschema path (``user.id``, ``app.instance``, ``session.id``, ...; mapped
    to its lake column by ``tallystick.schema.column_for``) or ``data.<key>``, a top-level key of
    the JSON ``data`` object. A value is *rendered* as text: strings as they are, ``null`` and
    missing keys as ``None``, other JSON values as compact JSON (``true``, ``3``, ``1.5``,
    ``1000.0``, ``[1,2]``; this matches DuckDB's ``->>``). **The empty string is the same as
    missing**, for units, ``where`` and breakdowns alike.

Units
    ``unit`` (default ``user.id``) names what is counted. Only non-empty values are units: an
    event whose unit is missing or ``""`` (an anonymous event) still counts as an *event* (in
    ``count.events``, ``ratio`` with ``unit="event"``, ``percentile``, and for breakdown values),
    never as a unit.

``where``
    A sequence of ``(field, op, value)`` filters, all of which must hold (AND). ``op`` is ``=``,
    ``!=`` or ``in`` (``value`` a sequence of values). Values are compared as rendered text
    (``3`` and ``"3"`` are equal). A missing or empty field never matches ``=`` or ``in``, and
    always matches ``!=`` (null-safe, like SQL ``IS DISTINCT FROM``).

Breakdowns
    With ``breakdown=FIELD`` every result row gets a ``breakdown`` key (rendered value, ``None``
    when missing or empty). For ``core``, ``active``, ``stickiness``, ``count``, ``ratio`` and
    ``percentile`` the value is taken per event (a unit active with two values counts in both);
    for ``funnel`` it is the value on the step-1 event of the unit's counted attempt; for
    ``retention`` the value on the unit's first cohort event. The reported breakdown values are
    exactly those seen on the events that enter the analysis (after filtering; anonymous events
    included; for funnel and retention: those of the counted units), and the result is the full
    grid period x (action) x value, with zeros where nothing happened. With a breakdown and no
    events at all the result is empty. Rows are sorted by period (``cohort``), then action in the
    order given, then breakdown ascending with ``None`` last; funnel rows by breakdown (same
    order), then step. Without a breakdown there is no ``breakdown`` key.

Ratios
    Every share, rate, ratio and conversion is ``None`` when its denominator is 0.

``core``
    Per period and action: ``users`` = distinct units with at least one event of the action in
    the period; ``active_users`` = distinct units with at least one event of any *active* action
    in the period; ``share = users / active_users``. An action need not be an active action, so
    ``share`` can exceed 1. Duplicate action names are reported once.

``active``
    Per period: ``active_users`` = distinct units with an event of any active action.

``stickiness``
    Per calendar month intersecting the range, using only the month's days inside
    ``[date_from, date_to]`` (call them D): ``dau_mean`` = (sum over d in D of the distinct units
    active on day d) / len(D), days without activity counting as 0; ``mau`` = distinct units
    active on any day of D; ``stickiness = dau_mean / mau``.

``count``
    Per period: ``events`` = de-duplicated events named ``event`` (anonymous included);
    ``units`` = distinct units among them.

``ratio``
    Per period, with ``unit`` a field: ``numerator`` = distinct units with a ``numerator`` event,
    ``denominator`` = distinct units with a ``denominator`` event. With ``unit="event"``: the
    numbers of such events (anonymous included). ``ratio = numerator / denominator`` (it may
    exceed 1).

``percentile``
    Per period, over the events named ``event``: the values of ``field`` that are numbers (JSON
    numbers; booleans, strings, lists and missing values are ignored), one value per event,
    anonymous events included, no unit involved. ``count`` = number of values; ``p<P>`` (key
    ``f"p{P:g}"``: ``p50``, ``p99.9``) = exact percentile with linear interpolation, identical to
    ``numpy.percentile(values, P, method="linear")`` (R type 7): with sorted values ``x`` and
    ``r = P / 100 * (n - 1)``, ``x[floor(r)] + (x[ceil(r)] - x[floor(r)]) * (r - floor(r))``.
    Values are floats; ``None`` for a period without values.

``funnel``
    Over the whole range (no periods). Only events named as a step with a non-empty unit take part;
    ``where`` applies to the events of every step, not only step 1. Events are ordered by
    ``(client_ts, event_id)``.

    - An *attempt* starts at any step-1 event whose UTC date is in ``[date_from, date_to]``.
    - For an attempt whose step k was matched at time ``t_k``, step k+1 is the earliest event
      (in the order above) named as step k+1 with ``t_k <= ts <= t_1 + window`` that is not
      already used by an earlier step of the same attempt (an event serves at most one step).
      Equal timestamps are therefore allowed between consecutive steps regardless of their order
      in the input or their ``event_id``; an event strictly earlier than the previous step never
      counts (B before A does not convert A -> B). The window is inclusive: a step exactly at
      ``t_1 + window`` counts, one microsecond later does not. The attempt stops at the first
      step it cannot match. Later steps may fall after ``date_to`` (within the window).
      Taking the earliest candidate at each step is optimal, so an attempt reaches the furthest
      step possible from its start (checked against a brute-force search by a property test).
    - Each unit is counted once, at the furthest step reached by any of its attempts. Its
      *counted attempt* is the one reaching that step with the earliest start (in the order
      above); its step times give the durations and its step-1 event gives the breakdown value.
    - Per step k (1-based): ``users`` = units whose furthest step is >= k;
      ``conversion_from_previous = users_k / users_(k-1)`` and
      ``conversion_from_start = users_k / users_1`` (for step 1 both are 1.0, or ``None`` when
      ``users_1`` is 0); ``median_seconds_from_previous`` = median over units with furthest step
      >= k of ``t_k - t_(k-1)`` in seconds in the counted attempt (mean of the two middle values
      for an even count; ``None`` for step 1 or when no unit reached step k).

``retention``
    Over the events with a non-empty unit. A unit's *first cohort event* is its earliest
    ``cohort_event`` event (in ``(client_ts, event_id)`` order) over **all** data (after
    ``where``), not only the range; its *cohort* is that event's period. A unit is in a reported
    cohort only if the UTC date of its first cohort event lies in ``[date_from, date_to]``
    (a unit whose first cohort event precedes ``date_from`` is in no cohort). Reported cohorts are
    all periods intersecting the range (empty ones with ``size`` 0). ``retained[0] = size``;
    for k = 1..``periods``, ``retained[k]`` = units of the cohort with at least one event named in
    ``return_events`` in period ``cohort + k``, counting only events dated up to ``date_to``
    (the last period may be partial); ``retained[k]`` is ``None`` when period ``cohort + k``
    starts after ``date_to``. ``rates[k] = retained[k] / size`` (``None`` when ``retained[k]`` is
    ``None`` or ``size`` is 0; ``rates[0]`` is 1.0 when ``size > 0``). A cohort event is a return
    event only if its name is also in ``return_events``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from tallystick.schema import column_for

Row: TypeAlias = Mapping[str, Any]
Grain: TypeAlias = Literal["day", "week", "month"]
Op: TypeAlias = Literal["=", "!=", "in"]
Where: TypeAlias = Sequence[tuple[str, str, Any]]
Result: TypeAlias = dict[str, Any]

GRAINS: tuple[Grain, ...] = ("day", "week", "month")
EVENT_UNIT = "event"

__all__ = [
    "EVENT_UNIT",
    "GRAINS",
    "Grain",
    "Result",
    "Row",
    "Where",
    "active",
    "add_periods",
    "core",
    "count",
    "dedupe",
    "field_value",
    "funnel",
    "percentile",
    "percentile_linear",
    "period_start",
    "periods_between",
    "ratio",
    "raw_value",
    "render",
    "retention",
    "stickiness",
    "unit_value",
    "utc",
]


# --------------------------------------------------------------------------------------------
# Time and periods


def utc(ts: dt.datetime) -> dt.datetime:
    """``ts`` in UTC; naive datetimes are refused (their meaning is ambiguous)."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp {ts!r} has no time zone")
    return ts.astimezone(dt.UTC)


def _check_grain(grain: str) -> None:
    if grain not in GRAINS:
        raise ValueError(f"unknown grain {grain!r}; use day, week or month")


def period_start(ts: dt.datetime | dt.date, grain: Grain) -> dt.date:
    """The first date of the period containing ``ts`` (a tz-aware datetime or a UTC date)."""
    _check_grain(grain)
    day = utc(ts).date() if isinstance(ts, dt.datetime) else ts
    if grain == "day":
        return day
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def add_periods(start: dt.date, grain: Grain, k: int) -> dt.date:
    """The start of the period ``k`` periods after the one starting at ``start``."""
    start = period_start(start, grain)
    if grain == "day":
        return start + dt.timedelta(days=k)
    if grain == "week":
        return start + dt.timedelta(weeks=k)
    months = start.year * 12 + (start.month - 1) + k
    return dt.date(months // 12, months % 12 + 1, 1)


def periods_between(date_from: dt.date, date_to: dt.date, grain: Grain) -> list[dt.date]:
    """Starts of every period intersecting ``[date_from, date_to]`` (inclusive), ascending."""
    if date_to < date_from:
        raise ValueError(f"date_to {date_to} is before date_from {date_from}")
    out = [period_start(date_from, grain)]
    while (nxt := add_periods(out[-1], grain, 1)) <= date_to:
        out.append(nxt)
    return out


def _days(date_from: dt.date, date_to: dt.date) -> list[dt.date]:
    return [date_from + dt.timedelta(days=i) for i in range((date_to - date_from).days + 1)]


# --------------------------------------------------------------------------------------------
# Rows, fields, filters


def dedupe(rows: Iterable[Row]) -> list[Row]:
    """One row per ``(event_id, name)``: the smallest ``received_ts``, then ``client_ts``.

    The kept rows are returned in the input order of the kept copies.
    """
    best: dict[Any, tuple[int, Row]] = {}
    for i, row in enumerate(rows):
        key = (row["event_id"], row["name"])
        if key not in best or _copy_key(row) < _copy_key(best[key][1]):
            best[key] = (i, row)
    return [row for _, row in sorted(best.values(), key=lambda pair: pair[0])]


def _copy_key(row: Row) -> tuple[int, dt.datetime, dt.datetime]:
    received = row.get("received_ts")
    client = utc(row["client_ts"])
    if received is None:
        return (1, dt.datetime.min.replace(tzinfo=dt.UTC), client)
    return (0, utc(received), client)


def _data(row: Row) -> Mapping[str, Any]:
    raw = row.get("data")
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return raw
    parsed = json.loads(raw)
    if not isinstance(parsed, dict):
        raise ValueError(f"data of event {row.get('event_id')!r} is not a JSON object")
    return parsed


def raw_value(row: Row, field: str) -> Any:
    """The unrendered value of ``field`` (a dotted path or ``data.<key>``) in ``row``."""
    column = column_for(field)
    if column.startswith("data."):
        return _data(row).get(column[5:])
    return row.get(column)


def render(value: Any) -> str | None:
    """A value as text: strings as is, ``None`` as ``None``, anything else as compact JSON.

    The empty string renders as ``None`` (empty is the same as missing).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, dt.datetime):
        return utc(value).isoformat()
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def field_value(row: Row, field: str) -> str | None:
    """The rendered value of ``field`` in ``row`` (``None`` when missing or empty)."""
    return render(raw_value(row, field))


def unit_value(row: Row, unit: str) -> str | None:
    """The unit of ``row``: the rendered, non-empty value of the ``unit`` field, else ``None``."""
    return field_value(row, unit)


def _matches(row: Row, where: Where) -> bool:
    for field, op, value in where:
        actual = field_value(row, field)
        if op == "=":
            ok = actual is not None and actual == render(value)
        elif op == "!=":
            ok = actual is None or actual != render(value)
        elif op == "in":
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ValueError(f"'in' needs a list of values, got {value!r}")
            ok = actual is not None and actual in {render(v) for v in value}
        else:
            raise ValueError(f"unknown operator {op!r}; use =, != or in")
        if not ok:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _Event:
    ts: dt.datetime  # UTC
    event_id: str
    name: str
    unit: str | None
    bd: str | None
    row: Row

    @property
    def day(self) -> dt.date:
        return self.ts.date()

    @property
    def order(self) -> tuple[dt.datetime, str]:
        return (self.ts, self.event_id)


def _events(
    rows: Iterable[Row],
    where: Where,
    names: Iterable[str],
    unit: str,
    breakdown: str | None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> list[_Event]:
    """Read (names, dates), de-duplicate, filter (``where``) and normalise; sorted by
    (ts, event_id). ``date_from``/``date_to`` bound the read window (``None``: unbounded)."""
    wanted = set(names)
    read = [
        row
        for row in rows
        if row["name"] in wanted
        and (date_from is None or utc(row["client_ts"]).date() >= date_from)
        and (date_to is None or utc(row["client_ts"]).date() <= date_to)
    ]
    out: list[_Event] = []
    for row in dedupe(read):
        if not _matches(row, where):
            continue
        ts = utc(row["client_ts"])
        out.append(
            _Event(
                ts=ts,
                event_id=str(row["event_id"]),
                name=row["name"],
                unit=None if unit == EVENT_UNIT else unit_value(row, unit),
                bd=None if breakdown is None else field_value(row, breakdown),
                row=row,
            )
        )
    out.sort(key=lambda e: e.order)
    return out


def _bd_sort(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def _breakdowns(values: Iterable[str | None], breakdown: str | None) -> list[str | None]:
    """The breakdown values to report: ``[None]`` (one group) when there is no breakdown."""
    if breakdown is None:
        return [None]
    return sorted(set(values), key=_bd_sort)


def _with_bd(row: Result, breakdown: str | None, value: str | None) -> Result:
    if breakdown is not None:
        row["breakdown"] = value
    return row


def _div(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------
# Analyses over periods


def core(
    rows: Iterable[Row],
    actions: Sequence[str],
    active: Sequence[str],
    grain: Grain,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Core-action metric: ``period``, ``action``, ``users``, ``active_users``, ``share``."""
    acts = _unique(actions)
    active_set = set(active)
    evs = _events(rows, where, [*acts, *active_set], unit, breakdown, date_from, date_to)
    did: dict[tuple[dt.date, str, str | None], set[str]] = defaultdict(set)
    act: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    for e in evs:
        if e.unit is None:
            continue
        p = period_start(e.ts, grain)
        if e.name in acts:
            did[p, e.name, e.bd].add(e.unit)
        if e.name in active_set:
            act[p, e.bd].add(e.unit)
    out: list[Result] = []
    for p in periods_between(date_from, date_to, grain):
        for a in acts:
            for b in _breakdowns((e.bd for e in evs), breakdown):
                users, actives = len(did[p, a, b]), len(act[p, b])
                row: Result = {
                    "period": p,
                    "action": a,
                    "users": users,
                    "active_users": actives,
                    "share": _div(users, actives),
                }
                out.append(_with_bd(row, breakdown, b))
    return out


def active(
    rows: Iterable[Row],
    active: Sequence[str],
    grain: Grain,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Active units per period: ``period``, ``active_users``."""
    evs = _events(rows, where, active, unit, breakdown, date_from, date_to)
    act: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    for e in evs:
        if e.unit is not None:
            act[period_start(e.ts, grain), e.bd].add(e.unit)
    return [
        _with_bd({"period": p, "active_users": len(act[p, b])}, breakdown, b)
        for p in periods_between(date_from, date_to, grain)
        for b in _breakdowns((e.bd for e in evs), breakdown)
    ]


def stickiness(
    rows: Iterable[Row],
    active: Sequence[str],
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Average DAU / MAU per calendar month: ``period``, ``dau_mean``, ``mau``, ``stickiness``.

    For each month intersecting the range, D = the month's days within ``[date_from, date_to]``;
    ``dau_mean`` = sum of daily distinct active units over D / len(D) (idle days count as 0);
    ``mau`` = distinct units active on any day of D; ``stickiness = dau_mean / mau``.
    """
    evs = _events(rows, where, active, unit, breakdown, date_from, date_to)
    daily: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    for e in evs:
        if e.unit is not None:
            daily[e.day, e.bd].add(e.unit)
    out: list[Result] = []
    for month in periods_between(date_from, date_to, "month"):
        days = [d for d in _days(date_from, date_to) if period_start(d, "month") == month]
        for b in _breakdowns((e.bd for e in evs), breakdown):
            dau_mean = sum(len(daily[d, b]) for d in days) / len(days)
            mau = len(set[str]().union(*(daily[d, b] for d in days)))
            row: Result = {
                "period": month,
                "dau_mean": dau_mean,
                "mau": mau,
                "stickiness": _div(dau_mean, mau),
            }
            out.append(_with_bd(row, breakdown, b))
    return out


def count(
    rows: Iterable[Row],
    event: str,
    grain: Grain,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Events and distinct units per period: ``period``, ``events``, ``units``."""
    evs = _events(rows, where, [event], unit, breakdown, date_from, date_to)
    events: dict[tuple[dt.date, str | None], int] = defaultdict(int)
    units: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    for e in evs:
        p = period_start(e.ts, grain)
        events[p, e.bd] += 1
        if e.unit is not None:
            units[p, e.bd].add(e.unit)
    return [
        _with_bd({"period": p, "events": events[p, b], "units": len(units[p, b])}, breakdown, b)
        for p in periods_between(date_from, date_to, grain)
        for b in _breakdowns((e.bd for e in evs), breakdown)
    ]


def ratio(
    rows: Iterable[Row],
    numerator: str,
    denominator: str,
    grain: Grain,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
    numerator_where: Where = (),
) -> list[Result]:
    """``period``, ``numerator``, ``denominator``, ``ratio``; ``unit`` may be ``"event"``;
    ``numerator_where`` filters the numerator's events only."""
    evs = _events(rows, where, [numerator, denominator], unit, breakdown, date_from, date_to)
    nums: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    dens: dict[tuple[dt.date, str | None], set[str]] = defaultdict(set)
    for e in evs:
        key = e.event_id if unit == EVENT_UNIT else e.unit
        if key is None:
            continue
        p = period_start(e.ts, grain)
        # One event counts for both sides when numerator == denominator.
        if e.name == numerator and _matches(e.row, numerator_where):
            nums[p, e.bd].add(key)
        if e.name == denominator:
            dens[p, e.bd].add(key)
    out: list[Result] = []
    for p in periods_between(date_from, date_to, grain):
        for b in _breakdowns((e.bd for e in evs), breakdown):
            num, den = len(nums[p, b]), len(dens[p, b])
            row: Result = {
                "period": p,
                "numerator": num,
                "denominator": den,
                "ratio": _div(num, den),
            }
            out.append(_with_bd(row, breakdown, b))
    return out


def percentile_linear(values: Sequence[float], p: float) -> float:
    """``numpy.percentile(values, p, method="linear")``, bit for bit (same lerp formula)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside [0, 100]")
    xs = sorted(float(v) for v in values)
    rank = (p / 100) * (len(xs) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    t = rank - lo
    a, b = xs[lo], xs[hi]
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _pkey(p: float) -> str:
    return f"p{p:g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def percentile(
    rows: Iterable[Row],
    event: str,
    field: str,
    ps: Sequence[float],
    grain: Grain,
    *,
    date_from: dt.date,
    date_to: dt.date,
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Exact percentiles of a numeric field per period: ``period``, ``count``, ``p50``, ..."""
    evs = _events(rows, where, [event], EVENT_UNIT, breakdown, date_from, date_to)
    values: dict[tuple[dt.date, str | None], list[float]] = defaultdict(list)
    for e in evs:
        number = _number(raw_value(e.row, field))
        if number is not None:
            values[period_start(e.ts, grain), e.bd].append(number)
    out: list[Result] = []
    for p in periods_between(date_from, date_to, grain):
        for b in _breakdowns((e.bd for e in evs), breakdown):
            xs = values[p, b]
            row: Result = {"period": p, "count": len(xs)}
            for q in ps:
                row[_pkey(q)] = percentile_linear(xs, q) if xs else None
            out.append(_with_bd(row, breakdown, b))
    return out


# --------------------------------------------------------------------------------------------
# Funnels


@dataclass(frozen=True, slots=True)
class _Attempt:
    start: _Event
    times: tuple[dt.datetime, ...]  # one per step reached

    @property
    def reached(self) -> int:
        return len(self.times)


def _attempt(
    start: _Event, evs: Sequence[_Event], steps: Sequence[str], window: dt.timedelta
) -> _Attempt:
    used = {(start.event_id, start.name)}  # an event is its id and name
    times = [start.ts]
    deadline = start.ts + window
    for name in steps[1:]:
        found = next(
            (
                e
                for e in evs
                if e.name == name
                and times[-1] <= e.ts <= deadline
                and (e.event_id, e.name) not in used
            ),
            None,
        )
        if found is None:
            break
        used.add((found.event_id, found.name))
        times.append(found.ts)
    return _Attempt(start, tuple(times))


def funnel(
    rows: Iterable[Row],
    steps: Sequence[str],
    window: dt.timedelta,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Per step: ``step``, ``name``, ``users``, ``conversion_from_previous``,
    ``conversion_from_start``, ``median_seconds_from_previous`` (see the module docstring)."""
    if not steps:
        raise ValueError("a funnel needs at least one step")
    if window < dt.timedelta(0):
        raise ValueError("the window must not be negative")
    by_unit: dict[str, list[_Event]] = defaultdict(list)
    last_day = (dt.datetime.combine(date_to, dt.time.max, dt.UTC) + window).date()
    for e in _events(rows, where, steps, unit, breakdown, date_from, last_day):
        if e.unit is not None:
            by_unit[e.unit].append(e)
    counted: list[_Attempt] = []
    for evs in by_unit.values():
        best: _Attempt | None = None
        for start in evs:
            if start.name != steps[0] or not date_from <= start.day <= date_to:
                continue
            attempt = _attempt(start, evs, steps, window)
            if best is None or attempt.reached > best.reached:
                best = attempt  # starts come in order, so ties keep the earliest start
            if best.reached == len(steps):
                break
        if best is not None:
            counted.append(best)
    out: list[Result] = []
    for b in _breakdowns((a.start.bd for a in counted), breakdown):
        group = [a for a in counted if a.start.bd == b]
        users = [sum(1 for a in group if a.reached >= k) for k in range(1, len(steps) + 1)]
        for k, name in enumerate(steps, start=1):
            gaps = [
                (a.times[k - 1] - a.times[k - 2]).total_seconds()
                for a in group
                if k > 1 and a.reached >= k
            ]
            row: Result = {
                "step": k,
                "name": name,
                "users": users[k - 1],
                "conversion_from_previous": (
                    _div(users[0], users[0]) if k == 1 else _div(users[k - 1], users[k - 2])
                ),
                "conversion_from_start": _div(users[k - 1], users[0]),
                "median_seconds_from_previous": statistics.median(gaps) if gaps else None,
            }
            out.append(_with_bd(row, breakdown, b))
    return out


# --------------------------------------------------------------------------------------------
# Retention


def retention(
    rows: Iterable[Row],
    cohort_event: str,
    return_events: Sequence[str],
    grain: Grain,
    periods: int,
    *,
    date_from: dt.date,
    date_to: dt.date,
    unit: str = "user.id",
    where: Where = (),
    breakdown: str | None = None,
) -> list[Result]:
    """Per cohort period: ``cohort``, ``size``, ``retained``, ``rates`` (``periods`` + 1 each)."""
    if periods < 0:
        raise ValueError("periods must not be negative")
    returns = set(return_events)
    first: dict[str, _Event] = {}
    returned: dict[str, set[dt.date]] = defaultdict(set)
    for e in _events(rows, where, {cohort_event, *returns}, unit, breakdown, None, date_to):
        if e.unit is None:
            continue
        if e.name == cohort_event and e.unit not in first:
            first[e.unit] = e  # events are in (ts, event_id) order
        if e.name in returns and e.day <= date_to:
            returned[e.unit].add(period_start(e.ts, grain))
    members = {u: e for u, e in first.items() if date_from <= e.day <= date_to}
    out: list[Result] = []
    for cohort in periods_between(date_from, date_to, grain):
        for b in _breakdowns((e.bd for e in members.values()), breakdown):
            group = [
                u for u, e in members.items() if period_start(e.ts, grain) == cohort and e.bd == b
            ]
            size = len(group)
            retained: list[int | None] = [size]
            for k in range(1, periods + 1):
                target = add_periods(cohort, grain, k)
                retained.append(
                    None if target > date_to else sum(1 for u in group if target in returned[u])
                )
            rates = [None if r is None else _div(r, size) for r in retained]
            row: Result = {"cohort": cohort, "size": size, "retained": retained, "rates": rates}
            out.append(_with_bd(row, breakdown, b))
    return out
