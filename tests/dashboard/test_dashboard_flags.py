"""The Flags page in Debian's chromium, through the real server, on a ruleset of its own.

No events are needed: a ruleset is applied through the control-plane API (a killed flag, a
flag targeted at a saved segment and by app version, a percentage rollout disabled in dev, and
a flag an experiment serves once it is started through the API too). The page shows each
flag's state, its rules in plain words in order, what each serves (the rollout's share, the
experiment's split linked to its results), the ruleset's version and who changed it, and the
saved segments; the environment picker and the filter change the view and the URL; an empty
control plane and an unknown environment say so.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from browser_support import Watched, api, watched_tab
from tallystick.collect.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RULESET: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "segments": {
        "staff": {"attribute": "email", "op": "regex", "value": "@example\\.org$"},
        "mobile": {"attribute": "platform", "op": "in", "value": ["ios", "android"]},
    },
    "flags": {
        "legacy-export": {
            "type": "boolean",
            "default": False,
            "description": "The old CSV export, switched off after the incident",
            "killed": True,
            "environments": {"prod": {"rules": [{"id": "everyone", "value": True}]}},
        },
        "new-signin": {
            "type": "boolean",
            "default": False,
            "description": "The one-step sign-in dialog",
            "environments": {
                "dev": {"rules": [{"id": "everyone", "value": True}]},
                "prod": {
                    "rules": [
                        {"id": "staff", "condition": {"segment": "staff"}, "value": True},
                        {
                            "id": "old-apps",
                            "condition": {
                                "and": [
                                    {"segment": "mobile"},
                                    {
                                        "attribute": "app_version",
                                        "op": "semver_lt",
                                        "value": "2.3.0",
                                    },
                                ]
                            },
                            "value": False,
                        },
                        {"id": "ramp", "value": True, "rollout": {"coverage": 0.25}},
                        {"id": "beta", "enabled": False, "value": True},
                    ]
                },
            },
        },
        "gpu-picker": {
            "type": "boolean",
            "default": False,
            "description": "The GPU picker in the notebook launcher",
            "environments": {
                "dev": {"enabled": False, "rules": [{"id": "all", "value": True}]},
                "prod": {"rules": [{"id": "ramp", "value": True, "rollout": {"coverage": 0.1}}]},
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "a",
            "description": "The sign-in dialog: b pre-fills the e-mail",
            "environments": {"dev": {"rules": [{"id": "preview", "value": "b"}]}},
        },
    },
}

EXPERIMENT: dict[str, Any] = {
    "key": "signin-dialog",
    "name": "Sign-in dialog: e-mail pre-filled",
    "hypothesis": "Pre-filling the e-mail gets more people through the sign-in dialog",
    "owner": "ux-lead@research-portal.eu",
    "flag": "signin-dialog",
    "environment": "prod",
    "unit": "user.id",
    "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
    "weights": [0.5, 0.5],
    "coverage": 0.8,
    "targeting": {"not": {"segment": "staff"}},
    "metrics": {"primary": ["signin_completed"]},
}


def _send(base: str, method: str, path: str, body: object) -> Any:
    """A call to the server's API from loopback (which needs no admin key)."""
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data: Path = tmp_path_factory.mktemp("flags") / "data"
    data.mkdir()
    with ServerProcess(data) as running:
        _send(running.url, "PUT", "/v1/admin/flags", RULESET)
        _send(running.url, "PUT", "/v1/admin/experiments/signin-dialog", EXPERIMENT)
        _send(running.url, "POST", "/v1/admin/experiments/signin-dialog/start", {})
        yield running


@pytest.fixture
def tab(profile: BrowserContext, server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, server.url)


def _rules(tab: Watched, flag: str) -> list[tuple[str, str]]:
    items = tab.page.locator(f".flag[data-flag='{flag}'] ol.rules > li")
    return [
        (items.nth(i).get_attribute("data-rule") or "", items.nth(i).inner_text())
        for i in range(items.count())
    ]


def _state(tab: Watched, flag: str) -> tuple[str | None, str]:
    card = tab.page.locator(f".flag[data-flag='{flag}']")
    return card.get_attribute("data-state"), card.locator(".flag-state").inner_text()


def test_each_flag_shows_its_state_rules_and_what_they_serve(tab: Watched) -> None:
    page = tab.open("/flags")
    tab.assert_clean()
    assert page.input_value("#environment") == "prod"  # the default environment
    overview = api(tab.base, "/v1/flags")
    assert page.locator(".flag").count() == 4
    # in key order
    shown = [page.locator(".flag").nth(i).get_attribute("data-flag") for i in range(4)]
    assert shown == ["gpu-picker", "legacy-export", "new-signin", "signin-dialog"]
    assert page.locator("#flags-count").get_attribute("data-value") == "4"
    assert "4 of 4 flags" in page.inner_text("#flags-count")
    assert "1 killed" in page.inner_text("#flags-count")

    # the kill switch: red, whatever its rules say
    assert _state(tab, "legacy-export") == ("killed", "killed: serves its default to everyone")
    killed = page.locator(".flag[data-flag='legacy-export'] .flag-state")
    assert killed.evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 24)"
    assert "The old CSV export" in page.inner_text(".flag[data-flag='legacy-export']")

    # targeting: a segment, a condition on two attributes, a rollout, a rule switched off
    assert _state(tab, "new-signin") == ("on", "on in prod")
    rules = _rules(tab, "new-signin")
    assert [rule for rule, _ in rules] == ["staff", "old-apps", "ramp", "beta"]
    assert "if segment staff → serves true" in rules[0][1]
    assert "if all of (segment mobile; app_version semver_lt 2.3.0) → serves false" in rules[1][1]
    assert "everyone → rollout 25 %: true" in rules[2][1]
    assert "skipped" in rules[3][1]
    beta = page.locator(".flag[data-flag='new-signin'] li[data-rule='beta']")
    assert "skipped" in (beta.get_attribute("class") or "")
    card = page.locator(".flag[data-flag='new-signin']")
    assert card.locator(".default").inner_text() == "false"
    assert "Otherwise: the default, false." in card.inner_text()

    # a rollout
    assert _state(tab, "gpu-picker") == ("on", "on in prod")
    assert "everyone → rollout 10 %: true" in _rules(tab, "gpu-picker")[0][1]

    # the experiment's rule, written by starting it, linked to its results
    [(rule, text)] = _rules(tab, "signin-dialog")
    assert rule == "experiment-signin-dialog"
    assert "if not segment staff → experiment signin-dialog: a 50 % / b 50 %, coverage 80 %" in text
    link = page.locator(".flag[data-flag='signin-dialog'] a.experiment-link")
    assert link.get_attribute("href") == "/experiments?key=signin-dialog"
    assert "running" in text

    # the ruleset's version, when and by whom
    [prod] = [e for e in overview["environments"] if e["environment"] == "prod"]
    version = page.locator("#flags-version")
    assert version.get_attribute("data-value") == str(prod["version"])
    assert f"version {prod['version']}" in version.inner_text()
    assert f"by {prod['updated_by']}" in version.inner_text()

    # the saved segments, with the flags that use them (through other segments too)
    segments = page.locator("#segments tbody tr")
    assert segments.count() == 2
    staff = page.locator("#segments tr[data-segment='staff']")
    assert staff.locator("[data-key='condition']").inner_text() == "email regex @example\\.org$"
    assert staff.locator("[data-key='used_by']").inner_text().split() == [
        "new-signin",
        "signin-dialog",
    ]
    tab.screenshot("flags")


def test_the_environment_picker_switches_the_view_and_the_url(tab: Watched) -> None:
    page = tab.open("/flags")
    overview = api(tab.base, "/v1/flags")
    options = page.locator("#environment option")
    assert [options.nth(i).get_attribute("value") for i in range(options.count())] == [
        "dev",
        "prod",
    ]
    page.select_option("#environment", "dev")
    page.wait_for_url("**/flags?environment=dev")
    tab.wait_ready()
    page.locator(".flag[data-flag='gpu-picker'][data-state='disabled']").wait_for()
    tab.assert_clean()
    assert _state(tab, "gpu-picker") == ("disabled", "disabled in dev")
    assert _state(tab, "legacy-export")[0] == "killed"  # everywhere
    assert _state(tab, "new-signin") == ("on", "on in dev")
    [(rule, text)] = _rules(tab, "new-signin")
    assert (rule, text.endswith("everyone → serves true")) == ("everyone", True)
    assert "everyone → serves b" in _rules(tab, "signin-dialog")[0][1]
    [dev] = [e for e in overview["environments"] if e["environment"] == "dev"]
    assert page.locator("#flags-version").get_attribute("data-value") == str(dev["version"])
    used = page.locator("#segments tr[data-segment='staff'] [data-key='used_by']").inner_text()
    assert used == "no flag"  # nothing in dev targets staff

    page.go_back()
    page.wait_for_url(f"{tab.base}/flags")
    tab.wait_ready()
    page.locator(".flag[data-flag='gpu-picker'][data-state='on']").wait_for()
    assert page.input_value("#environment") == "prod"


def test_the_filter_matches_keys_and_descriptions(tab: Watched) -> None:
    page = tab.open("/flags?q=SIGN")
    tab.assert_clean()
    assert page.input_value("#q") == "SIGN"
    flags = page.locator(".flag")
    assert [flags.nth(i).get_attribute("data-flag") for i in range(flags.count())] == [
        "new-signin",
        "signin-dialog",
    ]
    assert "2 of 4 flags match “sign”" in page.inner_text("#flags-count")

    page.fill("#q", "incident")  # a word of a description only
    page.press("#q", "Enter")
    page.wait_for_url("**/flags?environment=prod&q=incident")
    tab.wait_ready()
    page.locator(".flag[data-flag='legacy-export']").wait_for()
    assert page.locator(".flag").count() == 1

    page.fill("#q", "nothing-like-this")
    page.press("#q", "Enter")
    page.get_by_text("No flag matches “nothing-like-this”.").wait_for()
    assert page.locator(".flag").count() == 0
    tab.assert_clean()


def test_an_unknown_environment_says_so(tab: Watched) -> None:
    page = tab.open("/flags?environment=staging")
    tab.assert_clean()
    assert "No environment “staging”." in page.inner_text("#flags")
    assert "dev, prod" in page.inner_text("#flags")
    assert page.locator(".flag").count() == 0


def test_the_page_fits_a_phone_screen(tab: Watched) -> None:
    tab.page.set_viewport_size({"width": 390, "height": 844})
    page = tab.open("/flags")
    tab.assert_clean()
    wide = page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert wide is False


def test_no_flags_yet_says_how_to_add_them(
    profile: BrowserContext, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = tmp_path_factory.mktemp("no-flags") / "data"
    data.mkdir()
    running = ServerProcess(data).start()
    try:
        for tab in watched_tab(profile, running.url):
            page = tab.open("/flags")
            tab.assert_clean()
            text = page.inner_text("#flags")
            assert "No flags yet: `tally flags apply FILE`" in text
            assert page.inner_text("#flags-version") == ""
            assert "No saved segments." in page.inner_text("#segments")
            assert page.input_value("#environment") == "prod"
    finally:
        running.kill()  # it holds nothing worth a graceful stop
