"""Shared fixtures: a data directory with settings, an in-process collector, event factories, the
session's demo build; and how pytest-xdist shares the suite out between workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from starlette.testclient import TestClient

import demo_build as demo
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


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoBuild:
    """The demo product built once for the session (``demo_build``): leave it as it is, work on
    a ``.copy(...)`` of it."""
    return demo.build(tmp_path_factory.mktemp("demo-build") / "data")


# -- pytest-xdist (`make unit` runs the suite on two workers) ---------------------------------

#: Tests sharing session state that is too costly to set up on both workers run on one; the
#: first matching prefix of a test's path names its group.
SHARED_STATE: Final = {
    # the demo build, its server and the browser (dashboard/conftest.py)
    "tests/dashboard/": "demo build and browser",
    "tests/e2e/test_demo.py": "demo build and browser",
    # a throwaway PostgreSQL cluster (control/conftest.py)
    "tests/control/": "postgres",
}


def worker_group(nodeid: str) -> str:
    """The tests that run on the same worker: a file's (its module-scoped fixtures are set up
    once), or a group of ``SHARED_STATE``."""
    path = nodeid.split("::", 1)[0]
    for prefix, group in SHARED_STATE.items():
        if path.startswith(prefix):
            return group
    return path


#: The longest groups (see ``--durations``), handed out first so that neither worker is left
#: with one of them at the end; the others follow, the ones with the most tests first.
LONGEST_FIRST: Final = (
    "demo build and browser",
    "tests/e2e/",
    "tests/metrics/test_parity.py",
    "tests/metrics/test_funnel_retention_properties.py",
    "tests/metrics/test_materialize.py",
)


def _rank(group: str) -> int:
    return next((i for i, p in enumerate(LONGEST_FIRST) if group.startswith(p)), len(LONGEST_FIRST))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (`make unit` uses it)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` (``--dist load``, the default, or ``loadfile``): a worker gets a whole group
    (``worker_group``) at a time, ``LONGEST_FIRST``. Other ``--dist`` modes are xdist's own."""
    if config.getvalue("dist") not in ("load", "loadfile"):
        return None
    from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

    class Grouped(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not getattr(self, "ranked", False):  # the queue is full at the first call
                ranked = sorted(self.workqueue.items(), key=lambda unit: _rank(unit[0]))
                self.workqueue.clear()
                self.workqueue.update(ranked)
                self.ranked = True
            super()._assign_work_unit(node)

    return Grouped(config, log)


#: Variables that readline (imported by pytest's pdb support) sets in the C environment of the
#: process, 80 and 24 without a terminal, where ``os.environ`` does not see them; a worker
#: inherits them and then has them in its ``os.environ``: rich consoles made when a CLI module
#: is imported keep 80 columns whatever a test's CliRunner says, and long paths wrap.
TERMINAL_SIZE: Final = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """What the controller's ``os.environ`` says of the terminal size, for the worker."""
    node.workerinput["terminal_size"] = {name: os.environ.get(name) for name in TERMINAL_SIZE}


def pytest_configure(config: pytest.Config) -> None:
    """A worker's terminal size variables are the controller's (``TERMINAL_SIZE``)."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    for name, value in workerinput.get("terminal_size", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
