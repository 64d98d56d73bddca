"""Sessionization of events that arrive without a session id, and page-view linkage.

Rules (docs/enrichment.md explains them for users):

- **Who.** An event without ``session.id`` (missing or empty) is sessionized per *device key*:
  its ``user.anonymous_id`` when it has one, else its ``user.id``. The anonymous id comes first
  because a session is one browser's or device's visit: signing in in the middle of it (events
  then carry both ids) does not start a new session, and one person on two devices at once has
  two sessions. An event with neither id gets no session.
- **When.** Events of a key are taken in order of event time (``client_ts`` after clock-skew
  correction). A session ends after ``timeout`` of inactivity: an event more than ``timeout``
  after the latest event of the current session starts a new one. Its id is deterministic:
  ``s~`` + 16 hex digits of a BLAKE2b hash of the key and the session's start (µs), so loading
  the same events again gives the same ids.
- **Page views stay whole.** An event whose ``page.pageview_id`` was already seen belongs to that
  page view's session, even after ``timeout`` of inactivity (a reader who comes back to an open
  page after an hour continues the session): a page view never spans two sessions.
- **Page-view linkage.** ``page.previous_pageview_id`` is the page view that started before this
  one in the same session — the in-app referrer as an id, for paths and navigation analyses.
  Every event of a page view carries the same value; the first page view of a session has none.
  Events with a client-sent ``session.id`` get it too (per that session id; only their events
  with a page view are looked at).
- **Late events.** Ids already written are never changed. Within one loader batch events are
  ordered by time first, so order inside a batch does not matter. An event older than what was
  already processed for its key (it arrived in a later batch) joins the current session when it
  falls within ``timeout`` before its start or inside it; if it is older still, it belongs to an
  earlier session that is no longer remembered, and such late events of one batch form sessions of
  their own (same gap rule, ids from their own start). A late *new* page view links to the page
  view that started last in its session, which may not be the one just before it in time.
- **Memory.** A key is remembered until none of its events has been *received* for
  ``2 × timeout`` (by the collector's clock: client clocks cannot be trusted to move on), and
  the last ``MAX_PAGEVIEWS`` page views of each key. An event of a forgotten key starts a new
  session, even one within ``timeout`` of the forgotten session's end in event time — which only
  happens when a client holds events back for longer than ``2 × timeout`` of arrival silence.

With these rules, delivering a key's events in time order in any number of batches gives exactly
the ids one batch would give (a property test checks it against a plain-Python reference).

The state is a plain dict of tracks (``State``); ``Sessionizer.assign`` computes a batch's
answers and the changed tracks without touching the state, ``commit`` applies them — so a batch
that fails to load leaves the state as it was. ``SessionStore`` keeps the state in a file next
to the lake, replaced atomically after each batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from tallystick.store.durable import replace_durably

log = logging.getLogger("tallystick.enrich")

MAX_PAGEVIEWS: Final = 50
STATE_VERSION: Final = 1
SESSION_PREFIX: Final = "s~"


# ``gc=False``: these hold no reference cycles, so the cyclic garbage collector need not track
# them (collections over many small sessions cost a third of the loader's sessionization time).
class Session(msgspec.Struct, array_like=True, gc=False):
    id: str
    start: int
    """Event time of its first event, µs since the epoch."""
    last: int
    """Event time of its latest event."""
    last_pageview: str | None = None
    """The page view that started last in it."""


class Track(msgspec.Struct, array_like=True, gc=False):
    """What is remembered of one key (``a:<anonymous id>``, ``u:<user id>``) or one client
    session (``s:<session id>``)."""

    seen: int
    """The latest ``received_ts`` of its events, µs (the collector's clock)."""
    current: Session | None = None
    pageviews: dict[str, tuple[str, str | None]] = {}
    """page view id → (its session id, the previous page view), oldest first."""

    def copy(self) -> Track:
        current = None
        if self.current is not None:
            c = self.current
            current = Session(c.id, c.start, c.last, c.last_pageview)
        return Track(self.seen, current, dict(self.pageviews))


class State(msgspec.Struct):
    """Everything remembered between batches."""

    version: int = STATE_VERSION
    newest_received: int = 0
    tracks: dict[str, Track] = {}


@dataclass(frozen=True, slots=True)
class Row:
    """What sessionization reads of one event."""

    time: int
    """Event time (``client_ts``), µs since the epoch."""
    received: int
    """``received_ts``, µs."""
    session_id: str | None = None
    anonymous_id: str | None = None
    user_id: str | None = None
    pageview_id: str | None = None


@dataclass(frozen=True, slots=True)
class Columns:
    """``Row`` fields as columns (the loader's fast path)."""

    times: Sequence[int]
    received: Sequence[int]
    session_ids: Sequence[str | None]
    anonymous_ids: Sequence[str | None]
    user_ids: Sequence[str | None]
    pageview_ids: Sequence[str | None]


@dataclass(frozen=True, slots=True)
class Sorted:
    """The rows sessionization looks at, as columns sorted by (key, time, received, index)."""

    keys: Sequence[str]
    times: Sequence[int]
    received: Sequence[int]
    pageview_ids: Sequence[str | None]
    index: Sequence[int]
    """Each row's place in the batch."""


@dataclass(frozen=True, slots=True)
class Answer:
    session_id: str | None
    inferred: bool
    previous_pageview_id: str | None


@dataclass(slots=True)
class Pending:
    """A batch's changes to the state, applied by ``Sessionizer.commit``."""

    tracks: dict[str, Track]
    newest_received: int


def session_id(key: str, start_us: int) -> str:
    """The deterministic id of the inferred session of ``key`` starting at ``start_us``."""
    digest = hashlib.blake2b(f"{key}\x1f{start_us}".encode(), digest_size=8).hexdigest()
    return SESSION_PREFIX + digest


class Sessionizer:
    """The rules above over a ``State``; ``timeout_us`` is the inactivity timeout."""

    def __init__(self, timeout_us: int, state: State | None = None) -> None:
        if timeout_us <= 0:
            raise ValueError("the session timeout must be positive")
        self.timeout = timeout_us
        self.retention = 2 * timeout_us
        self.state = state if state is not None else State()

    def assign(self, rows: Sequence[Row]) -> tuple[list[Answer], Pending]:
        """The answer for each row (same order) and the changes to commit; the state is not
        changed."""
        columns = Columns(
            [r.time for r in rows],
            [r.received for r in rows],
            [r.session_id for r in rows],
            [r.anonymous_id for r in rows],
            [r.user_id for r in rows],
            [r.pageview_id for r in rows],
        )
        sessions, inferred, previous, pending = self.assign_columns(columns)
        answers = [
            Answer(rows[i].session_id or None, False, None)
            if sessions[i] is None
            else Answer(sessions[i], inferred[i], previous[i])
            for i in range(len(rows))
        ]
        return answers, pending

    def assign_columns(
        self, c: Columns
    ) -> tuple[list[str | None], list[bool], list[str | None], Pending]:
        """``assign`` over columns: (session id, inferred, previous page view) per row —
        ``None``, ``False``, ``None`` for rows it leaves alone (no key; a client session id
        without a page view) — and the changes to commit."""
        keyed: list[tuple[str, int, int, int]] = []
        add = keyed.append
        times, received, given, anonymous, users, pageviews = (
            c.times,
            c.received,
            c.session_ids,
            c.anonymous_ids,
            c.user_ids,
            c.pageview_ids,
        )
        for i in range(len(times)):
            sid = given[i]
            if sid:
                if pageviews[i]:  # a client session matters only for page-view linkage
                    add(("s:" + sid, times[i], received[i], i))
            elif a := anonymous[i]:
                add(("a:" + a, times[i], received[i], i))
            elif u := users[i]:
                add(("u:" + u, times[i], received[i], i))
        keyed.sort()
        return self.assign_sorted(
            Sorted(
                [k[0] for k in keyed],
                [k[1] for k in keyed],
                [k[2] for k in keyed],
                [pageviews[k[3]] for k in keyed],
                [k[3] for k in keyed],
            ),
            len(times),
        )

    def assign_sorted(
        self, rows: Sorted, n: int
    ) -> tuple[list[str | None], list[bool], list[str | None], Pending]:
        """The core: rows that have a track key (``s:<session id>`` for a client session's
        page-view events, ``a:<anonymous id>``, ``u:<user id>``), sorted by (key, time,
        received, index); answers for all ``n`` rows of the batch."""
        out_session: list[str | None] = [None] * n
        out_inferred = [False] * n
        out_previous: list[str | None] = [None] * n
        touched: dict[str, Track] = {}
        late: dict[str, Session] = {}
        newest = self.state.newest_received
        stored_tracks = self.state.tracks
        retention, timeout = self.retention, self.timeout
        last_key = ""
        track = Track(0)
        for key, t, r, pageview, i in zip(
            rows.keys, rows.times, rows.received, rows.pageview_ids, rows.index, strict=True
        ):
            if r > newest:
                newest = r
            if key != last_key:
                last_key = key
                found = touched.get(key)
                if found is None:
                    stored = stored_tracks.get(key)
                    found = touched[key] = stored.copy() if stored is not None else Track(r)
                track = found
            if r - track.seen > retention:  # forgotten: start afresh
                track.seen, track.current, track.pageviews = r, None, {}
                late.pop(key, None)
            if r > track.seen:
                track.seen = r
            pageviews = track.pageviews
            current = track.current
            if not pageview:
                pageview = None
            elif (known := pageviews.get(pageview)) is not None:  # a page view stays whole
                out_session[i], out_previous[i] = known
                out_inferred[i] = key[0] != "s"
                if current is not None and current.id == known[0] and t > current.last:
                    current.last = t
                continue
            if key[0] == "s":  # a client session: only its page views are tracked
                if current is None:
                    current = track.current = Session(key[2:], t, t)
                elif t > current.last:
                    current.last = t
                session = current
            else:
                out_inferred[i] = True
                if current is None or t > current.last + timeout:
                    session = track.current = Session(session_id(key, t), t, t)
                elif t >= current.start - timeout:
                    session = current
                    if t > session.last:
                        session.last = t
                else:  # older than the current session: an earlier, forgotten session
                    run = late.get(key)
                    if run is None or t > run.last + timeout:
                        run = late[key] = Session(session_id(key, t), t, t)
                    elif t > run.last:
                        run.last = t
                    session = run
            out_session[i] = session.id
            if pageview is not None:  # a new page view: it follows the session's last one
                previous = out_previous[i] = session.last_pageview
                pageviews[pageview] = (session.id, previous)
                session.last_pageview = pageview
                if len(pageviews) > MAX_PAGEVIEWS:
                    del pageviews[next(iter(pageviews))]
        return out_session, out_inferred, out_previous, Pending(touched, newest)

    def commit(self, pending: Pending) -> None:
        """Apply a batch's changes, then forget keys not received for ``2 × timeout``."""
        state = self.state
        state.tracks.update(pending.tracks)
        state.newest_received = max(state.newest_received, pending.newest_received)
        horizon = state.newest_received - self.retention
        stale = [k for k, tr in state.tracks.items() if tr.seen < horizon]
        for k in stale:
            del state.tracks[k]


_encode_state = msgspec.json.Encoder().encode
_decode_state = msgspec.json.Decoder(State).decode


class SessionStore:
    """A ``Sessionizer`` whose state lives in a JSON file, replaced atomically on commit.

    The file is read when the state is first needed, not when the store is made: a loader is
    built before it waits for the data directory's lock, and the state must be the one the
    previous holder of the lock left."""

    def __init__(self, path: Path, timeout_us: int) -> None:
        self.path = path
        self.timeout_us = timeout_us
        self._sessionizer: Sessionizer | None = None

    @property
    def sessionizer(self) -> Sessionizer:
        if self._sessionizer is None:
            self._sessionizer = Sessionizer(self.timeout_us, self._load())
        return self._sessionizer

    def _load(self) -> State:
        try:
            state = _decode_state(self.path.read_bytes())
        except FileNotFoundError:
            return State()
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "the sessionization state %s cannot be read (%s); starting afresh: events "
                "without a session id start new sessions",
                self.path,
                exc,
            )
            return State()
        if state.version != STATE_VERSION:
            log.warning(
                "the sessionization state %s has version %d; starting afresh",
                self.path,
                state.version,
            )
            return State()
        return state

    def assign(
        self, rows: Sorted, n: int
    ) -> tuple[list[str | None], list[bool], list[str | None], Pending]:
        return self.sessionizer.assign_sorted(rows, n)

    def forget(self, keys: Sequence[str]) -> int:
        """Forget the tracks ``keys`` (a deleted user's, ``store.deletion``) and write the state
        to disk; how many of them it held."""
        state = self.sessionizer.state
        known = {k for k in keys if k in state.tracks}
        if not known:
            return 0
        tracks = {k: v for k, v in state.tracks.items() if k not in known}
        smaller = State(state.version, state.newest_received, tracks)
        encoded = _encode_state(smaller)
        replace_durably(self.path, lambda tmp: tmp.write_bytes(encoded))
        self.sessionizer.state = smaller
        return len(known)

    def commit(self, pending: Pending) -> None:
        """Write the new state to disk, then use it (a failed write changes nothing)."""
        if not pending.tracks:
            return
        sessionizer = self.sessionizer
        current = sessionizer.state
        trial = Sessionizer(
            sessionizer.timeout,
            State(current.version, current.newest_received, dict(current.tracks)),
        )
        trial.commit(pending)
        encoded = _encode_state(trial.state)
        replace_durably(self.path, lambda tmp: tmp.write_bytes(encoded))
        sessionizer.state = trial.state
