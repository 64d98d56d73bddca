"""The whole configuration over HTTP: export as JSON or YAML, plan, apply in one transaction; a bad
document is refused with its place, line and reason and changes nothing; the audit log shows who
changed what."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
import yaml
from starlette.testclient import TestClient

from admin.conftest import client
from query.responses import error_message
from tallystick import messages
from tallystick.admin.app import ControlApi
from tallystick.config import Settings

CONFIG = """\
version: 1
unrouted_stream: undeclared
streams:
  - name: product
    owner: product-team
    events: [project.*, dataset.create]
    sample: {unit: user, rate: 0.25}
    expires: 2030-06-30
    keep: [app, user.id]
    curation:
      - {field: app.environment, op: equals, value: prod}
    retention_days: 180
  - name: web
    events: [page.view]
models:
  - name: commits
    stream: product
    materialize: table
    fields:
      - user.id
      - {field: data.files, as: files}
    checks:
      - {type: not_null, field: user_id}
      - {type: range, field: files, min: 0, max: 1000}
"""


def _yaml(c: TestClient, path: str, text: str) -> httpx2.Response:
    return c.post(path, content=text.encode(), headers={"content-type": "application/yaml"})


def test_export_then_apply_on_a_fresh_install_reproduces_it(
    local: TestClient, tmp_path: Path
) -> None:
    applied = _yaml(local, "/v1/admin/config/apply", CONFIG)
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["applied"] is True
    assert body["summary"] == "3 to create, 1 to update, 0 to delete"
    assert [(c["kind"], c["name"], c["action"]) for c in body["changes"]] == [
        ("setting", "unrouted_stream", "update"),
        ("stream", "product", "create"),
        ("stream", "web", "create"),
        ("model", "commits", "create"),
    ]
    assert body["version"] == 1  # one transaction, one version
    exported_yaml = local.get("/v1/admin/config", params={"format": "yaml"})
    assert exported_yaml.headers["content-type"] == "application/yaml; charset=utf-8"
    exported = local.get("/v1/admin/config").json()
    assert exported_yaml.text.startswith("# Tallystick control-plane configuration")
    assert yaml.safe_load(exported_yaml.text) == exported
    assert exported["unrouted_stream"] == "undeclared"
    assert [s["name"] for s in exported["streams"]] == ["product", "web"]
    assert exported["streams"][0]["expires"] == "2030-06-30T00:00:00Z"

    fresh = ControlApi(Settings(data=tmp_path / "fresh"))
    with client(fresh) as other:
        plan = _yaml(other, "/v1/admin/config/plan", exported_yaml.text).json()
        assert plan["summary"] == "3 to create, 1 to update, 0 to delete"
        assert other.get("/v1/admin/config").json()["streams"] == []  # a plan changes nothing
        again = other.post("/v1/admin/config/apply", json=exported)
        assert again.json()["applied"] is True
        assert other.get("/v1/admin/config").json() == exported
        nothing = other.post("/v1/admin/config/apply", json=exported).json()
        assert nothing == {
            "applied": False,
            "summary": "no changes: the control plane already matches",
            "changes": [],
            "version": 1,
        }


def test_a_plan_shows_before_and_after(local: TestClient) -> None:
    _yaml(local, "/v1/admin/config/apply", CONFIG)
    edited = CONFIG.replace("rate: 0.25", "rate: 0.5").replace(
        "  - name: web\n    events: [page.view]\n", ""
    )
    plan = _yaml(local, "/v1/admin/config/plan", edited).json()
    assert plan["summary"] == "0 to create, 1 to update, 1 to delete"
    update, delete = plan["changes"]
    assert (update["name"], update["changed"]) == ("product", ["sample"])
    assert update["before"]["sample"] == {"unit": "user", "rate": 0.25}
    assert update["after"]["sample"] == {"unit": "user", "rate": 0.5}
    assert (delete["name"], delete["action"], delete["after"]) == ("web", "delete", None)


@pytest.mark.parametrize(
    ("document", "line", "message"),
    [
        (
            CONFIG.replace("rate: 0.25", "rate: 1.5"),
            7,
            "streams[0].sample.rate (line 7): a sample rate is a number from 0 to 1",
        ),
        (
            CONFIG.replace("op: equals", "op: like"),
            11,
            "streams[0].curation[0] (line 11): ",
        ),
        (
            CONFIG.replace("field: user_id", "field: user"),
            23,
            "models[0].checks[0].field (line 23): the model has no column 'user'",
        ),
        (CONFIG.replace("  - name: web", "  - name: product"), 13, "already defined"),
        (CONFIG.replace("stream: product", "stream: products"), 17, "no stream 'products'"),
        (
            CONFIG.replace("    owner: product-team", "    owner: product-team\n   bad"),
            6,
            "line 6: ",
        ),
    ],
    ids=["rate", "curation", "check", "twice", "reference", "syntax"],
)
@pytest.mark.parametrize("path", ["/v1/admin/config/plan", "/v1/admin/config/apply"])
def test_a_bad_document_is_refused_with_its_line_and_changes_nothing(
    local: TestClient, path: str, document: str, line: int, message: str
) -> None:
    _yaml(local, "/v1/admin/config/apply", CONFIG)
    before = local.get("/v1/admin/config").json()
    log = local.get("/v1/admin/audit-log").json()
    response = _yaml(local, path, document)
    assert message in error_message(response, 400, messages.INVALID_DEFINITION)
    assert response.json()["error"]["line"] == line
    assert local.get("/v1/admin/config").json() == before
    assert local.get("/v1/admin/audit-log").json() == log


def test_the_audit_log_filters_by_kind_and_name(local: TestClient) -> None:
    _yaml(local, "/v1/admin/config/apply", CONFIG)
    local.patch("/v1/admin/streams/web", json={"owner": "web-team"})
    entries = local.get("/v1/admin/audit-log", params={"kind": "stream", "name": "web"})
    assert [(e["action"], e["changed"]) for e in entries.json()["entries"]] == [
        ("update", ["owner"]),
        ("apply", ["name", "events", "enabled"]),
    ]
    newest = entries.json()["entries"][0]
    assert newest["actor"] == "http:loopback"
    assert newest["before"] == {"name": "web", "events": ["page.view"], "enabled": True}
    assert newest["after"] == {**newest["before"], "owner": "web-team"}
    assert newest["version"] == 2
    models = local.get("/v1/admin/audit-log", params={"kind": "model"}).json()["entries"]
    assert [(e["name"], e["action"]) for e in models] == [("commits", "apply")]
    assert len(local.get("/v1/admin/audit-log", params={"limit": 2}).json()["entries"]) == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/admin/config?format=toml", "unknown format 'toml': use json or yaml"),
        ("/v1/admin/audit-log?kind=metric", "unknown kind 'metric'"),
        ("/v1/admin/audit-log?limit=0", "must be a whole number from 1 to 1000"),
        ("/v1/admin/audit-log?since=2026-01-01", "unknown parameter 'since'"),
    ],
)
def test_bad_parameters(local: TestClient, path: str, message: str) -> None:
    assert message in error_message(local.get(path), 400, messages.INVALID_QUERY)
