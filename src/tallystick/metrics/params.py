"""The parameters every analysis shares, parsed and checked once (pure; no I/O).

Fields are dotted monoschema paths (``user.id``) or ``data.<key>``; filters are ``FIELD=VALUE``,
``FIELD!=VALUE`` or ``FIELD in A,B``; windows are ``90s``, ``30m``, ``1h``, ``1d`` or ``2w``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias, get_args

from tallystick.schema import FIELDS_BY_PATH, column_for

Grain: TypeAlias = Literal["day", "week", "month"]
Op: TypeAlias = Literal["=", "!=", "in"]

GRAINS: Final[tuple[Grain, ...]] = get_args(Grain)
EVENT_UNIT: Final = "event"
DEFAULT_UNIT: Final = "user.id"

# Columns whose values can be compared as text: strings, booleans and integers. Timestamps,
# floats and maps have no stable text form across engines, so they are refused as filters.
_TEXT_KINDS: Final = frozenset({"string", "bool", "int"})
_DATA_KEY: Final = re.compile(r"^data\.[A-Za-z0-9_$@-][A-Za-z0-9_.$@-]{0,127}$")
_WINDOW: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_WINDOW_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WHERE: Final = re.compile(r"^\s*([A-Za-z0-9_.$@-]+)\s*(!=|=|\s+in\s+)\s*(.*?)\s*$", re.DOTALL)


class MetricError(ValueError):
    """A parameter or definition a user must fix; the message says how."""


def check_grain(grain: str) -> Grain:
    if grain not in GRAINS:
        raise MetricError(f"unknown grain {grain!r}: use day, week or month")
    return grain


def check_field(path: str, role: str = "field") -> str:
    """``path`` if it names a field that can be grouped or compared as text, else MetricError."""
    if path.startswith("data."):
        if not _DATA_KEY.match(path):
            raise MetricError(
                f"{role} {path!r} is not a valid data key: use data.<key> with letters, digits, "
                "'_', '-', '.', '$' or '@'"
            )
        return path
    try:
        column_for(path)
    except KeyError as exc:
        raise MetricError(f"{role} {path!r}: {exc.args[0]}") from None
    kind = FIELDS_BY_PATH[path].kind
    if kind not in _TEXT_KINDS:
        raise MetricError(
            f"{role} {path!r} holds {kind} values, which cannot be grouped or compared; "
            "use a text, boolean or integer field, or data.<key>"
        )
    return path


def check_unit(unit: str, *, allow_event: bool = False) -> str:
    if unit == EVENT_UNIT:
        if allow_event:
            return unit
        raise MetricError("unit 'event' is only for ratio: use a field such as user.id")
    return check_field(unit, "unit")


@dataclass(frozen=True, slots=True)
class Filter:
    """``field op value``; for ``in``, ``values`` holds every allowed value."""

    field: str
    op: Op
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        check_field(self.field, "filter field")
        if self.op not in get_args(Op):
            raise MetricError(f"unknown operator {self.op!r}: use =, != or in")
        if not self.values:
            raise MetricError(f"filter on {self.field} has no value")
        if self.op != "in" and len(self.values) != 1:
            raise MetricError(f"filter {self.field} {self.op} takes one value")

    def __str__(self) -> str:
        if self.op == "in":
            return f"{self.field} in {','.join(self.values)}"
        return f"{self.field}{self.op}{self.values[0]}"


def parse_where(text: str) -> Filter:
    """``user.id=u1``, ``app.environment!=test`` or ``data.plan in free,pro``."""
    match = _WHERE.match(text)
    if not match:
        raise MetricError(
            f"cannot read filter {text!r}: write FIELD=VALUE, FIELD!=VALUE or FIELD in A,B"
        )
    path, op, value = match.group(1), match.group(2).strip(), match.group(3)
    if op == "in":
        values = tuple(v.strip() for v in value.split(",") if v.strip())
        return Filter(path, "in", values)
    return Filter(path, op, (value,))  # type: ignore[arg-type]


def as_filters(
    where: Iterable[str | Filter | tuple[str, str, object]] | None,
) -> tuple[Filter, ...]:
    """Filters from strings (``"a=b"``), ``Filter`` objects or ``(field, op, value)`` tuples."""
    out: list[Filter] = []
    for item in where or ():
        if isinstance(item, Filter):
            out.append(item)
        elif isinstance(item, str):
            out.append(parse_where(item))
        else:
            path, op, value = item
            if op == "in":
                if isinstance(value, str) or not isinstance(value, Iterable):
                    raise MetricError(f"'in' on {path} needs a list of values, got {value!r}")
                values = tuple(_text(v) for v in value)
            else:
                values = (_text(value),)
            out.append(Filter(path, op, values))  # type: ignore[arg-type]
    return tuple(out)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_window(text: str | dt.timedelta | int | float) -> dt.timedelta:
    """A funnel window: a timedelta, seconds, or ``90s``, ``30m``, ``1h``, ``1d``, ``2w``."""
    if isinstance(text, dt.timedelta):
        window = text
    elif isinstance(text, int | float):
        window = dt.timedelta(seconds=text)
    else:
        match = _WINDOW.match(text)
        if not match:
            raise MetricError(
                f"cannot read window {text!r}: write a number and a unit, e.g. 90s, 30m, 1h, 1d, 2w"
            )
        window = dt.timedelta(seconds=float(match.group(1)) * _WINDOW_UNITS[match.group(2)])
    if window <= dt.timedelta(0):
        raise MetricError("the funnel window must be longer than zero")
    return window


def parse_date(value: str | dt.date, role: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise MetricError(f"{role} must be a date (YYYY-MM-DD), not a time")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise MetricError(f"{role} {value!r} is not a date: write YYYY-MM-DD") from None


def names(value: str | Sequence[str], role: str) -> tuple[str, ...]:
    """Event names from ``"a,b"`` or a sequence, in order, without repeats."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(dict.fromkeys(n.strip() for n in items if n.strip()))
    if not out:
        raise MetricError(f"{role} needs at least one event name")
    return out


def parse_percentiles(value: str | float | Sequence[float | str]) -> tuple[float, ...]:
    items: Sequence[float | str]
    if isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, int | float):
        items = [value]
    else:
        items = value
    out: list[float] = []
    for item in items:
        try:
            p = float(item)
        except ValueError:
            raise MetricError(f"percentile {item!r} is not a number: write e.g. 50,90,99") from None
        if not 0 <= p <= 100:
            raise MetricError(f"percentile {item!r} is outside 0..100")
        out.append(p)
    if not out:
        raise MetricError("give at least one percentile, e.g. 50,90,99")
    return tuple(dict.fromkeys(out))


def percentile_key(p: float) -> str:
    """The result column of percentile ``p``: ``p50``, ``p99.9``."""
    return f"p{p:g}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What every analysis is restricted to: dates (inclusive, UTC), filters, unit, breakdown;
    bots (``agent.is_bot``) are left out unless ``include_bots``."""

    date_from: dt.date
    date_to: dt.date
    unit: str = DEFAULT_UNIT
    where: tuple[Filter, ...] = field(default_factory=tuple)
    breakdown: str | None = None
    include_bots: bool = False

    def __post_init__(self) -> None:
        if self.date_to < self.date_from:
            raise MetricError(f"--to {self.date_to} is before --from {self.date_from}")
        if self.breakdown is not None:
            check_field(self.breakdown, "breakdown")
        check_unit(self.unit, allow_event=True)
