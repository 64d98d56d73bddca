"""The loader: moves spool segments into the Parquet lake and compacts small files.

Order of operations makes every step safe to repeat after a crash:

1. read the frames of one or more claimable segments;
2. decode and enrich their events (``enrich.pipeline``: user agents, bots, geo, clock skew,
   sessions) with the request context each frame carries;
3. write the events (and failed events) as Parquet named after the first segment — written to
   a temporary file, fsync'd, renamed — so loading the same segments again replaces the same file;
4. save the sessionization state (``Enriched.commit``);
5. only then delete the segments.

A crash after 3 reloads the same segments with the old session state and writes the same rows
again (ids are deterministic); a crash after 4 gives the same ids to all but events of a
session that was still open, which then join the session their state knows (see
``enrich.sessions``, late events).

Compaction merges a partition's small files into one, keeping the first received copy of each
``event_id``, writes it atomically and then deletes the inputs. Readers de-duplicate as well, so
a crash between the two steps never shows an event twice.

Between batches, holding the lock it holds anyway, the loader also carries out pending user
deletions (``store.deletion``; checked every second) and enforces retention every
``retention_interval_seconds`` (``store.retention``). Events of deleted users are dropped when
they are loaded and counted as declined (reason ``deleted_user``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick.config import Settings
from tallystick.enrich.pipeline import Enricher, merged_metadata
from tallystick.store import spool
from tallystick.store.decode import decode_frames
from tallystick.store.failed import FailedEvent
from tallystick.store.lake import EVENTS, MESSAGES, Lake, LocalStorage, conform
from tallystick.store.ledger import MESSAGES_SCHEMA, ledger_table

if TYPE_CHECKING:
    from tallystick.control.store import ControlStore

log = logging.getLogger("tallystick.loader")

_decode_failed = msgspec.json.Decoder(list[FailedEvent]).decode
_decode_declined = msgspec.json.Decoder(list[dict[str, str | int]]).decode
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_BATCH_BYTES: Final = 64 * 1024 * 1024
QUARANTINE: Final = "quarantine"
SMALL_FILE_BYTES: Final = 32 * 1024 * 1024
LOCK_NAME: Final = "loader.lock"
DELETIONS_POLL_SECONDS: Final = 1.0
HOUSEKEEPER: Final = "tally serve (loader)"


class StopSignal(Protocol):
    """A ``threading.Event`` or a ``multiprocessing.Event``."""

    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(slots=True)
class LoadStats:
    segments: int = 0
    events: int = 0
    failed: int = 0
    torn_bytes: int = 0
    quarantined: int = 0
    files: list[str] = field(default_factory=list)


class Loader:
    """Spool → lake for one data directory. Only one loader may run per directory (a lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lake = Lake(settings.lake_dir)
        self.spool_dir = settings.spool_dir
        self._last_compaction = time.monotonic()
        self.enricher = Enricher(settings)
        from tallystick.store.deletion import Suppression

        self.suppression = Suppression(settings)
        """Deleted users, whose events are dropped when loaded (``store.deletion``)."""
        self._control: ControlStore | None = None
        self._last_retention = -float("inf")
        self._last_deletions = -float("inf")

    def load_once(self) -> LoadStats:
        """Load every segment that is claimable now; return what was loaded."""
        stats = LoadStats()
        batch: list[tuple[Path, int | None]] = []
        size = 0
        try:
            self.suppression.refresh(self.control())
        except Exception:  # the hashes read last stay in force
            log.exception("reading the deleted users from the control plane failed")
        for path, fd in spool.claimable_segments(self.spool_dir):
            batch.append((path, fd))
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
            if size >= MAX_BATCH_BYTES:
                self._load_or_isolate(batch, stats)
                batch, size = [], 0
        if batch:
            self._load_or_isolate(batch, stats)
        return stats

    def _load_or_isolate(self, batch: list[tuple[Path, int | None]], stats: LoadStats) -> None:
        """Load a batch; if it fails, load its segments one by one and set aside any that
        cannot be loaded, so one damaged segment never holds up the others."""
        try:
            self._load(batch, stats)
            return
        except Exception:
            if len(batch) == 1 and batch[0][1] is None:
                self._quarantine(batch[0][0], stats)
                return
            log.warning("loading %d spool segments failed; retrying them one by one", len(batch))
        for path, _ in batch:
            if path.exists():
                self._load_or_isolate([(path, None)], stats)

    def _quarantine(self, path: Path, stats: LoadStats) -> None:
        target = self.spool_dir / QUARANTINE / path.name
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
        spool.fsync_dir(self.spool_dir)
        stats.quarantined += 1
        log.exception(
            "spool segment %s could not be loaded and was moved to %s; its events are not in "
            "the lake. Keep the file and report the problem.",
            path.name,
            target,
        )

    def _load(self, batch: list[tuple[Path, int | None]], stats: LoadStats) -> None:
        payloads: list[bytes] = []
        received: list[int] = []
        streams: list[str | None] = []
        contexts: list[spool.RequestContext | None] = []
        declined: list[dict[str, object]] = []
        failed: list[FailedEvent] = []
        try:
            for path, _ in batch:
                contents = spool.read_segment(path)
                if contents.torn_bytes:
                    log.warning(
                        "%s: ignored a torn tail of %d bytes (never acknowledged)",
                        path.name,
                        contents.torn_bytes,
                    )
                stats.torn_bytes += contents.torn_bytes
                for fr in contents.frames:
                    if fr.kind == spool.CONTEXT_EVENTS:
                        context, events = spool.split_context_payload(fr.payload)
                        payloads.append(events)
                        received.append(fr.received_us)
                        streams.append(context.stream)
                        contexts.append(context)
                    elif fr.kind == spool.STREAM_EVENTS:
                        stream, events = spool.split_stream_payload(fr.payload)
                        payloads.append(events)
                        received.append(fr.received_us)
                        streams.append(stream)
                        contexts.append(None)
                    elif fr.kind == spool.EVENTS:
                        payloads.append(fr.payload)
                        received.append(fr.received_us)
                        streams.append(None)
                        contexts.append(None)
                    elif fr.kind == spool.FAILED:
                        failed.extend(_decode_failed(fr.payload))
                    elif fr.kind == spool.DECLINED:
                        at = _EPOCH + dt.timedelta(microseconds=fr.received_us)
                        declined += [{"received_ts": at, **c} for c in _decode_declined(fr.payload)]
            name = f"spool-{batch[0][0].stem}-{len(batch)}"
            table = None
            if payloads:
                decoded, frames = decode_frames(payloads, received, streams)
                decoded, frames, suppressed = self.suppression.drop(decoded, frames)
                declined += suppressed
                enriched = self.enricher.apply(decoded, frames, contexts)
                table = enriched.table
            if table is not None and table.num_rows:
                stats.files += self.lake.write_events(table, name)
            if failed:
                stats.files += self.lake.write_failed(failed, name)
            stats.files += self.lake.write_declined(declined, name)
            if payloads:
                enriched.commit()
            for path, _ in batch:
                path.unlink(missing_ok=True)
            spool.fsync_dir(self.spool_dir)
        finally:
            for _, fd in batch:
                if fd is not None:
                    os.close(fd)
        stats.segments += len(batch)
        stats.events += table.num_rows if table is not None else 0
        stats.failed += len(failed)

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, *, min_files: int | None = None) -> int:
        """Merge small files of each events partition, and of each partition of the delivery
        ledger (never de-duplicated); return how many files were merged."""
        threshold = self.settings.compact_min_files if min_files is None else min_files
        merged = self._compact_ledger(threshold)
        for _day, paths in sorted(self.lake.partitions(EVENTS).items()):
            small = [p for p in paths if self.lake.storage.size(p) < SMALL_FILE_BYTES]
            if len(small) < max(threshold, 2):
                continue
            tables = [pq.read_table(p) for p in self.lake.absolute(small)]
            metadata = merged_metadata([t.schema.metadata for t in tables])
            table = dedupe(pa.concat_tables([conform(t) for t in tables]))
            table = table.replace_schema_metadata(metadata)
            partition = small[0].rsplit("/", 1)[0]
            target = f"{partition}/compact-{uuid.uuid4().hex[:16]}.parquet"
            self.lake.storage.write_table(target, table)
            for p in small:
                self.lake.storage.delete(p)
            merged += len(small)
        return merged

    def _compact_ledger(self, threshold: int) -> int:
        merged = 0
        for _day, paths in sorted(self.lake.partitions(MESSAGES).items()):
            small = [p for p in paths if self.lake.storage.size(p) < SMALL_FILE_BYTES]
            if len(small) < max(threshold, 2):
                continue
            table = pa.concat_tables(
                [pq.read_table(p).cast(MESSAGES_SCHEMA) for p in self.lake.absolute(small)]
            )
            partition = small[0].rsplit("/", 1)[0]
            self.lake.storage.write_table(
                f"{partition}/compact-{uuid.uuid4().hex[:16]}.parquet", table
            )
            for p in small:
                self.lake.storage.delete(p)
            merged += len(small)
        return merged

    def backfill_ledger(self) -> int:
        """Write the delivery ledger of a lake that has event files but no ledger yet (written
        by a version before the ledger existed), from the copies its event files still hold;
        return the number of rows written. Runs once, when the loader starts."""
        if self.lake.files(MESSAGES) or not self.lake.files(EVENTS):
            return 0
        rows = 0
        for day, paths in sorted(self.lake.partitions(EVENTS).items()):
            table = pa.concat_tables([conform(pq.read_table(p)) for p in self.lake.absolute(paths)])
            if table.num_rows:
                self.lake.write(MESSAGES, ledger_table(table), f"backfill-{day.isoformat()}")
                rows += table.num_rows
        if rows:
            log.info("wrote the delivery ledger of %d events stored before it existed", rows)
        return rows

    # -- deletions and retention ---------------------------------------------------------------

    def control(self) -> ControlStore | None:
        """The control plane, opened on first use; ``None`` while the data directory has none."""
        if self._control is None:
            from tallystick.store.deletion import control_store_exists

            if not control_store_exists(self.settings):
                return None
            from tallystick.control.store import ControlStore

            self._control = ControlStore.for_settings(self.settings)
        return self._control

    def housekeeping(self) -> None:
        """Carry out pending user deletions (every ``DELETIONS_POLL_SECONDS``) and enforce
        retention (every ``retention_interval_seconds``; 0: never). The caller holds the lock.
        Failures are logged: loading goes on."""
        now = time.monotonic()
        if now - self._last_deletions >= DELETIONS_POLL_SECONDS:
            self._last_deletions = now
            try:
                self.run_deletions()
            except Exception:
                log.exception("deleting users failed; the requests are marked failed")
        interval = self.settings.retention_interval_seconds
        if interval > 0 and now - self._last_retention >= interval:
            self._last_retention = now
            try:
                self.enforce_retention()
            except Exception:
                log.exception("enforcing retention failed; trying again in %s s", interval)

    def run_deletions(self) -> None:
        store = self.control()
        if store is None:
            return
        from tallystick.control.deletions import pending
        from tallystick.store.deletion import run_pending

        if not pending(store):
            return
        # the requests' users are dropped from every batch loaded from now on
        self.suppression.refresh(store, force=True)
        report = run_pending(
            self.settings, store, lake=self.lake, sessions=self.enricher.sessions, actor=HOUSEKEEPER
        )
        if report is not None:
            log.warning(
                "deleted the users of requests %s: %d event rows, %d ledger rows, %d failed events",
                ", ".join(str(i) for i in report.requests),
                report.removed(EVENTS),
                report.removed(MESSAGES),
                report.removed("failed"),
            )

    def enforce_retention(self) -> None:
        store = self.control()
        from tallystick.store.retention import Policy, audit, enforce, policy_for

        policy = (
            policy_for(self.settings, store) if store is not None else Policy.of(self.settings, ())
        )
        report = enforce(self.lake, policy)
        if store is not None:
            audit(store, report, HOUSEKEEPER)
        if report.files:
            summary = report.summary()
            log.warning(
                "retention: removed %d event rows, %d ledger rows, %d failed events, %d results",
                summary["event_rows"],
                summary["ledger_rows"],
                summary["failed_rows"],
                summary["result_rows"],
            )

    def maybe_compact(self) -> int:
        if time.monotonic() - self._last_compaction < self.settings.compact_interval_seconds:
            return 0
        self._last_compaction = time.monotonic()
        return self.compact()

    # -- running -------------------------------------------------------------------------------

    def run(self, stop: StopSignal, *, alive: Callable[[], bool] = lambda: True) -> None:
        """Load until ``stop`` is set (or ``alive()`` turns false), then drain once more."""
        with loader_lock(self.settings.data, stop) as lock:
            if not lock.acquired:
                return  # another loader owns this directory and we were asked to stop
            storage = self.lake.storage
            if isinstance(storage, LocalStorage):
                storage.remove_stale_temporaries()
            try:
                self.backfill_ledger()
            except Exception:  # accounting only: never holds up loading
                log.exception("writing the delivery ledger of older events failed")
            try:
                while not stop.is_set() and alive():
                    try:
                        stats = self.load_once()
                        if not stats.segments:
                            self.maybe_compact()
                    except Exception:  # keep loading; the segment stays in the spool
                        log.exception("loading the spool failed; retrying")
                        stats = LoadStats()
                    self.housekeeping()
                    if not stats.segments:
                        pa.default_memory_pool().release_unused()
                        stop.wait(min(self.settings.flush_interval_seconds, DELETIONS_POLL_SECONDS))
                self.load_once()
            finally:
                if self._control is not None:
                    self._control.close()
                    self._control = None


class loader_lock:
    """An exclusive lock on ``DIR/loader.lock``; waits (polling ``stop``) while another holds it."""

    def __init__(self, data: Path, stop: StopSignal) -> None:
        self.path = data / LOCK_NAME
        self.stop = stop
        self.fd: int | None = None
        self.acquired = False

    def __enter__(self) -> loader_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.acquired = True
                os.ftruncate(self.fd, 0)
                os.write(self.fd, f"{os.getpid()}\n".encode())  # who holds it, for operators
                return self
            except BlockingIOError:
                if self.stop.wait(0.2):
                    return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def dedupe(table: pa.Table) -> pa.Table:
    """Keep the first received copy of each event in each stream (``event_id``, ``name`` and
    ``stream``; then the smallest ``client_ts``), ordered by client time."""
    if table.num_rows == 0:
        return table
    table = table.sort_by([("received_ts", "ascending"), ("client_ts", "ascending")])
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by(["event_id", "name", "stream"], use_threads=False).aggregate(
        [("__row", "min")]
    )
    keep = pc.sort_indices(first["__row_min"])
    rows = pc.take(first["__row_min"], keep)
    out = table.take(rows)
    return out.sort_by([("client_ts", "ascending"), ("event_id", "ascending")])
