"""The data-quality reads of the query API: ``GET /v1/quality/loss``, ``/v1/quality/skew`` (the
reports of ``quality.reports``) and ``/v1/quality/alerts`` (the alert history,
``quality.alerts.history``). Parameters are checked here; a wrong one is a MetricError that the
app turns into a 400 ``invalid_query`` naming it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tallystick.metrics.params import MetricError

if TYPE_CHECKING:
    from tallystick.control.store import ControlStore

QUALITY_PREFIX: Final = "/v1/quality/"
LOSS_PATH: Final = "/v1/quality/loss"
SKEW_PATH: Final = "/v1/quality/skew"
ALERTS_PATH: Final = "/v1/quality/alerts"
PATHS: Final = (LOSS_PATH, SKEW_PATH, ALERTS_PATH)

ALERT_PARAMS: Final = ("since", "limit", "stream", "notices")
MAX_ALERTS: Final = 1000
_TRUE: Final = ("true", "1", "yes")
_FALSE: Final = ("false", "0", "no")


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """What ``GET /v1/quality/alerts`` is asked for (checked)."""

    since: dt.datetime | None = None
    limit: int = 200
    stream: str | None = None
    notices: bool = False


def _since(value: str) -> dt.datetime:
    """A date (from its midnight, UTC) or a date-time (UTC unless it has an offset)."""
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
        at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MetricError(
            f"since {value!r} is not a date or a time: write YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return at.astimezone(dt.UTC) if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def alert_query(params: Mapping[str, object]) -> AlertQuery:
    """An ``AlertQuery`` from a query string's parameters, or a MetricError that says what to
    write."""
    unknown = sorted(set(params) - set(ALERT_PARAMS))
    if unknown:
        raise MetricError(
            f"the alert history does not take {', '.join(unknown)}; it takes "
            f"{', '.join(ALERT_PARAMS)}"
        )
    values: dict[str, str] = {}
    for name, value in params.items():
        if not isinstance(value, str):
            raise MetricError(f"parameter {name!r} must be a string, got {value!r}")
        if not value.strip():
            raise MetricError(f"parameter {name!r} is empty: give a value or leave it out")
        values[name] = value.strip()
    limit = 200
    if "limit" in values:
        text = values["limit"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_ALERTS:
            raise MetricError(f"limit {text!r} must be a whole number from 1 to {MAX_ALERTS}")
        limit = int(text)
    notices = False
    if "notices" in values:
        flag = values["notices"].lower()
        if flag not in (*_TRUE, *_FALSE):
            raise MetricError(f"notices {values['notices']!r} must be true or false")
        notices = flag in _TRUE
    since = _since(values["since"]) if "since" in values else None
    return AlertQuery(since, limit, values.get("stream"), notices)


def alerts_body(
    store: ControlStore, query: AlertQuery, hidden: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The answer of ``GET /v1/quality/alerts``: evaluations of alert rules, newest first
    (none of the ``hidden`` streams: asked for one, the list is empty)."""
    from tallystick.quality.alerts import history

    runs = history(
        store,
        query.since,
        query.limit,
        stream=query.stream,
        notices=query.notices,
        hidden=hidden,
    )
    return {
        "since": None
        if query.since is None
        else query.since.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "limit": query.limit,
        "stream": query.stream,
        "notices": query.notices,
        "alerts": [r.as_dict() for r in runs],
    }
