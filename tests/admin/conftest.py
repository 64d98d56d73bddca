"""The control-plane API in-process over a real SQLite store: a client on loopback, one from
another machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tallystick.admin.app import ControlApi
from tallystick.config import Settings

LOCAL = ("127.0.0.1", 50123)
REMOTE = ("203.0.113.7", 50123)


@pytest.fixture
def control(settings: Settings) -> Iterator[ControlApi]:
    api = ControlApi(settings)
    yield api
    api.close()


def client(app: Any, address: tuple[str, int] = LOCAL) -> TestClient:
    """A client of ``app`` calling from ``address`` (use it with ``with``: lifespan runs)."""
    return TestClient(app, base_url="http://127.0.0.1", client=address)


@pytest.fixture
def local(control: ControlApi) -> Iterator[TestClient]:
    """A client on this machine (changes are taken from it without an admin key)."""
    with client(control) as c:
        yield c
