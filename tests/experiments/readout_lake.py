"""A hand-built lake and catalog for experiment readouts (``test_readout``, the CLI and HTTP
tests): devices of the ``signin-dialog`` experiment exposed to a or b, b bouncing less."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from pathlib import Path
from typing import Any

from tallystick.experiments.definition import Experiment, parse_experiment
from tallystick.metrics.catalog import Catalog, parse_text

KEY = "signin-dialog"
START = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)

CATALOG_YAML = """\
- name: bounce_rate
  title: Bounce rate
  type: ratio
  direction: lower
  params:
    numerator: session.end
    denominator: session.end
    unit: event
    numerator_where: [data.pageviews=1]
- name: signin_completed
  title: Sign-ins completed
  type: count
  params: {event: signin.completed}
- name: signin_latency
  title: Sign-in latency
  type: percentile
  direction: lower
  params: {event: signin.completed, field: data.duration_ms, p: [50, 90]}
- name: pages
  title: Page views
  type: count
  params: {event: page.view, where: [data.kind!=bot-check]}
- name: signin_funnel
  title: Sign-in funnel
  type: funnel
  params: {steps: [signin.open, signin.completed]}
"""


def catalog() -> Catalog:
    metrics, problems = parse_text(CATALOG_YAML, "metrics/experiments.yaml")
    assert problems == []
    return Catalog(Path("metrics"), tuple(metrics))


def experiment_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "key": KEY,
        "name": "Sign-in dialog: e-mail pre-filled",
        "hypothesis": "Pre-filling the e-mail lowers the bounce rate",
        "owner": "ux-lead@research-portal.eu",
        "unit": "user.anonymous_id",
        "variations": [{"key": "a", "name": "Control"}, {"key": "b", "name": "Pre-filled"}],
        "status": "running",
        "start": "2026-03-10T00:00:00Z",
        "metrics": {
            "primary": ["bounce_rate"],
            "secondary": [{"metric": "signin_completed", "kind": "conversion"}, "pages"],
            "guardrails": ["signin_latency"],
        },
    }
    doc.update(changes)
    return doc


def experiment(**changes: Any) -> Experiment:
    return parse_experiment(experiment_doc(**changes))


def event(name: str, unit: str, at: dt.datetime, **more: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "user_anonymous_id": unit,
        "client_ts": at,
        **more,
    }


def exposure(unit: str, at: dt.datetime, variation: str) -> dict[str, Any]:
    return event("experiment.exposure", unit, at, experiments={KEY: variation})


def lake_rows(
    units: int = 400, seed: int = 3, share_a: float = 0.5, both: int = 3
) -> list[dict[str, Any]]:
    """Devices exposed to a or b (b bounces less, signs in a bit more and faster), with events
    before their exposure (ignored) and ``both`` devices exposed to a and b (left out)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for u in range(units):
        device = f"d{u}"
        v = "a" if u < units * share_a else "b"
        first = START + dt.timedelta(hours=rng.randrange(0, 24 * 5), seconds=rng.randrange(3600))
        rows.append(exposure(device, first, v))
        if u % 7 == 0:
            rows.append(exposure(device, first + dt.timedelta(hours=3), v))
        if u < both:
            rows.append(exposure(device, first + dt.timedelta(hours=1), "b" if v == "a" else "a"))
        before = first - dt.timedelta(hours=2)
        rows.append(event("session.end", device, before, data={"pageviews": 1}))
        for _ in range(rng.randint(1, 4)):
            at = first + dt.timedelta(minutes=rng.randrange(1, 60 * 24 * 3))
            bounced = rng.random() < (0.45 if v == "a" else 0.25)
            pages = 1 if bounced else rng.choice([2, 3, 5])
            rows.append(event("session.end", device, at, data={"pageviews": pages}))
        if rng.random() < (0.5 if v == "a" else 0.56):
            ms = rng.randint(800, 2400) if v == "a" else rng.randint(600, 2000)
            at = first + dt.timedelta(minutes=rng.randrange(1, 600))
            rows.append(event("signin.completed", device, at, data={"duration_ms": ms}))
        for _ in range(rng.randint(0, 6)):
            at = first + dt.timedelta(minutes=rng.randrange(1, 6000))
            kind = "bot-check" if rng.random() < 0.1 else "page"
            rows.append(event("page.view", device, at, data={"kind": kind}))
    return rows
