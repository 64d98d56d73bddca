"""Issue 8's acceptance, end to end: the sign-in dialog experiment through a real `tally serve`.

An admin applies the demo's ``signin-dialog`` experiment over HTTP and starts it (which writes
its rule into the flags ruleset). Three thousand browsers, simulated with the real SDK
(``Tracker(flags_environment="prod")``), each evaluate the experiment when the dialog is shown —
the SDK logs the exposure itself, once per browser — and track their session; variant b bounces
less. `tally experiments analyze signin-dialog --format json` then reports the bounce rate lower
for b with its interval, p-value and chance to win, and an SRM check that is not flagged;
``GET /v1/experiments/signin-dialog/results`` serves the same readout.

Independent answers: each browser's variation from the ``growthbook`` package's hash, and the
bounce rates per variation counted in plain Python from what the browsers did.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from growthbook.core import chooseVariation, gbhash, getBucketRanges

from support import http_call, same_json
from tallystick import Tracker
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.demo import catalog as demo_catalog
from tallystick.demo import experiment as demo_experiment
from tallystick.store.lake import Lake
from tallystick.store.reader import connect, count_events


def call(base: str, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    status, _, document = http_call(base, method, path, key, body)
    return status, document


pytestmark = pytest.mark.e2e

KEY = "signin-dialog"
BROWSERS = 3000
BOUNCE = {"a": 0.42, "b": 0.32}
"""Probability that a browser's session ends on its first page, by the variant it was shown."""
COMPLETE = {"a": 0.58, "b": 0.68}
"""Probability that the sign-in completes, by variant."""
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
HOST = "https://uni-heidelberg.research-portal.eu"


def growthbook_variation(anonymous_id: str) -> str:
    """The variation the growthbook package assigns: seed = the experiment's key, hash v2."""
    n = gbhash(KEY, anonymous_id, 2)
    assert n is not None
    return ("a", "b")[chooseVariation(n, getBucketRanges(2, 1.0, [0.5, 0.5]))]


def simulate(tracker: Tracker, rng: random.Random) -> tuple[dict[str, str], Counter[str], int]:
    """The browsers' visits: the variant each was shown, sessions and bounces per variant, and
    the number of events tracked (the exposures not included)."""
    shown: dict[str, str] = {}
    bounces: Counter[str] = Counter()
    tracked = 0

    def track(name: str, anon: str, session: str, **data: Any) -> None:
        nonlocal tracked
        tracker.track(
            name,
            anonymous_id=anon,
            session_id=session,
            data=data,
            user_agent=UA,
            page_url=f"{HOST}/",
            is_logged_in=False,
        )
        tracked += 1

    for i in range(BROWSERS):
        anon = f"a-{rng.getrandbits(80):020x}"
        session = f"s-{i:05d}"
        track("session.start", anon, session, entry="direct")
        track("page.view", anon, session, template="home", load_ms=300 + rng.randrange(400))
        # The dialog is shown: the app asks the SDK which one (the SDK logs the exposure).
        variant = tracker.variant(KEY, attributes={"anonymous_id": anon})
        assert variant in ("a", "b"), variant
        shown[anon] = variant
        if i % 5 == 0:  # shown again later in the visit: no second exposure
            assert tracker.flag(KEY, "a", attributes={"anonymous_id": anon}) == variant
        track("signin.open", anon, session, variant=variant, duration_ms=150 + rng.randrange(80))
        if rng.random() < COMPLETE[variant]:
            latency = round(380 * math.exp(0.45 * rng.gauss(0, 1)))
            track("signin.completed", anon, session, variant=variant, duration_ms=latency)
        bounced = rng.random() < BOUNCE[variant]
        pageviews = 1 if bounced else 2 + rng.randrange(4)
        for _ in range(pageviews - 1):
            track("page.view", anon, session, template="projects", load_ms=350)
        track("session.end", anon, session, duration_s=30 + rng.randrange(600),
              pageviews=pageviews, events=pageviews + 3)  # fmt: skip
        bounces[variant] += bounced
    return shown, bounces, tracked


def test_the_signin_dialog_experiment_end_to_end(tmp_path: Path) -> None:
    started = time.monotonic()
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data=data)
    demo_catalog.install(settings.catalog_dir)  # bounce_rate, signin_completed, signin_latency
    with ControlStore.for_settings(settings) as store:
        _, admin = create_key(store, "admin", "ux-lead", actor="test")
        _, write = create_key(store, "write", "portal-web", actor="test", app="research-portal")
        _, read = create_key(store, "read", "ux-dashboard", actor="test")

    with ServerProcess(data) as server:
        definition = demo_experiment.experiment_document()
        status, applied = call(server.url, "PUT", f"/v1/admin/experiments/{KEY}", admin, definition)
        assert status == 201, applied
        assert applied["experiment"]["experiment"]["status"] == "draft"
        status, running = call(server.url, "POST", f"/v1/admin/experiments/{KEY}/start", admin)
        assert status == 200, running
        assert running["experiment"]["experiment"]["status"] == "running"
        assert "prod" in running["flags_environments"]  # the rule is in the ruleset

        tracker = Tracker(
            server.url,
            write_key=write,
            app_id="research-portal",
            app_environment="production",
            queue_dir=False,
            batch_size=500,
            flush_interval=0.2,
            max_queue=BROWSERS * 10,  # every event of the run fits: none dropped
            flags_environment="prod",
            flags_poll_seconds=None,
            wait_for_flags=10.0,
        )
        try:
            assert tracker.flags_ruleset is not None, "the SDK did not get the ruleset"
            shown, bounces, tracked = simulate(tracker, random.Random(8))
            assert tracker.flush(timeout=60)
        finally:
            tracker.close()
        stats = tracker.stats
        assert (stats.sent, stats.rejected, stats.dropped) == (tracked + BROWSERS, 0, 0)

        # the loader writes the spool into the lake
        lake = Lake(data / "lake")
        deadline = time.monotonic() + 30
        while count_events(lake) < stats.sent and time.monotonic() < deadline:
            time.sleep(0.25)
        assert count_events(lake) == stats.sent

        # Exposures: one per browser, with the variation the browser was shown, which is the
        # growthbook package's assignment.
        rows = (
            connect(lake)
            .execute(
                "SELECT user_anonymous_id, data, experiments FROM events "
                "WHERE name = 'experiment.exposure'"
            )
            .fetchall()
        )
        assert len(rows) == BROWSERS
        exposed: dict[str, str] = {}
        for anon, payload, experiments in rows:
            exposure = json.loads(payload)
            assert anon not in exposed
            assert exposure["unit"] == anon
            assert exposure["hash_attribute"] == "anonymous_id"
            exposed[anon] = exposure["variation"]
            assert exposed[anon] == shown[anon] == growthbook_variation(anon)
            assert KEY in str(experiments)
        assert exposed == shown

        report = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tallystick",
                    "experiments",
                    "analyze",
                    KEY,
                    "--data",
                    str(data),
                    "--format",
                    "json",
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        )
        # the same readout over HTTP (the query API, with a read key)
        status, served = call(server.url, "GET", f"/v1/experiments/{KEY}/results", read)
        assert status == 200, served
        for part in ("variations", "srm", "metrics", "exposures"):
            assert same_json(served[part], report[part]), part

    per_variant = Counter(shown.values())
    assert report["experiment"]["key"] == KEY
    assert report["unit"] == "user.anonymous_id"
    assert {v["key"]: v["units"] for v in report["variations"]} == dict(per_variant)
    srm = report["srm"]
    assert srm["flagged"] is False
    assert srm["observed"] == dict(per_variant)
    assert srm["expected"] == {"a": BROWSERS / 2, "b": BROWSERS / 2}
    assert 0.001 < srm["p_value"] <= 1
    exposures_by_day = Counter[str]()
    for day in report["exposures"]:
        exposures_by_day.update({v: day[v] for v in ("a", "b")})
    assert dict(exposures_by_day) == dict(per_variant)

    metrics = {m["metric"]: m for m in report["metrics"]}
    assert [(m["metric"], m["role"]) for m in report["metrics"]] == [
        ("bounce_rate", "primary"),
        ("signin_completed", "secondary"),
        ("signin_latency", "guardrail"),
    ]
    bounce = metrics["bounce_rate"]
    assert (bounce["kind"], bounce["inverse"]) == ("ratio", True)
    control, treatment = bounce["variations"]
    assert (control["variation"], control["control"]) == ("a", True)
    assert treatment["variation"] == "b"
    # one session per browser: the bounce rate is the share of browsers that bounced
    for row in (control, treatment):
        v = row["variation"]
        assert row["n"] == per_variant[v]
        assert row["mean"] == pytest.approx(bounces[v] / per_variant[v], rel=1e-12)
    assert treatment["effect"] == pytest.approx(treatment["mean"] / control["mean"] - 1)
    assert treatment["effect"] < 0
    low, high = treatment["ci"]
    assert low < treatment["effect"] < high < 0
    assert 0 <= treatment["p_value"] < 0.001
    assert treatment["chance_to_win"] > 0.99
    assert treatment["verdict"] == "better"

    completed = metrics["signin_completed"]
    assert completed["kind"] == "conversion"
    assert completed["variations"][1]["effect"] > 0
    assert completed["variations"][1]["verdict"] == "better"
    latency = metrics["signin_latency"]
    assert latency["inverse"] is True
    assert latency["variations"][1]["verdict"] != "worse"
    assert time.monotonic() - started < 90
