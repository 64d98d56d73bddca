"""The dashboard's server side, in-process: pages render their controls from the URL, static
files are served compressed and cacheable, and nothing but GET and HEAD is taken."""

from __future__ import annotations

import gzip
import re

import pytest
from starlette.testclient import TestClient

from tallystick.dashboard.pages import BY_SLUG, PAGES, view_state

STATE_CASES = [
    ("funnel", "step=a&step=b&window=30m&nope=1", {"step": ["a", "b"], "window": ["30m"]}),
    ("funnel", "step=a&step=&where=x%3D1&where=y%3D2", {"step": ["a"], "where": ["x=1", "y=2"]}),
    ("kpis", "grain=week&grain=month&range=4w", {"grain": ["month"], "range": ["4w"]}),
    ("catalog", "q=+errors+&from=2026-01-01", {"q": ["errors"], "from": ["2026-01-01"]}),
    ("explore", "", {}),
]


@pytest.mark.parametrize(("slug", "query", "state"), STATE_CASES)
def test_view_state_keeps_the_pages_own_keys(
    slug: str, query: str, state: dict[str, list[str]]
) -> None:
    assert view_state(BY_SLUG[slug], query) == state


@pytest.mark.parametrize("page", PAGES, ids=[p.slug for p in PAGES])
def test_every_page_renders_with_its_navigation(collector: TestClient, page: object) -> None:
    path = BY_SLUG[page.slug].path  # type: ignore[attr-defined]
    response = collector.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert f'data-page="{page.slug}"' in html  # type: ignore[attr-defined]
    assert html.count('aria-current="page"') == 1
    for other in PAGES:
        assert f'href="{other.path}"' in html


def test_controls_come_back_from_the_url(collector: TestClient) -> None:
    html = collector.get(
        "/funnel?step=signin.open&step=signin.completed&window=30m&where=data.trigger%21%3Dmonitor"
        "&range=custom&from=2026-10-01&to=2026-10-31"
    ).text
    steps = re.findall(r'<select name="step"[^>]*data-selected="([^"]*)"', html)
    assert steps == ["signin.open", "signin.completed"]
    assert 'name="window" value="30m"' in html
    assert 'value="data.trigger!=monitor"' in html
    assert 'name="from" id="from" value="2026-10-01"' in html
    assert '<option value="custom" selected>' in html


def test_values_from_the_url_are_escaped(collector: TestClient) -> None:
    html = collector.get("/catalog?q=%3Cscript%3Ealert(1)%3C/script%3E").text
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html


def test_plotly_is_served_from_the_wheel_compressed_and_cacheable(collector: TestClient) -> None:
    html = collector.get("/").text
    src = re.search(r'src="(/static/plotly\.min\.js\?v=\w+)"', html)
    assert src is not None
    response = collector.get(src.group(1), headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "immutable" in response.headers["cache-control"]
    assert b"plotly" in response.content[:2000]  # httpx undid the gzip
    assert int(response.headers["content-length"]) < len(response.content) / 2
    again = collector.get(src.group(1), headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    plain = collector.get("/static/dashboard.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["cache-control"] == "no-cache"  # no version: check each time
    assert gzip.compress(plain.content)  # the body is the script itself


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/favicon.ico", 200),
        ("HEAD", "/", 200),
        ("GET", "/static/nope.js", 404),
        ("POST", "/", 405),
        ("GET", "/nope", 404),
    ],
)
def test_other_requests(collector: TestClient, method: str, path: str, status: int) -> None:
    response = collector.request(method, path)
    assert response.status_code == status
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD"
    if method == "HEAD":
        assert response.content == b""
