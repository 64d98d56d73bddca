"""The loss report on hand-computed cases, for the Python reference and the SQL alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from quality.lossgen import sql_report
from tallystick.quality.loss import LossRow, Message, loss_report

D1 = dt.date(2026, 3, 1)
D2 = dt.date(2026, 3, 2)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PY = ("tallystick-python", "0.1.0")

Report = Callable[[Sequence[Message]], list[LossRow]]
IMPLEMENTATIONS: list[Any] = [
    pytest.param(loss_report, id="python"),
    pytest.param(sql_report, id="sql"),
]


def msg(
    event_id: str,
    seq: int | None = None,
    *,
    session: str | None = "s1",
    received: int = 0,
    stream: str | None = "a",
    fp: str = "p",
    day: dt.date = D1,
    library: tuple[str, str | None] | None = PY,
) -> Message:
    """A stored row; ``received`` is seconds after noon of D1."""
    return Message(
        event_id=event_id,
        fingerprint=fp,
        day=day,
        received_ts=T0 + dt.timedelta(seconds=received),
        stream=stream,
        session_id=session,
        seq=seq,
        library=library[0] if library else None,
        version=library[1] if library else None,
    )


def row(
    day: dt.date = D1,
    library: tuple[str, str] | None = PY,
    *,
    sessions: int = 0,
    expected: int = 0,
    received: int = 0,
    conflicts: int = 0,
    events: int = 0,
    natural: int = 0,
    synthetic: int = 0,
) -> LossRow:
    lost = expected - received
    return LossRow(
        day=day,
        library=library[0] if library else None,
        version=library[1] if library else None,
        sessions=sessions,
        expected=expected,
        received=received,
        lost=lost,
        loss_rate=lost / expected if expected else None,
        seq_conflicts=conflicts,
        events=events,
        duplicates_natural=natural,
        duplicates_synthetic=synthetic,
    )


CASES: dict[str, tuple[list[Message], list[LossRow]]] = {
    "nothing": ([], []),
    "complete session": (
        [msg("e1", 1), msg("e2", 2, received=1), msg("e3", 3, received=2)],
        [row(sessions=1, expected=3, received=3, events=3)],
    ),
    "gaps inside a session": (
        [msg("e1", 1), msg("e2", 2), msg("e4", 4), msg("e6", 6)],
        [row(sessions=1, expected=6, received=4, events=4)],
    ),
    "the first messages lost": (
        [msg("e3", 3), msg("e4", 4)],
        [row(sessions=1, expected=4, received=2, events=2)],
    ),
    "two sessions add up": (
        [msg("e1", 1), msg("e3", 3), msg("f2", 2, session="s2")],
        [row(sessions=2, expected=5, received=3, events=3)],
    ),
    "copies in several streams are one delivery": (
        [msg("e1", 1, stream="a"), msg("e1", 1, stream="b"), msg("e1", 1, stream=None)],
        [row(sessions=1, expected=1, received=1, events=1)],
    ),
    "a retry is a natural duplicate, once whatever the streams": (
        [
            msg("e1", 1, stream="a"),
            msg("e1", 1, stream="b"),
            msg("e1", 1, stream="a", received=5),
            msg("e1", 1, stream="b", received=5),
        ],
        [row(sessions=1, expected=1, received=1, events=1, natural=1)],
    ),
    "a retry stored in another stream only is still a duplicate": (
        [msg("e1", 1, stream="a"), msg("e1", 1, stream="b", received=5)],
        [row(sessions=1, expected=1, received=1, events=1, natural=1)],
    ),
    "the same event twice in one request": (
        [msg("e1", 1, stream="a"), msg("e1", 1, stream="a"), msg("e1", 1, stream="b")],
        [row(sessions=1, expected=1, received=1, events=1, natural=1)],
    ),
    "an id reused for another payload is a synthetic duplicate": (
        [msg("e1", 1), msg("e1", 1, fp="q", received=5)],
        [row(sessions=1, expected=1, received=1, events=1, synthetic=1)],
    ),
    "two payloads each sent twice: two natural, one synthetic": (
        [
            msg("e1", 1),
            msg("e1", 1, received=1),
            msg("e1", 1, fp="q", received=2, stream="b"),
            msg("e1", 1, fp="q", received=3),
        ],
        [row(sessions=1, expected=1, received=1, events=1, natural=2, synthetic=1)],
    ),
    "a session spanning midnight counts on its first day; its events on their own": (
        [msg("e1", 1, day=D1), msg("e3", 3, day=D2, received=1)],
        [row(D1, sessions=1, expected=3, received=2, events=1), row(D2, events=1)],
    ),
    "a session's day is its earliest, whichever message names the library": (
        [msg("e1", 1, day=D1, library=None), msg("e2", 2, day=D2, received=1)],
        [
            row(D1, PY, sessions=1, expected=2, received=2),
            row(D1, None, events=1),
            row(D2, PY, events=1),
        ],
    ),
    "events without a session, an empty one or a seq count as events only": (
        [
            msg("e1", None, session=None),
            msg("e2", None, session="s9"),
            msg("e3", 4, session=""),
            msg("e3", 4, session="", received=3),
        ],
        [row(events=3, natural=1)],
    ),
    "a copy without the session (a narrowing stream) does not hide the seq": (
        [msg("e1", None, session=None, stream="narrow", library=None), msg("e1", 2, stream="a")],
        [row(sessions=1, expected=2, received=1, events=1)],
    ),
    "a seq carried by two event ids is received once and is a conflict": (
        [msg("e1", 1), msg("e2", 2), msg("x2", 2, received=1), msg("e3", 3)],
        [row(sessions=1, expected=3, received=3, conflicts=1, events=4)],
    ),
    "a session counts on the library of its first message that names one": (
        [
            msg("e1", 1, library=None),
            msg("e2", 2, library=PY),
            msg("e3", 3, library=("tallystick-python", "0.2.0")),
        ],
        [
            row(D1, PY, sessions=1, expected=3, received=3, events=1),
            row(library=("tallystick-python", "0.2.0"), events=1),
            row(library=None, events=1),
        ],
    ),
    "an event counts on its first delivery": (
        [msg("e1", None, session=None, day=D2, received=9), msg("e1", None, session=None, fp="q")],
        [row(D1, events=1, synthetic=1)],
    ),
    "a session without any library": (
        [msg("e1", 1, library=None), msg("e2", 3, library=None)],
        [row(library=None, sessions=1, expected=3, received=2, events=2)],
    ),
}


@pytest.mark.parametrize("report", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_hand_computed_cases(report: Report, case: str) -> None:
    messages, expected = CASES[case]
    assert report(messages) == expected


@pytest.mark.parametrize("report", IMPLEMENTATIONS)
def test_groups_are_ordered_by_day_library_and_version_nulls_last(report: Report) -> None:
    js = ("tallystick-js", "1.0")
    messages = [
        msg("e1", None, session=None, day=D2, library=None),
        msg("e2", None, session=None, day=D2, library=js),
        msg("e3", None, session=None, day=D2, library=PY),
        msg("e4", None, session=None, day=D1, library=("tallystick-python", None)),
        msg("e5", None, session=None, day=D1, library=PY),
    ]
    keys = [(r.day, r.library, r.version) for r in report(messages)]
    assert keys == [
        (D1, "tallystick-python", "0.1.0"),
        (D1, "tallystick-python", None),
        (D2, "tallystick-js", "1.0"),
        (D2, "tallystick-python", "0.1.0"),
        (D2, None, None),
    ]


def test_a_row_as_json() -> None:
    [out] = loss_report([msg("e1", 1), msg("e3", 3), msg("e3", 3, received=4)])
    assert out.as_dict() == {
        "day": "2026-03-01",
        "library": "tallystick-python",
        "version": "0.1.0",
        "sessions": 1,
        "expected": 3,
        "received": 2,
        "lost": 1,
        "loss_rate": 1 / 3,
        "seq_conflicts": 0,
        "events": 2,
        "duplicates": 1,
        "duplicates_natural": 1,
        "duplicates_synthetic": 0,
    }
