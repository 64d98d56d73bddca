"""The tracker: queue events in memory, send them in batches from one background thread.

``track()`` builds and encodes the event on the caller's thread (no I/O) and appends it to a
bounded in-memory queue. One daemon thread takes batches off the queue and sends them to the
collector. Delivery is *at least once*: a batch is repeated until the collector answers it, and
the collector never counts the same ``event_id`` twice, so repeats are harmless.

What happens to a batch, by the collector's answer:

* 2xx — delivered. With 207 the body lists the events that were refused; they are counted as
  ``rejected`` and never sent again.
* 413 for a batch of several events, when the collector refused the request as a whole (too many
  events or bytes) — the batch is split in half and each half is sent on its own.
* 408, 429, 5xx and network errors (refused, reset, timed out) — sent again after a delay:
  exponential backoff with full jitter, or the ``Retry-After`` the collector asked for.
* any other answer (400, 401, 403, 413 for one event, ...) — the whole batch is ``rejected`` and
  never sent again; a warning with the collector's message is logged on ``tallystick.sdk``.

Disk persistence (on by default): before a batch is sent for the first time it is written to the
queue folder, and the file is deleted once the collector gave a final answer. A tracker sends the
batch files it finds at start first, oldest first. When ``close()`` cannot deliver everything
before its deadline, the rest stays on disk (``stats.persisted``) for the next tracker that uses
the same folder. Two live trackers never send the same files: the first one locks the folder and
a second one works in a private sub-folder (see :mod:`tallystick.sdk.storage`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Unpack

from tallystick.sdk import backoff
from tallystick.sdk.events import (
    LIBRARY,
    Defaults,
    TrackContext,
    batch_body,
    build_event,
    encode_event,
    library_version,
    now_ts,
    with_session,
)
from tallystick.sdk.storage import QueueDir, default_queue_dir, read_batch
from tallystick.sdk.transport import NETWORK_ERRORS, Reply, Transport

if TYPE_CHECKING:
    from tallystick.flags.evaluate import CompiledRuleset, Evaluation
    from tallystick.flags.exposures import Exposure
    from tallystick.flags.openfeature import TallystickProvider
    from tallystick.sdk.flags import FlagClient

log = logging.getLogger("tallystick.sdk")

#: At most this many session counters are kept (the least recently used are forgotten).
MAX_SESSIONS: Final = 10_000
_MAX_LOGGED_ERRORS: Final = 5


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """Counts of events since the tracker started (a snapshot)."""

    #: accepted by ``track()`` into the queue
    queued: int = 0
    #: acknowledged by the collector
    sent: int = 0
    #: refused by the collector (never sent again)
    rejected: int = 0
    #: refused by ``track()`` because the queue was full or the tracker closed
    dropped: int = 0
    #: requests repeated after 408/429/5xx answers or network errors
    retries: int = 0
    #: left on disk undelivered (close deadline or ``max_retries``) for a later tracker
    persisted: int = 0
    #: given up with no copy on disk (disk persistence off)
    lost: int = 0
    #: found on disk at start, left by earlier trackers
    recovered: int = 0
    #: waiting in memory or being sent right now
    pending: int = 0


@dataclass(slots=True)
class _Batch:
    events: list[bytes]
    path: Path | None = None
    attempts: int = 0


@dataclass(slots=True)
class _Counts:
    queued: int = 0
    sent: int = 0
    rejected: int = 0
    dropped: int = 0
    retries: int = 0
    persisted: int = 0
    lost: int = 0
    recovered: int = 0
    entered: int = 0  # events that entered the pipeline: queued + recovered
    done: int = 0  # events with an outcome: sent, rejected, persisted or lost


def _close_at_exit(ref: weakref.ReferenceType[Tracker]) -> None:
    tracker = ref()
    if tracker is not None:
        tracker.close()


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def _json_body(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _server_message(reply: Reply) -> str:
    """The collector's explanation of a refusal, for the log."""
    doc = _json_body(reply.body)
    if doc is not None:
        error = doc.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{error.get('code', 'error')}: {error['message']}"
        errors = doc.get("errors")
        if isinstance(errors, list) and errors:
            return _event_errors(errors)
        if isinstance(doc.get("message"), str):
            return str(doc["message"])
    text = reply.body.decode("utf-8", "replace").strip()
    return text[:500] or "(no message)"


def _event_errors(errors: list[Any]) -> str:
    parts = []
    for err in errors[:_MAX_LOGGED_ERRORS]:
        if isinstance(err, dict):
            parts.append(
                f"#{err.get('index')} {err.get('event_id')}: {err.get('code')}: "
                f"{err.get('message')}"
            )
    more = len(errors) - _MAX_LOGGED_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


class Tracker:
    """Send events to a tallystick collector in batches, from a background thread.

    >>> tracker = Tracker("http://127.0.0.1:8000", app_id="research-portal")  # doctest: +SKIP
    >>> tracker.track("project.commit", user_id="u-1842", data={"files": 3})  # doctest: +SKIP
    >>> tracker.close()  # doctest: +SKIP

    Parameters:
        endpoint: the collector's base URL; events go to ``POST {endpoint}/v1/events``.
        write_key: sent as ``Authorization: Bearer <write_key>`` when given.
        app_id, app_version, app_environment, app_instance: the ``app`` group of every event
            (the last three can be overridden per event).
        batch_size: send as soon as this many events are waiting ...
        flush_interval: ... or when the oldest waiting event is this many seconds old.
        max_queue: at most this many events wait in memory (batches being sent or on disk do
            not count); ``track()`` drops events beyond it (``stats.dropped``).
        max_retries: give a batch up after this many retries (it stays on disk when persistence
            is on); ``None`` retries until ``close()``'s deadline.
        queue_dir: the folder for batch files and session counters; ``None`` picks one per
            endpoint and app under ``$XDG_CACHE_HOME/tallystick/sdk`` (``~/.cache/...``);
            ``False`` or ``""`` keeps everything in memory only.
        timeout: seconds to wait for the collector's answer to one request.
        backoff_base, backoff_max: retry ``n`` (0-based) waits a random time in
            ``[0, min(backoff_max, backoff_base * 2**n)]``.
        close_timeout: how long ``close()`` (and the exit hook) tries to deliver what is left.
        flags_environment: turn feature flags on: fetch this environment's ruleset from
            ``GET {endpoint}/v1/flags/ruleset`` (see :mod:`tallystick.sdk.flags`).
        flags_poll_seconds: fetch the ruleset again this often (``If-None-Match``); ``None``
            fetches only on ``refresh_flags()``.
        wait_for_flags: fetch the ruleset once in the constructor, waiting at most this many
            seconds (otherwise the first fetch happens on the polling thread).
        flags_stream: listen to ``GET {endpoint}/v1/flags/stream`` (server-sent events) and
            apply each ruleset as it arrives, instead of polling; polling every
            ``flags_poll_seconds`` fills in while the stream is down, and takes over for good
            when the server has no stream.

    ``session.seq`` counts the events of each session id from 1. It is assigned in ``track()``,
    also for events that are then dropped, so gaps measure loss. With disk persistence the
    counters are saved in the queue folder and a restarted process continues them.
    """

    def __init__(
        self,
        endpoint: str,
        write_key: str | None = None,
        app_id: str | None = None,
        *,
        app_version: str | None = None,
        app_environment: str | None = None,
        app_instance: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        max_retries: int | None = None,
        queue_dir: str | Path | Literal[False] | None = None,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 10.0,
        flags_environment: str | None = None,
        flags_poll_seconds: float | None = 30.0,
        wait_for_flags: float | None = None,
        flags_stream: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be None or >= 0, got {max_retries}")
        for what, value in (
            ("flush_interval", flush_interval),
            ("timeout", timeout),
            ("flags_poll_seconds", 1.0 if flags_poll_seconds is None else flags_poll_seconds),
        ):
            if not value > 0:
                raise ValueError(f"{what} must be greater than 0, got {value}")
        for what, value in (
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("close_timeout", close_timeout),
        ):
            if not value >= 0:
                raise ValueError(f"{what} must be 0 or more, got {value}")

        self.endpoint = endpoint
        self._transport = Transport(
            endpoint, write_key=write_key, user_agent=f"{LIBRARY}/{library_version()}"
        )
        self._defaults = Defaults(app_id, app_version, app_environment, app_instance)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._max_retries = max_retries
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._close_timeout = close_timeout

        self._queue = self._open_queue_dir(queue_dir, endpoint, app_id)
        self._seq: dict[str, int] = {}
        if self._queue is not None:
            try:
                self._seq = self._queue.load_sessions()
            except BaseException:
                self._queue.close()
                raise
        self._seq_version = 0
        self._seq_saved = 0

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the worker waits on it
        self._progress = threading.Condition(self._lock)  # flush() waits on it
        self._buffer: deque[bytes] = deque()
        self._first_at = 0.0  # when the oldest event in the buffer arrived (monotonic)
        self._taken = 0  # events taken off the buffer so far
        self._flush_upto = 0  # send partial batches until ``_taken`` reaches this
        self._backlog: deque[_Batch] = deque()
        self._work: deque[_Batch] = deque()
        self._counts = _Counts()
        self._accepting = True
        self._closing = False
        self._deadline: float | None = None
        self._closed = False
        self._warned_closed = False
        self._close_lock = threading.Lock()
        self._backlog_loaded = threading.Event()
        self._flags: FlagClient | None = None
        if flags_environment is not None:
            from tallystick.sdk.flags import FlagClient

            self._flags = FlagClient(
                endpoint,
                write_key=write_key,
                environment=flags_environment,
                poll_seconds=flags_poll_seconds,
                timeout=timeout,
                user_agent=f"{LIBRARY}/{library_version()}",
                sink=self._track_exposure,
                stream=flags_stream,
            )

        self._thread = threading.Thread(target=self._run, name="tallystick-sdk", daemon=True)
        self._atexit_hook: Callable[[], None] = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit_hook)
        self._thread.start()
        if self._flags is not None:
            self._flags.start(wait=wait_for_flags)

    @staticmethod
    def _open_queue_dir(
        queue_dir: str | Path | Literal[False] | None, endpoint: str, app_id: str | None
    ) -> QueueDir | None:
        if queue_dir is False or queue_dir == "":
            return None
        if queue_dir is None:
            root = default_queue_dir(endpoint, app_id)
            try:
                return QueueDir(root)
            except OSError as exc:
                log.warning(
                    "cannot use the queue folder %s (%s): events are kept in memory only; "
                    "pass queue_dir= to choose another folder",
                    root,
                    exc,
                )
                return None
        return QueueDir(Path(queue_dir))

    # -- the caller's side -------------------------------------------------------------------

    @property
    def queue_dir(self) -> Path | None:
        """The folder this tracker keeps its batch files in, or ``None`` (memory only)."""
        return None if self._queue is None else self._queue.path

    def track(
        self,
        name: str,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        session_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        **context: Unpack[TrackContext],
    ) -> str:
        """Queue one event and return its ``event_id``. Never blocks and does no I/O.

        ``context`` takes the keys of :class:`~tallystick.sdk.events.TrackContext`; any other
        key raises ``TypeError``, as does ``data`` that is not a dict or not JSON-serialisable.
        When the queue is full or the tracker is closed the event is dropped (``stats.dropped``).
        """
        if session_id is not None and not isinstance(session_id, str):
            raise TypeError(f"session_id must be a str or None, not {type(session_id).__name__}")
        event = build_event(
            name,
            defaults=self._defaults,
            user_id=user_id,
            anonymous_id=anonymous_id,
            data=data,
            context=context,
        )
        raw = encode_event(event)
        event_id: str = event["event_id"]
        with self._lock:
            if session_id is not None:
                seq = self._seq.pop(session_id, 0) + 1
                self._seq[session_id] = seq
                if len(self._seq) > MAX_SESSIONS:
                    del self._seq[next(iter(self._seq))]
                self._seq_version += 1
                raw = with_session(raw, session_id, seq)
            if self._accepting and len(self._buffer) < self._max_queue:
                self._buffer.append(raw)
                self._counts.queued += 1
                self._counts.entered += 1
                n = len(self._buffer)
                if n == 1:
                    self._first_at = time.monotonic()
                    self._wake.notify()
                elif n == self._batch_size:
                    self._wake.notify()
                return event_id
            self._counts.dropped += 1
            warn = not self._accepting and not self._warned_closed
            if warn:
                self._warned_closed = True
        if warn:
            log.warning("the tracker is closed: events tracked now are dropped")
        return event_id

    # -- feature flags -----------------------------------------------------------------------

    def _flag_client(self) -> FlagClient:
        if self._flags is None:
            raise RuntimeError("feature flags are off: pass flags_environment= to the Tracker")
        return self._flags

    @staticmethod
    def _unit(attributes: Mapping[str, Any] | None, user_id: str | None) -> Mapping[str, Any]:
        if user_id is None:
            return attributes or {}
        unit = dict(attributes or {})
        unit.setdefault("id", user_id)
        return unit

    def _track_exposure(self, exposure: Exposure) -> None:
        data = exposure.data
        who = data.get("hash_attribute")
        self.track(
            exposure.name,
            user_id=data["unit"] if who == "id" else None,
            anonymous_id=data["unit"] if who == "anonymous_id" else None,
            session_id=data["unit"] if who == "session_id" else None,
            data=data,
            experiments=exposure.experiments or None,
        )

    def flag(
        self,
        key: str,
        default: Any = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> Any:
        """A flag's value for a unit, evaluated locally from the cached ruleset.

        ``user_id`` becomes the ``id`` attribute unless ``attributes`` has one. ``default`` is
        served for an unknown flag and before the ruleset was fetched. An experiment
        assignment logs an ``experiment.exposure`` event the first time per unit. Never raises
        (but flags must be on: ``flags_environment=``).
        """
        return self._flag_client().evaluate(key, default, self._unit(attributes, user_id)).value

    def flag_details(
        self,
        key: str,
        default: Any = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> Evaluation:
        """Like :meth:`flag`, but the whole :class:`~tallystick.flags.evaluate.Evaluation`."""
        return self._flag_client().evaluate(key, default, self._unit(attributes, user_id))

    def variant(
        self,
        experiment: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> str | None:
        """The unit's variation key in ``experiment`` (found in any flag), else ``None``."""
        return self._flag_client().variant(experiment, self._unit(attributes, user_id))

    def refresh_flags(self, timeout: float | None = None) -> bool:
        """Fetch the ruleset now; ``True`` when the collector answered (200 or 304)."""
        return self._flag_client().refresh(timeout)

    @property
    def flags_ruleset(self) -> CompiledRuleset | None:
        """The current compiled ruleset, or ``None`` (flags off or nothing fetched yet)."""
        return None if self._flags is None else self._flags.ruleset

    def openfeature_provider(self) -> TallystickProvider:
        """An OpenFeature provider over this tracker's ruleset and exposure logging."""
        return self._flag_client().provider()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now and wait until it was delivered or rejected.

        Returns ``True`` when every event tracked before the call has an outcome (nothing of it
        waits in memory any more), ``False`` when ``timeout`` seconds passed first. ``None``
        waits as long as it takes — with the collector down and ``max_retries=None`` that is
        until ``close()``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._backlog_loaded.wait(timeout):
            return False
        with self._lock:
            target = self._counts.entered
            self._flush_upto = max(self._flush_upto, self._taken + len(self._buffer))
            self._wake.notify()
            while self._counts.done < target:
                if not self._thread.is_alive():
                    return False
                if deadline is None:
                    self._progress.wait(1.0)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._progress.wait(min(remaining, 1.0))
            return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is left (for up to ``timeout``, default ``close_timeout`` seconds), then
        stop the thread. Undelivered events stay on disk (``stats.persisted``). Idempotent."""
        limit = self._close_timeout if timeout is None else max(0.0, timeout)
        if self._flags is not None:
            self._flags.close()
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + limit
                self._wake.notify()
        if threading.current_thread() is self._thread:
            return  # called from the worker (say, by a log handler): it stops on its own
        with self._close_lock:
            if self._closed:
                return
            # The worker stops at the deadline; allow one request's timeout on top of it.
            self._thread.join(limit + self._timeout + 5.0)
            if self._thread.is_alive():  # pragma: no cover - a hung disk or DNS lookup
                log.warning("the tracker's thread did not stop within %.1f s", limit)
            self._closed = True
            atexit.unregister(self._atexit_hook)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> TrackerStats:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counts
            return TrackerStats(
                queued=c.queued,
                sent=c.sent,
                rejected=c.rejected,
                dropped=c.dropped,
                retries=c.retries,
                persisted=c.persisted,
                lost=c.lost,
                recovered=c.recovered,
                pending=c.entered - c.done,
            )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Tracker {self.endpoint} {state}>"

    # -- the worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._load_backlog()
            while (batch := self._next_batch()) is not None:
                if not self._deliver(batch):
                    break
        except Exception:  # pragma: no cover - a bug; keep what can be kept
            log.exception("the tracker's thread failed")
        finally:
            self._backlog_loaded.set()
            self._shutdown()

    def _load_backlog(self) -> None:
        try:
            if self._queue is None:
                return
            try:
                adopted = self._queue.prepare()
                paths = self._queue.batch_files()
            except OSError as exc:
                log.warning("cannot read the queue folder %s: %s", self._queue.path, exc)
                return
            batches = []
            for path in paths:
                raws = read_batch(path)
                if raws is None:
                    log.warning("set aside the unreadable batch file %s", path)
                    self._queue.set_aside(path)
                elif not raws:
                    self._queue.delete(path)
                else:
                    batches.append(_Batch(raws, path))
            with self._lock:
                for key, value in adopted.items():
                    if value > self._seq.get(key, 0):
                        self._seq[key] = value
                        self._seq_version += 1
                self._backlog.extend(batches)
                n = sum(len(b.events) for b in batches)
                self._counts.recovered += n
                self._counts.entered += n
            if n:
                log.info("found %d undelivered events in %s", n, self._queue.path)
        finally:
            self._backlog_loaded.set()

    def _next_batch(self) -> _Batch | None:
        """The next batch to send, waiting for one to be due; ``None`` once closing and empty."""
        with self._lock:
            while True:
                if self._backlog:
                    return self._backlog.popleft()
                n = len(self._buffer)
                now = time.monotonic()
                if n:
                    due_at = self._first_at + self._flush_interval
                    if (
                        n >= self._batch_size
                        or self._closing
                        or self._taken < self._flush_upto
                        or now >= due_at
                    ):
                        k = min(n, self._batch_size)
                        events = [self._buffer.popleft() for _ in range(k)]
                        self._taken += k
                        return _Batch(events)
                    self._wake.wait(due_at - now)
                elif self._closing:
                    return None
                else:
                    self._wake.wait()

    def _persist(self, batch: _Batch) -> None:
        """Write a batch file (and the session counters first) unless persistence is off."""
        if self._queue is None or batch.path is not None:
            return
        self._save_sessions()
        try:
            batch.path = self._queue.write_batch(batch.events)
        except OSError as exc:
            log.warning("cannot write a batch file to %s: %s", self._queue.path, exc)

    def _save_sessions(self) -> None:
        if self._queue is None:
            return
        with self._lock:
            if self._seq_version == self._seq_saved:
                return
            version, snapshot = self._seq_version, dict(self._seq)
        try:
            self._queue.save_sessions(snapshot)
        except OSError as exc:
            log.warning("cannot save the session counters in %s: %s", self._queue.path, exc)
            return
        self._seq_saved = version

    def _past_deadline(self) -> bool:
        deadline = self._deadline
        return deadline is not None and time.monotonic() >= deadline

    def _request_timeout(self) -> float:
        deadline = self._deadline
        if deadline is None:
            return self._timeout
        return max(0.05, min(self._timeout, deadline - time.monotonic()))

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` (cut short by the close deadline); ``False`` once it has passed."""
        end = time.monotonic() + seconds
        with self._lock:
            while True:
                limit = end if self._deadline is None else min(end, self._deadline)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
        return not self._past_deadline()

    def _deliver(self, batch: _Batch) -> bool:
        """Send a batch until it has an outcome; ``False`` when the close deadline passed."""
        self._persist(batch)
        work = self._work
        work.append(batch)
        while work:
            if self._past_deadline():
                return False
            current = work[0]
            try:
                reply: Reply | None = self._transport.post(
                    batch_body(current.events, now_ts()), self._request_timeout()
                )
                error: BaseException | None = None
            except NETWORK_ERRORS as exc:
                reply, error = None, exc
            if reply is not None and 200 <= reply.status < 300:
                work.popleft()
                self._accepted(current, reply)
            elif reply is not None and reply.status == 413 and self._splittable(current, reply):
                work.popleft()
                work.extendleft(reversed(self._split(current)))
            elif reply is not None and not _retryable(reply.status):
                work.popleft()
                log.warning(
                    "the collector refused a batch of %d events (HTTP %d): %s",
                    len(current.events),
                    reply.status,
                    _server_message(reply),
                )
                self._finish(current, rejected=len(current.events))
            else:
                current.attempts += 1
                if self._max_retries is not None and current.attempts > self._max_retries:
                    work.popleft()
                    self._give_up(current, reply, error)
                    continue
                delay = (
                    None
                    if reply is None
                    else backoff.parse_retry_after(reply.headers.get("retry-after"))
                )
                if delay is None:
                    delay = backoff.backoff_delay(
                        current.attempts - 1, self._backoff_base, self._backoff_max
                    )
                log.debug(
                    "retrying a batch of %d events in %.2f s (%s)",
                    len(current.events),
                    delay,
                    f"HTTP {reply.status}" if reply is not None else error,
                )
                with self._lock:
                    self._counts.retries += 1
                if not self._sleep(delay):
                    return False
        return True

    def _accepted(self, batch: _Batch, reply: Reply) -> None:
        n = len(batch.events)
        rejected = 0
        if reply.status == 207:
            doc = _json_body(reply.body) or {}
            errors = doc.get("errors")
            count = doc.get("rejected")
            if isinstance(count, int) and 0 <= count <= n:
                rejected = count
            elif isinstance(errors, list):
                rejected = min(n, len(errors))
            if rejected:
                log.warning(
                    "the collector refused %d of %d events: %s",
                    rejected,
                    n,
                    _event_errors(errors) if isinstance(errors, list) else "(no details)",
                )
        self._finish(batch, sent=n - rejected, rejected=rejected)

    @staticmethod
    def _splittable(batch: _Batch, reply: Reply) -> bool:
        """A 413 for the request as a whole (not for single events) of more than one event."""
        if len(batch.events) < 2:
            return False
        doc = _json_body(reply.body)
        return not (doc is not None and isinstance(doc.get("errors"), list) and doc["errors"])

    def _split(self, batch: _Batch) -> list[_Batch]:
        half = len(batch.events) // 2
        parts = [_Batch(batch.events[:half]), _Batch(batch.events[half:])]
        log.info(
            "the collector found a batch of %d events too large; splitting it", len(batch.events)
        )
        if batch.path is not None:
            for part in parts:
                self._persist(part)
            if self._queue is not None and all(p.path is not None for p in parts):
                self._queue.delete(batch.path)
        return parts

    def _give_up(self, batch: _Batch, reply: Reply | None, error: BaseException | None) -> None:
        why = f"HTTP {reply.status}" if reply is not None else str(error)
        if batch.path is not None:
            log.warning(
                "giving up on a batch of %d events after %d retries (%s); it stays in %s",
                len(batch.events),
                self._max_retries,
                why,
                batch.path,
            )
            self._finish(batch, persisted=len(batch.events), keep_file=True)
        else:
            log.warning(
                "giving up on a batch of %d events after %d retries (%s); they are lost",
                len(batch.events),
                self._max_retries,
                why,
            )
            self._finish(batch, lost=len(batch.events))

    def _finish(
        self,
        batch: _Batch,
        *,
        sent: int = 0,
        rejected: int = 0,
        persisted: int = 0,
        lost: int = 0,
        keep_file: bool = False,
    ) -> None:
        if batch.path is not None and not keep_file and self._queue is not None:
            self._queue.delete(batch.path)
        with self._lock:
            c = self._counts
            c.sent += sent
            c.rejected += rejected
            c.persisted += persisted
            c.lost += lost
            c.done += len(batch.events)
            self._progress.notify_all()

    def _shutdown(self) -> None:
        """Keep whatever was not delivered on disk (or count it lost), release everything."""
        with self._lock:
            self._accepting = False
            left = list(self._work) + list(self._backlog)
            self._work.clear()
            self._backlog.clear()
            buffered = list(self._buffer)
            self._buffer.clear()
            self._taken += len(buffered)
        for i in range(0, len(buffered), self._batch_size):
            left.append(_Batch(buffered[i : i + self._batch_size]))
        kept = lost = 0
        for batch in left:
            self._persist(batch)
            if batch.path is not None:
                kept += len(batch.events)
                self._finish(batch, persisted=len(batch.events), keep_file=True)
            else:
                lost += len(batch.events)
                self._finish(batch, lost=len(batch.events))
        if kept:
            log.warning(
                "closing with %d undelivered events; they stay in %s for the next tracker",
                kept,
                self._queue.path if self._queue is not None else "?",
            )
        if lost:
            log.warning("closing with %d undelivered events; they are lost", lost)
        self._save_sessions()
        with contextlib.suppress(Exception):
            self._transport.close()
        if self._queue is not None:
            self._queue.close()
        with self._lock:
            self._progress.notify_all()
