"""The Streams page in Debian's chromium, through the real server: the streams, models and
fields it shows are the API's, a stream expiring within 30 days stands out, failed checks come
first with their message, the field search lives in the URL, an empty control plane says so in
sentences, and the audit report is one click away."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from browser_support import Watched, api, watched_tab
from tallystick.collect.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STREAM = "checkout_study"
MODEL = "checkout_orders"


def _send(base: str, method: str, path: str, body: object = None) -> Any:
    """A change through the control-plane API (from loopback, which needs no admin key)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture
def defined(server: ServerProcess) -> Iterator[str]:
    """On the demo server: a stream expiring in 10 days, read by a model with a passing and a
    failing check (it holds no events, so nothing is fresh); every model's checks run once.
    The stream and its model are removed afterwards."""
    base = server.url
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10, hours=1)).date().isoformat()
    stream = {
        "description": "Checkout steps while the new payment page is tried out.",
        "owner": "growth-team@research-portal.eu",
        "events": ["checkout.*"],
        "sample": {"unit": "session", "rate": 0.5},
        "expires": expires,
        "retention_days": 60,
    }
    _send(base, "PUT", f"/v1/admin/streams/{STREAM}", stream)
    model = {
        "stream": STREAM,
        "description": "One row per checkout step.",
        "fields": ["user.id", "page.url"],
        "checks": [
            {"type": "not_null", "field": "user_id"},
            {"type": "freshness", "max_age_hours": 24},
        ],
    }
    _send(base, "PUT", f"/v1/admin/models/{MODEL}", model)
    for name in [m["name"] for m in _send(base, "GET", "/v1/admin/models")["models"]]:
        _send(base, "POST", f"/v1/admin/models/{name}/check", {})
    yield base
    _send(base, "DELETE", f"/v1/admin/models/{MODEL}")
    _send(base, "DELETE", f"/v1/admin/streams/{STREAM}")


def test_streams_page_shows_what_the_api_answers(dash: Watched, defined: str) -> None:
    page = dash.open("/streams?q=personal")
    dash.assert_clean()
    streams = api(dash.base, "/v1/catalog/streams")["streams"]
    rows = page.locator("#streams tbody tr")
    assert rows.count() == len(streams)
    assert page.locator("#streams-count").get_attribute("data-value") == str(len(streams))
    for i, stream in enumerate(streams):
        row = rows.nth(i)
        assert row.get_attribute("data-stream") == stream["name"]
        assert row.locator("[data-key='status']").inner_text() == stream["status"]
        week = row.locator("[data-key='last_7_days']").get_attribute("data-value")
        assert week == str(stream["volume"]["last_7_days"])

    mine = page.locator(f"#streams tr[data-stream='{STREAM}']")
    assert "expiring" in (mine.get_attribute("class") or "")
    assert "Soon:" in mine.locator("[data-key='expires']").inner_text()
    days = next(s["expires_in_days"] for s in streams if s["name"] == STREAM)
    assert f"(in {days} days)" in mine.locator("[data-key='expires']").inner_text()
    assert mine.locator("[data-key='sample']").inner_text() == "50% of sessions"
    soon = [
        s for s in streams if s["expires_in_days"] is not None and 0 <= s["expires_in_days"] < 30
    ]
    assert page.locator("#streams tr.expiring").count() == len(soon)

    models = api(dash.base, "/v1/catalog/models")["models"]
    shown = page.locator("#models tbody tr")
    assert shown.count() == len(models)
    checked = page.locator("#models tbody tr", has_text=MODEL)
    assert "failing" in (checked.get_attribute("class") or "")
    results = checked.locator("ul.checks li")
    assert results.count() == 2
    assert results.first.inner_text().startswith("FAILED freshness")
    mine_api = next(m for m in models if m["name"] == MODEL)
    assert mine_api["results"][0]["message"] in results.first.inner_text()
    assert results.nth(1).inner_text().startswith("passed not_null(user_id)")

    fields = api(dash.base, "/v1/catalog/fields", {"q": "personal"})["fields"]
    names = page.locator("#fields tbody th[data-key='name']").all_inner_texts()
    assert names == [f["name"] for f in fields]
    assert fields
    assert all(f["personal"] for f in fields)
    dash.screenshot("streams")


def test_the_field_search_is_in_the_url(dash: Watched) -> None:
    page = dash.open("/streams")
    page.fill("#q", "duration")
    page.press("#q", "Enter")
    dash.wait_ready()
    page.locator("#fields-count[data-value]").wait_for()
    assert dash.query()["q"] == ["duration"]
    expected = api(dash.base, "/v1/catalog/fields", {"q": "duration"})["fields"]
    page.wait_for_function(
        "n => document.querySelectorAll('#fields tbody tr').length === n", arg=len(expected)
    )
    names = page.locator("#fields tbody th[data-key='name']").all_inner_texts()
    assert names == [f["name"] for f in expected]
    assert names
    assert all("duration" in n for n in names)
    page.reload()
    dash.wait_ready()
    assert page.input_value("#q") == "duration"
    dash.assert_clean()


KEY = "streams-read-key"


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with no events and no definitions, and a read key."""
    data = tmp_path_factory.mktemp("no-streams") / "data"
    data.mkdir()
    with ServerProcess(data, env={"TALLYSTICK_READ_KEY": KEY}) as running:
        yield running


@pytest.fixture
def empty(profile: BrowserContext, empty_server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, empty_server.url)


def test_an_empty_control_plane_says_so_and_the_report_opens_with_the_key(
    empty: Watched,
) -> None:
    page = empty.page
    page.context.clear_cookies()
    page.goto(empty.base + "/streams?q=nothing")
    page.wait_for_url("**/signin?next=*")
    page.fill("#key-input", KEY)
    page.keyboard.press("Enter")
    empty.wait_ready()
    assert empty.state() == "ready", page.inner_text("#status")
    text = page.inner_text("main")
    for sentence in ("No streams defined yet.", "No data models yet.", "No fields seen yet."):
        assert sentence in text
    # the audit report is one click away: the session cookie goes with the plain link
    with page.expect_navigation():
        page.click("#audit-link")
    assert page.url == empty.base + "/v1/audit?format=html"
    assert page.locator("h1").inner_text() == "Audit and gap report"
    assert empty.errors == [e for e in empty.errors if "401" in e]
    assert all(f.endswith(": 401") for f in empty.failures), empty.failures
