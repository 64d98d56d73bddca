"""Answers kept while the lake files they were computed from are unchanged.

A dashboard asks the same questions again and again (each reload, each back-and-forth between
two views). An answer is stored under the question (the analysis with its resolved dates, or an
endpoint's parameters) together with a *stamp*: the lake files the question reads, with their
versions (``Lake.stamp``). A later ask with an equal stamp gets the stored answer; a new,
replaced or removed file changes the stamp and the answer is computed again. The worst case is
an answer computed a moment after its stamp was taken, so it can only be *newer* than its stamp
says, never older.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeVar

T = TypeVar("T")

MAX_ANSWERS: Final = 256
"""How many answers are kept (least recently used go first)."""


class Answers:
    """A bounded, thread-safe store of answers keyed by question, valid while their stamp is."""

    def __init__(self, max_answers: int = MAX_ANSWERS) -> None:
        self.max_answers = max_answers
        self._kept: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        question: Hashable,
        stamp: Hashable,
        compute: Callable[[], T],
        keep: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """The stored answer to ``question`` if its stamp equals ``stamp``, else ``compute()``
        (stored for next time if ``keep`` says so). Two threads asking at once may both
        compute; both are right."""
        with self._lock:
            kept = self._kept.get(question)
            if kept is not None and kept[0] == stamp:
                self._kept.move_to_end(question)
                self.hits += 1
                answer: T = kept[1]
                return answer
            self.misses += 1
        answer = compute()
        if not keep(answer):
            return answer
        with self._lock:
            self._kept[question] = (stamp, answer)
            self._kept.move_to_end(question)
            while len(self._kept) > self.max_answers:
                self._kept.popitem(last=False)
        return answer

    def __len__(self) -> int:
        return len(self._kept)
