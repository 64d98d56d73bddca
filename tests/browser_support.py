"""Helpers of the browser tests: a watched page, and the HTTP API as a script sees it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request

SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"


@dataclass
class Watched:
    """A browser page that keeps the console errors and failed requests it sees."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def open(self, path: str) -> Page:
        self.page.goto(self.base + path)
        self.wait_ready()
        return self.page

    def wait_ready(self) -> None:
        """Until the page's script says it is done (selectors, not eval: the CSP forbids it)."""
        self.page.locator("body[data-state='ready'], body[data-state='error']").wait_for(
            state="attached", timeout=30_000
        )

    def state(self) -> str | None:
        state = self.page.evaluate("document.body.dataset.state")
        return None if state is None else str(state)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.failures == [], self.failures
        assert self.state() == "ready", self.page.inner_text("#status")

    def query(self) -> dict[str, list[str]]:
        """The page URL's query string."""
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.page.url).query)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def dates(self) -> dict[str, str]:
        """The dates the page asked for (the inputs show them for quick ranges too)."""
        return {
            "from": self.page.input_value("#from"),
            "to": self.page.input_value("#to"),
        }


def watched_tab(profile: BrowserContext, base: str) -> Iterator[Watched]:
    """A new tab of ``profile`` on the server at ``base``, watched, closed afterwards (for a
    fixture: ``yield from``)."""
    page = profile.new_page()
    try:
        yield watch(page, base)
    finally:
        page.close()


def watch(page: Page, base: str) -> Watched:
    watched = Watched(page, base)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    def on_failed(request: Request) -> None:
        watched.failures.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watched.failures.append(f"{response.request.method} {response.url}: {response.status}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    return watched


def api(base: str, path: str, params: Any = ()) -> Any:
    """GET a JSON API path the way a script would, outside the browser."""
    query = urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(f"{base}{path}?{query}", timeout=60) as response:
        return json.loads(response.read())


def build_demo(data: Path, *, users: int = 300, days: int = 120) -> Path:
    """The demo product's data and catalog, sent through the real collector."""
    size = ["--users", str(users), "--days", str(days), "--seed", "7"]
    subprocess.run(
        [sys.executable, "-m", "tallystick", "demo", "--no-serve", "--data", str(data), *size],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data
