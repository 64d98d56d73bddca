"""Purge: delete quarantined data from the lake's Parquet files, for good.

What goes, for the active quarantine rules (``control.quarantine``):

* **events** (``events/``): every stored copy of an event any copy of which a rule matches — the
  rows analyses leave out (``metrics.exclusion``), so purging changes no analysis's answer;
* **the delivery ledger** (``messages/``): every row of those events' ids. A ledger row holds
  only ids, the payload's fingerprint and the client library, so it is matched by ``event_id``
  alone (a client that reused an id for a different event loses that event's ledger rows too).
  The loss report then counts fewer messages: a session purged in part shows its purged
  messages as lost;
* **failed events** (``failed/``): rows with one of those events' ids, and, for a ``user`` or
  ``session`` rule without a time window, rows whose raw JSON (a JSON object) has that
  ``user.id`` or ``session.id``. Failed events carry no network and no time the rule's window
  could be compared with, so ``ip`` and ``where`` rules (and time-bounded ones) reach them by
  event id only.

Each file holding such rows is read whole, the rows are dropped (the others keep their order and
every value), and what is left is written atomically under a new name in the same partition
(``rewritten_path``: never over the old name, which a running query may be reading) before the
old file is deleted; a file left empty is just deleted. A crash between that write and that
delete leaves both: the rows kept appear twice (events are de-duplicated by every analysis; the
ledger would count those messages twice). Files without such rows are not touched. The
ledger and the failed events go first, the events last: the events are what the rows to delete
are found from, so a purge interrupted at any point and run again finishes the job. Running it
twice deletes nothing the second time.

Compaction must not merge files while they are rewritten (it would write back what the purge
removed), so the purge holds the loader's lock (``store.loader.loader_lock``): a running loader
(``tally serve``) holds it as long as it runs, and the purge refuses, saying so.

Bots are not purged: they are left out of analyses by default, not quarantined. Table snapshots
of data models and materialised metric results are derived copies: rebuild them afterwards.

The machinery is shared: retention (``store.retention``) and user deletion (``store.deletion``)
describe what they delete as a ``Selection`` (per kind of lake file, a DuckDB condition on its
rows, optionally the only files to look at and files known to go whole), ``changes`` finds the
files it touches and ``apply`` rewrites them the same way, in the same order.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick.control.quarantine import Rule
from tallystick.store.lake import (
    DECLINED,
    DECLINED_SCHEMA,
    EVENT_SCHEMA,
    EVENTS,
    FAILED,
    FAILED_SCHEMA,
    MESSAGES,
    MESSAGES_SCHEMA,
    Lake,
    LocalStorage,
)
from tallystick.store.reader import connect, retry_io, with_retry

LOCK_WAIT_SECONDS: Final = 5.0
_ROW: Final = "__tally_row"


class PurgeRefused(RuntimeError):
    """The purge (or retention, or a deletion) cannot run now (another process holds the
    loader's lock)."""


@dataclass(frozen=True, slots=True)
class FileChange:
    """One lake file with rows to delete."""

    kind: str
    path: str
    """Relative to the lake root."""
    rows: int
    """Rows the file holds."""
    removed: int
    """Rows deleted from it (all of them: the file is deleted)."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge deletes (``dry_run``) or deleted."""

    rules: tuple[Rule, ...]
    events_by_rule: dict[int, int]
    """Per rule id, the distinct events (``event_id`` and ``name``) it matches."""
    events: int
    """Distinct events deleted (an event several rules match counts once)."""
    files: tuple[FileChange, ...] = field(default_factory=tuple)
    dry_run: bool = True

    def removed(self, kind: str) -> int:
        """Rows deleted from files of ``kind`` (``events``, ``messages``, ``failed``)."""
        return sum(f.removed for f in self.files if f.kind == kind)

    def summary(self) -> dict[str, object]:
        """The numbers, for the audit log and ``--format json``."""
        return {
            "events": self.events,
            "event_rows": self.removed(EVENTS),
            "ledger_rows": self.removed(MESSAGES),
            "failed_rows": self.removed(FAILED),
            "files_rewritten": sum(1 for f in self.files if f.removed < f.rows),
            "files_deleted": sum(1 for f in self.files if f.removed == f.rows),
            "events_by_rule": {str(k): v for k, v in self.events_by_rule.items()},
        }


def _sql(rule_tree: object) -> str:
    from sqlglot import exp

    from tallystick.metrics.sql import render

    assert isinstance(rule_tree, exp.Expr)
    return render(rule_tree, "duckdb")


def _json_matches(rules: Sequence[Rule]) -> str | None:
    """The condition on a failed event's ``raw`` for user and session rules without a window."""
    parts: list[str] = []
    for rule in rules:
        if rule.kind not in ("user", "session") or rule.time_from or rule.time_to:
            continue
        path = "$.user.id" if rule.kind == "user" else "$.session.id"
        value = rule.value.replace("'", "''")
        parts.append(
            f"(CASE WHEN json_valid(raw) THEN json_extract_string(raw, '{path}') END) = '{value}'"
        )
    return " OR ".join(parts) if parts else None


def _by_rule(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule]) -> dict[int, int]:
    from tallystick.metrics.exclusion import rule_condition

    flags = ", ".join(
        f"count(DISTINCT (event_id, name)) FILTER (WHERE {_sql(rule_condition(r))})" for r in rules
    )
    row = con.execute(f"SELECT {flags} FROM raw_events").fetchone()
    assert row is not None
    return {r.id: int(n) for r, n in zip(rules, row, strict=True)}


def matched_events(lake: Lake, rules: Sequence[Rule]) -> dict[int, int]:
    """Per rule id, the distinct events (``event_id`` and ``name``) it matches in the lake."""
    if not rules:
        return {}
    return with_retry(lake, lambda con: _by_rule(con, rules))


def plan(lake: Lake, rules: Sequence[Rule]) -> PurgeReport:
    """What purging ``rules`` would delete; nothing is written."""

    def attempt() -> PurgeReport:
        con = connect(lake)
        try:
            return _plan(con, lake, tuple(rules))
        finally:
            con.close()

    return retry_io(attempt)


def _plan(con: duckdb.DuckDBPyConnection, lake: Lake, rules: tuple[Rule, ...]) -> PurgeReport:
    from tallystick.metrics.exclusion import matched

    if not rules:
        return PurgeReport((), {}, 0)
    by_rule = _by_rule(con, rules)
    con.execute(
        "CREATE TEMP TABLE purge_keys AS SELECT DISTINCT event_id, name FROM raw_events "
        f"WHERE event_id IS NOT NULL AND ({_sql(matched(rules))})"
    )
    con.execute("CREATE TEMP TABLE purge_ids AS SELECT DISTINCT event_id FROM purge_keys")
    count = con.execute("SELECT count(*) FROM purge_keys").fetchone()
    events = int(count[0]) if count else 0
    selection = Selection(_conditions(rules), {} if events else {MESSAGES: (), EVENTS: ()})
    return PurgeReport(rules, by_rule, events, tuple(changes(con, lake, selection)))


def _conditions(rules: Sequence[Rule]) -> dict[str, str]:
    """Per kind of lake file (in the order they are purged), the condition on its rows."""
    failed = "event_id IN (SELECT event_id FROM purge_ids)"
    raw = _json_matches(rules)
    if raw is not None:
        failed = f"({failed} OR {raw})"
    return {
        MESSAGES: "event_id IN (SELECT event_id FROM purge_ids)",
        FAILED: failed,
        EVENTS: "(event_id, name) IN (SELECT event_id, name FROM purge_keys)",
    }


def purge(
    lake: Lake, rules: Sequence[Rule], data: Path, *, wait: float = LOCK_WAIT_SECONDS
) -> PurgeReport:
    """Delete what ``rules`` match from the lake (see the module docstring), holding the loader's
    lock of data directory ``data``; raises ``PurgeRefused`` when a loader holds it (after
    waiting ``wait`` seconds for it)."""
    with loader_locked(data, wait):
        con = connect(lake)
        try:
            planned = _plan(con, lake, tuple(rules))
            done = apply(con, lake, Selection(_conditions(rules)), planned.files)
        finally:
            con.close()
    return PurgeReport(planned.rules, planned.events_by_rule, planned.events, tuple(done), False)


# -- the shared machinery: find the files holding rows to delete, rewrite them -----------------

SCHEMAS: Final = {
    EVENTS: EVENT_SCHEMA,
    MESSAGES: MESSAGES_SCHEMA,
    FAILED: FAILED_SCHEMA,
    DECLINED: DECLINED_SCHEMA,
}
"""Each kind's current columns: a condition sees every one of them, even on a file written
before a column existed (it reads as null there)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Rows to delete from the lake.

    ``conditions`` maps each kind of lake file, in the order its rows are deleted, to a DuckDB
    condition on that kind's rows (it may use temporary tables of the connection it runs on).
    ``files`` narrows a kind to the files listed (relative to the lake root; all of the kind's
    files when the kind is not in it), and ``whole`` names files every row of which goes: they
    are deleted without being read."""

    conditions: Mapping[str, str]
    files: Mapping[str, Sequence[str]] = field(default_factory=dict)
    whole: frozenset[str] = frozenset()


def changes(con: duckdb.DuckDBPyConnection, lake: Lake, selection: Selection) -> list[FileChange]:
    """The files holding rows ``selection`` deletes, with how many it deletes from each."""
    found: list[FileChange] = []
    root = str(lake.root) + os.sep
    for kind, condition in selection.conditions.items():
        paths = list(selection.files.get(kind, lake.files(kind)))
        whole = [p for p in paths if p in selection.whole]
        for path in whole:
            with contextlib.suppress(FileNotFoundError):
                rows = pq.ParquetFile(lake.root / path).metadata.num_rows
                found.append(FileChange(kind, path, rows, rows))
        paths = [p for p in paths if p not in selection.whole]
        if not paths:
            continue
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in lake.absolute(paths))
        source = f"read_parquet([{listed}], union_by_name = true, filename = true)"
        columns = _missing_columns(con, source, SCHEMAS.get(kind))
        rows = con.execute(
            "SELECT filename, count(*) AS rows, count(*) FILTER (WHERE "
            f"{condition}) AS removed FROM (SELECT *{columns} FROM {source}) "
            "GROUP BY filename HAVING removed > 0 ORDER BY filename"
        ).fetchall()
        for filename, total, removed in rows:
            found.append(FileChange(kind, str(filename).removeprefix(root), total, removed))
    return found


def _missing_columns(con: duckdb.DuckDBPyConnection, source: str, schema: pa.Schema | None) -> str:
    """``, NULL AS column`` for each column of ``schema`` that ``source`` lacks."""
    if schema is None:
        return ""
    present = {str(r[0]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    return "".join(
        f", CAST(NULL AS {_duckdb_type(f.type)}) AS {f.name}"
        for f in schema
        if f.name not in present
    )


_DUCKDB_TYPES: Final = {
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int64": "BIGINT",
    "int16": "SMALLINT",
    "double": "DOUBLE",
    "date32[day]": "DATE",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "map<string, string>": "MAP(VARCHAR, VARCHAR)",
}


def _duckdb_type(kind: pa.DataType) -> str:
    return _DUCKDB_TYPES.get(str(kind), "VARCHAR")


def apply(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    selection: Selection,
    planned: Sequence[FileChange],
) -> list[FileChange]:
    """Rewrite the ``planned`` files (``changes``) without the rows ``selection`` deletes, kind
    by kind in the selection's order; what was deleted. A partition directory left empty is
    removed. The caller holds the loader's lock."""
    order = {kind: i for i, kind in enumerate(selection.conditions)}
    done: list[FileChange] = []
    for change in sorted(planned, key=lambda f: order[f.kind]):
        if change.path in selection.whole:
            lake.storage.delete(change.path)
            done.append(change)
        else:
            done.append(_rewrite(con, lake, change, selection.conditions[change.kind]))
        if done[-1].removed == done[-1].rows:
            _remove_empty_partition(lake, change.path)
    return done


def _remove_empty_partition(lake: Lake, path: str) -> None:
    if isinstance(lake.storage, LocalStorage):
        with contextlib.suppress(OSError):  # not empty (or gone): it stays
            (lake.root / path).parent.rmdir()


def _rewrite(
    con: duckdb.DuckDBPyConnection, lake: Lake, change: FileChange, condition: str
) -> FileChange:
    """``change``'s file without the rows ``condition`` holds for, written atomically (deleted
    when nothing is left); what was deleted."""
    try:
        table = pq.read_table(lake.root / change.path)
    except FileNotFoundError:  # deleted since it was planned: nothing left to delete
        return FileChange(change.kind, change.path, 0, 0)
    numbered = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    schema = SCHEMAS.get(change.kind)
    if schema is not None:  # columns added since the file was written read as null
        for f in schema:
            if f.name not in numbered.column_names:
                numbered = numbered.append_column(f, pa.nulls(table.num_rows, f.type))
    con.register("purge_file", numbered)
    try:
        doomed = con.sql(f"SELECT {_ROW} FROM purge_file WHERE {condition}").arrow().read_all()
    finally:
        con.unregister("purge_file")
    drop = pc.is_in(numbered[_ROW], value_set=doomed[_ROW])
    kept = table.filter(pc.invert(drop))
    removed = table.num_rows - kept.num_rows
    if removed == 0:
        return FileChange(change.kind, change.path, table.num_rows, 0)
    if kept.num_rows > 0:
        lake.storage.write_table(rewritten_path(change.path), kept)
    lake.storage.delete(change.path)
    return FileChange(change.kind, change.path, table.num_rows, removed)


def rewritten_path(path: str) -> str:
    """Where a rewritten file goes: a new name in its partition, never the old one.

    A query lists a partition's files, reads each file's footer, then reads its pages: a file
    replaced under its own name in between would pair the old footer with the new pages (DuckDB
    reports "Invalid data", or worse, reads garbage). Under a new name, a reader that listed the
    old file finds it gone and lists the files anew (``reader.retry_io``, ``metrics.api``), as
    after a compaction; one that lists both in the instant between the write and the delete
    counts some events twice, which analyses' de-duplication absorbs.
    """
    partition = path.rsplit("/", 1)[0]
    return f"{partition}/rewrite-{uuid.uuid4().hex[:16]}.parquet"


class _Deadline:
    """A stop signal for ``loader_lock`` that fires after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def is_set(self) -> bool:
        return time.monotonic() >= self.until

    def wait(self, timeout: float | None = None) -> bool:
        left = self.until - time.monotonic()
        if left > 0:
            time.sleep(min(left, timeout if timeout is not None else left))
        return self.is_set()


@contextlib.contextmanager
def loader_locked(
    data: Path, wait: float = LOCK_WAIT_SECONDS, what: str = "the purge"
) -> Iterator[None]:
    """Hold the loader's lock of data directory ``data`` (``what`` rewrites the lake's files);
    raises ``PurgeRefused`` when a loader holds it after ``wait`` seconds."""
    from tallystick.store.loader import LOCK_NAME, loader_lock

    with loader_lock(data, _Deadline(wait)) as lock:
        if not lock.acquired:
            holder = _holder(data / LOCK_NAME)
            raise PurgeRefused(
                f"the loader of {data} is running{holder}: it compacts the lake's files while "
                f"it runs, so {what} cannot rewrite them now. Stop `tally serve` (or the "
                "loader) first, and start it again afterwards"
            )
        yield


_loader_locked = loader_locked


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
