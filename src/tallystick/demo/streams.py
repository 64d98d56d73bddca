"""The demo product's control-plane configuration: its streams and data models (pure).

``tally demo`` applies it before sending events. It shows each thing a stream can do, and it
leaves the audit (``tally audit``) something to find in every section:

* ``product`` routes every product event and keeps it 395 days (more than 90: "data kept
  beyond 90 days", read by most metrics and both models);
* ``page_performance`` keeps the page views of 10 % of sessions (sampled by session);
* ``kpi_minimal`` keeps the core actions with only the app and the user id (a ``keep`` list);
* ``signin_experiment`` keeps the sign-in dialog's events and the A/B test's exposures, drops
  the uptime monitor's visits (a curation rule) and expires two weeks from today, with the A/B
  test ("streams expiring within 30 days");
* ``session_study`` collects session starts that no metric or model reads yet ("streams no
  metric or model reads").

No stream routes ``debug.*``: the demo's ``debug.layout_shift`` events land in the unrouted
stream ("undeclared events").
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from tallystick.control.definitions import Configuration, parse_configuration
from tallystick.demo.generator import CORE_ACTIONS, USER_SIGNUP

EXPIRES_IN_DAYS: Final = 14
"""The sign-in experiment's stream expires this many days after the demo is built."""
PRODUCT_EVENTS: Final = (
    "session.*",
    "page.*",
    "user.*",
    "signin.*",
    "project.*",
    "dataset.*",
    "notebook.*",
    "workflow.*",
    "search.*",
    "error.*",
    "experiment.*",
)
"""Every event family of the demo product (``debug.*`` is left undeclared on purpose)."""


def definitions(today: dt.date) -> dict[str, Any]:
    """The configuration as plain data (what ``tally config export`` would print)."""
    expires = today + dt.timedelta(days=EXPIRES_IN_DAYS)
    return {
        "version": 1,
        "streams": [
            {
                "name": "product",
                "description": "Every product event of the research portal, kept 13 months "
                "for year-on-year comparisons.",
                "owner": "data-platform@research-portal.eu",
                "events": list(PRODUCT_EVENTS),
                "retention_days": 395,
            },
            {
                "name": "page_performance",
                "description": "Page views of one session in ten: load-time percentiles at a "
                "tenth of the volume.",
                "owner": "frontend@research-portal.eu",
                "events": ["page.view"],
                "sample": {"unit": "session", "rate": 0.1},
                "retention_days": 30,
            },
            {
                "name": "kpi_minimal",
                "description": "Sign-ups and core actions with only the app and the user id: "
                "what the KPIs need and nothing more.",
                "owner": "head-of-product@research-portal.eu",
                "events": [USER_SIGNUP, *CORE_ACTIONS],
                "keep": ["app", "user.id"],
                "retention_days": 730,
            },
            {
                "name": "signin_experiment",
                "description": "The sign-in dialog and its A/B test's exposures while the test "
                "runs, without the uptime monitor's visits.",
                "owner": "ux-lead@research-portal.eu",
                "events": ["signin.*", "experiment.*"],
                "curation": [{"field": "data.trigger", "op": "equals", "value": "monitor"}],
                "expires": expires.isoformat(),
                "retention_days": 90,
            },
            {
                "name": "session_study",
                "description": "Session starts (how people arrive: data.entry) for an "
                "entry-point study that has not started yet.",
                "owner": "research-analytics@research-portal.eu",
                "events": ["session.start"],
                "retention_days": 60,
            },
        ],
        "models": [
            {
                "name": "product_events",
                "stream": "product",
                "description": "One row per product event: what, when, where and who.",
                "owner": "data-platform@research-portal.eu",
                "materialize": "view",
                "fields": [
                    "event_id",
                    "name",
                    "client_ts",
                    {"field": "app.instance", "as": "site"},
                    "user.id",
                    "session.id",
                ],
                "checks": [
                    {"type": "not_null", "field": "event_id"},
                    {"type": "unique", "field": "event_id"},
                    {"type": "freshness", "field": "client_ts", "max_age_hours": 48},
                    {"type": "row_count_change", "max_change": 0.5},
                ],
            },
            {
                "name": "workflow_runs",
                "stream": "product",
                "description": "Workflow runs with their outcome and duration.",
                "owner": "compute-team@research-portal.eu",
                "materialize": "view",
                "fields": [
                    "event_id",
                    "name",
                    "client_ts",
                    {"field": "app.instance", "as": "site"},
                    {"field": "data.workflow_id", "as": "workflow_id"},
                    {"field": "data.status", "as": "status"},
                    {"field": "data.duration_ms", "as": "duration_ms"},
                ],
                "checks": [
                    {"type": "accepted_values", "field": "status", "values": ["success", "failed"]},
                    {"type": "range", "field": "duration_ms", "min": 0},
                ],
            },
        ],
    }


def configuration(today: dt.date) -> Configuration:
    """The demo's streams and models, validated like any configuration file."""
    return parse_configuration(definitions(today))


def is_demo(config: Configuration) -> bool:
    """Whether ``config`` holds nothing but (some of) the demo's own streams and models, so
    that applying the demo's configuration overwrites no one's work."""
    demo = definitions(dt.date(2000, 1, 1))
    streams = {s["name"] for s in demo["streams"]}
    models = {m["name"] for m in demo["models"]}
    return {s.name for s in config.streams} <= streams and {m.name for m in config.models} <= models
