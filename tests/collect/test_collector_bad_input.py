"""Every bad-input case of the collector: its status code, error code and a message that says
what to fix — and the valid events of the same request are kept."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from support import load, make_event, run_coroutine
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

FUTURE = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)).isoformat()
NEAR_FUTURE = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)).isoformat()


@dataclass
class Case:
    id: str
    body: bytes
    status: int
    code: str | None = None  # request-level error code, or the code of the rejected event
    message: str = ""  # a fragment of the message
    accepted: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def bomb() -> bytes:
    return gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")


CASES = [
    Case("one event", js(make_event()), 200, accepted=1),
    Case("array", js([make_event(), make_event()]), 200, accepted=2),
    Case("envelope", js({"events": [make_event()]}), 200, accepted=1),
    Case(
        "gzip",
        gzip.compress(js([make_event()])),
        200,
        accepted=1,
        headers={"content-encoding": "gzip"},
    ),
    Case("client_ts 23 h ahead is fine", js(make_event(client_ts=NEAR_FUTURE)), 200, accepted=1),
    Case(
        "mixed",
        js([make_event(), {"name": "x.y"}, make_event()]),
        207,
        "missing_field",
        "required field `event_id` is missing",
        accepted=2,
    ),
    Case("all invalid", js([{"name": "x.y"}]), 400, "missing_field", "add it"),
    Case(
        "missing client_ts",
        js({k: v for k, v in make_event().items() if k != "client_ts"}),
        400,
        "missing_field",
        "`client_ts` is missing",
    ),
    Case(
        "wrong type",
        js(make_event(user={"id": 12})),
        400,
        "invalid_field",
        "`user.id` is invalid: Expected `str | null`, got `int`",
    ),
    Case(
        "wrong seq",
        js(make_event(session={"id": "s", "seq": 0})),
        400,
        "invalid_field",
        "`session.seq`",
    ),
    Case(
        "seq beyond 64 bits",
        js(make_event(session={"id": "s", "seq": 2**64})),
        400,
        "invalid_field",
        "`session.seq`",
    ),
    Case("bad uuid", js(make_event(event_id="nope")), 400, "invalid_field", "a UUID"),
    Case(
        "bad name",
        js(make_event(name="Project Commit")),
        400,
        "invalid_field",
        "lowercase dotted action",
    ),
    Case("name too long", js(make_event(name="a" * 129)), 400, "invalid_field", "`name`"),
    Case(
        "naive client_ts",
        js(make_event(client_ts="2026-01-01T10:00:00")),
        400,
        "invalid_field",
        "RFC 3339 timestamp with an offset or Z",
    ),
    Case(
        "client_ts in future",
        js(make_event(client_ts=FUTURE)),
        400,
        "client_ts_in_future",
        "check the client's clock",
    ),
    Case(
        "unknown field",
        js(make_event(colour="red")),
        400,
        "unknown_field",
        "put the instrument's own fields under `data`",
    ),
    Case(
        "data key not snake_case",
        js(make_event(data={"fileCount": 1})),
        400,
        "invalid_field",
        "'file_count'",
    ),
    Case(
        "data nested object", js(make_event(data={"a": {"b": 1}})), 400, "invalid_field", "`data`"
    ),
    Case("not an object", js([1]), 400, "not_an_object", "JSON object"),
    Case(
        "event too large",
        js(make_event(data={"blob": "x" * 40_000})),
        413,
        "event_too_large",
        "limit is 32,768 bytes",
    ),
    Case("malformed JSON", b'[{"name": ', 400, "malformed_json", "not valid JSON"),
    Case("malformed object", b'{"name": "a.b",}', 400, "malformed_json", "not valid JSON"),
    Case("trailing garbage", js([make_event()]) + b"]", 400, "malformed_json", "not valid JSON"),
    Case("empty body", b"", 400, "malformed_json", "not valid JSON"),
    Case("invalid UTF-8", b'[{"name": "\xff\xfe"}]', 400, "invalid_utf8", "UTF-8"),
    Case("wrong shape", js("hello"), 400, "wrong_shape", "send one event object"),
    Case("events not a list", js({"events": {"a": 1}}), 400, "wrong_shape", "JSON array"),
    Case(
        "extra keys next to events",
        js({"events": [], "x": 1}),
        400,
        "wrong_shape",
        "send only `events`",
    ),
    Case("no events", js([]), 400, "no_events", "at least one"),
    Case(
        "too many events",
        js([make_event() for _ in range(1001)]),
        413,
        "too_many_events",
        "limit is 1,000 per request",
    ),
    Case(
        "request too large",
        js([make_event(data={"blob": "x" * 30_000}) for _ in range(40)]),
        413,
        "request_too_large",
        "larger than 1,048,576 bytes",
    ),
    Case(
        "gzip bomb",
        bomb(),
        413,
        "request_too_large",
        "after decompression",
        headers={"content-encoding": "gzip"},
    ),
    Case(
        "broken gzip",
        b"\x1f\x8b\x08\x00garbage",
        400,
        "invalid_gzip",
        "gzip",
        headers={"content-encoding": "gzip"},
    ),
    Case(
        "truncated gzip",
        gzip.compress(js([make_event()]))[:-12],
        400,
        "invalid_gzip",
        "truncated",
        headers={"content-encoding": "gzip"},
    ),
    Case(
        "unsupported encoding",
        js([make_event()]),
        415,
        "unsupported_encoding",
        "gzip",
        headers={"content-encoding": "br"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, app: Collector, collector: TestClient, settings: Settings, lake: Lake
) -> None:
    response = collector.post("/v1/events", content=case.body, headers=case.headers)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert body["accepted"] == case.accepted
    if case.code is None:
        assert body["rejected"] == 0
    elif "error" in body:
        assert body["error"]["code"] == case.code
        assert case.message in body["error"]["message"]
    else:
        [error] = body["errors"][:1]
        assert error["code"] == case.code
        assert case.message in error["message"], error["message"]
        assert isinstance(error["index"], int)

    load(settings, app)
    con = connect(lake)
    stored = con.execute("SELECT count(*) FROM events").fetchone()
    assert stored is not None
    assert stored[0] == case.accepted
    failed = con.execute("SELECT error_code, error_message, raw FROM failed_events").fetchall()
    if case.code is None:
        assert failed == []
    else:
        assert failed, "a refused event must land in the failed-events store"
        assert failed[0][0] == case.code
        assert case.message in failed[0][1]
        assert len(failed[0][2].encode()) <= settings.failed_raw_max_bytes


def test_mixed_names_each_rejected_event(collector: TestClient) -> None:
    good = make_event()
    bad = make_event(name="Bad Name")
    response = collector.post("/v1/events", json=[good, bad, good | {"event_id": "x"}])
    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [(e["index"], e["event_id"], e["code"]) for e in errors] == [
        (1, bad["event_id"], "invalid_field"),
        (2, "x", "invalid_field"),
    ]


def test_other_routes(collector: TestClient) -> None:
    assert collector.get("/healthz").json() == {"status": "ok"}
    assert collector.get("/readyz").status_code == 200
    wrong = collector.get("/v1/events")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    missing = collector.post("/v1/event", json={})
    assert missing.status_code == 404
    assert "POST /v1/events" in missing.json()["error"]["message"]


def test_not_ready_refuses_instead_of_accepting(tmp_path: Any) -> None:
    settings = Settings(data=tmp_path / "d", min_free_bytes=1 << 62)
    with TestClient(Collector(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "min_free_bytes" in ready.json()["reason"]
        response = client.post("/v1/events", json=[make_event()])
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "not_ready"
    load(settings)
    assert Lake(settings.lake_dir).files() == []


def test_a_bogus_content_length_is_not_trusted(app: Collector, collector: TestClient) -> None:
    """The body decides, not a header: a non-numeric Content-Length is ignored."""

    body = js([make_event()])
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": [(b"content-length", b"lots")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    run_coroutine(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"accepted": 1, "rejected": 0}
