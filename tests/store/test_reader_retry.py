"""A read whose files change under it is tried again, for a while, and only for that."""

from __future__ import annotations

import time

import pytest

from tallystick.store import reader
from tallystick.store.reader import retrying


class Gone(Exception):
    pass


def test_transient_errors_are_retried_until_the_read_holds_still(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    failures = iter(range(6))

    def attempt() -> str:
        if next(failures, None) is not None:
            raise Gone("a partition was rewritten")
        return "answer"

    assert retrying(attempt, lambda exc: isinstance(exc, Gone)) == "answer"
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]  # growing, capped


def test_other_errors_go_through_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)

    def attempt() -> str:
        raise ValueError("a real problem")

    with pytest.raises(ValueError, match="a real problem"):
        retrying(attempt, lambda exc: isinstance(exc, Gone))
    assert waits == []


def test_a_read_that_never_holds_still_fails_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda s: now.__setitem__(0, now[0] + s))

    def attempt() -> str:
        raise Gone("still changing")

    with pytest.raises(Gone):
        retrying(attempt, lambda exc: isinstance(exc, Gone))
    assert reader.IO_RETRY_SECONDS - 0.5 <= now[0] <= reader.IO_RETRY_SECONDS
