"""Browser tests: Debian's chromium, driven by Playwright, against `tally serve` on loopback.

One demo data set (a copy of the session's ``demo_build``), one server and one browser for the
whole session; a fresh page per test that records console errors and failed requests.
Screenshots land in build/screenshots/.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from browser_support import Watched, api, watched_tab
from demo_build import DemoBuild
from tallystick.collect.server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def demo_data(demo_build: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_build.copy(tmp_path_factory.mktemp("dashboard") / "data").data


#: events the collector refuses, so that Data health has failures to show
BAD_EVENTS = [
    {"name": "user.login", "event_id": "not-a-uuid", "client_ts": "2026-11-01T00:00:00Z"},
    {"event_id": "7f1f0a8e-9d0a-4c38-9a57-6d1f7d0c3c11", "client_ts": "2026-11-01T00:00:00Z"},
    {"name": "user.login", "event_id": "1b0c9c2e-6a55-4a8e-8a57-0a1a7c3c9d22", "client_ts": "soon"},
]


@pytest.fixture(scope="session")
def server(demo_data: Path) -> Iterator[ServerProcess]:
    with ServerProcess(demo_data) as running:
        send_refused(running.url)
        yield running


def send_refused(base: str) -> None:
    """POST events the collector refuses; wait until the lake holds their failure records."""
    body = json.dumps(BAD_EVENTS).encode()
    request = urllib.request.Request(
        base + "/v1/events", data=body, headers={"Content-Type": "application/json"}
    )
    status = 200
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != 400:
        raise AssertionError(f"the collector answered {status} to invalid events, not 400")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = api(base, "/v1/health")
        if sum(r["count"] for r in health["failed_by_reason"]) >= len(BAD_EVENTS):
            return
        time.sleep(0.2)
    raise TimeoutError("the refused events did not reach the lake")


@pytest.fixture(scope="session")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's chromium with a browser profile of its own for the session: like a user's
    browser, it keeps plotly.js and its compiled code between pages (an incognito context
    compiles the 4.8 MB script again on every page). Each test opens a page (a tab, with its
    own session storage) in it."""
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed: `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        yield context
        context.close()


@pytest.fixture
def dash(profile: BrowserContext, server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, server.url)
