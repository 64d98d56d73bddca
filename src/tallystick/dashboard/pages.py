"""The dashboard's pages: their addresses, titles and the view state each keeps in its URL.

Pure data and functions (no I/O), shared by the server (which renders each page's controls
from the query string, so that a shared or reloaded URL shows the same view) and the docs.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Page:
    """One page: where it is served, its navigation title and what it answers."""

    slug: str
    path: str
    title: str
    summary: str
    params: tuple[str, ...]
    """The query-string keys of its view state (all pages also keep the date range)."""


PAGES: Final[tuple[Page, ...]] = (
    Page(
        "kpis",
        "/",
        "KPIs",
        "The headline metrics of the catalog: current value, change and trend.",
        ("grain",),
    ),
    Page(
        "core-actions",
        "/core-actions",
        "Core actions",
        "For each core action, the users who did it and their share of active users.",
        ("metric", "grain", "measure"),
    ),
    Page(
        "funnel",
        "/funnel",
        "Funnel",
        "Conversion and drop-off between ordered steps, and the time they take.",
        ("metric", "step", "window", "unit", "where", "breakdown"),
    ),
    Page(
        "retention",
        "/retention",
        "Retention",
        "Cohorts by first event, and how many come back in each later period.",
        ("metric", "cohort_event", "return_events", "periods", "grain", "show"),
    ),
    Page(
        "explore",
        "/explore",
        "Explore",
        "The trend of any event or catalog metric, with filters, a breakdown and its SQL.",
        ("event", "metric", "unit", "grain", "where", "breakdown"),
    ),
    Page(
        "experiments",
        "/experiments",
        "Experiments",
        "A/B tests: for each metric the effect of every variation with its interval, whether "
        "the split of units can be trusted, and the units exposed over time.",
        ("key",),
    ),
    Page(
        "flags",
        "/flags",
        "Flags",
        "What is live: every feature flag of an environment with its state, its rules in order "
        "and what each serves, and the saved segments they target.",
        ("environment", "q"),
    ),
    Page(
        "data-health",
        "/data-health",
        "Data health",
        "Events received and refused per day and why, how fresh data is, messages lost and "
        "duplicated, clients' clock skew, and the alerts that fired.",
        (),
    ),
    Page(
        "catalog",
        "/catalog",
        "Catalog",
        "Every metric definition: what it measures, who owns it and where it is used.",
        ("q",),
    ),
    Page(
        "streams",
        "/streams",
        "Streams",
        "What is collected: streams with their sampling, expiry and volume, data models with "
        "their quality checks, and every field seen.",
        ("q",),
    ),
)
BY_PATH: Final[dict[str, Page]] = {p.path: p for p in PAGES}
BY_SLUG: Final[dict[str, Page]] = {p.slug: p for p in PAGES}
RANGE_PARAMS: Final = ("range", "from", "to")
#: the quick ranges of the date picker; ``custom`` uses ``from`` and ``to``
RANGES: Final = (
    ("4w", "Last 4 weeks"),
    ("12w", "Last 12 weeks"),
    ("26w", "Last 26 weeks"),
    ("52w", "Last 52 weeks"),
    ("all", "All data"),
    ("custom", "Custom dates"),
)
#: keys that may hold several values (``?step=a&step=b``)
REPEATED: Final = frozenset({"step", "where", "return_events"})


def view_state(page: Page, query_string: str) -> dict[str, list[str]]:
    """The page's view state from a query string: only its own keys, blanks dropped."""
    wanted = set(page.params) | set(RANGE_PARAMS)
    state: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(query_string, keep_blank_values=False):
        if key in wanted and value.strip():
            state.setdefault(key, []).append(value.strip())
    return {k: v if k in REPEATED else v[-1:] for k, v in state.items()}


def first(state: Mapping[str, Sequence[str]], key: str, default: str = "") -> str:
    values = state.get(key) or ()
    return values[0] if values else default
