"""The spool: an fsync'd append-only log that makes accepted events durable before the ack.

Each collector process owns one open segment file at a time (``<worker>-<n>.open``, held with an
exclusive ``flock``). Requests hand their frames to a single writer thread which writes everything
that is waiting with one ``write`` and one ``fdatasync`` (group commit) and only then wakes the
requests up, so an acknowledgement always means "on disk". Segments are renamed to ``.ready``
every ``rotate_seconds`` (or ``rotate_bytes``); the loader turns ready segments into Parquet and
deletes them. An ``.open`` segment whose lock is free belongs to a dead process and is loaded too.

Frame layout (little-endian)::

    magic "TSP1" | kind u8 | received_us i64 | length u32 | crc32 u32 | payload[length]

``kind`` is ``STREAM_EVENTS`` (payload: the stream's name, a newline, then a JSON array of the
events stored for that stream), ``EVENTS`` (a JSON array of events stored for no stream, written
before streams existed), ``FAILED`` (a JSON array of ``FailedEvent``) or ``DECLINED`` (a JSON
array of ``{stream, reason, name, count}``: events a stream routed but did not store). A torn or
corrupt
tail (a crash mid-write) is detected by length and CRC and ignored: it was never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from tallystick.store.durable import fsync_path

MAGIC: Final = b"TSP1"
HEADER: Final = struct.Struct("<4sBqII")
EVENTS: Final = 1
FAILED: Final = 2
STREAM_EVENTS: Final = 3
DECLINED: Final = 4
CONTEXT_EVENTS: Final = 5
OPEN_SUFFIX: Final = ".open"
READY_SUFFIX: Final = ".ready"


class SpoolUnavailable(Exception):
    """The spool cannot take writes (disk full, below the free-space threshold, I/O error)."""


def frame(kind: int, received_us: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, kind, received_us, len(payload), zlib.crc32(payload)) + payload


def stream_frame(stream: str, received_us: int, events_json: bytes) -> bytes:
    """A frame of events (a JSON array) stored for ``stream``."""
    return frame(STREAM_EVENTS, received_us, stream.encode() + b"\n" + events_json)


def split_stream_payload(payload: bytes) -> tuple[str, bytes]:
    """(stream, JSON array) of a ``STREAM_EVENTS`` payload."""
    name, _, events = payload.partition(b"\n")
    return name.decode(), events


class RequestContext(msgspec.Struct, omit_defaults=True, frozen=True):
    """What the collector knew of a request beyond its events, for enrichment in the loader.

    The client's IP address is never written: only what was derived from it (country, region,
    and the network it belongs to)."""

    stream: str | None = None
    """The stream the events are stored for (``None``: written before streams existed)."""
    keep_user_agent: bool = True
    """False when the stream does not keep ``agent.user_agent``: the loader parses it, then
    drops the raw string."""
    keep_session: bool = True
    """False when the stream does not keep ``session.id``: its copies are not sessionized (they
    did not arrive without a session; the stream chose not to keep it)."""
    user_agent: str | None = None
    """The request's ``User-Agent`` header, for events that carry no ``agent.user_agent``."""
    country: str | None = None
    region: str | None = None
    network: str | None = None


_encode_context = msgspec.json.Encoder().encode
_decode_context = msgspec.json.Decoder(RequestContext).decode


def context_frame(context: RequestContext, received_us: int, events_json: bytes) -> bytes:
    """A frame of events (a JSON array) with the context of the request they came in."""
    return frame(CONTEXT_EVENTS, received_us, _encode_context(context) + b"\n" + events_json)


def split_context_payload(payload: bytes) -> tuple[RequestContext, bytes]:
    """(context, JSON array) of a ``CONTEXT_EVENTS`` payload."""
    header, _, events = payload.partition(b"\n")
    return _decode_context(header), events


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    received_us: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SegmentContents:
    frames: list[Frame]
    torn_bytes: int


def read_segment(path: Path) -> SegmentContents:
    """Every complete, intact frame of a segment; a torn tail is counted, not returned."""
    data = path.read_bytes()
    frames: list[Frame] = []
    pos = 0
    size = len(data)
    while pos + HEADER.size <= size:
        magic, kind, received_us, length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        end = start + length
        if magic != MAGIC or end > size:
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        frames.append(Frame(kind, received_us, payload))
        pos = end
    return SegmentContents(frames, size - pos)


fsync_dir = fsync_path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


Done = Callable[[BaseException | None], None]
Waiter = Done | asyncio.Future[None]


class SpoolWriter:
    """Group-commit writer for one process. Thread-safe; ``append`` is awaitable."""

    def __init__(
        self,
        directory: Path,
        *,
        rotate_seconds: float = 1.0,
        rotate_bytes: int = 64 * 1024 * 1024,
        min_free_bytes: int = 0,
    ) -> None:
        self.directory = directory
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.min_free_bytes = min_free_bytes
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._cond = threading.Condition()
        self._pending: list[tuple[list[bytes], Waiter]] = []
        self._seal_requests: list[threading.Event] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0
        self._counter = 0
        self._last_error: str | None = None
        self._free_checked_at = 0.0
        self._free = 0
        self._probed_at = 0.0
        self._probe_result: str | None = None
        self.commits = 0
        self._turn: list[tuple[list[bytes], Waiter]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="tallystick-spool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is pending, seal the open segment and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- appending ---------------------------------------------------------------------------

    def submit(self, frames: list[bytes], done: Waiter) -> None:
        with self._cond:
            if self._closing:
                refused = SpoolUnavailable("the collector is shutting down")
                if isinstance(done, asyncio.Future):
                    done.set_exception(refused)
                else:
                    done(refused)
                return
            self._pending.append((frames, done))
            self._cond.notify()

    def seal(self, timeout: float = 10.0) -> None:
        """Make everything written so far visible to the loader now (seal the open segment)."""
        request = threading.Event()
        with self._cond:
            if self._thread is None:
                return
            self._seal_requests.append(request)
            self._cond.notify()
        request.wait(timeout)

    async def append(self, frames: list[bytes]) -> None:
        """Return once ``frames`` are on disk (fdatasync'd); raise ``SpoolUnavailable`` if not."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # Requests of one event-loop turn are handed to the writer together: one hand-off
        # (and so one commit) for all of them instead of a thread wake-up per request.
        self._turn.append((frames, future))
        if len(self._turn) == 1:
            loop.call_soon(self._hand_over)
        await future

    def _hand_over(self) -> None:
        items, self._turn = self._turn, []
        with self._cond:
            if self._closing:
                refused = SpoolUnavailable("the collector is shutting down")
                for _, future in items:
                    if isinstance(future, asyncio.Future) and not future.done():
                        future.set_exception(refused)
                return
            self._pending.extend(items)
            self._cond.notify()

    def append_sync(self, frames: list[bytes], timeout: float | None = None) -> None:
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            outcome.append(error)
            finished.set()

        self.submit(frames, done)
        if not finished.wait(timeout):
            raise SpoolUnavailable("the spool did not confirm the write in time")
        if outcome[0] is not None:
            raise outcome[0]

    # -- health ------------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why the spool cannot take writes now, or None when it can."""
        if self._thread is None or not self._thread.is_alive():
            return "the spool writer is not running"
        free = self._free_now(force=True)
        if free < self.min_free_bytes:
            return (
                f"only {free:,} bytes free on the spool's disk; the threshold is "
                f"{self.min_free_bytes:,} bytes (min_free_bytes): free some space"
            )
        return self._probe() or self._last_error

    def _probe(self) -> str | None:
        """Write, sync and remove a small file: the spool directory really takes writes."""
        now = time.monotonic()
        if now - self._probed_at < 1.0:
            return self._probe_result
        path = self.directory / f".probe-{self.worker}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
            self._probe_result = None
        except OSError as exc:
            self._probe_result = (
                f"the spool directory {self.directory} does not take writes: {exc.strerror or exc}"
            )
        self._probed_at = now
        return self._probe_result

    def _free_now(self, force: bool = False) -> int:
        now = time.monotonic()
        if force or now - self._free_checked_at > 0.5:
            try:
                self._free = free_bytes(self.directory)
            except OSError:
                self._free = 0
            self._free_checked_at = now
        return self._free

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending and not self._closing and not self._seal_requests:
                    wait = self.rotate_seconds if self._fd is not None else None
                    self._cond.wait(wait)
                batch, self._pending = self._pending, []
                seals, self._seal_requests = self._seal_requests, []
                closing = self._closing
            if batch:
                self._commit(batch)
            if seals:
                self._seal()
                for request in seals:
                    request.set()
            if closing:
                with self._cond:
                    leftover, self._pending = self._pending, []
                if leftover:
                    self._commit(leftover)
                self._seal()
                return
            if self._fd is not None and (
                self._size >= self.rotate_bytes
                or time.monotonic() - self._opened_at >= self.rotate_seconds
            ):
                self._seal()

    def _commit(self, batch: list[tuple[list[bytes], Waiter]]) -> None:
        data = b"".join(b for frames, _ in batch for b in frames)
        error: BaseException | None = None
        try:
            if self.min_free_bytes and self._free_now() < self.min_free_bytes + len(data):
                raise SpoolUnavailable(
                    "free disk space is below the threshold (min_free_bytes); "
                    "the collector refuses writes it could not keep"
                )
            self._write(data)
            self._last_error = None
        except SpoolUnavailable as exc:
            error = exc
        except OSError as exc:
            error = SpoolUnavailable(f"writing the spool failed: {exc.strerror or exc}")
            self._last_error = str(error)
        self.commits += 1
        # One wake-up per event loop for the whole group, not one per request.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, waiter in batch:
            if isinstance(waiter, asyncio.Future):
                by_loop.setdefault(waiter.get_loop(), []).append(waiter)
            else:
                waiter(error)
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, futures, error)

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        start = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)
        except OSError:
            # Never leave a torn frame in the middle of a segment: cut it off and start afresh.
            try:
                os.ftruncate(self._fd, start)
                os.fdatasync(self._fd)
            finally:
                self._seal()
            raise
        self._size = start + len(data)

    def _open(self) -> None:
        self._counter += 1
        path = self.directory / f"{self.worker}-{self._counter:06d}{OPEN_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fsync_dir(self.directory)
        self._fd, self._path, self._size = fd, path, 0
        self._opened_at = time.monotonic()

    def _seal(self) -> None:
        """Rename the open segment to ``.ready`` (or drop it when empty) and close it."""
        if self._fd is None or self._path is None:
            return
        fd, path, size = self._fd, self._path, self._size
        self._fd = self._path = None
        self._size = 0
        try:
            if size == 0:
                path.unlink(missing_ok=True)
            else:
                path.rename(path.with_suffix(READY_SUFFIX))
            fsync_dir(self.directory)
        except OSError as exc:
            self._last_error = f"sealing a spool segment failed: {exc.strerror or exc}"
        finally:
            os.close(fd)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled (client went away)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def claimable_segments(directory: Path) -> Iterator[tuple[Path, int | None]]:
    """Segments the loader may take, oldest first: ready ones, and open ones of dead writers.

    For an open segment, the yielded file descriptor holds its lock; the caller closes it after
    the segment was loaded and deleted.
    """
    if not directory.exists():
        return
    entries = sorted(directory.iterdir(), key=_segment_order)
    for path in entries:
        if path.suffix == READY_SUFFIX:
            yield path, None
        elif path.suffix == OPEN_SUFFIX:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if not path.exists():  # sealed between listing and locking
                os.close(fd)
                continue
            yield path, fd


def _segment_order(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)
