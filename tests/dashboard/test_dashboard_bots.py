"""Bots are left out of the dashboard's analyses like everywhere else; ``?include_bots=true`` in
a page's URL counts them: every query the page sends carries it, and it stays in the URL as the
view changes."""

from __future__ import annotations

import pytest

from browser_support import Watched

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _analyses(urls: list[str]) -> list[str]:
    return [u for u in urls if "/v1/query/" in u or "/v1/metrics/" in u]


def test_include_bots_in_the_url_reaches_every_query(dash: Watched) -> None:
    asked: list[str] = []
    dash.page.on("request", lambda request: asked.append(request.url))
    page = dash.open("/?include_bots=true")
    dash.assert_clean()
    first = _analyses(asked)
    assert first
    assert all("include_bots=true" in u for u in first), first

    asked.clear()
    page.get_by_role("radio", name="Month", exact=True).check()
    page.wait_for_url("**grain=month**")
    dash.wait_ready()
    assert "include_bots=true" in page.url
    assert all("include_bots=true" in u for u in _analyses(asked))

    asked.clear()
    dash.open("/")
    dash.assert_clean()
    plain = _analyses(asked)
    assert plain
    assert not [u for u in plain if "include_bots" in u]
