"""Empty and error states read as sentences (no stack traces), and a server with a read key
makes the dashboard ask for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from browser_support import Watched, build_demo, watched_tab
from tallystick.collect.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

KEY = "s3cret-read-key"

#: what each page says on a server with no events and no catalog
EMPTY = [
    ("/", "No KPIs in the catalog yet."),
    ("/core-actions", "No core-action metric in the catalog yet."),
    ("/funnel", "Choose at least two steps."),
    ("/retention", "Choose a cohort event and returning events."),
    ("/explore", "No events yet."),
    ("/experiments", "No experiments yet."),
    ("/flags", "No flags yet:"),
    ("/data-health", "Nothing received in this range."),
    ("/catalog", "No metric matches."),
]


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("empty") / "data"
    data.mkdir()
    with ServerProcess(data) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = build_demo(tmp_path_factory.mktemp("keyed") / "data", users=40, days=21)
    with ServerProcess(data, env={"TALLYSTICK_READ_KEY": KEY}) as running:
        yield running


@pytest.fixture
def empty(profile: BrowserContext, empty_server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, empty_server.url)


@pytest.fixture
def keyed(profile: BrowserContext, keyed_server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, keyed_server.url)


@pytest.mark.parametrize(("path", "says"), EMPTY, ids=[p for p, _ in EMPTY])
def test_empty_lake_pages_say_so(empty: Watched, path: str, says: str) -> None:
    page = empty.open(path)
    empty.assert_clean()
    assert says in page.inner_text("main")
    assert page.inner_text("#as-of") == "No events received yet"
    if path == "/":
        empty.screenshot("empty-kpis")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        (
            "/funnel?step=signin.open&step=signin.completed&window=soon",
            "This view cannot be shown: cannot read window 'soon'",
        ),
        (
            "/explore?event=user.login&where=nosuch.field%3D1",
            "This view cannot be shown:",
        ),
        (
            "/?range=custom&from=2026-11-10&to=2026-11-01",
            "The dates are the wrong way round:",
        ),
    ],
)
def test_bad_views_explain_themselves(dash: Watched, path: str, says: str) -> None:
    page = dash.open(path)
    text = page.inner_text("main")
    assert says in text
    assert "Traceback" not in text
    assert "Error:" not in text
    assert dash.page.locator(".message.error").count() >= 1
    assert [e for e in dash.errors if "status of 400" not in e] == []


def test_read_key_is_asked_for_and_then_used(keyed: Watched) -> None:
    page = keyed.page
    page.context.clear_cookies()
    page.goto(keyed.base + "/")
    page.wait_for_url("**/signin?next=%2F")
    assert "read key" in page.inner_text("main")
    keyed.screenshot("read-key")

    page.fill("#key-input", "wrong")
    page.keyboard.press("Enter")
    page.get_by_text("That key was not accepted").wait_for()

    page.fill("#key-input", KEY)
    page.keyboard.press("Enter")
    keyed.wait_ready()
    assert page.locator(".chart[data-rendered='true']").count() >= 2
    assert page.locator(".kpi-value[data-metric='weekly_active_users']").get_attribute("data-value")
    # The session cookie is kept: another page needs no second sign-in.
    page.goto(keyed.base + "/funnel")
    keyed.wait_ready()
    assert "/signin" not in page.url
    assert page.locator("#funnel-chart[data-rendered='true']").count() == 1


def test_pages_need_a_session_and_assets_need_nothing(keyed_server: ServerProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(keyed_server.url + "/", timeout=10) as response:
        assert response.url == keyed_server.url + "/signin?next=%2F"  # redirected
    for path in ("/static/dashboard.js", "/favicon.ico", "/signin"):
        with urllib.request.urlopen(keyed_server.url + path, timeout=10) as response:
            assert response.status == 200
