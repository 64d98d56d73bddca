"""The bodies of ``GET /v1/meta`` (what the lake holds, for pickers) and ``GET /v1/health``
(how data is arriving), from the figures of ``store.health``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tallystick.metrics.params import MetricError, check_field, parse_date
from tallystick.metrics.registry import default_range
from tallystick.quality.loss import total
from tallystick.quality.reports import ReportQuery, loss_rows
from tallystick.schema import FIELDS
from tallystick.store.health import health, summary
from tallystick.store.lake import Lake

HEALTH_PARAMS: Final = ("from", "to")
NO_LOSS: Final = (
    "loss cannot be measured in this range: no stored event carries session.id and session.seq"
)
MAX_HEALTH_DAYS: Final = 3660
"""The longest range ``/v1/health`` answers (about ten years of days)."""


def filter_fields() -> list[str]:
    """The schema fields a filter or breakdown accepts (text, boolean and integer kinds), in
    schema order."""
    out = []
    for f in FIELDS:
        try:
            check_field(f.path)
        except MetricError:
            continue
        out.append(f.path)
    return out


def meta_body(lake: Lake, today: dt.date, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body of ``GET /v1/meta`` (without what only ``hidden`` streams hold)."""
    s = summary(lake, hidden=hidden)
    return {
        "data_as_of": s.data_as_of,
        "latest_event": s.latest_event,
        "first_day": s.first_day,
        "last_day": s.last_day,
        "today": today,
        "events": [{"name": e.name, "count": e.count} for e in s.events],
        "fields": filter_fields(),
        "data_keys": list(s.data_keys),
    }


def health_range(params: Mapping[str, Any], today: dt.date) -> tuple[dt.date, dt.date]:
    """``from`` and ``to`` of a health request (registry names; defaults as every analysis's),
    or a MetricError that says what to write."""
    unknown = sorted(set(params) - set(HEALTH_PARAMS))
    if unknown:
        raise MetricError(
            f"health does not take {', '.join(unknown)}; it takes from and to (YYYY-MM-DD)"
        )
    for name, value in params.items():
        if not isinstance(value, str):
            raise MetricError(f"parameter {name!r} must be a date string such as 2026-01-31")
    date_to = parse_date(params["to"], "to") if "to" in params else today
    date_from = (
        parse_date(params["from"], "from") if "from" in params else default_range(date_to)[0]
    )
    if date_to < date_from:
        raise MetricError(
            f"to {date_to} is before from {date_from}: give a from on or before the to"
        )
    if (date_to - date_from).days >= MAX_HEALTH_DAYS:
        raise MetricError(
            f"from {date_from} to {date_to} is more than {MAX_HEALTH_DAYS:,} days: "
            "ask for a shorter range"
        )
    return date_from, date_to


def health_body(
    lake: Lake,
    spool_dir: Path,
    date_from: dt.date,
    date_to: dt.date,
    hidden: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The body of ``GET /v1/health`` (events of ``hidden`` streams left out; failed events,
    which belong to no stream, and the spool counts stay)."""
    h = health(lake, spool_dir, date_from, date_to, hidden=hidden)
    received = sum(d.received for d in h.days)
    loss = total(loss_rows(lake, ReportQuery("day", date_from, date_to), hidden))
    return {
        "from": h.date_from,
        "to": h.date_to,
        "days": [
            {
                "day": d.day,
                "received": d.received,
                "occurred": d.occurred,
                "failed": d.failed,
                "bots": d.bots,
            }
            for d in h.days
        ],
        "failed_by_reason": [
            {"code": f.code, "count": f.count, "example": f.example, "latest": f.latest}
            for f in h.failed_by_reason
        ],
        "latest_event": h.latest_event,
        "latest_received": h.latest_received,
        "spool_backlog": h.spool_backlog,
        "quarantined": h.quarantined,
        "loss_rate": loss["loss_rate"],
        "bot_rate": sum(d.bots for d in h.days) / received if received else None,
        "notes": [NO_LOSS] if not loss["expected"] else [],
    }
