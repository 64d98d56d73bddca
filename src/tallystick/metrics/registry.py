"""Every analysis by name, and how each is built from plain parameters.

The CLI, the Python API, the HTTP API and the metric catalog all build analyses here, so a
parameter has one name and one meaning everywhere:

================ ==========================================================================
parameter        meaning
================ ==========================================================================
from, to         inclusive UTC dates (``YYYY-MM-DD``); default: the 12 weeks ending today
grain            ``day``, ``week`` or ``month`` (default ``week``)
unit             what is counted (default ``user.id``; ``event`` for ratio only)
where            list of filters ``FIELD=VALUE``, ``FIELD!=VALUE``, ``FIELD in A,B``
breakdown        a field to split results by
include_bots     count events from bots too (bool; default false: they are left out)
actions          core: the core actions (list or ``a,b``)
active           core/active: the actions that make a unit active (list or ``a,b``)
stickiness       active: report average DAU / MAU per month instead (bool)
event            count/percentile: the event name
numerator        ratio: event name of the numerator
denominator      ratio: event name of the denominator
numerator_where  ratio: filters on the numerator's events only (like ``where``)
field            percentile: the numeric field (``data.<key>``)
p                percentile: percentiles (list or ``50,90,99``)
steps            funnel: the step event names in order (list or ``a,b,c``)
window           funnel: conversion window (``1h``, ``30m``, ``1d``; default ``1d``)
cohort_event     retention: the event that puts a unit in a cohort
return_events    retention: the events that count as a return (list or ``a,b``)
periods          retention: how many periods after the cohort (default 8)
================ ==========================================================================

``date_from``/``date_to`` are accepted for ``from``/``to``; ``-`` and ``_`` are the same.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tallystick.metrics.analysis import Analysis
from tallystick.metrics.params import (
    DEFAULT_UNIT,
    MetricError,
    Scope,
    as_filters,
    check_grain,
    names,
    parse_date,
    parse_percentiles,
    parse_window,
    percentile_key,
)

#: analysis name -> (module, class)
ANALYSES: Final[dict[str, tuple[str, str]]] = {
    "core": ("core", "Core"),
    "active": ("active", "Active"),
    "stickiness": ("active", "Stickiness"),
    "count": ("count", "Count"),
    "ratio": ("ratio", "Ratio"),
    "percentile": ("percentile", "Percentile"),
    "funnel": ("funnel", "Funnel"),
    "retention": ("retention", "Retention"),
}

COMMON: Final = ("from", "to", "grain", "unit", "where", "breakdown", "include_bots")
#: the parameters of each analysis besides COMMON (required ones first)
SPECIFIC: Final[dict[str, tuple[str, ...]]] = {
    "core": ("actions", "active"),
    "active": ("active", "stickiness"),
    "stickiness": ("active",),
    "count": ("event",),
    "ratio": ("numerator", "denominator", "numerator_where"),
    "percentile": ("event", "field", "p"),
    "funnel": ("steps", "window"),
    "retention": ("cohort_event", "return_events", "periods"),
}
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "core": ("actions", "active"),
    "active": ("active",),
    "stickiness": ("active",),
    "count": ("event",),
    "ratio": ("numerator", "denominator"),
    "percentile": ("event", "field", "p"),
    "funnel": ("steps",),
    "retention": ("cohort_event", "return_events"),
}
DEFAULT_WEEKS: Final = 12
DEFAULT_WINDOW: Final = "1d"
DEFAULT_PERIODS: Final = 8

_ALIASES: Final = {
    "date_from": "from",
    "date_to": "to",
    "percentiles": "p",
    "return": "return_events",
}


def analysis_class(name: str) -> type[Analysis]:
    if name not in ANALYSES:
        raise MetricError(f"unknown analysis {name!r}: use one of {', '.join(ANALYSES)}")
    module, cls = ANALYSES[name]
    found: type[Analysis] = getattr(
        importlib.import_module(f"tallystick.metrics.analyses.{module}"), cls
    )
    return found


def normalise(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter names with ``-`` as ``_`` and aliases resolved; ``None`` values dropped."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = key.replace("-", "_")
        name = _ALIASES.get(name, name)
        if value is not None:
            out[name] = value
    return out


def default_range(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The 12 whole weeks ending with the current one (Monday 12 weeks ago .. today)."""
    end = today or dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=end.weekday()) - dt.timedelta(weeks=DEFAULT_WEEKS - 1)
    return start, end


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise MetricError(f"{name} must be true or false, got {value!r}")


def _int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MetricError(f"{name} must be a whole number, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise MetricError(f"{name} must be a whole number, got {value!r}")
    if number < 0:
        raise MetricError(f"{name} must not be negative")
    return number


def _one(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MetricError(f"{name} must be one event name")
    return value.strip()


def _where(value: Any, name: str = "where") -> Sequence[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return value
    raise MetricError(f"{name} must be a list of filters such as app.environment=prod")


def build(name: str, params: Mapping[str, Any], *, today: dt.date | None = None) -> Analysis:
    """The analysis ``name`` with ``params`` (see the module docstring)."""
    cls = analysis_class(name)
    p = normalise(params)
    allowed = set(COMMON) | set(SPECIFIC[name])
    unknown = sorted(set(p) - allowed)
    if unknown:
        raise MetricError(
            f"{name} does not take {', '.join(unknown)}; it takes {', '.join(sorted(allowed))}"
        )
    missing = [k for k in REQUIRED[name] if k not in p]
    if missing:
        raise MetricError(f"{name} needs {', '.join(missing)}")
    start, end = default_range(today)
    date_from = parse_date(p["from"], "from") if "from" in p else None
    date_to = parse_date(p["to"], "to") if "to" in p else None
    if date_from is None and date_to is not None:
        date_from = default_range(date_to)[0]
    scope = Scope(
        date_from=date_from or start,
        date_to=date_to or end,
        unit=str(p.get("unit", DEFAULT_UNIT)),
        where=as_filters(_where(p.get("where", ()))),
        breakdown=p.get("breakdown") or None,
        include_bots=_bool(p.get("include_bots", False), "include_bots"),
    )
    grain = check_grain(str(p.get("grain", "week")))
    kwargs: dict[str, Any] = {"scope": scope}
    if name == "core":
        kwargs |= {
            "actions": names(p["actions"], "actions"),
            "active": names(p["active"], "active"),
            "grain": grain,
        }
    elif name == "active":
        if _bool(p.get("stickiness", False), "stickiness"):
            rest = {k: v for k, v in p.items() if k != "stickiness"}
            return build("stickiness", rest, today=today)
        kwargs |= {"active": names(p["active"], "active"), "grain": grain}
    elif name == "stickiness":
        kwargs |= {"active": names(p["active"], "active")}
    elif name == "count":
        kwargs |= {"event": _one(p["event"], "event"), "grain": grain}
    elif name == "ratio":
        kwargs |= {
            "numerator": _one(p["numerator"], "numerator"),
            "denominator": _one(p["denominator"], "denominator"),
            "grain": grain,
            "numerator_where": as_filters(_where(p.get("numerator_where", ()), "numerator_where")),
        }
    elif name == "percentile":
        kwargs |= {
            "event": _one(p["event"], "event"),
            "field": str(p["field"]),
            "percentiles": parse_percentiles(p["p"]),
            "grain": grain,
        }
    elif name == "funnel":
        steps = p["steps"]
        items = steps.split(",") if isinstance(steps, str) else list(steps)
        kwargs |= {
            "steps": tuple(s.strip() for s in items if s.strip()),
            "window": parse_window(p.get("window", DEFAULT_WINDOW)),
        }
    elif name == "retention":
        kwargs |= {
            "cohort_event": _one(p["cohort_event"], "cohort_event"),
            "return_events": names(p["return_events"], "return_events"),
            "grain": grain,
            "periods": _int(p.get("periods", DEFAULT_PERIODS), "periods"),
        }
    return cls(**kwargs)


#: analysis -> the column of its headline number (count and percentile depend on parameters)
_VALUE_COLUMNS: Final[dict[str, str]] = {
    "core": "share",
    "active": "active_users",
    "stickiness": "stickiness",
    "ratio": "ratio",
}


def value_column(analysis: str, params: Mapping[str, Any]) -> str | None:
    """The row column that is the analysis's headline number (what a KPI card shows), or
    ``None`` for analyses without one (funnel, retention).

    ``analysis`` is the registry analysis that runs (``stickiness`` for ``active`` with
    ``stickiness``); ``params`` are its registry parameters.
    """
    p = normalise(params)
    if analysis == "active" and _bool(p.get("stickiness", False), "stickiness"):
        analysis = "stickiness"
    if analysis == "count":
        return "units" if "unit" in p else "events"
    if analysis == "percentile":
        return percentile_key(parse_percentiles(p["p"])[0]) if "p" in p else None
    return _VALUE_COLUMNS.get(analysis)
