"""The control-plane API on the real server (`tally serve` in a child process on loopback): a
stream created and changed over HTTP with the admin key is in the audit log, with the actor and
the definition before and after, and in the control store every other process reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.store import ControlStore

pytestmark = pytest.mark.e2e

KEY = "e2e-admin-key"


def _call(method: str, url: str, body: object = None, key: str | None = KEY) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_stream_created_over_http_is_in_the_audit_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    stream = {"name": "product", "events": ["project.*"], "sample": {"unit": "user", "rate": 0.1}}
    with ServerProcess(data, env={"TALLYSTICK_ADMIN_KEY": KEY}) as server:
        base = server.url + "/v1/admin"
        status, body = _call("POST", base + "/streams", stream, key=None)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = _call("POST", base + "/streams", stream)
        assert status == 201, body
        status, body = _call("PATCH", base + "/streams/product", {"owner": "product-team"})
        assert status == 200, body
        status, log = _call("GET", base + "/audit-log?kind=stream&name=product")
        assert status == 200, log
    update, create = log["entries"]
    assert (create["actor"], create["action"], create["before"]) == (
        "http:admin-key",
        "create",
        None,
    )
    assert create["after"] == {**stream, "enabled": True}
    assert (update["actor"], update["action"], update["changed"]) == (
        "http:admin-key",
        "update",
        ["owner"],
    )
    assert update["before"] == create["after"]
    assert update["after"] == {
        "name": "product",
        "owner": "product-team",
        "events": ["project.*"],
        "sample": {"unit": "user", "rate": 0.1},
        "enabled": True,
    }
    with ControlStore.for_settings(Settings(data=data)) as store:
        assert store.stream("product").owner == "product-team"
        assert [e.actor for e in store.audit_log()] == ["http:admin-key"] * 2
