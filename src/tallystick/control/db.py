"""Connecting to the control-plane database and migrating it (SQLite by default, Postgres by URL).

SQLite is set up so that read-then-write transactions are atomic across processes (the CLI, the
admin API and every collector worker may write): Python's driver is told to leave transactions
to us, and every transaction starts with ``BEGIN IMMEDIATE`` (the write lock, taken up front) —
without it, two writers each reading a version and writing version + 1 lose updates. WAL lets
readers go on while one writes; ``busy_timeout`` makes a second writer wait instead of failing.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

HEAD: Final = "0006"
"""The newest migration (a test checks it against ``migrations/versions``): a database already
there is recognised without importing Alembic, which saves every collector worker ~15 MB."""
BUSY_TIMEOUT_MS: Final = 10_000
_ADVISORY_LOCK: Final = 0x7A11_5717  # "tally stick": one migration at a time on Postgres


def engine_for(url: str) -> sa.Engine:
    """An engine for ``url``, with the SQLite settings above when it is SQLite."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            for pragma in (
                "journal_mode=WAL",
                f"busy_timeout={BUSY_TIMEOUT_MS}",
                "foreign_keys=ON",
                "synchronous=NORMAL",
            ):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    # Alembic's default stdout is bound when it is first imported (maybe to a stream that is
    # closed by now, in a test runner); what it prints ("No new upgrade operations") is not for
    # people anyway
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(files("tallystick.control") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    yield


def current_revision(engine: sa.Engine) -> str | None:
    """The database's migration revision (None for an empty database), read with plain SQL."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database's tables up to ``revision`` (nothing to do, and Alembic not even
    imported, when they are at the newest revision already)."""
    if revision == "head" and current_revision(engine) == HEAD:
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn, _migration_lock(conn):
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def revisions(engine: sa.Engine) -> tuple[str | None, str | None]:
    """(the database's revision, the newest revision this version of Tallystick knows)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, ScriptDirectory.from_config(cfg).get_current_head()


def check_models(engine: sa.Engine) -> None:
    """Raise when ``tables.py`` and the migrated database differ (a migration is missing)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)
