"""The query API on the real server: events sent to /v1/events come back from /v1/query/... as
the Python API computes them over the same data directory."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support import make_event
from tallystick import metrics
from tallystick.collect.server import ServerProcess

pytestmark = pytest.mark.e2e

RANGE = {"from": "2026-01-01", "to": "2026-01-31"}
CORE = {"actions": "project.commit,dataset.create", "active": "user.login", "grain": "week"}


def _events() -> list[dict[str, Any]]:
    """Logins on most days and commits/dataset creations by some of 12 users in January."""
    events = []
    for day in range(1, 32):
        for u in range(12):
            if (day + u) % 3 == 0:
                continue
            ts = f"2026-01-{day:02d}T{8 + u:02d}:15:00Z"
            user = {"id": f"u-{u}"}
            events.append(make_event("user.login", client_ts=ts, user=user, data={}))
            if (day * u) % 4 == 1:
                events.append(make_event("project.commit", client_ts=ts, user=user))
            if (day + 2 * u) % 7 == 0:
                events.append(make_event("dataset.create", client_ts=ts, user=user))
    return events


def _call(url: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else value


def test_events_in_queries_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    events = _events()
    with ServerProcess(data, extra_args=["--flush-interval-seconds", "0.2"]) as server:
        status, body = _call(server.url + "/v1/events", events)
        assert (status, body) == (200, {"accepted": len(events), "rejected": 0})

        # Wait until the loader has moved every event into the lake.
        names = "user.login"
        query = urllib.parse.urlencode({"event": names, "grain": "month", **RANGE})
        logins = sum(e["name"] == names for e in events)
        deadline = time.monotonic() + 30
        while True:
            status, body = _call(f"{server.url}/v1/query/count?{query}")
            assert status == 200, body
            if body["rows"][0]["events"] == logins:
                break
            assert time.monotonic() < deadline, f"only {body['rows']} of {logins} logins loaded"
            time.sleep(0.2)
        for name in ("project.commit", "dataset.create"):
            status, body = _call(
                f"{server.url}/v1/query/count?event={name}&grain=month&from=2026-01-01&to=2026-01-31"
            )
            assert body["rows"][0]["events"] == sum(e["name"] == name for e in events)

        status, got = _call(
            f"{server.url}/v1/query/core?{urllib.parse.urlencode({**CORE, **RANGE})}"
        )
        assert status == 200, got
        assert got["analysis"] == "core"
        assert got["engine"] == "duckdb"
        assert "read_parquet" in got["sql"].lower()
        frame = metrics.core(
            CORE["actions"], CORE["active"], date_from=RANGE["from"], date_to=RANGE["to"],
            grain="week", data=data,
        )  # fmt: skip
        expected = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
        assert got["rows"] == expected
        assert len(expected) == 2 * 5  # two actions x the weeks touching January
        assert all(r["active_users"] > 0 for r in expected)

        status, posted = _call(server.url + "/v1/query/core", {**CORE, **RANGE})
        assert status == 200
        assert posted == got

        status, error = _call(f"{server.url}/v1/query/core?{urllib.parse.urlencode(RANGE)}")
        assert status == 400
        assert error["error"]["code"] == "invalid_query"
        assert "core needs actions and active" in error["error"]["message"]

        status, doc = _call(server.url + "/openapi.json")
        assert status == 200
        assert doc["openapi"] == "3.1.0"
        assert "/v1/query/core" in doc["paths"]

        status, root = _call(server.url + "/v1")
        assert "GET /v1/query/{analysis}" in root["endpoints"]
    assert server.proc is not None
    assert server.proc.returncode == 0
