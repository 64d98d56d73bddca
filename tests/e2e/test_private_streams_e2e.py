"""Private streams through the real server (``tally serve`` on loopback) and the dashboard in
Debian's chromium: a read key not granted the private stream finds nothing of it in any read
endpoint or dashboard page — not its name, its events, its data keys, the metric and the model
that read it — while an event stored in a public stream too still counts, once; a read key
granted it and an admin key see it all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import make_event
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.definitions import parse_model, parse_stream
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore

pytestmark = pytest.mark.e2e

PRIVATE = "vault_ops"
#: everything that would give the private stream away
SECRETS = (PRIVATE, "vault.deal", "vault_amount", "vault_deals", "vault_model")
CHROMIUM = Path("/usr/bin/chromium")
LOGINS = 6
DEALS = 4
VIEWS = 5
CATALOG = """
- name: logins
  title: Sign-ins
  description: Sign-ins per week.
  type: count
  params: {event: user.login, unit: user.id}
  grain: week
  importance: kpi
- name: vault_deals
  title: Deals
  description: Deals closed per week.
  type: count
  params: {event: vault.deal, unit: user.id}
  grain: week
  importance: kpi
"""


@dataclass
class Keys:
    admin: str
    granted: str
    ungranted: str


def _events() -> list[dict[str, Any]]:
    """Sign-ins (stored in the public and the private stream), page views (public) and deals
    (private only), over the last few days."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(LOGINS + DEALS + VIEWS):
        data: dict[str, Any]
        if i < LOGINS:
            name, data = "user.login", {"method": "sso"}
        elif i < LOGINS + DEALS:
            name, data = "vault.deal", {"vault_amount": 1000 + i}
        else:
            name, data = "page.view", {"path": "/home"}
        ts = (now - dt.timedelta(days=1 + i % 3, hours=i)).isoformat()
        session = {"id": f"s-{i}", "seq": 1}
        out.append(
            make_event(name, client_ts=ts, user={"id": f"u-{i % 4}"}, session=session, data=data)
        )
    return out


def _get(base: str, path: str, key: str) -> tuple[int, str]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _json(base: str, path: str, key: str) -> Any:
    status, text = _get(base, path, key)
    assert status == 200, (path, status, text)
    return json.loads(text)


def _post(base: str, path: str, body: object) -> int:
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def _count(base: str, event: str, key: str) -> int:
    body = _json(base, f"/v1/query/count?event={event}&grain=month", key)
    return sum(int(r["events"]) for r in body["rows"])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Keys]]:
    data = tmp_path_factory.mktemp("private-e2e") / "data"
    settings = Settings(data=data)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "metrics.yaml").write_text(CATALOG)
    with ControlStore.for_settings(settings) as store:
        store.put_stream(parse_stream({"name": "web", "events": ["user.*", "page.*"]}), "test")
        store.put_stream(
            parse_stream({"name": PRIVATE, "events": ["user.login", "vault.*"], "private": True}),
            "test",
        )
        store.put_model(
            parse_model({"name": "vault_model", "stream": PRIVATE, "fields": ["user.id"]}),
            "test",
        )
        keys = Keys(
            admin=create_key(store, "admin", "ops", actor="test")[1],
            granted=create_key(store, "read", "finance", actor="test", streams=[PRIVATE])[1],
            ungranted=create_key(store, "read", "everyone", actor="test")[1],
        )
    with ServerProcess(data, extra_args=["--flush-interval-seconds", "0.2"]) as server:
        assert _post(server.url, "/v1/events", _events()) == 200
        deadline = time.monotonic() + 30
        while _count(server.url, "vault.deal", keys.admin) < DEALS or (
            _count(server.url, "page.view", keys.admin) < VIEWS
        ):
            assert time.monotonic() < deadline, "the events did not reach the lake"
            time.sleep(0.2)
        yield server, keys


READS = (
    "/v1/meta",
    "/v1/health",
    "/v1/catalog",
    "/v1/quality/loss",
    "/v1/quality/skew",
    "/v1/quality/alerts",
    "/v1/query/count?event=user.login&grain=week",
    "/v1/query/active?active=user.login,vault.deal&grain=week",
    "/v1/metrics/logins",
    "/v1/metrics/vault_deals",
    "/v1/catalog/streams",
    f"/v1/catalog/streams/{PRIVATE}",
    "/v1/catalog/models",
    "/v1/catalog/fields",
    "/v1/catalog/search?q=vault",
    "/v1/catalog/search?q=deal",
    "/v1/audit",
    "/v1/admin/streams",
    f"/v1/admin/streams/{PRIVATE}",
    "/v1/admin/models/vault_model",
    "/v1/admin/audit-log",
    "/v1/admin/config",
)


def _leaks(path: str, text: str) -> list[str]:
    """The secrets in an answer, but for those the request itself names."""
    return [s for s in SECRETS if s in text and s not in urllib.parse.unquote(path)]


def test_every_read_endpoint_hides_the_private_stream_from_an_ungranted_key(
    running: tuple[ServerProcess, Keys],
) -> None:
    server, keys = running
    for path in READS:
        status, text = _get(server.url, path, keys.ungranted)
        assert status < 500, (path, status, text)
        assert not _leaks(path, text), (path, _leaks(path, text), text[:2000])
    # not there by name either
    assert _get(server.url, "/v1/metrics/vault_deals", keys.ungranted)[0] == 404
    assert _get(server.url, "/v1/audit", keys.ungranted)[0] == 403
    # its events count for nothing; sign-ins, stored in the public stream too, count once
    assert _count(server.url, "vault.deal", keys.ungranted) == 0
    assert _count(server.url, "user.login", keys.ungranted) == LOGINS
    counted = _json(server.url, "/v1/query/count?event=vault.deal&grain=week", keys.ungranted)
    assert PRIVATE not in counted["sql"]
    assert "(private stream)" in counted["sql"]
    meta = _json(server.url, "/v1/meta", keys.ungranted)
    assert {e["name"] for e in meta["events"]} == {"user.login", "page.view"}
    assert "data.vault_amount" not in meta["data_keys"]
    health = _json(server.url, "/v1/health", keys.ungranted)
    assert sum(d["received"] for d in health["days"]) == LOGINS + VIEWS


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/metrics/{}", "vault_deals"),
        ("/v1/quality/alerts?stream={}", PRIVATE),
        ("/v1/query/count?event={}&grain=month", "vault.deal"),
    ],
)
def test_a_hidden_name_answers_as_one_that_does_not_exist(
    running: tuple[ServerProcess, Keys], path: str, name: str
) -> None:
    server, keys = running
    hidden = _get(server.url, path.format(name), keys.ungranted)
    missing = _get(server.url, path.format("vault_nothing"), keys.ungranted)
    assert hidden[0] == missing[0]
    assert hidden[1].replace(name, "vault_nothing") == missing[1]


@pytest.mark.parametrize("who", ["granted", "admin"])
def test_a_granted_key_and_an_admin_key_see_the_private_stream(
    running: tuple[ServerProcess, Keys], who: str
) -> None:
    server, keys = running
    key = getattr(keys, who)
    assert _count(server.url, "vault.deal", key) == DEALS
    assert _count(server.url, "user.login", key) == LOGINS  # still once, in two streams
    meta = _json(server.url, "/v1/meta", key)
    assert "vault.deal" in {e["name"] for e in meta["events"]}
    assert "data.vault_amount" in meta["data_keys"]
    health = _json(server.url, "/v1/health", key)
    assert sum(d["received"] for d in health["days"]) == LOGINS + VIEWS + DEALS
    catalog = _json(server.url, "/v1/catalog", key)
    assert "vault_deals" in {m["name"] for m in catalog["metrics"]}
    deals = _json(server.url, "/v1/metrics/vault_deals", key)
    assert sum(r["events"] for r in deals["rows"]) == DEALS
    streams = _json(server.url, "/v1/catalog/streams", key)
    assert PRIVATE in {s["name"] for s in streams["streams"]}
    models = _json(server.url, "/v1/catalog/models", key)
    assert "vault_model" in {m["name"] for m in models["models"]}
    fields = _json(server.url, "/v1/catalog/fields", key)
    assert "data.vault_amount" in {f["name"] for f in fields["fields"]}


# -- the dashboard -------------------------------------------------------------------------------

PAGES = ("/", "/explore", "/catalog", "/streams", "/data-health")


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium with a profile of its own, which keeps plotly.js compiled between
    pages (see tests/dashboard/conftest.py); each test signs in with its key."""
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed: `make test` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def _signed_in(profile: Any, base: str, key: str) -> Any:
    """A new tab signed in with ``key`` (its session cookie replaces any earlier one)."""
    page = profile.new_page()
    page.goto(base + "/signin")
    page.fill("#key-input", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(base + "/")
    return page


def _shown(page: Any, base: str, path: str) -> str:
    """The page's DOM once its script has drawn everything."""
    page.goto(base + path)
    page.locator("body[data-state='ready'], body[data-state='error']").wait_for(
        state="attached", timeout=30_000
    )
    assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#status")
    return str(page.content())


def _events_offered(page: Any) -> list[str]:
    """The event names of Explore's picker (each shown with its count)."""
    return [o.split(" (")[0] for o in page.locator("#event option").all_inner_texts()]


@pytest.mark.browser
def test_the_dashboard_shows_nothing_of_the_private_stream_to_an_ungranted_key(
    running: tuple[ServerProcess, Keys], profile: Any
) -> None:
    server, keys = running
    page = _signed_in(profile, server.url, keys.ungranted)
    try:
        for path in PAGES:
            html = _shown(page, server.url, path)
            assert not _leaks(path, html), (path, _leaks(path, html))
        # a URL naming the private metric shows no numbers of it
        html = _shown(page, server.url, "/explore?metric=vault_deals")
        assert "Deals closed" not in html
        # the event picker offers the public events only
        options = _events_offered(page)
        assert "user.login" in options
        assert "vault.deal" not in options
    finally:
        page.close()


@pytest.mark.browser
def test_the_dashboard_shows_the_private_stream_to_a_granted_key(
    running: tuple[ServerProcess, Keys], profile: Any
) -> None:
    server, keys = running
    page = _signed_in(profile, server.url, keys.granted)
    try:
        assert PRIVATE in _shown(page, server.url, "/streams")
        _shown(page, server.url, "/explore")
        assert "vault.deal" in _events_offered(page)
        assert "vault_deals" in _shown(page, server.url, "/catalog")
    finally:
        page.close()
