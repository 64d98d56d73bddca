"""Exposure events: logged the first time a unit is assigned a variation of an experiment (pure).

An :class:`~tallystick.flags.evaluate.Evaluation` with ``exposure=True`` is a hashed assignment
into an experiment. The analysis counts a unit from its **first exposure**, so the SDK logs one
``experiment.exposure`` event per (experiment, variation key, hash attribute, unit) and drops the
repeats, remembering the most recently seen keys in a bounded LRU so memory stays bounded
(``max_entries`` keys, ~200 bytes each). A key evicted and seen again is logged again: a
duplicate exposure is harmless (the analysis takes each unit's first), a missing one is not.
A unit that moves to another variation (a new ruleset) is a new key and is logged again.

No I/O here: :class:`ExposureLogger` hands each first exposure to a ``sink`` (the SDK's
``tracker.track``); it can be given as ``on_exposure`` to the OpenFeature provider.

The event (``exposure_event``)::

    name        "experiment.exposure"
    experiments {experiment key: variation key}   (when the key fits the event schema's pattern)
    data        {"experiment", "variation", "variation_index", "flag", "rule",
                 "hash_attribute", "unit", "bucket"}
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from tallystick.flags.evaluate import Evaluation
from tallystick.schema import EXPERIMENT_KEY_PATTERN

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "EXPOSURE_EVENT",
    "Exposure",
    "ExposureDeduplicator",
    "ExposureLogger",
    "exposure_event",
    "exposure_key",
]

EXPOSURE_EVENT: Final = "experiment.exposure"
DEFAULT_MAX_ENTRIES: Final = 100_000
_EXPERIMENT_KEY = re.compile(EXPERIMENT_KEY_PATTERN)
_MAX_EXPERIMENT_KEY: Final = 128  # schema.ExperimentKey

ExposureKey: TypeAlias = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Exposure:
    """One exposure event, ready for ``tracker.track(name, data=data, experiments=experiments)``."""

    name: str
    data: dict[str, Any]
    experiments: dict[str, str] = field(default_factory=dict)


def exposure_key(e: Evaluation) -> ExposureKey | None:
    """(experiment, variation key, hash attribute, unit), or ``None`` if ``e`` is no exposure."""
    if not e.exposure or e.experiment is None or e.unit is None:
        return None
    variation = e.variation_key if e.variation_key is not None else str(e.variation)
    return (e.experiment, variation, e.hash_attribute or "", e.unit)


def exposure_event(e: Evaluation) -> Exposure:
    """The ``experiment.exposure`` event of an exposure-worthy evaluation.

    The assignment goes into ``data`` always and into the event's ``experiments`` map (experiment
    key → variation key) when the experiment key fits the event schema (lowercase letters,
    digits, ``_.-``, at most 128 characters; flag keys may also hold capitals, ``:`` and ``/``).
    Raises ``ValueError`` for an evaluation that is not an exposure.
    """
    key = exposure_key(e)
    if key is None:
        raise ValueError(f"the evaluation of {e.flag!r} is not an experiment exposure")
    experiment, variation, hash_attribute, unit = key
    data: dict[str, Any] = {
        "experiment": experiment,
        "variation": variation,
        "variation_index": e.variation,
        "flag": e.flag,
        "rule": e.rule,
        "hash_attribute": hash_attribute,
        "unit": unit,
        "bucket": e.bucket,
    }
    experiments: dict[str, str] = {}
    if len(experiment) <= _MAX_EXPERIMENT_KEY and _EXPERIMENT_KEY.match(experiment):
        experiments[experiment] = variation
    return Exposure(EXPOSURE_EVENT, data, experiments)


class ExposureDeduplicator:
    """Says whether an evaluation is the first exposure of its key (a bounded LRU; thread-safe)."""

    __slots__ = ("_lock", "_seen", "max_entries")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries is at least 1, not {max_entries}")
        self.max_entries = max_entries
        self._seen: OrderedDict[ExposureKey, None] = OrderedDict()
        self._lock = threading.Lock()

    def should_log(self, e: Evaluation) -> bool:
        """``True`` the first time an exposure key is seen (and remembers it); else ``False``."""
        key = exposure_key(e)
        if key is None:
            return False
        seen = self._seen
        with self._lock:
            if key in seen:
                seen.move_to_end(key)
                return False
            seen[key] = None
            if len(seen) > self.max_entries:
                seen.popitem(last=False)
            return True

    def forget(self, e: Evaluation) -> None:
        """Forget an exposure key (its event could not be queued: log it next time)."""
        key = exposure_key(e)
        if key is not None:
            with self._lock:
                self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class ExposureLogger:
    """Give each first exposure's event to ``sink``; usable as the provider's ``on_exposure``."""

    __slots__ = ("dedup", "sink")

    def __init__(
        self, sink: Callable[[Exposure], object], max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.sink = sink
        self.dedup = ExposureDeduplicator(max_entries)

    def __call__(self, e: Evaluation) -> Exposure | None:
        """The event given to the sink, or ``None`` (not an exposure, or already logged).

        If the sink raises, the key is forgotten (the next evaluation logs it) and the error
        propagates.
        """
        if not self.dedup.should_log(e):
            return None
        event = exposure_event(e)
        try:
            self.sink(event)
        except BaseException:
            self.dedup.forget(e)
            raise
        return event
