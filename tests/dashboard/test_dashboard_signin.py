"""Dashboard sign-in in a real browser: a page asks for a read key, the session cookie is
HttpOnly and SameSite=Strict, the page's API calls ride on it, sign-out ends it, and revoking
the key ends its session at once (the next view goes back to the sign-in page)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from browser_support import Watched, watched_tab
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, tuple[int, str]]]]:
    data = tmp_path_factory.mktemp("signin") / "data"
    data.mkdir()
    keys = {}
    with ControlStore.for_settings(Settings(data=data)) as store:
        for kind, name, app in (
            ("read", "analyst", None),
            ("read", "intern", None),
            ("write", "site", "shop"),
            ("admin", "ops", None),
        ):
            key, secret = create_key(store, kind, name, actor="test", app=app)
            keys[name] = (key.id, secret)
    with ServerProcess(data) as running:
        yield running, keys


@pytest.fixture
def tab(
    profile: BrowserContext, keyed_server: tuple[ServerProcess, dict[str, tuple[int, str]]]
) -> Iterator[Watched]:
    profile.clear_cookies()
    yield from watched_tab(profile, keyed_server[0].url)
    profile.clear_cookies()


def sign_in(tab: Watched, key: str) -> None:
    tab.page.fill("#key-input", key)
    tab.page.keyboard.press("Enter")


def test_sign_in_keeps_a_session_cookie_and_sign_out_ends_it(
    tab: Watched, keyed_server: tuple[ServerProcess, dict[str, tuple[int, str]]]
) -> None:
    _, keys = keyed_server
    page = tab.page
    page.goto(tab.base + "/explore?event=user.login")
    page.wait_for_url("**/signin?next=*")
    assert page.locator("h1").inner_text() == "Sign in"
    tab.screenshot("sign-in")

    sign_in(tab, keys["site"][1])  # a write key only sends events
    page.locator("#signin-error").wait_for()
    assert "write key only sends events" in page.inner_text("#signin-error")

    sign_in(tab, keys["analyst"][1])
    tab.wait_ready()
    assert page.url.startswith(tab.base + "/explore?")  # back where it was asked for
    assert tab.query()["event"] == ["user.login"]
    [cookie] = [c for c in page.context.cookies() if c["name"] == "tally_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["value"] not in (keys["analyst"][1],)
    # scripts cannot read it
    assert "tally_session" not in page.evaluate("document.cookie")
    # the page drew its data from the API, authenticated by the cookie alone
    assert [f for f in tab.failures if "/v1/" in f] == []

    page.click("#sign-out")
    page.wait_for_url("**/signin")
    assert [c for c in page.context.cookies() if c["name"] == "tally_session"] == []
    page.goto(tab.base + "/")
    page.wait_for_url("**/signin?next=%2F")


def test_an_admin_key_signs_in_too(
    tab: Watched, keyed_server: tuple[ServerProcess, dict[str, tuple[int, str]]]
) -> None:
    _, keys = keyed_server
    tab.page.goto(tab.base + "/catalog")
    tab.page.wait_for_url("**/signin?next=*")
    sign_in(tab, keys["ops"][1])
    tab.wait_ready()
    assert tab.page.url.startswith(tab.base + "/catalog")


def test_revoking_the_key_ends_its_session_at_once(
    tab: Watched, keyed_server: tuple[ServerProcess, dict[str, tuple[int, str]]]
) -> None:
    server, keys = keyed_server
    key_id, secret = keys["intern"]
    page = tab.page
    page.goto(tab.base + "/data-health")
    page.wait_for_url("**/signin?next=*")
    sign_in(tab, secret)
    tab.wait_ready()
    assert "/signin" not in page.url
    done = subprocess.run(
        [sys.executable, "-m", "tallystick", "keys", "revoke", str(key_id),
         "--data", str(server.data)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # the page's next API call is refused: the script sends the browser to sign in again
    page.click("button.apply")
    page.wait_for_url("**/signin?next=%2Fdata-health*")
    page.goto(tab.base + "/")
    page.wait_for_url("**/signin?next=%2F")
