"""Materialising data models in the engine: a view reads the lake live, a table is a snapshot.

Where models live (beside the control database and the lake)::

    DIR/models.duckdb                       a DuckDB database with one view per model
    DIR/lake/models/<name>/<name>.parquet   a table model's snapshot

A **view** model is a view over the lake's event files (``DIR/lake/events/*/*.parquet``, read
anew by every query), so it always shows the data stored so far. A **table** model is a Parquet
snapshot of the model's rows, written by ``tally models build`` (atomically: readers see the
old snapshot or the new one), and the view of the same name reads that snapshot. Open the
database with any DuckDB (``duckdb DIR/models.duckdb``, ``ATTACH 'DIR/models.duckdb'
(READ_ONLY)``); the snapshots are plain Parquet that every engine reads.

The snapshot also holds two hidden columns, ``_tally_client_ts`` and ``_tally_received_ts``
(when each row's event happened and arrived), which the checks use for ``--since``, freshness
and row-count change; the view leaves them out.

The views name the lake by its absolute path: build again after moving the data directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb

from tallystick.config import Settings
from tallystick.control.definitions import Model
from tallystick.control.store import ControlStore
from tallystick.models import sql
from tallystick.models.sql import ModelError
from tallystick.store.durable import replace_durably
from tallystick.store.lake import EVENTS, Lake
from tallystick.store.reader import retry_io

ENGINE_FILE: Final = "models.duckdb"
SNAPSHOTS: Final = "models"
"""The folder of table snapshots under the lake root (beside ``events/`` and ``metrics/``)."""
COMMENT: Final = "tallystick model"
"""How the views this module made are marked (others in the database are left alone)."""


def engine_file(settings: Settings) -> Path:
    """The DuckDB database holding the models' views."""
    return settings.data / ENGINE_FILE


def snapshot_file(settings: Settings, name: str) -> Path:
    """Where table model ``name``'s snapshot is written."""
    return settings.lake_dir / SNAPSHOTS / name / f"{name}.parquet"


def lake_glob(settings: Settings) -> str:
    """The lake's event files, by absolute path (the views keep it)."""
    return Lake(settings.lake_dir.resolve()).glob(EVENTS)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What building one model did."""

    model: str
    stream: str
    materialize: str
    database: Path
    """The DuckDB database holding the model's view."""
    columns: tuple[tuple[str, str], ...]
    """``(name, SQL type)`` of each column, in order."""
    rows: int | None
    """The snapshot's rows (a table); ``None`` for a view, which is read live."""
    snapshot: Path | None
    seconds: float
    built_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stream": self.stream,
            "materialize": self.materialize,
            "database": str(self.database),
            "columns": [{"name": n, "type": t} for n, t in self.columns],
            "rows": self.rows,
            "snapshot": None if self.snapshot is None else str(self.snapshot),
            "seconds": round(self.seconds, 3),
            "built_at": self.built_at.isoformat().replace("+00:00", "Z"),
        }


def select_models(store: ControlStore, names: Sequence[str] | None) -> list[Model]:
    """The models named (``NotFound`` for an unknown name), or every model."""
    if names is None:
        return list(store.models())
    return [store.model(n) for n in dict.fromkeys(names)]


def data_types(con: duckdb.DuckDBPyConnection, model: Model, glob: str) -> dict[str, str]:
    """The SQL type of each ``data`` key the model reads, from the values stored so far."""
    probe = sql.type_probe(model, sql.lake_source(glob))
    if probe is None:
        return {}
    row = con.execute(sql.render(probe)).fetchall()[0]
    return {
        key: sql.column_type(kinds or ())
        for key, kinds in zip(sql.data_keys(model), row, strict=True)
    }


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def open_engine(settings: Settings, *, create: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the models' database (one writer at a time, across processes)."""
    path = engine_file(settings)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise sql.EngineBusy(
                f"{path} is open in another process (a duckdb shell, a notebook, another "
                "`tally models build`): close it there and run again"
            ) from None
        raise ModelError(f"cannot open {path}: {exc}") from None
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # no bar on a command's stderr
        yield con
    finally:
        con.close()


def _our_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND database_name = "
        "current_database() AND schema_name = 'main' AND starts_with(comment, ?)",
        [COMMENT],
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def _write_snapshot(
    con: duckdb.DuckDBPyConnection, model: Model, glob: str, types: Mapping[str, str], to: Path
) -> int:
    query = sql.render(sql.model_relation(model, glob, types, hidden=True))
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        copied = con.execute(
            f"COPY ({query}) TO {_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchall()
        rows = int(copied[0][0]) if copied else 0

    replace_durably(to, write)
    return rows


def _drop_snapshot(settings: Settings, name: str) -> None:
    shutil.rmtree(settings.lake_dir / SNAPSHOTS / name, ignore_errors=True)


def build_model(
    con: duckdb.DuckDBPyConnection, settings: Settings, model: Model, at: dt.datetime
) -> BuildResult:
    """(Re)create one model's view, and for a table its snapshot first."""
    started = time.perf_counter()
    glob = lake_glob(settings)
    for field in model.fields:
        if field.name in sql.HIDDEN:
            raise ModelError(
                f"model {model.name!r}: column {field.name!r} is reserved for Tallystick; "
                "rename it with `as`"
            )

    def attempt() -> tuple[int | None, Path | None]:
        types = data_types(con, model, glob)
        if model.materialize == "table":
            target = snapshot_file(settings, model.name).resolve()
            rows = _write_snapshot(con, model, glob, types, target)
            view = sql.snapshot_view(model, str(target))
            con.execute(sql.render(sql.create_view(model.name, view)))
            return rows, target
        con.execute(sql.render(sql.create_view(model.name, sql.model_relation(model, glob, types))))
        _drop_snapshot(settings, model.name)
        return None, None

    rows, snapshot = retry_io(attempt)  # a file compacted away mid-read: list them again
    con.execute(
        f"COMMENT ON VIEW {_quoted(model.name)} IS "
        + _literal(f"{COMMENT} {model.name}: stream {model.stream}, {model.materialize}")
    )
    columns = tuple(
        (str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE {_quoted(model.name)}").fetchall()
    )
    return BuildResult(
        model=model.name,
        stream=model.stream,
        materialize=model.materialize,
        database=engine_file(settings),
        columns=columns,
        rows=rows,
        snapshot=snapshot,
        seconds=time.perf_counter() - started,
        built_at=at,
    )


def build_models(
    settings: Settings,
    store: ControlStore,
    names: Sequence[str] | None = None,
    *,
    now: dt.datetime | None = None,
) -> list[BuildResult]:
    """Build the models named (every model when ``names`` is None) and record when.

    Building every model also drops the views (and snapshots) of models that no longer exist.
    Raises ``NotFound`` for an unknown name and ``ModelError`` when the database is busy.
    """
    models = select_models(store, names)
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    results: list[BuildResult] = []
    with open_engine(settings) as con:
        for model in models:
            results.append(build_model(con, settings, model, at))
            store.mark_built(model.name, at)
        if names is None:
            keep = {m.name for m in models}
            for view in _our_views(con):
                if view not in keep:
                    con.execute(f"DROP VIEW IF EXISTS {_quoted(view)}")
            tables = {m.name for m in models if m.materialize == "table"}
            folder = settings.lake_dir / SNAPSHOTS
            for stale in sorted(folder.iterdir()) if folder.is_dir() else []:
                if stale.is_dir() and stale.name not in tables:
                    shutil.rmtree(stale, ignore_errors=True)
    return results


def drop_model(settings: Settings, name: str) -> bool:
    """Remove model ``name``'s view and snapshot; whether there was anything to remove."""
    found = (settings.lake_dir / SNAPSHOTS / name).exists()
    _drop_snapshot(settings, name)
    if not engine_file(settings).exists():
        return found
    with open_engine(settings, create=False) as con:
        if name in _our_views(con):
            con.execute(f"DROP VIEW IF EXISTS {_quoted(name)}")
            found = True
    return found
