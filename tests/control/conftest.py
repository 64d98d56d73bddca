"""Control-plane stores to test against: SQLite (a file) and, where the machine has
PostgreSQL's server binaries, a throwaway Postgres cluster (socket only, no TCP port)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tallystick.control.store import ControlStore


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the package's user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = _pg_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="tally-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    run = subprocess.run
    run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "tally",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses='' -k {root} -c fsync=off"
    pg_ctl = str(bin_dir / "pg_ctl")
    run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://tally@/postgres?host={root}"
    finally:
        run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url
    with ControlStore.open(url) as store:  # leave an empty database for the next test
        _drop_everything(store)


def _drop_everything(store: ControlStore) -> None:
    import sqlalchemy as sa

    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))


@pytest.fixture
def store(store_url: str) -> Iterator[ControlStore]:
    with ControlStore.open(store_url) as s:
        yield s


OpenStore = Callable[[], ControlStore]
