"""What the demo sends besides the product's events, so the audit has something to find (pure).

* ``undeclared`` — ``debug.layout_shift``: a few events a day from a front-end developer's
  debugging code that shipped by mistake. No stream routes ``debug.*``, so they land in the
  unrouted stream and ``tally audit`` lists them as undeclared.
* ``invalid`` — workflow runs from an old batch job (``tallystick-python`` 0.9.1) whose ``data``
  keys have spaces in them: the collector refuses them, keeps them in the failed-events store,
  and the audit lists the batch job as an unreliable source.

Deterministic: the same arguments give the same events.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any, Final

from tallystick.demo.generator import APP_ID, ENVIRONMENT, JS_LIBRARY, PY_LIBRARY, SITE_CATALOG

UNDECLARED_EVENT: Final = "debug.layout_shift"
UNDECLARED_DAYS: Final = 14
"""The undeclared events are spread over (at most) the last this many days before ``end``."""
INVALID_EVENTS: Final = 6
_ELEMENTS: Final = ("#results-table", ".dataset-card", "#notebook-toolbar", "nav.sidebar")
_SITES: Final = tuple(s.slug for s in SITE_CATALOG[:3])


def _ts(day: dt.date, minute: int) -> str:
    moment = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(minutes=minute)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def undeclared(*, end: dt.date, days: int, seed: int = 7) -> list[dict[str, Any]]:
    """Two to five ``debug.layout_shift`` events a day on the days before ``end`` (at most
    ``UNDECLARED_DAYS``, and none before the window of ``days`` days ending with ``end``)."""
    rng = random.Random(f"undeclared-{seed}")
    out: list[dict[str, Any]] = []
    for back in range(min(UNDECLARED_DAYS, days - 1), 0, -1):
        day = end - dt.timedelta(days=back)
        for _ in range(rng.randint(2, 5)):
            site = rng.choice(_SITES)
            minute = rng.randrange(7 * 60, 20 * 60)
            out.append(
                {
                    "event_id": _uuid(rng),
                    "name": UNDECLARED_EVENT,
                    "client_ts": _ts(day, minute),
                    "app": {
                        "id": APP_ID,
                        "version": "4.2.1",
                        "environment": ENVIRONMENT,
                        "instance": site,
                    },
                    "client": {
                        "library": JS_LIBRARY,
                        "library_version": "1.5.0",
                        "platform": "web",
                    },
                    "user": {"anonymous_id": f"a-{rng.getrandbits(40):010x}"},
                    "session": {"id": f"s-{rng.getrandbits(48):012x}", "seq": 1},
                    "page": {"url": f"https://{site}.research-portal.eu/datasets"},
                    "data": {
                        "score": round(rng.uniform(0.05, 0.6), 3),
                        "element": rng.choice(_ELEMENTS),
                    },
                }
            )
    return sorted(out, key=lambda e: str(e["client_ts"]))


def invalid(*, end: dt.date, seed: int = 7) -> list[dict[str, Any]]:
    """``INVALID_EVENTS`` workflow runs the collector refuses (``data`` keys with spaces), sent
    by an old batch job the day before ``end``."""
    rng = random.Random(f"invalid-{seed}")
    day = end - dt.timedelta(days=1)
    return [
        {
            "event_id": _uuid(rng),
            "name": "workflow.run",
            "client_ts": _ts(day, 2 * 60 + 7 * i),
            "app": {"id": APP_ID, "version": "4.2.1", "environment": ENVIRONMENT},
            "client": {"library": PY_LIBRARY, "library_version": "0.9.1", "platform": "server"},
            "session": {"id": f"s-{rng.getrandbits(48):012x}", "seq": 1},
            "data": {
                "Workflow ID": f"wf-{rng.getrandbits(24):06x}",
                "Run Time (s)": round(rng.uniform(30, 900), 1),
                "status": "success",
            },
        }
        for i in range(INVALID_EVENTS)
    ]
