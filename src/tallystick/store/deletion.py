"""Deleting users: their events leave the lake, the spool and everything derived from them.

A request (``control.deletions``) holds only keyed hashes of the forms the user id may be stored
under, never the id. The worker finds the ids in clear in the lake itself: it hashes each
distinct ``user_id`` of the event files and each ``user.id`` of the failed events' raw JSON
with the installation's secret and keeps those whose hash a request names. Those ids live in
the worker's memory only, for as long as the deletion runs.

What goes (``execute``), with the purge's machinery (``store.purge``: each file holding such
rows is read whole, the rows dropped, the file written atomically or deleted when empty):

* **events**: every stored copy of an event any copy of which carries one of the ids — so a
  copy a stream's ``keep`` stripped of ``user`` goes with the others;
* **the delivery ledger**: the rows of those events' ids;
* **failed events**: rows with one of those events' ids, and rows whose raw JSON (an event, an
  array of events or ``{"events": [...]}``) carries one of the ids as ``user.id``; a record that
  is not valid JSON (cut at ``failed_raw_max_bytes``) goes when it holds one of the ids as a
  JSON string;
* **the spool**: events not loaded yet are dropped when they are loaded (``Suppression``, used
  by the loader), so none of them reaches the lake; a deletion run by ``tally users delete``
  while no server runs loads the spool first;
* **sessionization state** (``state/sessions.json``): the user's tracks (keyed by user id) are
  forgotten;
* **derived data**: materialised metric results are computed again from the rewritten files
  (their input fingerprints changed), and the snapshots of table data models are built again;
  what cannot be refreshed now is reported as ``stale`` (rebuild it with ``tally metrics
  materialize`` / ``tally models build``).

The user's later events are suppressed: the collector drops them (``Controls.suppressed``) and
the loader drops any that reach the spool, both counting them as declined (reason
``deleted_user``). Running a deletion again removes nothing more. Nothing this module writes
holds the id in clear: the request's report has numbers only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from tallystick.control.deletions import (
    DELETED_USER,
    DONE,
    FAILED,
    DeletionRequest,
    finish,
    pending,
    suppressed_indexes,
)
from tallystick.store.lake import EVENTS, MESSAGES, Lake
from tallystick.store.lake import FAILED as FAILED_KIND
from tallystick.store.purge import (
    LOCK_WAIT_SECONDS,
    FileChange,
    Selection,
    apply,
    changes,
    loader_locked,
)
from tallystick.store.reader import connect, retry_io

if TYPE_CHECKING:
    import duckdb

    from tallystick.config import Settings
    from tallystick.control.store import ControlStore
    from tallystick.enrich.sessions import SessionStore

log = logging.getLogger("tallystick.deletion")

ACTOR: Final = "tally (deletion)"
#: the ``user.id`` values of a failed event's raw JSON: one event, an array, or {"events": [...]}
_FAILED_USERS: Final = """(CASE WHEN json_valid(raw) THEN CASE json_type(raw)
    WHEN 'OBJECT' THEN list_concat([json_extract_string(raw, '$.user.id')],
        coalesce(json_extract_string(raw, '$.events[*].user.id'), []))
    WHEN 'ARRAY' THEN json_extract_string(raw, '$[*].user.id')
    ELSE [] END ELSE [] END)"""
_TABLE: Final = "deleted_users"


@dataclass(frozen=True, slots=True)
class DeletionReport:
    """What deleting users removed (numbers only: never an id)."""

    requests: tuple[int, ...]
    forms: int = 0
    """Stored forms of the ids found in the lake."""
    events: int = 0
    """Distinct events (``event_id`` and ``name``) removed."""
    files: tuple[FileChange, ...] = ()
    session_tracks: int = 0
    spool_segments: int = 0
    """Spool segments loaded first (their events of deleted users dropped)."""
    metrics: tuple[str, ...] = ()
    """Materialised metrics computed again."""
    models: tuple[str, ...] = ()
    """Table data models built again."""
    stale: tuple[str, ...] = field(default_factory=tuple)
    """Derived data that could not be refreshed (``metric:NAME``, ``model:NAME``)."""

    def removed(self, kind: str) -> int:
        return sum(f.removed for f in self.files if f.kind == kind)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": list(self.requests),
            "forms_found": self.forms,
            "events": self.events,
            "event_rows": self.removed(EVENTS),
            "ledger_rows": self.removed(MESSAGES),
            "failed_rows": self.removed(FAILED_KIND),
            "files_rewritten": sum(1 for f in self.files if 0 < f.removed < f.rows),
            "files_deleted": sum(1 for f in self.files if f.removed and f.removed == f.rows),
            "session_tracks": self.session_tracks,
            "spool_segments": self.spool_segments,
            "metrics_recomputed": list(self.metrics),
            "models_rebuilt": list(self.models),
            "stale": list(self.stale),
        }


def _secret(settings: Settings) -> bytes:
    from tallystick.privacy.secrets import install_secret

    return install_secret(settings.data)


def _hashes(requests: Iterable[DeletionRequest]) -> frozenset[str]:
    return frozenset(h for r in requests for h in r.forms)


# -- finding the ids in clear ----------------------------------------------------------------------


def find_forms(con: duckdb.DuckDBPyConnection, hashes: frozenset[str], secret: bytes) -> list[str]:
    """The user ids stored in the lake (event files and failed events' raw JSON) whose keyed
    hash is one of ``hashes``."""
    stored = con.execute(
        "SELECT DISTINCT user_id FROM raw_events WHERE user_id IS NOT NULL AND user_id <> '' "
        f"UNION SELECT DISTINCT u FROM (SELECT unnest({_FAILED_USERS}) AS u FROM failed_events) "
        "WHERE u IS NOT NULL AND u <> ''"
    ).fetchall()
    ids = [str(r[0]) for r in stored]
    return sorted(ids[i] for i in suppressed_indexes(ids, hashes, secret))


def _register(con: duckdb.DuckDBPyConnection, forms: Sequence[str]) -> None:
    """The ids as a table the conditions read (never written into SQL text, which an error
    message could quote), with the events they carry."""
    con.register(
        _TABLE,
        pa.table(
            {
                "user_id": pa.array(list(forms), pa.string()),
                "needle": pa.array([_json_string(f) for f in forms], pa.string()),
            }
        ),
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE purge_keys AS SELECT DISTINCT event_id, name "
        f"FROM raw_events WHERE user_id IN (SELECT user_id FROM {_TABLE})"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE purge_ids AS SELECT DISTINCT event_id FROM purge_keys"
    )


def selection() -> Selection:
    """The rows of the users in the table ``_register`` made (and of their events)."""
    ids = "event_id IN (SELECT event_id FROM purge_ids)"
    listed = f"(SELECT list(user_id) FROM {_TABLE})"
    needles = f"EXISTS (SELECT 1 FROM {_TABLE} d WHERE contains(raw, d.needle))"
    failed = (
        f"({ids} OR list_has_any({_FAILED_USERS}, {listed}) OR (NOT json_valid(raw) AND {needles}))"
    )
    return Selection(
        {
            MESSAGES: ids,
            FAILED_KIND: failed,
            EVENTS: "(event_id, name) IN (SELECT event_id, name FROM purge_keys)",
        }
    )


def _json_string(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


# -- doing it --------------------------------------------------------------------------------------


def plan(lake: Lake, settings: Settings, requests: Sequence[DeletionRequest]) -> DeletionReport:
    """What deleting the users of ``requests`` would remove from the lake; nothing is written."""
    secret = _secret(settings)

    def attempt() -> DeletionReport:
        con = connect(lake)
        try:
            forms = find_forms(con, _hashes(requests), secret)
            if not forms:
                return DeletionReport(tuple(r.id for r in requests))
            _register(con, forms)
            found = changes(con, lake, selection())
            events = _count(con)
        finally:
            con.close()
        return DeletionReport(tuple(r.id for r in requests), len(forms), events, tuple(found))

    return retry_io(attempt)


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM purge_keys").fetchone()
    return int(row[0]) if row else 0


def execute(
    lake: Lake,
    settings: Settings,
    requests: Sequence[DeletionRequest],
    *,
    sessions: SessionStore | None = None,
    store: ControlStore | None = None,
    refresh: bool = True,
    spool_segments: int = 0,
) -> DeletionReport:
    """Delete the users of ``requests`` (see the module docstring). The caller holds the loader's
    lock; ``sessions`` is the loader's sessionization state when it runs in the loader (else
    the state file is edited). With ``refresh``, derived data is computed again."""
    secret = _secret(settings)
    hashes = _hashes(requests)
    con = connect(lake)
    try:
        forms = find_forms(con, hashes, secret)
        done: list[FileChange] = []
        events = 0
        if forms:
            _register(con, forms)
            events = _count(con)
            chosen = selection()
            done = apply(con, lake, chosen, changes(con, lake, chosen))
    finally:
        con.close()
    tracks = forget_sessions(settings, hashes, secret, sessions)
    metrics: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    stale: list[str] = []
    if refresh and done:
        metrics, failed_metrics = refresh_metrics(lake, settings)
        stale += [f"metric:{m}" for m in failed_metrics]
        if store is not None:
            models, failed_models = rebuild_models(settings, store)
            stale += [f"model:{m}" for m in failed_models]
    return DeletionReport(
        tuple(r.id for r in requests),
        len(forms),
        events,
        tuple(done),
        tracks,
        spool_segments,
        metrics,
        models,
        tuple(stale),
    )


def forget_sessions(
    settings: Settings,
    hashes: frozenset[str],
    secret: bytes,
    sessions: SessionStore | None = None,
) -> int:
    """Forget the sessionization tracks of the users (keyed ``u:<user id>``); how many."""
    from tallystick.enrich.pipeline import STATE_FILE
    from tallystick.enrich.sessions import SessionStore

    if sessions is None:
        path = settings.data / STATE_FILE
        if not path.exists():
            return 0
        sessions = SessionStore(path, round(settings.session_timeout_minutes * 60e6))
    keys = [k for k in sessions.sessionizer.state.tracks if k.startswith("u:")]
    gone = suppressed_indexes((k[2:] for k in keys), hashes, secret)
    return sessions.forget([keys[i] for i in sorted(gone)])


def refresh_metrics(lake: Lake, settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Compute again the materialised metrics that have results (only the periods whose input
    files changed); the names done and those that failed."""
    from tallystick.store.retention import RESULTS

    folder = lake.root / RESULTS
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not names:
        return (), ()
    try:
        from tallystick.control.quarantine import ActiveRules
        from tallystick.metrics.catalog import read_catalog
        from tallystick.metrics.engines import make_engine
        from tallystick.metrics.materialize import materialize

        catalog, _problems = read_catalog(settings.catalog_dir)
        known = {m.name: m for m in catalog}
        chosen = [known[n] for n in names if n in known]
        engine = make_engine(lake, "duckdb", quarantine=ActiveRules(settings))
        materialize(lake, chosen, engine=engine)
    except Exception:
        log.exception("computing materialised metrics again after a deletion failed")
        return (), tuple(names)
    done = tuple(m.name for m in chosen)
    return done, tuple(n for n in names if n not in done)


def rebuild_models(
    settings: Settings, store: ControlStore
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Build again the table data models that have a snapshot; names done and failed."""
    from tallystick.models.build import SNAPSHOTS, build_models

    folder = settings.lake_dir / SNAPSHOTS
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not names:
        return (), ()
    try:
        table_models = [m.name for m in store.models() if m.materialize == "table"]
        chosen = [n for n in names if n in table_models]
        if chosen:
            build_models(settings, store, chosen)
    except Exception:
        log.exception("building table models again after a deletion failed")
        return (), tuple(names)
    return tuple(chosen), ()


# -- requests --------------------------------------------------------------------------------------


def run_pending(
    settings: Settings,
    store: ControlStore,
    *,
    lake: Lake | None = None,
    sessions: SessionStore | None = None,
    actor: str = ACTOR,
    spool_segments: int = 0,
) -> DeletionReport | None:
    """Carry out every pending request (the caller holds the loader's lock) and mark them done,
    or failed with the reason; ``None`` when none was pending."""
    requests = pending(store)
    if not requests:
        return None
    ids = [r.id for r in requests]
    try:
        report = execute(
            lake or Lake(settings.lake_dir),
            settings,
            requests,
            sessions=sessions,
            store=store,
            spool_segments=spool_segments,
        )
    except Exception as exc:
        log.exception("deleting users (requests %s) failed", ids)
        finish(
            store,
            ids,
            status=FAILED,
            outcome=None,
            message=f"{type(exc).__name__}: {exc}"[:500],
            actor=actor,
        )
        raise
    message = None
    if report.stale:
        message = (
            "deleted; could not refresh "
            + ", ".join(report.stale)
            + ": run `tally metrics materialize` / `tally models build`"
        )
    finish(store, ids, status=DONE, outcome=report.summary(), message=message, actor=actor)
    return report


def run_here(
    settings: Settings, store: ControlStore, *, wait: float = LOCK_WAIT_SECONDS
) -> DeletionReport | None:
    """Carry out the pending requests in this process, holding the loader's lock (no server
    may run): the spool is loaded first, its deleted users' events dropped. Raises
    ``PurgeRefused`` while a loader holds the lock."""
    from tallystick.store.loader import Loader

    with loader_locked(settings.data, wait, "a deletion"):
        loader = Loader(settings)
        loaded = loader.load_once()
        sessions = loader.enricher.sessions
        return run_pending(settings, store, sessions=sessions, spool_segments=loaded.segments)


# -- suppression at load ---------------------------------------------------------------------------


class Suppression:
    """The keyed hashes of deleted users, for the loader: read from the control plane when its
    configuration version moves (checked at most every ``interval`` seconds)."""

    def __init__(self, settings: Settings, interval: float = 1.0) -> None:
        self.settings = settings
        self.interval = interval
        self.hashes: frozenset[str] = frozenset()
        self._version: int | None = None
        self._checked = -float("inf")
        self._secret: bytes | None = None

    def refresh(self, store: ControlStore | None, *, force: bool = False) -> frozenset[str]:
        if store is None:
            return self.hashes
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return self.hashes
        self._checked = now
        version = store.version()
        if force or version != self._version:
            from tallystick.control.deletions import suppressed_hashes

            with store.engine.connect() as conn:
                self.hashes = suppressed_hashes(conn)
            self._version = version
        return self.hashes

    def drop(
        self, table: pa.Table, frames: pa.Array
    ) -> tuple[pa.Table, pa.Array, list[dict[str, Any]]]:
        """``table`` and its ``frames`` without the rows of deleted users, and the declined
        counts of those rows (``received_ts``, ``stream``, ``reason``, ``name``, ``count``)."""
        if not self.hashes or not table.num_rows:
            return table, frames, []
        if self._secret is None:
            self._secret = _secret(self.settings)
        # each distinct id hashed once
        distinct = pc.unique(table["user_id"]).to_pylist()
        found = [distinct[i] for i in suppressed_indexes(distinct, self.hashes, self._secret)]
        if not found:
            return table, frames, []
        mask = pc.fill_null(
            pc.is_in(table["user_id"], value_set=pa.array(found, pa.string())), False
        )
        doomed = table.filter(mask)
        counts: Counter[tuple[str, str]] = Counter()
        first: dict[tuple[str, str], dt.datetime] = {}
        for stream, name, at in zip(
            doomed["stream"].to_pylist(),
            doomed["name"].to_pylist(),
            doomed["received_ts"].to_pylist(),
            strict=True,
        ):
            key = (stream or "", name)
            counts[key] += 1
            first[key] = min(first.get(key, at), at)
        declined: list[dict[str, Any]] = [
            {
                "received_ts": first[key],
                "stream": key[0],
                "reason": DELETED_USER,
                "name": key[1],
                "count": n,
            }
            for key, n in counts.items()
        ]
        keep = pc.invert(mask)
        return table.filter(keep), pc.filter(frames, keep), declined


def read_suppression(settings: Settings) -> Suppression:
    """The deleted users of ``settings``' control plane, read once (``tally import``)."""
    suppression = Suppression(settings)
    if control_store_exists(settings):
        from tallystick.control.store import ControlStore

        with ControlStore.for_settings(settings) as store:
            suppression.refresh(store, force=True)
    return suppression


def control_store_exists(settings: Settings) -> bool:
    """Whether the data directory has a control plane to read (a SQLite file, or a URL)."""
    if settings.control_url:
        return True
    return Path(settings.data / "control.db").exists()
