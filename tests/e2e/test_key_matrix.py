"""The key matrix through a real `tally serve`: which kind of key may call which endpoint (a write
key never reads or administers; a read key reads but does not change the configuration; an
admin key does everything), a key revoked by `tally keys revoke` in another process fails on the
very next request, CORS answers only the origins a write key allows (never a wildcard, never
credentials), and `tally serve` refuses open mode beyond loopback and announces it on loopback.

The matrix is a table: rows for more endpoints (private streams…) are added to ``MATRIX``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import make_event
from tallystick.collect.server import ServerProcess, free_port
from tallystick.config import Settings
from tallystick.control.keys import create_key, list_keys, revoke_key
from tallystick.control.store import ControlStore

pytestmark = pytest.mark.e2e

ALLOWED_ORIGIN = "https://shop.example"
OTHER_ORIGIN = "https://evil.example"
RANGE = "from=2026-01-01&to=2026-01-31"


def tally(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tallystick", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create(data: Path, kind: str, name: str, *extra: str) -> tuple[int, str]:
    """`tally keys create`: (id, key)."""
    done = tally(data, "keys", "create", "--kind", kind, "--name", name, *extra)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    listed = json.loads(tally(data, "keys", "list", "--format", "json").stdout)
    [row] = [r for r in listed if r["name"] == name]
    assert key.startswith(row["prefix"])
    assert key not in json.dumps(listed)
    return int(row["id"]), key


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    base: str,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Answer:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None and "Content-Type" not in sent:
        sent["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=sent, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers.items()), exc.read())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Keys:
    ids: dict[str, int]
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Keys]]:
    data = tmp_path_factory.mktemp("keys") / "data"
    data.mkdir()
    ids, secrets = {}, {}
    # one through the command line; the others the same way, faster (each `tally` start costs)
    ids["site"], secrets["site"] = create(
        data, "write", "site", "--app", "shop", "--origin", ALLOWED_ORIGIN
    )
    with ControlStore.for_settings(Settings(data=data)) as store:
        for kind, name, app in (
            ("write", "backend", "shop"),
            ("read", "analyst", None),
            ("admin", "ops", None),
            ("read", "to-revoke", None),
            ("write", "to-revoke-w", "shop"),
        ):
            key, secrets[name] = create_key(store, kind, name, actor="test", app=app)
            ids[name] = key.id
    with ServerProcess(data) as running:
        yield running, Keys(ids, secrets)


#: which key each column of the matrix sends
KINDS = ("none", "bogus", "write", "read", "admin")
EVENTS = [make_event()]

#: (method, path, JSON body, expected status for each of KINDS)
MATRIX: list[tuple[str, str, Any, tuple[int, int, int, int, int]]] = [
    ("POST", "/v1/events", EVENTS, (401, 401, 200, 403, 403)),
    ("GET", f"/v1/query/count?event=user.login&{RANGE}", None, (401, 401, 403, 200, 200)),
    (
        "POST",
        "/v1/query/count",
        {"event": "user.login", "from": "2026-01-01", "to": "2026-01-31"},
        (401, 401, 403, 200, 200),
    ),
    ("GET", "/v1/meta", None, (401, 401, 403, 200, 200)),
    ("GET", f"/v1/health?{RANGE}", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/catalog", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/catalog/streams", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/catalog/fields", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/audit?format=json", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/quality/loss", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/quality/alerts", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/admin/streams", None, (401, 401, 403, 403, 200)),
    ("GET", "/v1/admin/audit-log", None, (401, 401, 403, 403, 200)),
    ("GET", "/v1/admin/config", None, (401, 401, 403, 403, 200)),
    ("PUT", "/v1/admin/streams/web", {"name": "web"}, (401, 401, 403, 403, 201)),
    ("POST", "/v1/admin/quarantine", {"user": "u-9", "reason": "test"}, (401, 401, 403, 403, 201)),
    ("GET", "/v1/admin/keys", None, (401, 401, 403, 403, 200)),
    (
        "POST",
        "/v1/admin/keys",
        {"kind": "read", "name": "made-over-http"},
        (401, 401, 403, 403, 201),
    ),
    ("DELETE", "/v1/admin/keys/999", None, (401, 401, 403, 403, 404)),
    ("GET", "/v1/admin/flags", None, (401, 401, 403, 403, 200)),
    ("PUT", "/v1/admin/flags", {"flags": {}}, (401, 401, 403, 403, 200)),
    # any key reads the flags ruleset and evaluates: SDKs in apps carry write keys
    ("GET", "/v1/flags/ruleset?environment=prod", None, (401, 401, 200, 200, 200)),
    ("POST", "/v1/flags/evaluate", {"environment": "prod"}, (401, 401, 200, 200, 200)),
    # every environment with who changed it is for people (the dashboard): a read key
    ("GET", "/v1/flags", None, (401, 401, 403, 200, 200)),
    ("GET", "/v1/flags/", None, (401, 401, 403, 200, 200)),
    ("GET", "/healthz", None, (200, 200, 200, 200, 200)),
    ("GET", "/readyz", None, (200, 200, 200, 200, 200)),
    ("GET", "/v1", None, (200, 200, 200, 200, 200)),
    ("GET", "/openapi.json", None, (200, 200, 200, 200, 200)),
]


def _key(keys: Keys, kind: str) -> str | None:
    return {
        "none": None,
        "bogus": "tally_r_" + "x" * 32,
        "write": keys.secrets["backend"],
        "read": keys.secrets["analyst"],
        "admin": keys.secrets["ops"],
    }[kind]


@pytest.mark.parametrize(
    ("method", "path", "body", "statuses"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_the_key_matrix(
    keyed: tuple[ServerProcess, Keys],
    method: str,
    path: str,
    body: Any,
    statuses: tuple[int, ...],
) -> None:
    server, keys = keyed
    for kind, want in zip(KINDS, statuses, strict=True):
        key = _key(keys, kind)
        answer = call(server.url, method, path, key=key, body=body)
        if want == 201 and answer.status == 200:
            want = 200  # PUT of a stream that exists already
        assert answer.status == want, (kind, method, path, answer.body[:300])
        if want == 401:
            assert answer.headers.get("www-authenticate") == "Bearer"
        if want in (401, 403):
            error = answer.json()["error"]
            assert error["code"] in ("unauthorized", "forbidden")
            if kind == "write" and path != "/v1/events":
                assert "write key: it only sends events" in error["message"]
        if key is not None:
            assert key.encode() not in answer.body
    assert all(k not in server.output() for k in keys.secrets.values())


def test_keys_over_http_are_shown_once_and_revoked_at_once(
    keyed: tuple[ServerProcess, Keys],
) -> None:
    server, keys = keyed
    admin = keys.secrets["ops"]
    made = call(server.url, "POST", "/v1/admin/keys", key=admin,
                body={"kind": "write", "name": "app-2", "app": "two", "origins": ["https://two.example"]})  # fmt: skip  # noqa: E501
    assert made.status == 201, made.body
    assert made.headers["cache-control"] == "no-store"
    secret, row = made.json()["secret"], made.json()["key"]
    assert secret.startswith(row["prefix"])
    assert row["created_by"] == f"key:{keys.ids['ops']}:ops"
    listed = call(server.url, "GET", "/v1/admin/keys", key=admin)
    assert secret not in listed.body.decode()
    assert call(server.url, "POST", "/v1/events", key=secret, body=EVENTS).status == 200
    bad = call(server.url, "POST", "/v1/admin/keys", key=admin,
               body={"kind": "write", "name": "x", "app": "a", "origins": ["*"]})  # fmt: skip
    assert bad.status == 400
    assert bad.json()["error"]["code"] == "invalid_definition"
    revoked = call(server.url, "DELETE", f"/v1/admin/keys/{row['id']}", key=admin)
    assert revoked.json()["key"]["status"] == "revoked"
    assert call(server.url, "POST", "/v1/events", key=secret, body=EVENTS).status == 401
    again = call(server.url, "DELETE", f"/v1/admin/keys/{row['id']}", key=admin)
    assert again.status == 409


def test_a_write_key_may_come_as_a_query_parameter(keyed: tuple[ServerProcess, Keys]) -> None:
    """navigator.sendBeacon cannot set headers: ``?key=`` on POST /v1/events (write keys only)."""
    server, keys = keyed
    beacon = f"/v1/events?key={keys.secrets['backend']}"
    sent = call(server.url, "POST", beacon, raw=json.dumps(EVENTS).encode(),
                headers={"Content-Type": "text/plain"})  # fmt: skip
    assert sent.status == 200, sent.body
    assert call(server.url, "GET", f"/v1/meta?key={keys.secrets['analyst']}").status == 401


def test_a_revoked_key_fails_on_the_very_next_request(keyed: tuple[ServerProcess, Keys]) -> None:
    server, keys = keyed
    data = server.data
    read, write = keys.secrets["to-revoke"], keys.secrets["to-revoke-w"]
    assert call(server.url, "GET", "/v1/meta", key=read).status == 200
    assert call(server.url, "POST", "/v1/events", key=write, body=EVENTS).status == 200
    done = tally(data, "keys", "revoke", str(keys.ids["to-revoke"]))
    assert done.returncode == 0, done.stderr
    refused = call(server.url, "GET", "/v1/meta", key=read)
    assert refused.status == 401
    assert "revoked" in refused.json()["error"]["message"]
    with ControlStore.for_settings(Settings(data=data)) as store:
        revoke_key(store, keys.ids["to-revoke-w"], "test")
        statuses = {k.name: k.active for k in list_keys(store)}
    assert call(server.url, "POST", "/v1/events", key=write, body=EVENTS).status == 401
    assert not statuses["to-revoke"]
    assert statuses["analyst"]


def _cors_headers(answer: Answer) -> dict[str, str]:
    return {
        k.lower(): v for k, v in answer.headers.items() if k.lower().startswith("access-control")
    }


def test_cors_answers_only_the_allowed_origin(keyed: tuple[ServerProcess, Keys]) -> None:
    server, keys = keyed
    site = keys.secrets["site"]
    allowed = call(server.url, "POST", "/v1/events", key=site, body=EVENTS,
                   headers={"Origin": ALLOWED_ORIGIN})  # fmt: skip
    assert allowed.status == 200
    assert _cors_headers(allowed) == {"access-control-allow-origin": ALLOWED_ORIGIN}
    assert "Origin" in allowed.headers.get("vary", "")
    other = call(server.url, "POST", "/v1/events", key=site, body=EVENTS,
                 headers={"Origin": OTHER_ORIGIN})  # fmt: skip
    assert other.status == 403
    assert other.json()["error"]["code"] == "origin_not_allowed"
    assert _cors_headers(other) == {}
    # a key listing no origins is a server-side key: no CORS grant for any page
    backend = call(server.url, "POST", "/v1/events", key=keys.secrets["backend"], body=EVENTS,
                   headers={"Origin": ALLOWED_ORIGIN})  # fmt: skip
    assert backend.status == 200
    assert _cors_headers(backend) == {}
    # preflights carry no key: answered for origins some active write key allows
    for origin, granted in ((ALLOWED_ORIGIN, True), (OTHER_ORIGIN, False), ("null", False)):
        preflight = call(
            server.url,
            "OPTIONS",
            "/v1/events",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status == 204
        cors = _cors_headers(preflight)
        if granted:
            assert cors["access-control-allow-origin"] == origin
            assert "POST" in cors["access-control-allow-methods"]
            assert "authorization" in cors["access-control-allow-headers"]
        else:
            assert cors == {}
        assert "access-control-allow-credentials" not in cors
        assert cors.get("access-control-allow-origin") != "*"
    # other endpoints never grant CORS
    meta = call(server.url, "GET", "/v1/meta", key=keys.secrets["analyst"],
                headers={"Origin": ALLOWED_ORIGIN})  # fmt: skip
    assert _cors_headers(meta) == {}


def test_dashboard_data_needs_a_session_and_write_keys_cannot_sign_in(
    keyed: tuple[ServerProcess, Keys],
) -> None:
    server, keys = keyed
    page = call(server.url, "GET", "/funnel?step=a")
    assert page.status == 303
    assert page.headers["location"] == "/signin?next=%2Ffunnel%3Fstep%3Da"
    assert call(server.url, "GET", "/static/dashboard.js").status == 200
    assert call(server.url, "GET", "/signin").status == 200

    def sign_in(key: str) -> Answer:
        form = f"key={urllib.parse.quote(key)}&next=/explore".encode()
        return call(server.url, "POST", "/signin", raw=form,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip

    assert sign_in(keys.secrets["backend"]).status == 401
    assert sign_in("tally_r_" + "y" * 32).status == 401
    signed = sign_in(keys.secrets["analyst"])
    assert signed.status == 303
    assert signed.headers["location"] == "/explore"
    cookie = signed.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http on loopback
    session = {"Cookie": cookie.split(";")[0]}
    assert call(server.url, "GET", "/explore", headers=session).status == 200
    assert call(server.url, "GET", "/v1/meta", headers=session).status == 200
    # the Flags page's data, and the experiments it links to
    assert call(server.url, "GET", "/v1/flags", headers=session).status == 200
    assert call(server.url, "GET", "/v1/experiments", headers=session).status == 200
    # the session reads, never administers
    assert call(server.url, "GET", "/v1/admin/streams", headers=session).status == 403
    ended = call(server.url, "POST", "/signout", headers=session, raw=b"")
    assert ended.status == 303
    assert "Max-Age=0" in ended.headers["set-cookie"]
    assert call(server.url, "GET", "/v1/meta", headers=session).status == 401
    assert call(server.url, "GET", "/explore", headers=session).status == 303


def test_serve_refuses_open_mode_beyond_loopback_and_announces_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    refused = subprocess.run(
        [sys.executable, "-m", "tallystick", "serve", "--data", str(data), "--host", "0.0.0.0",
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "refusing to listen on 0.0.0.0" in message
    for command in ("tally keys create --kind write", "--kind read", "--kind admin"):
        assert command in message
    with ServerProcess(data) as running:
        banner = " ".join(running.output().split())
        assert "OPEN MODE:" in banner
        assert "ingestion (no write key)" in banner
        assert "reads (no read or admin key)" in banner
        # open mode answers pages on this machine only
        local = call(running.url, "POST", "/v1/events", body=EVENTS,
                     headers={"Origin": "http://localhost:3000"})  # fmt: skip
        assert local.status == 200
        assert _cors_headers(local) == {"access-control-allow-origin": "http://localhost:3000"}
        away = call(running.url, "POST", "/v1/events", body=EVENTS,
                    headers={"Origin": OTHER_ORIGIN})  # fmt: skip
        assert away.status == 200
        assert _cors_headers(away) == {}


def test_another_site_cannot_sign_a_visitor_in(keyed: tuple[ServerProcess, Keys]) -> None:
    server, keys = keyed
    form = f"key={keys.secrets['analyst']}&next=/".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elsewhere = call(server.url, "POST", "/signin", raw=form,
                     headers={**headers, "Origin": OTHER_ORIGIN})  # fmt: skip
    assert elsewhere.status == 403
    assert "set-cookie" not in {k.lower() for k in elsewhere.headers}
    cross = call(server.url, "POST", "/signin", raw=form,
                 headers={**headers, "Origin": "null", "Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert cross.status == 403
    here = call(server.url, "POST", "/signin", raw=form, headers={**headers, "Origin": server.url})
    assert here.status == 303
    own = call(server.url, "POST", "/signin", raw=form,
               headers={**headers, "Origin": "null", "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert own.status == 303
