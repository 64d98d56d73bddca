"""Shared fixtures: a data directory with settings, an in-process collector, event factories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.store.lake import Lake


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data", min_free_bytes=0)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings.lake_dir)


@pytest.fixture
def app(settings: Settings) -> Collector:
    return Collector(settings)


@pytest.fixture
def collector(app: Collector) -> Iterator[TestClient]:
    """The collector app in-process (lifespan runs, so the spool writer is live)."""
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client
