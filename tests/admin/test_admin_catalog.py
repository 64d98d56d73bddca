"""The read-only catalog over HTTP: streams with their status and volume from the lake, the field
catalog with its search, and the audit report in each format."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.testclient import TestClient

from metrics.lakerows import to_table
from query.responses import error_message
from tallystick import messages
from tallystick.config import Settings
from tallystick.store.lake import Lake

TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _event(n: int, days_ago: int, stream: str | None, **cols: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "name": "project.commit",
        "client_ts": TODAY - dt.timedelta(days=days_ago) + dt.timedelta(hours=1),
        "received_ts": TODAY,
        "stream": stream,
        **cols,
    }


@pytest.fixture
def lake(settings: Settings) -> Lake:
    lake = Lake(settings.lake_dir)
    rows = [
        _event(1, 0, "product", user_id="u1", data={"files": 3}),
        _event(1, 0, "web", user_id="u1", data={"files": 3}),
        _event(2, 6, "product", user_id="u2"),
        _event(3, 7, "product", user_id="u2"),
        _event(4, 27, "product", page_url="https://example.org/a"),
        _event(5, 28, "product"),
        _event(6, 2, "unrouted", data={"email": "ann@example.org"}),
        _event(7, 3, "gone"),
    ]
    lake.write_events(to_table(rows), "batch")
    return lake


def test_streams_with_their_volume(local: TestClient, lake: Lake) -> None:
    local.post("/v1/admin/streams", json={"name": "product", "owner": "pm", "retention_days": 30})
    local.post("/v1/admin/streams", json={"name": "web", "enabled": False})
    local.post("/v1/admin/streams", json={"name": "quiet", "expires": "2020-01-01"})
    body = local.get("/v1/catalog/streams").json()
    assert body["today"] == TODAY.date().isoformat()
    assert body["unrouted_stream"] == "unrouted"
    shown = {s["name"]: (s["status"], s["volume"]) for s in body["streams"]}
    # product: e1 (today), e2 (6 days ago) in the last 7 days; e3, e4 (27 days ago) in 28
    assert shown == {
        "product": ("collecting", {"last_7_days": 2, "last_28_days": 4}),
        "quiet": ("expired", {"last_7_days": 0, "last_28_days": 0}),
        "web": ("disabled", {"last_7_days": 1, "last_28_days": 1}),
    }
    assert body["streams"][0]["owner"] == "pm"
    assert body["other"] == [
        {"stream": "gone", "volume": {"last_7_days": 1, "last_28_days": 1}},
        {"stream": "unrouted", "volume": {"last_7_days": 1, "last_28_days": 1}},
    ]


def test_the_field_catalog_and_its_search(local: TestClient, lake: Lake) -> None:
    body = local.get("/v1/catalog/fields").json()
    names = [f["name"] for f in body["fields"]]
    assert {"user.id", "page.url", "data.files", "data.email"} <= set(names)
    assert body["total"] == len(names)
    email = next(f for f in body["fields"] if f["name"] == "data.email")
    assert email["personal"]
    assert "ann@example.org" not in str(email["examples"])
    assert email["streams"] == ["unrouted"]
    found = local.get("/v1/catalog/fields", params={"q": "DATA"}).json()
    assert found["q"] == "DATA"
    assert [f["name"] for f in found["fields"]] == ["data.email", "data.files"]
    assert found["total"] == body["total"]
    both = local.get("/v1/catalog/fields", params={"q": "data unrouted"}).json()
    assert [f["name"] for f in both["fields"]] == ["data.email"]
    assert local.get("/v1/catalog/fields", params={"q": "zzz"}).json()["fields"] == []


def test_search_streams_fields_and_metrics(
    local: TestClient, lake: Lake, settings: Settings
) -> None:
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "m.yaml").write_text(
        "name: commits\ntitle: Commits\ntype: count\nparams: {event: project.commit}\n"
    )
    local.post("/v1/admin/streams", json={"name": "product", "events": ["project.*"]})
    body = local.get("/v1/catalog/search", params={"q": "commit"}).json()
    assert (body["q"], body["kinds"]) == ("commit", ["metric", "stream", "field"])
    found = [(h["kind"], h["name"]) for h in body["hits"]]
    # the metric by its name first; fields carried by project.commit events after
    assert found[0] == ("metric", "commits")
    assert ("field", "user.id") in found
    assert ("stream", "product") not in found  # it lists project.*, not the word commit
    only = local.get("/v1/catalog/search", params={"q": "commit", "kind": "metric,stream"})
    assert [(h["kind"], h["name"]) for h in only.json()["hits"]] == [("metric", "commits")]
    top = local.get("/v1/catalog/search", params={"q": "commit", "limit": "2"}).json()
    assert len(top["hits"]) == 2


@pytest.mark.parametrize(
    ("form", "content_type", "marker"),
    [
        ("json", "application/json", '"sections"'),
        ("md", "text/markdown; charset=utf-8", "# Audit and gap report"),
        ("html", "text/html; charset=utf-8", "<h1>Audit and gap report</h1>"),
    ],
)
def test_the_audit_report(
    local: TestClient, lake: Lake, form: str, content_type: str, marker: str
) -> None:
    local.post("/v1/admin/streams", json={"name": "product", "expires": _days_from_now(10)})
    response = local.get("/v1/audit", params={"format": form})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    assert marker in response.text
    if form == "html":
        assert "default-src 'none'" in response.headers["content-security-policy"]
    if form == "json":
        sections = {s["key"]: s for s in response.json()["sections"]}
        expiring = sections["expiring_streams"]
        assert expiring["count"] == 1, expiring


def _days_from_now(days: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).date().isoformat()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/audit?format=pdf", "unknown format 'pdf': use json, md, html"),
        ("/v1/catalog/fields?query=x", "unknown parameter 'query': it takes q"),
        ("/v1/catalog/streams?days=7", "unknown parameter 'days'"),
        ("/v1/catalog/search", "give a text to search for"),
        ("/v1/catalog/search?q=...", "give a word to search for"),
        ("/v1/catalog/search?q=a&kind=team", "unknown kind 'team'"),
        ("/v1/catalog/search?q=a&limit=0", "limit '0' must be a whole number from 1 to 1000"),
    ],
)
def test_bad_parameters(local: TestClient, path: str, message: str) -> None:
    assert message in error_message(local.get(path), 400, messages.INVALID_QUERY)


def test_catalog_reads_are_get_only(local: TestClient) -> None:
    response = local.post("/v1/catalog/streams", json={})
    assert "use GET" in error_message(response, 405, messages.METHOD_NOT_ALLOWED)
