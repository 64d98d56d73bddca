"""API keys: how they look, that only their hash is kept, verify/list/revoke with audit rows and
version bumps (SQLite and Postgres), dashboard sessions, which kinds are keyed, and the access
rules (``admin.access.decide``) for every kind of key and need."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from tallystick import messages
from tallystick.admin.access import (
    LOOPBACK_ACTOR,
    NOTHING,
    Credential,
    decide,
    need_of,
)
from tallystick.collect.cors import origin_of
from tallystick.collect.requests import Refused
from tallystick.config import Settings
from tallystick.control.definitions import DefinitionError
from tallystick.control.keys import (
    AUDIT_KIND,
    STATIC_ADMIN,
    STATIC_READ,
    Keyed,
    Verifier,
    check_key,
    create_key,
    digest,
    get_key,
    list_keys,
    revoke_key,
    static_fingerprint,
    verify,
)
from tallystick.control.principal import OPEN, Principal
from tallystick.control.store import Conflict, ControlStore, NotFound

ACTOR = "cli:test"
HERE = ("127.0.0.1", 5000)
AWAY = ("198.51.100.7", 5000)


@pytest.mark.parametrize(
    ("kind", "prefix"), [("write", "tally_w_"), ("read", "tally_r_"), ("admin", "tally_a_")]
)
def test_a_key_looks_like_its_kind_and_only_its_hash_is_kept(
    store: ControlStore, kind: str, prefix: str
) -> None:
    extra: dict[str, Any] = {"app": "web"} if kind == "write" else {}
    key, secret = create_key(store, kind, "ci", actor=ACTOR, **extra)
    assert re.fullmatch(prefix + "[A-Za-z0-9]{32}", secret)
    assert key.prefix == secret[: len(prefix) + 4]
    [listed] = list_keys(store)
    assert listed.as_dict() == key.as_dict()
    assert secret not in repr(listed.as_dict())
    import sqlalchemy as sa

    from tallystick.control import tables as t

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.api_keys)).one()
    assert row.hash == digest(secret) == __import__("hashlib").sha256(secret.encode()).hexdigest()
    assert secret not in repr(tuple(row))
    entries = store.audit_log(kind=AUDIT_KIND)
    assert [(e.action, e.actor) for e in entries] == [("create", ACTOR)]
    assert secret not in repr(entries[0].as_dict())


def test_the_key_is_never_in_the_database_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.db'}"
    with ControlStore.open(url) as store:
        secrets = [create_key(store, "read", f"r{i}", actor=ACTOR)[1] for i in range(3)]
        session = Verifier(store, Settings(data=tmp_path))
        try:
            opened = session.sign_in(secrets[0].encode())
            assert opened is not None
            cookie = opened[0]
        finally:
            session.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("control.db*"))
    for secret in secrets:
        assert secret.encode() not in blob
        assert secret[8:].encode() not in blob  # not even the random part
    assert cookie.encode() not in blob
    assert digest(secrets[0]).encode() in blob  # what is kept instead


def test_verify_and_revoke(store: ControlStore) -> None:
    write, w = create_key(
        store, "write", "site", actor=ACTOR, app="web", origins=["https://A.example"]
    )
    read, r = create_key(store, "read", "analyst", actor=ACTOR, streams=["payments"])
    admin, a = create_key(store, "admin", "ops", actor=ACTOR)
    assert verify(store, w) == Principal(
        "write", f"key:{write.id}:site", write.id, frozenset(), "web"
    )
    assert verify(store, r) == Principal(
        "read", f"key:{read.id}:analyst", read.id, frozenset({"payments"})
    )
    assert verify(store, a) == Principal("admin", f"key:{admin.id}:ops", admin.id)
    assert write.origins == ("https://a.example",)
    assert verify(store, r + "x") is None
    assert verify(store, "tally_r_" + "0" * 32) is None
    version = store.version()
    revoked = revoke_key(store, read.id, "cli:other")
    assert revoked.revoked_by == "cli:other"
    assert not revoked.active
    assert verify(store, r) is None
    assert store.version() == version + 1
    [entry, *_] = store.audit_log(kind=AUDIT_KIND)
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.action, entry.before["status"], entry.after["status"]) == (
        "revoke",
        "active",
        "revoked",
    )
    with pytest.raises(Conflict, match="revoked already"):
        revoke_key(store, read.id, ACTOR)
    with pytest.raises(NotFound, match="tally keys list"):
        revoke_key(store, 999, ACTOR)
    with pytest.raises(NotFound):
        get_key(store, 999)
    assert [k.id for k in list_keys(store, include_revoked=False)] == [write.id, admin.id]
    assert get_key(store, read.id).revoked_at is not None


@pytest.mark.parametrize(
    ("kind", "extra", "where", "says"),
    [
        ("reader", {}, "kind", "write, read or admin"),
        ("read", {"name": " "}, "name", "give the key a name"),
        ("write", {}, "app", "give the key an app name"),
        ("read", {"app": "web"}, "app", "only write keys"),
        ("admin", {"streams": ["x"]}, "streams", "only read keys"),
        ("write", {"app": "web", "origins": ["https://*.example.com"]}, "origins", "wildcards"),
        ("write", {"app": "web", "origins": ["*"]}, "origins", "not an origin"),
        ("write", {"app": "web", "origins": ["https://a.example/path"]}, "origins", "no path"),
        ("write", {"app": "web", "origins": ["ftp://a.example"]}, "origins", "not an origin"),
    ],
)
def test_bad_keys_are_refused_saying_why(
    kind: str, extra: dict[str, Any], where: str, says: str
) -> None:
    name = extra.pop("name", "n")
    with pytest.raises(DefinitionError) as refused:
        check_key(kind, name, **extra)
    assert refused.value.where == where
    assert says in str(refused.value)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443/", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
    ],
)
def test_origins_are_normalised(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_which_kinds_are_keyed_and_static_keys(store: ControlStore, tmp_path: Path) -> None:
    verifier = Verifier(store, Settings(data=tmp_path))
    try:
        assert verifier.keyed() == Keyed()
        key, secret = create_key(
            store, "write", "site", actor=ACTOR, app="web", origins=["https://a.example"]
        )
        assert verifier.keyed() == Keyed(write=True)
        assert verifier.origins() == {"https://a.example"}
        revoke_key(store, key.id, ACTOR)
        # revoking the last key does not open ingestion again: a new key is needed
        assert verifier.keyed() == Keyed(write=True)
        assert verifier.origins() == frozenset()
        found = verifier.lookup(secret.encode())
        assert found is not None
        assert found.principal is None
        assert verifier.lookup(b"nope") is None
    finally:
        verifier.close()
    statics = Verifier(store, Settings(data=tmp_path, read_key="r-static", admin_key="a-static"))
    try:
        assert statics.keyed() == Keyed(write=True, read=True, admin=True)
        assert statics.lookup(b"r-static").principal == STATIC_READ  # type: ignore[union-attr]
        assert statics.lookup(b"a-static").principal == STATIC_ADMIN  # type: ignore[union-attr]
    finally:
        statics.close()


def test_last_use_is_recorded_at_most_once_a_minute(store: ControlStore, tmp_path: Path) -> None:
    key, secret = create_key(store, "read", "r", actor=ACTOR)
    verifier = Verifier(store, Settings(data=tmp_path))
    try:
        for _ in range(5):
            verifier.lookup(secret.encode())
        verifier._writer.submit(lambda: None).result()  # the background write is done
        first = get_key(store, key.id).last_used_at
        assert first is not None
        verifier.lookup(secret.encode())
        verifier._writer.submit(lambda: None).result()
        assert get_key(store, key.id).last_used_at == first
    finally:
        verifier.close()


def test_sessions_stand_for_their_key(store: ControlStore, tmp_path: Path) -> None:
    settings = Settings(data=tmp_path, read_key="static-read", dashboard_session_hours=1)
    read, r = create_key(store, "read", "analyst", actor=ACTOR, streams=["payments"])
    _admin, a = create_key(store, "admin", "ops", actor=ACTOR)
    _, w = create_key(store, "write", "site", actor=ACTOR, app="web")
    verifier = Verifier(store, settings)
    try:
        assert verifier.sign_in(w.encode()) is None  # write keys do not sign in
        assert verifier.sign_in(b"wrong") is None
        cookie, who = verifier.sign_in(r.encode())  # type: ignore[misc]
        assert who == Principal("read", f"key:{read.id}:analyst", read.id, frozenset({"payments"}))
        assert verifier.session(cookie.encode()) == who
        admin_cookie, admin_who = verifier.sign_in(a.encode())  # type: ignore[misc]
        assert admin_who.kind == "read"
        assert admin_who.sees_everything
        static_cookie, static_who = verifier.sign_in(b"static-read")  # type: ignore[misc]
        assert static_who == STATIC_READ
        assert verifier.session(static_cookie.encode()) == STATIC_READ
        # revoking the key ends its sessions at once
        revoke_key(store, read.id, ACTOR)
        assert verifier.session(cookie.encode()) is None
        assert verifier.session(admin_cookie.encode()) is not None
        verifier.sign_out(admin_cookie.encode())
        assert verifier.session(admin_cookie.encode()) is None
        assert verifier.session(b"made-up") is None
    finally:
        verifier.close()
    # a static key's session ends when the setting changes
    changed = Verifier(store, dataclasses.replace(settings, read_key="another"))
    try:
        assert changed.session(static_cookie.encode()) is None
    finally:
        changed.close()
    assert static_fingerprint("read", "static-read") < 0


def test_an_expired_session_is_refused(store: ControlStore, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from tallystick.control import tables as t

    _, r = create_key(store, "read", "analyst", actor=ACTOR)
    verifier = Verifier(store, Settings(data=tmp_path))
    try:
        cookie, _ = verifier.sign_in(r.encode())  # type: ignore[misc]
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        with store.engine.begin() as conn:
            conn.execute(sa.update(t.dashboard_sessions).values(expires_at=past))
        assert verifier.session(cookie.encode()) is None
    finally:
        verifier.close()


# -- the rules ---------------------------------------------------------------------------------

W = Principal("write", "key:1:site", 1, frozenset(), "web")
R = Principal("read", "key:2:analyst", 2, frozenset())
A = Principal("admin", "key:3:ops", 3)
ALL = Keyed(write=True, read=True, admin=True)
NONE = Keyed()


def sent(principal: Principal | None, **kw: Any) -> Credential:
    return Credential(True, principal, **kw)


# (case, need, credential, keyed, method, client, principal or (status, code, words))
RULES: list[tuple[str, str, Credential, Keyed, str, Any, object]] = [
    ("write key sends", "write", sent(W), ALL, "POST", AWAY, W),
    (
        "no key, ingestion keyed",
        "write",
        NOTHING,
        ALL,
        "POST",
        AWAY,
        (401, messages.UNAUTHORIZED, "needs a write key"),
    ),
    (
        "unknown key, ingestion keyed",
        "write",
        sent(None),
        ALL,
        "POST",
        AWAY,
        (401, messages.UNAUTHORIZED, "not accepted"),
    ),
    ("read key sends", "write", sent(R), ALL, "POST", AWAY, (403, messages.FORBIDDEN, "write key")),
    ("open ingestion", "write", NOTHING, NONE, "POST", AWAY, OPEN),
    ("open ingestion ignores keys", "write", sent(None), NONE, "POST", AWAY, OPEN),
    (
        "revoked key, even when open",
        "write",
        sent(None, revoked=True),
        NONE,
        "POST",
        AWAY,
        (401, messages.UNAUTHORIZED, "revoked"),
    ),
    (
        "write key reads",
        "read",
        sent(W),
        ALL,
        "GET",
        HERE,
        (403, messages.FORBIDDEN, "only sends events"),
    ),
    (
        "write key reads, reads open",
        "read",
        sent(W),
        NONE,
        "GET",
        HERE,
        (403, messages.FORBIDDEN, "only sends events"),
    ),
    (
        "write key administers",
        "admin",
        sent(W),
        ALL,
        "POST",
        HERE,
        (403, messages.FORBIDDEN, "only sends events"),
    ),
    ("read key reads", "read", sent(R), ALL, "GET", AWAY, R),
    (
        "read key changes",
        "admin",
        sent(R),
        ALL,
        "POST",
        AWAY,
        (403, messages.FORBIDDEN, "needs an admin key"),
    ),
    (
        "read key lists streams",
        "admin",
        sent(R),
        ALL,
        "GET",
        AWAY,
        (403, messages.FORBIDDEN, "needs an admin key"),
    ),
    ("admin key changes", "admin", sent(A), ALL, "DELETE", AWAY, A),
    ("admin key reads", "read", sent(A), ALL, "GET", AWAY, A),
    (
        "no key, reads keyed",
        "read",
        NOTHING,
        ALL,
        "GET",
        HERE,
        (401, messages.UNAUTHORIZED, "needs a read key"),
    ),
    (
        "unknown key, reads keyed",
        "read",
        sent(None),
        ALL,
        "GET",
        HERE,
        (401, messages.UNAUTHORIZED, "not accepted"),
    ),
    (
        "ended session",
        "read",
        sent(None, cookie=True),
        ALL,
        "GET",
        HERE,
        (401, messages.UNAUTHORIZED, "sign in again"),
    ),
    ("open reads", "read", NOTHING, NONE, "GET", AWAY, OPEN),
    (
        "no admin key: remote change",
        "admin",
        NOTHING,
        NONE,
        "POST",
        AWAY,
        (403, messages.FORBIDDEN, "own machine only"),
    ),
    (
        "no admin key: local change",
        "admin",
        NOTHING,
        NONE,
        "POST",
        HERE,
        Principal("open", LOOPBACK_ACTOR),
    ),
    (
        "no admin key: local change, read key",
        "admin",
        sent(R),
        Keyed(read=True),
        "POST",
        HERE,
        dataclasses.replace(R, name=LOOPBACK_ACTOR),
    ),
    (
        "no admin key: local change, reads keyed",
        "admin",
        NOTHING,
        Keyed(read=True),
        "POST",
        HERE,
        (401, messages.UNAUTHORIZED, "read key"),
    ),
    (
        "admin keyed, none sent",
        "admin",
        NOTHING,
        ALL,
        "GET",
        HERE,
        (401, messages.UNAUTHORIZED, "needs an admin key"),
    ),
    ("health checks", "none", NOTHING, ALL, "GET", AWAY, OPEN),
]


@pytest.mark.parametrize(
    ("need", "credential", "keyed", "method", "client", "want"),
    [r[1:] for r in RULES],
    ids=[r[0] for r in RULES],
)
def test_decide(
    need: Any, credential: Credential, keyed: Keyed, method: str, client: Any, want: object
) -> None:
    if isinstance(want, Principal):
        assert decide(need, credential, lambda: keyed, method, client) == want
        return
    with pytest.raises(Refused) as refused:
        decide(need, credential, lambda: keyed, method, client)
    assert isinstance(want, tuple)
    status: int = want[0]
    code: str = want[1]
    words: str = want[2]
    assert (refused.value.status, refused.value.problem.code) == (status, code)
    assert words in refused.value.problem.message
    if status == 401:
        assert refused.value.headers == ((b"www-authenticate", b"Bearer"),)


@pytest.mark.parametrize(
    ("path", "method", "need"),
    [
        ("/v1/events", "POST", "write"),
        ("/v1/events", "OPTIONS", "none"),
        ("/v1/query/count", "GET", "read"),
        ("/v1/metrics/x", "POST", "read"),
        ("/v1/catalog", "GET", "read"),
        ("/v1/catalog/streams", "GET", "read"),
        ("/v1/meta", "GET", "read"),
        ("/v1/health", "GET", "read"),
        ("/v1/quality/loss", "GET", "read"),
        ("/v1/audit", "GET", "read"),
        ("/v1/flags", "GET", "read"),
        ("/v1/flags/", "GET", "read"),
        ("/v1/flags/ruleset", "GET", "flags"),
        ("/v1/admin/streams", "GET", "admin"),
        ("/v1/admin/keys/3", "DELETE", "admin"),
        ("/v1", "GET", "none"),
        ("/v1/nope", "GET", "none"),
        ("/openapi.json", "GET", "none"),
        ("/healthz", "GET", "none"),
    ],
)
def test_what_each_path_needs(path: str, method: str, need: str) -> None:
    assert need_of(path, method) == need


def test_keys_that_cannot_be_checked_are_a_503_not_a_decision(tmp_path: Path) -> None:
    """A control plane that cannot be read decides nothing: 503 with Retry-After, never open."""
    import sqlalchemy as sa
    from starlette.testclient import TestClient

    from tallystick.collect.app import Collector

    settings = Settings(data=tmp_path / "data", min_free_bytes=0)
    with ControlStore.for_settings(settings) as store:
        _, secret = create_key(store, "write", "site", actor=ACTOR, app="web")
    with TestClient(Collector(settings), base_url="http://127.0.0.1") as client:
        auth = {"Authorization": f"Bearer {secret}"}
        assert client.post("/v1/events", json=[], headers=auth).status_code in (200, 400)
        with ControlStore.for_settings(settings) as store, store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE api_keys RENAME TO api_keys_gone"))
        for headers in (auth, {}):
            refused = client.post("/v1/events", json=[], headers=headers)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == messages.NOT_READY
        assert client.get("/v1/meta", headers=auth).status_code == 503
        assert (
            client.options("/v1/events", headers={"Origin": "https://a.example"}).status_code == 204
        )
        assert client.get("/", follow_redirects=False).status_code == 503
