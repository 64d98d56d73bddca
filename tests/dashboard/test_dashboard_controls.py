"""Controls change the chart and the URL; the URL alone brings the same view back (reload, back
button, a shared link); downloads hold the data and the chart; keyboard and narrow screens."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from browser_support import Watched, api

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def column(dash: Watched, key: str) -> list[str | None]:
    cells = dash.page.locator(f"tbody [data-key='{key}']")
    return [cells.nth(i).get_attribute("data-value") for i in range(cells.count())]


def changed(dash: Watched, fragment: str) -> None:
    """Wait until the URL holds ``fragment`` and the page has redrawn."""
    dash.page.wait_for_url(f"**{fragment}**")
    dash.wait_ready()


def test_kpi_period_switch_updates_chart_and_url_and_survives_reload(dash: Watched) -> None:
    page = dash.open("/")
    week_period = page.locator(".kpi-value[data-metric='weekly_active_users']").get_attribute(
        "data-period"
    )
    page.get_by_role("radio", name="Month", exact=True).check()
    changed(dash, "grain=month")
    dash.assert_clean()
    shown = page.locator(".kpi-value[data-metric='weekly_active_users']")
    period = shown.get_attribute("data-period")
    assert period is not None
    assert period != week_period
    assert period.endswith("-01")
    value = shown.get_attribute("data-value")
    rows = api(dash.base, "/v1/metrics/weekly_active_users", {**dash.dates(), "grain": "month"})
    assert value == str(next(r for r in rows["rows"] if r["period"] == period)["active_users"])

    page.reload()
    dash.wait_ready()
    assert page.get_by_role("radio", name="Month", exact=True).is_checked()
    assert shown.get_attribute("data-value") == value

    page.go_back()
    dash.wait_ready()
    assert "grain=month" not in page.url
    assert page.get_by_role("radio", name="Week", exact=True).is_checked()


def test_funnel_breakdown_and_steps_update_chart_and_url(dash: Watched) -> None:
    page = dash.open("/funnel")
    page.select_option("#breakdown", "data.variant")
    changed(dash, "breakdown=data.variant")
    dash.assert_clean()
    assert page.locator("#funnel-chart .trace.bars").count() == 2
    assert set(column(dash, "breakdown")) == {"a", "b"}
    shown = column(dash, "users")

    page.reload()
    dash.wait_ready()
    assert page.input_value("#breakdown") == "data.variant"
    assert column(dash, "users") == shown

    page.get_by_label("Remove step 4").click()
    dash.page.wait_for_url(lambda url: url.count("step=") == 3)
    dash.wait_ready()
    assert dash.query()["step"] == ["signin.open", "signin.email_entered", "signin.code_verified"]
    assert "metric" not in dash.query()
    assert len(column(dash, "users")) == 6  # three steps for each of two variants
    query = dash.query()
    rows = api(
        dash.base,
        "/v1/query/funnel",
        {
            **dash.dates(),
            "steps": query["step"],
            "window": query["window"],
            "unit": query["unit"],
            "where": query["where"],
            "breakdown": "data.variant",
        },
    )["rows"]
    assert column(dash, "users") == [str(r["users"]) for r in rows]


def test_core_actions_measure_switch(dash: Watched) -> None:
    page = dash.open("/core-actions")
    assert "% of active users" in page.inner_text("#core-chart-title")
    page.get_by_role("radio", name="Users", exact=True).check()
    changed(dash, "measure=users")
    dash.assert_clean()
    assert page.inner_text("#core-chart-title").endswith(": users")
    page.reload()
    dash.wait_ready()
    assert page.get_by_role("radio", name="Users", exact=True).is_checked()
    assert page.locator("#core-chart[data-rendered='true']").count() == 1


def test_retention_counts_are_the_api_counts(dash: Watched) -> None:
    page = dash.open("/retention")
    page.get_by_role("radio", name="Counts", exact=True).check()
    changed(dash, "show=counts")
    dash.assert_clean()
    query = dash.query()
    rows = api(
        dash.base,
        "/v1/query/retention",
        {
            **dash.dates(),
            "grain": "week",
            "cohort_event": query["cohort_event"],
            "return_events": query["return_events"],
            "periods": query.get("periods", []),
        },
    )["rows"]
    assert column(dash, "p1") == [
        None if r["retained"][1] is None else str(r["retained"][1]) for r in rows
    ]


def test_date_range_picker_drives_every_query(dash: Watched) -> None:
    page = dash.open("/explore?event=user.login")
    page.select_option("#range", "4w")
    changed(dash, "range=4w")
    today = dt.date.fromisoformat(api(dash.base, "/v1/meta")["today"])
    monday = today - dt.timedelta(days=today.weekday())
    assert dash.dates() == {
        "from": (monday - dt.timedelta(weeks=3)).isoformat(),
        "to": today.isoformat(),
    }
    assert len(column(dash, "events")) == 4

    page.fill("#from", "2026-10-05")
    page.fill("#to", "2026-10-18")
    page.get_by_role("button", name="Apply").click()
    changed(dash, "from=2026-10-05")
    dash.assert_clean()
    assert dash.query()["range"] == ["custom"]
    assert dash.query()["to"] == ["2026-10-18"]
    assert [r.get_attribute("data-value") for r in page.locator("tbody th").all()] == [
        "2026-10-05",
        "2026-10-12",
    ]
    page.get_by_role("radio", name="Day", exact=True).check()
    changed(dash, "grain=day")
    assert len(column(dash, "events")) == 14


def test_downloads_hold_the_data_and_the_chart(dash: Watched, tmp_path: Path) -> None:
    page = dash.open("/funnel")
    card = page.locator("section.card", has=page.locator("#funnel-chart"))
    files = {}
    for kind in ("CSV", "PNG", "SVG"):
        with page.expect_download() as info:
            card.get_by_role(
                "button", name=f"download the {'data' if kind == 'CSV' else 'chart'} as {kind}"
            ).click()
        download = info.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        files[kind] = target
    lines = files["CSV"].read_text().splitlines()
    assert lines[0].split(",")[:4] == ["step", "name", "users", "conversion_from_previous"]
    assert len(lines) == 1 + len(column(dash, "users"))
    assert files["PNG"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files["SVG"].read_text().lstrip().startswith("<svg")
    dash.assert_clean()


def test_keyboard_alone_changes_the_view(dash: Watched) -> None:
    page = dash.open("/core-actions")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.focus("input[name='measure'][value='share']")
    page.keyboard.press("ArrowRight")
    changed(dash, "measure=users")
    dash.assert_clean()


@pytest.mark.parametrize("path", ["/", "/funnel", "/retention", "/data-health"])
def test_narrow_screen_has_no_sideways_scroll(dash: Watched, path: str) -> None:
    dash.page.set_viewport_size({"width": 390, "height": 844})
    page = dash.open(path)
    dash.assert_clean()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    if path == "/":
        dash.screenshot("kpis-narrow")
