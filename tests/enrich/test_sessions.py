"""Sessionization and page-view linkage: a plain-Python reference over the whole history, batch
splitting, restarts, late events, and the consistency of page views."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrich.sessiongen import MIN, T0, TIMEOUT, histories, reference, remembered
from tallystick.enrich.sessions import (
    Answer,
    Row,
    Sessionizer,
    SessionStore,
    State,
    session_id,
)


def _in_batches(rows: list[Row], cuts: list[int], directory: Path, seed: int) -> list[Answer]:
    """Deliver ``rows`` in order of receipt, cut into batches (each shuffled), through a
    ``SessionStore`` that is reopened from its file before every batch (a restart)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].received)
    answers: dict[int, Answer] = {}
    bounds = [0, *sorted(set(cuts)), len(order)]
    shuffle = random.Random(seed).shuffle
    path = directory / f"state-{seed}.json"
    path.unlink(missing_ok=True)
    for start, end in itertools.pairwise(bounds):
        part = order[start:end]
        shuffle(part)
        store = SessionStore(path, TIMEOUT)
        got, pending = store.sessionizer.assign([rows[i] for i in part])
        store.commit(pending)
        answers.update(zip(part, got, strict=True))
    return [answers[i] for i in range(len(rows))]


@settings(max_examples=100, deadline=None)
@given(rows=histories, cuts=st.lists(st.integers(0, 60), max_size=6), seed=st.integers(0, 99))
def test_batches_give_the_ids_of_one_batch_and_of_the_reference(
    rows: list[Row], cuts: list[int], seed: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    one, _ = Sessionizer(TIMEOUT).assign(rows)
    assert one == reference(rows)
    directory = tmp_path_factory.getbasetemp()
    assert _in_batches(rows, [c for c in cuts if c < len(rows)], directory, seed) == one


@settings(max_examples=100, deadline=None)
@given(rows=histories, seed=st.integers(0, 99))
def test_order_within_a_batch_does_not_matter(rows: list[Row], seed: int) -> None:
    shuffled = list(enumerate(rows))
    random.Random(seed).shuffle(shuffled)
    answers, _ = Sessionizer(TIMEOUT).assign([r for _, r in shuffled])
    by_index = dict(zip([i for i, _ in shuffled], answers, strict=True))
    assert [by_index[i] for i in range(len(rows))] == Sessionizer(TIMEOUT).assign(rows)[0]


@settings(max_examples=100, deadline=None)
@given(rows=remembered)
def test_page_views_stay_whole_and_link_within_their_session(rows: list[Row]) -> None:
    """While a key is remembered, a page view is in one session and links to a page view of
    the same session."""
    answers, _ = Sessionizer(TIMEOUT).assign(rows)
    session_of: dict[str, str | None] = {}
    for row, answer in zip(rows, answers, strict=True):
        if row.pageview_id and answer.session_id:
            assert session_of.setdefault(row.pageview_id, answer.session_id) == answer.session_id
    for row, answer in zip(rows, answers, strict=True):
        if answer.previous_pageview_id is not None:
            assert row.pageview_id is not None
            assert session_of[answer.previous_pageview_id] == answer.session_id
        if row.pageview_id is None:
            assert answer.previous_pageview_id is None


def _row(
    minute: float, *, anon: str = "a-1", pv: str | None = None, received: float | None = None
) -> Row:
    t = T0 + round(minute * MIN)
    r = T0 + round((minute if received is None else received) * MIN)
    return Row(t, r, anonymous_id=anon, pageview_id=pv)


def _ids(sessionizer: Sessionizer, rows: list[Row]) -> list[str | None]:
    answers, pending = sessionizer.assign(rows)
    sessionizer.commit(pending)
    return [a.session_id for a in answers]


# (minutes of the events, which session each is in: same letter, same session)
GAP_CASES = [
    ([0, 10, 20], "aaa"),
    ([0, 30], "aa"),  # exactly the timeout: still the same session
    ([0, 30.001], "ab"),
    ([0, 29, 58, 87], "aaaa"),  # inactivity, not length, ends a session
    ([0, 40, 41, 100], "abbc"),
]


@pytest.mark.parametrize(("minutes", "expected"), GAP_CASES)
def test_sessions_end_after_the_timeout(minutes: list[float], expected: str) -> None:
    ids = _ids(Sessionizer(TIMEOUT), [_row(m) for m in minutes])
    letters = {sid: chr(ord("a") + n) for n, sid in enumerate(dict.fromkeys(ids))}
    assert "".join(letters[i] for i in ids if i) == expected
    assert ids[0] == session_id("a:a-1", T0)


def test_who_is_sessionized() -> None:
    rows = [
        Row(T0, T0, session_id="s-1", anonymous_id="a-1"),
        Row(T0, T0, session_id="", anonymous_id="a-1"),  # empty: missing
        Row(T0, T0, anonymous_id="a-1", user_id="u-1"),  # the anonymous id is the key
        Row(T0, T0, user_id="u-1"),
        Row(T0, T0, anonymous_id="", user_id=""),
        Row(T0, T0),
    ]
    answers, _ = Sessionizer(TIMEOUT).assign(rows)
    assert answers == [
        Answer("s-1", False, None),
        Answer(session_id("a:a-1", T0), True, None),
        Answer(session_id("a:a-1", T0), True, None),
        Answer(session_id("u:u-1", T0), True, None),
        Answer(None, False, None),
        Answer(None, False, None),
    ]
    assert session_id("a:a-1", T0).startswith("s~")
    assert len(session_id("a:a-1", T0)) == 18


def test_a_page_view_keeps_its_session_after_a_long_pause() -> None:
    s = Sessionizer(TIMEOUT)
    ids = _ids(s, [_row(0, pv="p1"), _row(50, pv="p1"), _row(60), _row(70, pv="p2")])
    assert len(set(ids)) == 1  # the reader came back to the open page: one session
    answers, _ = s.assign([_row(120, pv="p3")])
    assert answers[0].session_id != ids[0]  # 50 minutes after: a new session
    assert answers[0].previous_pageview_id is None


def test_previous_page_view() -> None:
    s = Sessionizer(TIMEOUT)
    rows = [
        _row(0, pv="p1"),
        _row(1, pv="p1"),
        _row(2, pv="p2"),
        _row(3, pv="p1"),
        _row(4),
        _row(5, pv="p3"),
    ]
    answers, _ = s.assign(rows)
    assert [a.previous_pageview_id for a in answers] == [None, None, "p1", None, None, "p2"]


def test_late_events() -> None:
    s = Sessionizer(TIMEOUT)
    [current] = set(_ids(s, [_row(60), _row(80)]))  # a session from 10:00 to 10:20, say
    late = _ids(
        s,
        [
            _row(45, received=100),  # within the timeout before its start: joins it
            _row(70, received=100),  # inside it
            _row(0, received=100),  # an earlier, forgotten session: a session of its own
            _row(10, received=100),  # ... which the next late event of the batch joins
        ],
    )
    assert late == [current, current, session_id("a:a-1", T0), session_id("a:a-1", T0)]
    # the late run did not move the current session: the next event still joins it
    assert _ids(s, [_row(100, received=101)]) == [current]


def test_a_key_is_forgotten_after_twice_the_timeout_of_arrival_silence() -> None:
    s = Sessionizer(TIMEOUT)
    first = _ids(s, [_row(0, received=0)])
    # a client that held its next event back: 10 minutes later by its clock, 61 by ours
    assert _ids(s, [_row(10, received=61)]) != first
    s = Sessionizer(TIMEOUT)
    first = _ids(s, [_row(0, received=0)])
    assert _ids(s, [_row(10, received=59)]) == first


def test_memory_is_bounded() -> None:
    s = Sessionizer(TIMEOUT)
    _ids(s, [_row(0, anon=f"a-{i}") for i in range(100)])
    assert len(s.state.tracks) == 100
    _ids(s, [_row(61, anon="a-new")])  # the others were last received 61 minutes ago
    assert list(s.state.tracks) == ["a:a-new"]


def test_assign_changes_nothing_until_commit() -> None:
    s = Sessionizer(TIMEOUT)
    first = _ids(s, [_row(0)])
    before = s.state.tracks["a:a-1"].copy()
    s.assign([_row(50), _row(51, pv="p")])  # a batch that then fails to load
    assert s.state.tracks["a:a-1"] == before
    assert _ids(s, [_row(20)]) == first


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sessions.json"
    store = SessionStore(path, TIMEOUT)
    answers, pending = store.sessionizer.assign(
        [_row(0, pv="p1"), Row(T0, T0, session_id="s-9", pageview_id="q1")]
    )
    store.commit(pending)
    again = SessionStore(path, TIMEOUT)
    later, _ = again.sessionizer.assign(
        [_row(20, pv="p2"), Row(T0 + MIN, T0 + MIN, session_id="s-9", pageview_id="q2")]
    )
    assert later == [
        Answer(answers[0].session_id, True, "p1"),
        Answer("s-9", False, "q1"),
    ]


def test_an_unreadable_state_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sessions.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="tallystick.enrich"):
        assert SessionStore(path, TIMEOUT).sessionizer.state == State()
    assert "starting afresh" in caplog.text


def test_the_state_is_read_when_first_needed(tmp_path: Path) -> None:
    """A loader waiting for the lock must use the state the previous one left."""
    path = tmp_path / "sessions.json"
    waiting = SessionStore(path, TIMEOUT)
    first = SessionStore(path, TIMEOUT)
    answers, pending = first.sessionizer.assign([_row(0)])
    first.commit(pending)
    assert waiting.sessionizer.assign([_row(10)])[0] == answers


def test_a_failed_state_write_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SessionStore(blocker / "sessions.json", TIMEOUT)  # its directory cannot be made
    _, pending = store.sessionizer.assign([_row(0)])
    with pytest.raises(FileExistsError):
        store.commit(pending)
    assert store.sessionizer.state.tracks == {}


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sessionizer(0)
