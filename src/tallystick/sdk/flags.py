"""Feature flags in the SDK: a cached ruleset, polled or streamed from the collector, evaluated
locally.

:class:`FlagClient` fetches ``GET {endpoint}/v1/flags/ruleset?environment=ENV`` with the write
key, compiles it once (:meth:`~tallystick.flags.evaluate.Ruleset.compile`) and swaps the
compiled ruleset in whole; a daemon thread fetches again every ``poll_seconds`` with
``If-None-Match`` (a 304 keeps the current one). Nothing here raises into the application:
network errors and invalid answers are logged on ``tallystick.sdk`` and the last good ruleset is
kept; before the first successful fetch every flag is its caller's default.

With ``stream=True`` the thread listens to ``GET {endpoint}/v1/flags/stream?environment=ENV``
(server-sent events, :mod:`tallystick.admin.flag_stream`) instead and applies each ruleset as it
arrives, so a change reaches the application within about a second. When the stream breaks it
reconnects with backoff (full jitter, up to ``STREAM_BACKOFF_MAX`` seconds), sending
``Last-Event-ID`` so an unchanged ruleset is not sent again, and polls every ``poll_seconds``
until it is back; a server without the stream (404, 405) or refusing it (another 4xx) is polled
from then on.

Every evaluation is noted for the request being answered, if any
(:func:`tallystick.sdk.middleware.record`: the ``X-Tally-Flags`` middlewares).

Experiment assignments are handed to one :class:`~tallystick.flags.exposures.ExposureLogger`
(shared by ``flag()``, ``variant()`` and the OpenFeature provider), which logs the first
exposure of each (experiment, variation, unit) through the tracker.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

from tallystick.flags.errors import RulesetError
from tallystick.flags.evaluate import CompiledRuleset, Evaluation, Reason, parse_ruleset
from tallystick.flags.exposures import Exposure, ExposureLogger
from tallystick.sdk.backoff import backoff_delay, parse_retry_after
from tallystick.sdk.middleware import record
from tallystick.sdk.sse import EventParser

if TYPE_CHECKING:
    from tallystick.flags.openfeature import TallystickProvider

__all__ = ["RULESET_PATH", "STREAM_PATH", "FlagClient", "experiment_index"]

log = logging.getLogger("tallystick.sdk")

RULESET_PATH: Final = "/v1/flags/ruleset"
STREAM_PATH: Final = "/v1/flags/stream"
STREAM_READ_TIMEOUT: Final = 45.0
"""No byte for this long (the server sends a keep-alive every 15 s): the stream is dead."""
STREAM_BACKOFF_BASE: Final = 0.5
MIN_STREAM_SECONDS: Final = 1.0
"""A stream that ends sooner counts as a failure (backoff grows, polling fills in)."""
STREAM_BACKOFF_MAX: Final = 30.0


def experiment_index(compiled: CompiledRuleset) -> dict[str, str]:
    """Experiment key → the key of the flag whose rules (in the compiled environment) hold it."""
    index: dict[str, str] = {}
    for key, flag in compiled.ruleset.flags.items():
        env = flag.environments.get(compiled.environment)
        if env is None:
            continue
        for rule in env.rules:
            if rule.experiment is not None:
                index.setdefault(rule.experiment.key or key, key)
    return index


class FlagClient:
    """The cached ruleset of one environment (polled, or streamed with ``stream=True``), and
    local evaluation over it."""

    def __init__(
        self,
        endpoint: str,
        *,
        write_key: str | None,
        environment: str,
        poll_seconds: float | None = 30.0,
        timeout: float = 10.0,
        user_agent: str = "tallystick-python",
        sink: Callable[[Exposure], object],
        stream: bool = False,
    ) -> None:
        if poll_seconds is not None and not poll_seconds > 0:
            raise ValueError(f"flags_poll_seconds must be greater than 0, got {poll_seconds}")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {endpoint!r} is not an http(s) URL")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        query = "?" + urlencode({"environment": environment})
        self._path = parts.path.rstrip("/") + RULESET_PATH + query
        self._stream_path = parts.path.rstrip("/") + STREAM_PATH + query
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if write_key:
            self._headers["Authorization"] = f"Bearer {write_key}"
        self.environment = environment
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.stream = stream
        """Whether the thread listens to the server's stream (until the server says it has
        none: then it polls)."""
        self.exposures = ExposureLogger(sink)
        self._ruleset: CompiledRuleset | None = None
        self._index: dict[str, str] = {}
        self._etag: str | None = None
        self._failing = False
        self._fetch_lock = threading.Lock()
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening: socket.socket | None = None
        self._stream_failing = False
        self._connected = threading.Event()
        self.stream_connections = 0
        """How many times the stream was connected (each reconnection counts)."""

    # -- the ruleset -------------------------------------------------------------------------

    @property
    def ruleset(self) -> CompiledRuleset | None:
        """The current compiled ruleset (``None`` until the first successful fetch)."""
        return self._ruleset

    @property
    def version(self) -> int | None:
        current = self._ruleset
        return None if current is None else current.ruleset.version

    @property
    def streaming(self) -> bool:
        """Whether the stream is connected now."""
        return self._connected.is_set()

    def refresh(self, timeout: float | None = None) -> bool:
        """Fetch the ruleset now; ``True`` when the server answered (200 or 304). Never raises."""
        with self._fetch_lock:
            try:
                ok = self._fetch(self.timeout if timeout is None else timeout)
            except Exception as exc:
                # warn once per outage, not on every poll
                level = logging.DEBUG if self._failing else logging.WARNING
                log.log(level, "cannot fetch the flags ruleset (%s): %s", self.environment, exc)
                self._failing = True
                return False
            self._failing = not ok
            return ok

    def _fetch(self, timeout: float) -> bool:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=timeout)
        headers = dict(self._headers)
        if self._etag is not None and self._ruleset is not None:
            headers["If-None-Match"] = self._etag
        try:
            conn.request("GET", self._path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            etag = response.getheader("ETag")
        finally:
            conn.close()
        if response.status == 304:
            return True
        if response.status != 200:
            text = body.decode("utf-8", "replace").strip()[:300]
            log.warning(
                "the collector refused the flags ruleset (%s, HTTP %d): %s",
                self.environment,
                response.status,
                text,
            )
            return False
        return self._apply(body, etag)

    def _apply(self, body: bytes | str, etag: str | None) -> bool:
        """Compile a ruleset document and put it in force (unless older than the current one);
        ``False`` (logged) when it is invalid."""
        try:
            ruleset = parse_ruleset(json.loads(body))
            compiled = ruleset.compile(self.environment)
        except (ValueError, RulesetError) as exc:
            log.warning(
                "the flags ruleset (%s) is invalid, kept the last: %s", self.environment, exc
            )
            return False
        with self._apply_lock:
            current = self._ruleset
            if (
                current is not None
                and current.ruleset.version is not None
                and ruleset.version is not None
                and ruleset.version < current.ruleset.version
            ):
                return True  # an older revision (another server behind a balancer): keep ours
            self._index = experiment_index(compiled)
            self._ruleset = compiled
            self._etag = etag
        return True

    def start(self, wait: float | None = None) -> None:
        """Start polling or listening (a daemon thread); with ``wait``, fetch once first within
        that time."""
        if wait is not None and wait > 0:
            self.refresh(timeout=wait)
        if (self.poll_seconds is None and not self.stream) or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tallystick-flags", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.stream:
            self._run_stream()
        else:
            self._poll()

    def _poll(self) -> None:
        if self._ruleset is None:
            self.refresh()
        interval = self.poll_seconds or 30.0
        while not self._stop.wait(interval):
            self.refresh()

    def close(self) -> None:
        """Stop polling or listening (idempotent); the last ruleset stays usable."""
        self._stop.set()
        sock = self._listening
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked reading the stream
                sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0)

    # -- the stream --------------------------------------------------------------------------

    def _run_stream(self) -> None:
        """Listen; while the stream is down, reconnect with backoff and poll meanwhile."""
        failures = 0
        next_poll = 0.0  # while the stream is down: poll at once, then every poll_seconds
        while not self._stop.is_set():
            outcome, retry_after = self._listen()
            if self._stop.is_set():
                return
            if outcome == "unsupported":
                if self.poll_seconds is not None:
                    self._poll()
                return
            failures = 0 if outcome == "ended" else failures + 1
            delay = backoff_delay(failures, STREAM_BACKOFF_BASE, STREAM_BACKOFF_MAX)
            reconnect_at = time.monotonic() + max(delay, retry_after or 0.0)
            while not self._stop.is_set():
                now = time.monotonic()
                if outcome != "ended" and self.poll_seconds is not None and now >= next_poll:
                    self.refresh()
                    next_poll = time.monotonic() + self.poll_seconds
                if now >= reconnect_at:
                    break
                wake = reconnect_at
                if outcome != "ended" and self.poll_seconds is not None:
                    wake = min(wake, next_poll)
                self._stop.wait(max(0.0, wake - now))
            next_poll = 0.0 if outcome == "ended" else next_poll

    def _listen(self) -> tuple[str, float | None]:
        """One connection to the stream, held until it ends: ``("ended", None)`` after a stream
        that was answered 200 and lasted (ended or broke after ``MIN_STREAM_SECONDS``),
        ``("failed", retry_after)`` when it could not be had or did not last (network, 5xx,
        429), ``("unsupported", None)`` when the server has none or refuses it (another 4xx).
        """
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        headers = {**self._headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        version = self.version
        if version is not None:
            headers["Last-Event-ID"] = str(version)
        connected_at: float | None = None
        try:
            conn.connect()
            self._listening = conn.sock  # close() shuts it down to wake this thread
            if self._stop.is_set():
                return "ended", None
            conn.request("GET", self._stream_path, headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                return self._refused(response)
            if conn.sock is not None:
                conn.sock.settimeout(max(self.timeout, STREAM_READ_TIMEOUT))
            connected_at = time.monotonic()
            self.stream_connections += 1
            self._connected.set()
            if self._stream_failing:
                log.info("the flags stream (%s) is connected again", self.environment)
                self._stream_failing = False
            self._read_events(response)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self._stop.is_set():
                return "ended", None
            if connected_at is None:
                level = logging.DEBUG if self._stream_failing else logging.WARNING
                log.log(level, "cannot open the flags stream (%s): %s", self.environment, exc)
                self._stream_failing = True
                return "failed", None
            log.debug("the flags stream (%s) broke: %s", self.environment, exc)
        finally:
            self._connected.clear()
            self._listening = None
            conn.close()
        if time.monotonic() - connected_at < MIN_STREAM_SECONDS and not self._stop.is_set():
            return "failed", None  # a proxy that cuts streams at once: back off, poll meanwhile
        return "ended", None

    def _refused(self, response: http.client.HTTPResponse) -> tuple[str, float | None]:
        text = response.read().decode("utf-8", "replace").strip()[:300]
        status = response.status
        if status in (404, 405, 501) or (400 <= status < 500 and status != 429):
            log.info(
                "the collector has no flags stream for this client (%s, HTTP %d: %s): polling",
                self.environment,
                status,
                text,
            )
            return "unsupported", None
        level = logging.DEBUG if self._stream_failing else logging.WARNING
        log.log(
            level,
            "the collector refused the flags stream (%s, HTTP %d): %s; polling meanwhile",
            self.environment,
            status,
            text,
        )
        self._stream_failing = True
        return "failed", parse_retry_after(response.getheader("Retry-After"))

    def _read_events(self, response: http.client.HTTPResponse) -> None:
        parser = EventParser()
        while not self._stop.is_set():
            chunk = response.read1(65536)
            if not chunk:
                return
            for event in parser.feed(chunk):
                if event.event == "ruleset":
                    self._apply(event.data, None)
                elif event.event == "error":
                    log.warning(
                        "the flags stream (%s) ended: %s", self.environment, event.data[:300]
                    )

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(self, key: str, default: Any, attributes: Mapping[str, Any]) -> Evaluation:
        """Evaluate a flag locally; log its exposure (first time per unit). Never raises."""
        current = self._ruleset
        if current is None:
            return Evaluation(key, default, Reason.UNKNOWN)
        try:
            e = current.evaluate(key, attributes, default)
        except Exception:
            log.exception("evaluating flag %r failed; serving the default", key)
            return Evaluation(key, default, Reason.UNKNOWN)
        record(e)
        if e.exposure:
            self.log_exposure(e)
        return e

    def log_exposure(self, e: Evaluation) -> None:
        try:
            self.exposures(e)
        except Exception:
            log.exception("logging the exposure of %r failed", e.flag)

    def variant(self, experiment: str, attributes: Mapping[str, Any]) -> str | None:
        """The variation key the unit is assigned in ``experiment``, else ``None``."""
        flag = self._index.get(experiment)
        if flag is None:
            return None
        e = self.evaluate(flag, None, attributes)
        return e.variation_key if e.experiment == experiment else None

    def provider(self) -> TallystickProvider:
        """An OpenFeature provider over the current ruleset, logging through the same logger."""
        from tallystick.flags.openfeature import TallystickProvider

        return TallystickProvider(
            lambda: self._ruleset, on_exposure=self.log_exposure, on_evaluation=record
        )
