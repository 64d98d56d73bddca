"""Every dashboard page on demo data, in Debian's chromium: it loads with no console errors and
no failed requests, its charts render, and a number it shows equals the HTTP API's answer."""

from __future__ import annotations

import pytest

from browser_support import Watched, api

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: page path, screenshot name, charts it must draw (at least)
PAGES = [
    ("/", "kpis", 2),
    ("/core-actions", "core-actions", 1),
    ("/funnel", "funnel", 1),
    ("/retention", "retention", 1),
    ("/explore", "explore", 1),
    ("/experiments?key=signin-dialog", "experiments", 4),
    ("/flags", "flags-demo", 0),
    ("/data-health", "data-health", 2),
    ("/catalog", "catalog", 0),
]


@pytest.mark.parametrize(("path", "name", "charts"), PAGES, ids=[p[1] for p in PAGES])
def test_page_loads_clean_and_draws_its_charts(
    dash: Watched, path: str, name: str, charts: int
) -> None:
    page = dash.open(path)
    dash.assert_clean()
    drawn = page.locator(".chart[data-rendered='true']")
    assert drawn.count() >= charts
    for i in range(drawn.count()):
        assert drawn.nth(i).locator(".main-svg").count() > 0
    assert page.locator("#as-of time").count() == 1, page.inner_text("#as-of")
    assert page.locator("nav [aria-current='page']").count() == 1
    dash.screenshot(name)


def test_kpi_value_is_the_api_value(dash: Watched) -> None:
    page = dash.open("/")
    dash.assert_clean()
    shown = page.locator(".kpi-value[data-metric='weekly_active_users']")
    period = shown.get_attribute("data-period")
    value = shown.get_attribute("data-value")
    rows = api(dash.base, "/v1/metrics/weekly_active_users", {**dash.dates(), "grain": "week"})
    row = next(r for r in rows["rows"] if r["period"] == period)
    assert value == str(row["active_users"])
    assert shown.inner_text().replace(",", "") == str(row["active_users"])


def test_core_action_table_is_the_api_rows(dash: Watched) -> None:
    page = dash.open("/core-actions")
    dash.assert_clean()
    assert dash.query()["metric"] == ["core_actions"]
    rows = api(dash.base, "/v1/metrics/core_actions", {**dash.dates(), "grain": "week"})["rows"]
    actions = sorted({r["action"] for r in rows})
    for action in actions:
        cells = page.locator(f"tbody td[data-key='{action}']")
        assert [cells.nth(i).get_attribute("data-value") for i in range(cells.count())] == [
            str(r["users"]) for r in rows if r["action"] == action
        ]
    first = next(r for r in rows if r["action"] == actions[0])
    assert f"({round(first['share'] * 100, 1):g}%)" in page.locator(
        f"tbody td[data-key='{actions[0]}']"
    ).first.inner_text().replace(".0%", "%")


def test_funnel_numbers_are_the_api_numbers(dash: Watched) -> None:
    page = dash.open("/funnel")
    dash.assert_clean()
    query = dash.query()
    assert query["metric"] == ["signin_funnel"]
    params = {
        **dash.dates(),
        "steps": query["step"],
        "window": query["window"],
        "unit": query["unit"],
        "where": query["where"],
    }
    rows = api(dash.base, "/v1/query/funnel", params)["rows"]
    users = page.locator("tbody td[data-key='users']")
    assert [users.nth(i).get_attribute("data-value") for i in range(users.count())] == [
        str(r["users"]) for r in rows
    ]
    overall = page.locator("p.big").get_attribute("data-value")
    assert overall == str(rows[-1]["conversion_from_start"])


def test_retention_cohort_sizes_are_the_api_sizes(dash: Watched) -> None:
    page = dash.open("/retention")
    dash.assert_clean()
    query = dash.query()
    params = {
        **dash.dates(),
        "grain": "week",
        "cohort_event": query["cohort_event"],
        "return_events": query["return_events"],
        "periods": query.get("periods", []),
    }
    rows = api(dash.base, "/v1/query/retention", params)["rows"]
    sizes = page.locator("tbody td[data-key='size']")
    assert [sizes.nth(i).get_attribute("data-value") for i in range(sizes.count())] == [
        str(r["size"]) for r in rows
    ]


def test_explore_counts_and_sql_are_the_api_answer(dash: Watched) -> None:
    page = dash.open("/explore?event=user.login&grain=week")
    dash.assert_clean()
    answer = api(
        dash.base,
        "/v1/query/count",
        {**dash.dates(), "event": "user.login", "grain": "week", "unit": "user.id"},
    )
    cells = page.locator("tbody td[data-key='events']")
    assert [cells.nth(i).get_attribute("data-value") for i in range(cells.count())] == [
        str(r["events"]) for r in answer["rows"]
    ]
    assert page.locator("details.sql code").text_content() == answer["sql"]


def test_data_health_totals_are_the_api_totals(dash: Watched) -> None:
    page = dash.open("/data-health")
    dash.assert_clean()
    health = api(dash.base, "/v1/health", dash.dates())
    received = sum(d["received"] for d in health["days"])
    assert received > 0
    assert page.locator("#tile-received dd").get_attribute("data-value") == str(received)
    bots = sum(d["bots"] for d in health["days"])
    assert health["bot_rate"] == bots / received
    assert "Bot rate" in page.inner_text("#tiles")


def test_catalog_lists_every_definition(dash: Watched) -> None:
    page = dash.open("/catalog")
    dash.assert_clean()
    metrics = api(dash.base, "/v1/catalog")["metrics"]
    assert page.locator("#catalog-count").get_attribute("data-value") == str(len(metrics))
    assert page.locator("#catalog tbody tr").count() == len(metrics)
    owner = metrics[0]["owner"]
    assert owner in page.inner_text("#catalog")


def test_flags_are_the_api_ruleset(dash: Watched) -> None:
    page = dash.open("/flags")
    dash.assert_clean()
    flags = api(dash.base, "/v1/flags")["ruleset"]["flags"]
    assert page.locator("#flags-count").get_attribute("data-value") == str(len(flags))
    cards = page.locator(".flag")
    assert sorted(cards.nth(i).get_attribute("data-flag") or "" for i in range(cards.count())) == (
        sorted(flags)
    )
    # the demo's experiment serves its flag in prod, linked to its results
    link = page.locator(".flag[data-flag='signin-dialog'] a.experiment-link")
    assert link.get_attribute("href") == "/experiments?key=signin-dialog"
