"""Privacy at ingestion: what cleaning events costs the collector, in-process.

Times ``check_array`` (validation) plus ``Collector._frames`` (routing, cleaning, the spool
frames) for requests of 100 events, best of several rounds, with ``pii_action=off`` (no
cleaning at all) against the default ``redact``, ``hash``, and pseudonymous user ids; for
events with nothing personal (``bench/ingest.py``'s events) and for events with an email in
``data`` and in the page URL. No disk, no network: the CPU the event loop spends.

Run: ``.venv/bin/python bench/privacy.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tallystick.collect.app import Collector
from tallystick.collect.validate import Checked, check_array
from tallystick.config import Settings
from tallystick.control.controls import Controls
from tallystick.store.spool import RequestContext

ROUNDS = 15
REQUESTS = 20


def clean_event(i: int) -> dict[str, Any]:
    """``bench/ingest.py``'s event: nothing personal in it."""
    return {
        "event_id": str(uuid.uuid4()),
        "name": ["project.commit", "dataset.create", "search.query", "page.view"][i % 4],
        "client_ts": dt.datetime.now(dt.UTC).isoformat(),
        "app": {"id": "research-portal", "version": "4.2.1", "instance": f"site-{i % 12}"},
        "client": {"library": "tallystick-js", "library_version": "0.1.0", "platform": "web"},
        "user": {"id": f"u-{i % 5000:05d}", "is_logged_in": True},
        "session": {"id": f"s-{i // 20}", "seq": i % 20 + 1},
        "page": {"pageview_id": f"pv-{i // 5}", "url": "https://portal.example.org/projects"},
        "locale": "de-DE",
        "data": {"project_id": f"p-{i % 300}", "files": i % 17, "duration_ms": 12.5 + i % 90},
    }


def personal_event(i: int) -> dict[str, Any]:
    out = clean_event(i)
    who = f"person.{i}@mail.example.com"
    out["data"]["contact"] = who
    out["page"]["url"] += f"?email={quote(who)}"
    return out


def bodies(make: Any) -> list[bytes]:
    return [json.dumps([make(r * 100 + j) for j in range(100)]).encode() for r in range(REQUESTS)]


def frames_cost(app: Collector, payloads: list[bytes]) -> float:
    """Seconds to validate and frame ``payloads`` once."""
    controls = Controls.build(1, [])
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    for body in payloads:
        checked = check_array(
            body, max_event_bytes=32768, max_events=1000, now=now, max_future_seconds=86400
        )
        assert isinstance(checked, Checked)
        app._frames(checked, 0, now, controls, RequestContext())
    return time.perf_counter() - started


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="tally-bench-privacy-"))
    variants = {
        "pii off": Settings(data=data, pii_action="off"),
        "redact (default)": Settings(data=data),
        "hash": Settings(data=data, pii_action="hash"),
        "redact + pseudonymous ids": Settings(
            data=data, pseudonymize_user_ids=True, pseudonym_key="bench"
        ),
    }
    apps = {name: Collector(settings) for name, settings in variants.items()}
    print("| events | cleaning | µs/event (validate + frames) | vs off |")
    print("| --- | --- | --- | --- |")
    for label, make in (
        ("nothing personal", clean_event),
        ("email in data and URL", personal_event),
    ):
        payloads = bodies(make)
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(ROUNDS):  # interleaved, so a busy moment hurts every variant alike
            for name, app in apps.items():
                best[name] = min(best[name], frames_cost(app, payloads))
        for name, seconds in best.items():
            cost = seconds / (len(payloads) * 100) * 1e6
            base = best["pii off"] / (len(payloads) * 100) * 1e6
            print(f"| {label} | {name} | {cost:.1f} | {cost / base:.2f}× |")


if __name__ == "__main__":
    main()
