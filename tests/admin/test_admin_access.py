"""Who may call the control-plane API: the read key for reads, the admin key (or, without one,
loopback) for changes, and the actor each change is recorded under."""

from __future__ import annotations

from typing import Any

import pytest

from tallystick import messages
from tallystick.admin.access import ADMIN_ACTOR, LOOPBACK_ACTOR, authorize, is_loopback
from tallystick.collect.requests import Refused
from tallystick.config import Settings

READ = "read-key-1"
ADMIN = "admin-key-2"
HERE = ("127.0.0.1", 40000)
AWAY = ("198.51.100.4", 40000)


def scope(method: str, path: str, client: Any = HERE, key: str | None = None) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    return {"type": "http", "method": method, "path": path, "client": client, "headers": headers}


# (case, settings' read key, admin key, method, path, client, key sent, actor or (status, code))
CASES: list[tuple[str, str | None, str | None, str, str, Any, str | None, object]] = [
    ("open read", None, None, "GET", "/v1/admin/streams", AWAY, None, None),
    ("open catalog", None, None, "GET", "/v1/catalog/streams", AWAY, None, None),
    ("local change", None, None, "POST", "/v1/admin/streams", HERE, None, LOOPBACK_ACTOR),
    (
        "local change, ipv6",
        None,
        None,
        "DELETE",
        "/v1/admin/streams/a",
        ("::1", 1),
        None,
        LOOPBACK_ACTOR,
    ),
    (
        "remote change",
        None,
        None,
        "POST",
        "/v1/admin/streams",
        AWAY,
        None,
        (403, messages.FORBIDDEN),
    ),
    (
        "no client address",
        None,
        None,
        "PUT",
        "/v1/admin/streams/a",
        None,
        None,
        (403, messages.FORBIDDEN),
    ),
    (
        "read key: read without",
        READ,
        None,
        "GET",
        "/v1/admin/streams",
        HERE,
        None,
        (401, messages.UNAUTHORIZED),
    ),
    ("read key: read with it", READ, None, "GET", "/v1/catalog/models", AWAY, READ, None),
    (
        "read key: local change without it",
        READ,
        None,
        "POST",
        "/v1/admin/streams",
        HERE,
        None,
        (401, messages.UNAUTHORIZED),
    ),
    (
        "read key: local change with it",
        READ,
        None,
        "POST",
        "/v1/admin/streams",
        HERE,
        READ,
        LOOPBACK_ACTOR,
    ),
    (
        "read key: remote change with it",
        READ,
        None,
        "PATCH",
        "/v1/admin/streams/a",
        AWAY,
        READ,
        (403, messages.FORBIDDEN),
    ),
    (
        "admin key: remote change",
        None,
        ADMIN,
        "POST",
        "/v1/admin/streams",
        AWAY,
        ADMIN,
        ADMIN_ACTOR,
    ),
    (
        "admin key: local change without it",
        None,
        ADMIN,
        "POST",
        "/v1/admin/streams",
        HERE,
        None,
        (401, messages.UNAUTHORIZED),
    ),
    (
        "admin key: admin read without it",
        None,
        ADMIN,
        "GET",
        "/v1/admin/audit-log",
        HERE,
        None,
        (401, messages.UNAUTHORIZED),
    ),
    ("admin key: admin read with it", None, ADMIN, "GET", "/v1/admin/audit-log", AWAY, ADMIN, None),
    (
        "admin key: the read key does not write",
        READ,
        ADMIN,
        "POST",
        "/v1/admin/streams",
        HERE,
        READ,
        (403, messages.FORBIDDEN),
    ),
    ("both keys: catalog with the read key", READ, ADMIN, "GET", "/v1/audit", AWAY, READ, None),
    (
        "both keys: catalog with the admin key",
        READ,
        ADMIN,
        "GET",
        "/v1/catalog/fields",
        AWAY,
        ADMIN,
        None,
    ),
    (
        "both keys: catalog with another key",
        READ,
        ADMIN,
        "GET",
        "/v1/catalog/fields",
        AWAY,
        "guess",
        (401, messages.UNAUTHORIZED),
    ),
]


@pytest.mark.parametrize(
    ("read_key", "admin_key", "method", "path", "client", "sent", "want"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_authorize(
    read_key: str | None,
    admin_key: str | None,
    method: str,
    path: str,
    client: Any,
    sent: str | None,
    want: object,
) -> None:
    settings = Settings(read_key=read_key, admin_key=admin_key)
    request = scope(method, path, client, sent)
    if isinstance(want, tuple):
        with pytest.raises(Refused) as refused:
            authorize(request, settings)
        assert (refused.value.status, refused.value.problem.code) == want
        if want[0] == 401:
            assert refused.value.headers == ((b"www-authenticate", b"Bearer"),)
        for key in (READ, ADMIN):
            assert key not in refused.value.problem.message
    else:
        assert authorize(request, settings) == want


def test_a_remote_change_is_told_to_set_the_admin_key() -> None:
    with pytest.raises(Refused) as refused:
        authorize(scope("POST", "/v1/admin/streams", AWAY), Settings())
    assert "TALLYSTICK_ADMIN_KEY" in refused.value.problem.message


@pytest.mark.parametrize(
    ("client", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("10.0.0.1", 1), False),
        (("::ffff:10.0.0.1", 1), False),
        (("::ffff:127.0.0.1", 1), True),
        (("testclient", 1), False),
        (None, False),
        ((), False),
    ],
)
def test_is_loopback(client: Any, loopback: bool) -> None:
    assert is_loopback(client) is loopback


def test_the_admin_key_is_hidden_from_repr() -> None:
    assert ADMIN not in repr(Settings(admin_key=ADMIN))
