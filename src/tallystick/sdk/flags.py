"""Feature flags in the SDK: a cached ruleset, polled from the collector, evaluated locally.

:class:`FlagClient` fetches ``GET {endpoint}/v1/flags/ruleset?environment=ENV`` with the write
key, compiles it once (:meth:`~tallystick.flags.evaluate.Ruleset.compile`) and swaps the
compiled ruleset in whole; a daemon thread fetches again every ``poll_seconds`` with
``If-None-Match`` (a 304 keeps the current one). Nothing here raises into the application:
network errors and invalid answers are logged on ``tallystick.sdk`` and the last good ruleset is
kept; before the first successful fetch every flag is its caller's default.

Experiment assignments are handed to one :class:`~tallystick.flags.exposures.ExposureLogger`
(shared by ``flag()``, ``variant()`` and the OpenFeature provider), which logs the first
exposure of each (experiment, variation, unit) through the tracker.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

from tallystick.flags.errors import RulesetError
from tallystick.flags.evaluate import CompiledRuleset, Evaluation, Reason, parse_ruleset
from tallystick.flags.exposures import Exposure, ExposureLogger

if TYPE_CHECKING:
    from tallystick.flags.openfeature import TallystickProvider

__all__ = ["RULESET_PATH", "FlagClient", "experiment_index"]

log = logging.getLogger("tallystick.sdk")

RULESET_PATH: Final = "/v1/flags/ruleset"


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
    """The cached, polled ruleset of one environment, and local evaluation over it."""

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
    ) -> None:
        if poll_seconds is not None and not poll_seconds > 0:
            raise ValueError(f"flags_poll_seconds must be greater than 0, got {poll_seconds}")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint {endpoint!r} is not an http(s) URL")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = (
            parts.path.rstrip("/") + RULESET_PATH + "?" + urlencode({"environment": environment})
        )
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if write_key:
            self._headers["Authorization"] = f"Bearer {write_key}"
        self.environment = environment
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self.exposures = ExposureLogger(sink)
        self._ruleset: CompiledRuleset | None = None
        self._index: dict[str, str] = {}
        self._etag: str | None = None
        self._failing = False
        self._fetch_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the ruleset -------------------------------------------------------------------------

    @property
    def ruleset(self) -> CompiledRuleset | None:
        """The current compiled ruleset (``None`` until the first successful fetch)."""
        return self._ruleset

    @property
    def version(self) -> int | None:
        current = self._ruleset
        return None if current is None else current.ruleset.version

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
        try:
            ruleset = parse_ruleset(json.loads(body))
            compiled = ruleset.compile(self.environment)
        except (ValueError, RulesetError) as exc:
            log.warning(
                "the flags ruleset (%s) is invalid, kept the last: %s", self.environment, exc
            )
            return False
        current = self._ruleset
        if (
            current is not None
            and current.ruleset.version is not None
            and ruleset.version is not None
            and ruleset.version < current.ruleset.version
        ):
            return True  # an older revision (another server behind a balancer): keep the newest
        self._index = experiment_index(compiled)
        self._ruleset = compiled
        self._etag = etag
        return True

    def start(self, wait: float | None = None) -> None:
        """Start polling (a daemon thread); with ``wait``, fetch once first within that time."""
        if wait is not None and wait > 0:
            self.refresh(timeout=wait)
        if self.poll_seconds is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="tallystick-flags", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._ruleset is None:
            self.refresh()
        interval = self.poll_seconds or 30.0
        while not self._stop.wait(interval):
            self.refresh()

    def close(self) -> None:
        """Stop polling (idempotent); the last ruleset stays usable."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0)

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

        return TallystickProvider(lambda: self._ruleset, on_exposure=self.log_exposure)
