"""Query times of catalog metrics, recorded in the control store (``metric_runs``).

Whatever runs a catalog metric — ``GET|POST /v1/metrics/<name>``, ``tally metrics run`` — times
the computation and records it here; ``tally audit`` lists the most expensive metrics from these
records and the catalog shows how often each metric is used. Recording is a side job: a store
that cannot be opened or written is logged and never fails the query that was measured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tallystick.config import Settings
    from tallystick.control.store import ControlStore
    from tallystick.metrics.analysis import Outcome

log = logging.getLogger("tallystick.catalog")

RETRY_SECONDS: Final = 60.0
"""After the store could not be opened, how long before trying again."""


class MetricRuns:
    """Records metric runs from one source (``http``, ``cli``...). The store is opened on the
    first record, once per instance, and shared by every thread; ``close()`` releases it."""

    def __init__(self, settings: Settings, source: str) -> None:
        self.settings = settings
        self.source = source
        self._store: ControlStore | None = None
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._closed = False

    def _open(self) -> ControlStore | None:
        with self._lock:
            if self._store is not None or self._closed:
                return self._store
            if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_SECONDS:
                return None
            from tallystick.control.store import ControlStore

            try:
                self._store = ControlStore.for_settings(self.settings)
            except Exception as exc:
                self._failed_at = time.monotonic()
                log.warning("metric query times are not recorded: %s: %s", type(exc).__name__, exc)
                return None
            self._failed_at = None
            return self._store

    def record(self, metric: str, seconds: float, rows: int) -> bool:
        """Record one computation of ``metric``; False (logged) when the store is unavailable."""
        store = self._open()
        if store is None:
            return False
        try:
            store.record_metric_run(metric, seconds, rows, self.source)
        except Exception as exc:
            log.warning("could not record a run of %s: %s: %s", metric, type(exc).__name__, exc)
            return False
        return True

    def usage(self) -> dict[str, float] | None:
        """Runs per week of each metric (see ``query.catalog.usage``); None when the store is
        unavailable."""
        store = self._open()
        if store is None:
            return None
        from tallystick.query.catalog import usage

        try:
            return usage(store)
        except Exception as exc:
            log.warning("metric usage unavailable: %s: %s", type(exc).__name__, exc)
            return None

    def timed(self, metric: str, compute: Callable[[], Outcome]) -> Outcome:
        """``compute()``, its time and row count recorded as a run of ``metric``."""
        started = time.perf_counter()
        outcome = compute()
        self.record(metric, time.perf_counter() - started, len(outcome.rows))
        return outcome

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> MetricRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
