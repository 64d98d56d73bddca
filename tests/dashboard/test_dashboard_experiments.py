"""The Experiments page in Debian's chromium, through the real server, on experiments of its own.

A small lake is sent through the collector: one experiment with three variations (b converts
far better and shows more errors; c is like the control) split 50/25/25 as its weights say, and
one whose units split 2:1 although its weights say 50/50 (a sample ratio mismatch). The
experiments are defined and started through the control-plane API. The page lists them; one
experiment's page draws one forest-plot marker per metric and treatment, coloured by verdict,
with the means counted here in plain Python; the mismatch banner shows for the skewed split
only; the exposures chart has a line per variation; an unknown key says so.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from browser_support import Watched, api, watched_tab
from tallystick.collect.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CATALOG = """\
- name: checkout_completed
  title: Checkout completed
  description: Units that complete a checkout.
  type: count
  params: {event: checkout.completed}
- name: pages_viewed
  title: Pages viewed
  description: Pages a unit views.
  type: count
  params: {event: page.view}
- name: errors_shown
  title: Errors shown
  description: Error messages a unit sees.
  type: count
  params: {event: error.shown}
"""

BALANCED = "checkout-button"
SKEWED = "skewed-banner"
DRAFT = "pricing-page"
UNIT = "user.anonymous_id"


@dataclass
class Arm:
    """What was sent for one variation: its units, and per unit its metric values."""

    units: int = 0
    converted: int = 0
    pages: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    first_exposure_days: list[str] = field(default_factory=list)


def _definition(
    key: str, variations: list[str], weights: list[float], start: str
) -> dict[str, Any]:
    return {
        "key": key,
        "name": f"{key.replace('-', ' ').capitalize()} test",
        "hypothesis": f"Variation b of {key} makes more people complete a checkout",
        "owner": "growth@research-portal.eu",
        "teams": ["growth"],
        "unit": UNIT,
        "variations": [
            {"key": v, "name": "Control" if i == 0 else f"Variation {v}"}
            for i, v in enumerate(variations)
        ],
        "weights": weights,
        "start": start,
        "metrics": {
            "primary": [{"metric": "checkout_completed", "kind": "conversion"}],
            "secondary": ["pages_viewed"],
            "guardrails": [{"metric": "errors_shown", "inverse": True}],
        },
        "planned_sample_size": 2000,
    }


def _event(name: str, unit: str, at: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "name": name,
        "client_ts": at.isoformat().replace("+00:00", "Z"),
        "user": {"anonymous_id": unit},
        **extra,
    }


def _traffic(
    key: str,
    split: dict[str, int],
    now: dt.datetime,
    rng: random.Random,
    conversion: dict[str, float],
    error_rate: dict[str, float],
) -> tuple[list[dict[str, Any]], dict[str, Arm]]:
    """Each unit: one exposure on one of the last five days, then its page views, maybe a
    checkout and some errors, minutes later."""
    events: list[dict[str, Any]] = []
    arms = {variation: Arm() for variation in split}
    for variation, units in split.items():
        arm = arms[variation]
        for i in range(units):
            unit = f"{key}-{variation}-{i}"
            exposed = now - dt.timedelta(days=5) + dt.timedelta(minutes=rng.randrange(5 * 24 * 60))
            events.append(
                _event(
                    "experiment.exposure",
                    unit,
                    exposed,
                    experiments={key: variation},
                    data={"experiment": key, "variation": variation},
                )
            )
            later = exposed + dt.timedelta(minutes=2)
            pages = rng.randint(1, 4)
            events += [_event("page.view", unit, later) for _ in range(pages)]
            converted = rng.random() < conversion[variation]
            if converted:
                events.append(_event("checkout.completed", unit, later))
            errors = sum(rng.random() < error_rate[variation] for _ in range(3))
            events += [_event("error.shown", unit, later) for _ in range(errors)]
            arm.units += 1
            arm.converted += converted
            arm.pages.append(pages)
            arm.errors.append(errors)
            arm.first_exposure_days.append(exposed.date().isoformat())
    return events, arms


def _send(base: str, method: str, path: str, body: object = None) -> Any:
    """A call to the server's API from loopback (which needs no admin key)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@dataclass
class Lab:
    server: ServerProcess
    arms: dict[str, dict[str, Arm]]


def _results(base: str, key: str) -> dict[str, Any] | None:
    try:
        return _send(base, "GET", f"/v1/experiments/{key}/results")  # type: ignore[no-any-return]
    except urllib.error.HTTPError:
        return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    data: Path = tmp_path_factory.mktemp("experiments") / "data"
    (data / "config" / "metrics").mkdir(parents=True)
    (data / "config" / "metrics" / "shop.yaml").write_text(CATALOG)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = (now - dt.timedelta(days=6)).isoformat().replace("+00:00", "Z")
    rng = random.Random(8)
    balanced, balanced_arms = _traffic(
        BALANCED,
        {"a": 240, "b": 120, "c": 120},
        now,
        rng,
        conversion={"a": 0.2, "b": 0.55, "c": 0.2},
        error_rate={"a": 0.1, "b": 0.5, "c": 0.1},
    )
    skewed, skewed_arms = _traffic(
        SKEWED,
        {"a": 200, "b": 100},
        now,
        rng,
        conversion={"a": 0.3, "b": 0.3},
        error_rate={"a": 0.1, "b": 0.1},
    )
    events = balanced + skewed
    with ServerProcess(data) as running:
        base = running.url
        for i in range(0, len(events), 1000):
            _send(base, "POST", "/v1/events", events[i : i + 1000])
        experiments = [
            _definition(BALANCED, ["a", "b", "c"], [0.5, 0.25, 0.25], start),
            _definition(SKEWED, ["a", "b"], [0.5, 0.5], start),
            _definition(DRAFT, ["a", "b"], [0.5, 0.5], start),
        ]
        for definition in experiments:
            _send(base, "PUT", f"/v1/admin/experiments/{definition['key']}", definition)
        for key in (BALANCED, SKEWED):
            _send(base, "POST", f"/v1/admin/experiments/{key}/start", {})
        # until the lake holds every unit sent (the collector writes it in the background)
        deadline = time.monotonic() + 60
        wanted = {BALANCED: 480, SKEWED: 300}
        while wanted and time.monotonic() < deadline:
            for key, units in list(wanted.items()):
                results = _results(base, key)
                if results and sum(v["units"] for v in results["variations"]) == units:
                    del wanted[key]
            time.sleep(0.3)
        if wanted:
            raise TimeoutError(f"the readouts of {sorted(wanted)} did not count every unit sent")
        yield Lab(running, {BALANCED: balanced_arms, SKEWED: skewed_arms})


@pytest.fixture
def tab(profile: BrowserContext, lab: Lab) -> Iterator[Watched]:
    yield from watched_tab(profile, lab.server.url)


def test_the_list_shows_every_experiment_and_links_to_it(tab: Watched) -> None:
    page = tab.open("/experiments")
    tab.assert_clean()
    listed = api(tab.base, "/v1/experiments")
    experiments = listed["experiments"] if isinstance(listed, dict) else listed
    assert sorted(e["key"] for e in experiments) == sorted([BALANCED, SKEWED, DRAFT])
    rows = page.locator("#experiments tbody tr")
    assert rows.count() == 3
    assert page.locator("#experiments-count").get_attribute("data-value") == "3"
    for e in experiments:
        row = page.locator(f"#experiments tr[data-experiment='{e['key']}']")
        assert row.locator("[data-key='status']").inner_text() == e["status"]
        assert row.locator("[data-key='owner']").inner_text() == "growth@research-portal.eu"
        assert row.locator("[data-key='unit']").inner_text() == UNIT
        assert "checkout_completed" in row.locator("[data-key='primary']").inner_text()
    statuses = {e["key"]: e["status"] for e in experiments}
    assert statuses == {BALANCED: "running", SKEWED: "running", DRAFT: "draft"}
    tab.screenshot("experiments-list")

    with page.expect_navigation():
        page.locator(f"#experiments tr[data-experiment='{BALANCED}'] a").click()
    tab.wait_ready()
    assert tab.query() == {"key": [BALANCED]}
    assert page.input_value("#key") == BALANCED
    tab.assert_clean()


def test_an_experiment_shows_its_effects_as_a_forest_plot(tab: Watched, lab: Lab) -> None:
    page = tab.open(f"/experiments?key={BALANCED}")
    tab.assert_clean()
    results = api(tab.base, f"/v1/experiments/{BALANCED}/results")
    arms = lab.arms[BALANCED]

    head = page.locator("#experiment-head")
    assert "Variation b of checkout-button makes more people" in head.inner_text()
    assert head.locator(".badge").inner_text() == "running"
    for variation, arm in arms.items():
        cell = head.locator(f"tr[data-variation='{variation}'] [data-key='units']")
        assert cell.get_attribute("data-value") == str(arm.units)
    progress = page.locator("#experiment-progress")
    assert float(progress.get_attribute("data-value") or "nan") == pytest.approx(480 / 2000)
    assert "480 of 2,000 planned units exposed" in page.inner_text("#experiment-progress-label")

    # no mismatch: a 240/120/120 split is what 50/25/25 weights say
    assert not results["srm"]["flagged"]
    assert page.locator("#srm-warning").count() == 0

    # one marker (and one table row) per metric × treatment, in a card per role
    treatments = ["b", "c"]
    for role, metric in (
        ("primary", "checkout_completed"),
        ("secondary", "pages_viewed"),
        ("guardrail", "errors_shown"),
    ):
        card = page.locator(f".forest[data-role='{role}']")
        assert card.locator(".chart[data-rendered='true']").count() == 1
        assert card.locator(".scatterlayer .point").count() == len(treatments)
        assert card.locator(".errorbar").count() == len(treatments)
        rows = card.locator("tbody tr")
        assert rows.count() == len(treatments)
        for i, variation in enumerate(treatments):
            assert rows.nth(i).get_attribute("data-metric") == metric
            assert rows.nth(i).get_attribute("data-variation") == variation
    assert page.locator(".forest .scatterlayer .point").count() == 3 * len(treatments)

    # the means are what was sent, counted here
    def shown(metric: str, variation: str, key: str) -> float:
        cell = page.locator(
            f"tr[data-metric='{metric}'][data-variation='{variation}'] [data-key='{key}']"
        )
        return float(cell.get_attribute("data-value") or "nan")

    for variation in treatments:
        arm, control = arms[variation], arms["a"]
        assert shown("checkout_completed", variation, "mean") == pytest.approx(
            arm.converted / arm.units
        )
        assert shown("checkout_completed", variation, "control_mean") == pytest.approx(
            control.converted / control.units
        )
        assert shown("pages_viewed", variation, "mean") == pytest.approx(sum(arm.pages) / arm.units)
        assert shown("errors_shown", variation, "mean") == pytest.approx(
            sum(arm.errors) / arm.units
        )
        relative = (arm.converted / arm.units) / (control.converted / control.units) - 1
        assert shown("checkout_completed", variation, "effect") == pytest.approx(relative)

    # coloured by verdict: b converts better but shows more errors (a metric where lower is
    # better); c is like the control
    def verdict(metric: str, variation: str) -> str | None:
        row = page.locator(f"tr[data-metric='{metric}'][data-variation='{variation}']")
        return row.get_attribute("data-verdict")

    assert verdict("checkout_completed", "b") == "better"
    assert verdict("errors_shown", "b") == "worse"
    assert verdict("checkout_completed", "c") == "inconclusive"
    by_api = {
        (m["metric"], v["variation"]): v["verdict"]
        for m in results["metrics"]
        for v in m["variations"]
        if not v["control"]
    }
    for (metric, variation), expected in by_api.items():
        assert verdict(metric, variation) == expected
    colours = {"better": "rgb(26, 127, 55)", "worse": "rgb(180, 35, 24)"}
    for role, colour in (("primary", colours["better"]), ("guardrail", colours["worse"])):
        fills = page.locator(f".forest[data-role='{role}'] .scatterlayer .point")
        styles = [fills.nth(i).get_attribute("style") or "" for i in range(fills.count())]
        assert any(colour in s for s in styles), styles

    # exposures over time: one line per variation, ending at each variation's units
    exposures = page.locator(".exposures")
    assert exposures.locator(".chart[data-rendered='true']").count() == 1
    assert exposures.locator(".scatterlayer .trace").count() == 3
    last = exposures.locator("tbody tr").last
    for variation, arm in arms.items():
        total = last.locator(f"[data-key='{variation} total']").get_attribute("data-value")
        assert total == str(arm.units)
    days = sorted({day for arm in arms.values() for day in arm.first_exposure_days})
    shown_days = exposures.locator("tbody th[data-key='day']").all()
    assert [d.get_attribute("data-value") for d in shown_days] == days
    tab.screenshot("experiments-variations")


def test_a_skewed_split_shows_the_sample_ratio_warning(tab: Watched) -> None:
    page = tab.open(f"/experiments?key={SKEWED}")
    tab.assert_clean()
    results = api(tab.base, f"/v1/experiments/{SKEWED}/results")
    assert results["srm"]["flagged"]
    banner = page.locator("#srm-warning")
    assert banner.count() == 1
    assert banner.get_attribute("role") == "alert"
    text = banner.inner_text()
    assert "do not trust these results" in text
    observed = banner.locator("tbody [data-key='observed']")
    assert [observed.nth(i).get_attribute("data-value") for i in range(2)] == ["200", "100"]
    expected = banner.locator("tbody [data-key='expected']")
    assert [float(expected.nth(i).get_attribute("data-value") or "nan") for i in range(2)] == [
        150.0,
        150.0,
    ]
    assert float(banner.get_attribute("data-p-value") or "nan") < 0.001
    assert page.locator(".exposures .scatterlayer .trace").count() == 2
    tab.screenshot("experiments-srm")


def test_a_draft_experiment_has_nothing_to_show_yet_and_says_so(tab: Watched) -> None:
    page = tab.open(f"/experiments?key={DRAFT}")
    tab.assert_clean()
    assert page.locator("#experiment-head .badge").inner_text() == "draft"
    assert page.locator(".forest .scatterlayer .point").count() == 0
    assert "No effects to show yet." in page.inner_text(".forest[data-role='primary']")
    exposures = page.locator(".exposures").inner_text()
    assert "No units exposed yet." in exposures
    assert f"tally experiments start {DRAFT}" in exposures
    assert page.locator("#srm-warning").count() == 0


def test_an_unknown_experiment_says_so(tab: Watched) -> None:
    page = tab.open("/experiments?key=no-such-test")
    message = page.locator("#experiment-error")
    assert message.count() == 1
    assert "No experiment “no-such-test”." in message.inner_text()
    assert "Traceback" not in page.inner_text("main")
    # the list is there to choose from
    assert page.locator("#experiments tbody tr").count() == 3
    assert page.locator(".forest").count() == 0
    assert tab.failures == [f"GET {tab.base}/v1/experiments/no-such-test/results: 404"]
    assert [e for e in tab.errors if "404" not in e] == []


def test_choosing_an_experiment_changes_the_view_and_the_url(tab: Watched) -> None:
    page = tab.open("/experiments")
    page.select_option("#key", SKEWED)
    page.locator("#srm-warning").wait_for()
    tab.wait_ready()
    assert tab.query() == {"key": [SKEWED]}
    assert page.locator("#experiments-list").is_hidden()
    page.go_back()
    page.wait_for_url(f"{tab.base}/experiments")
    tab.wait_ready()
    page.locator("#experiments tbody tr").first.wait_for()
    assert page.locator("#experiment-head").count() == 0
    tab.assert_clean()


def test_an_experiment_fits_a_phone_screen(tab: Watched) -> None:
    tab.page.set_viewport_size({"width": 390, "height": 844})
    page = tab.open(f"/experiments?key={BALANCED}")
    tab.assert_clean()
    assert page.locator(".forest .chart[data-rendered='true']").count() == 3
    wide = page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert wide is False
