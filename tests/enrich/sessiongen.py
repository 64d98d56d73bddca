"""A plain-Python reference of sessionization and generated histories for its tests
(imported as ``enrich.sessiongen``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from tallystick.enrich.sessions import Answer, Row, session_id

MIN = 60_000_000
TIMEOUT = 30 * MIN
T0 = 1_780_000_000_000_000  # 2026-05-28


# -- the reference: the rules written out over the whole history ------------------------------


@dataclass
class _RefSession:
    id: str
    last: int
    last_pageview: str | None = None


@dataclass
class _RefTrack:
    seen: int
    current: _RefSession | None = None
    pageviews: dict[str, tuple[_RefSession, str | None]] = field(default_factory=dict)


def reference(rows: Sequence[Row], timeout: int = TIMEOUT) -> list[Answer]:
    """Every event of a key in time order: a gap of more than ``timeout`` starts a session, a
    known page view keeps its session, a key not received for ``2 × timeout`` is forgotten.
    (Only for histories delivered in time order per key: no late events.)"""
    out: list[Answer | None] = [None] * len(rows)
    keyed = []
    for i, r in enumerate(rows):
        if r.session_id and not r.pageview_id:
            out[i] = Answer(r.session_id, False, None)  # nothing to link
        elif r.session_id:
            keyed.append(("s:" + r.session_id, r.time, r.received, i))
        elif r.anonymous_id:
            keyed.append(("a:" + r.anonymous_id, r.time, r.received, i))
        elif r.user_id:
            keyed.append(("u:" + r.user_id, r.time, r.received, i))
        else:
            out[i] = Answer(None, False, None)
    tracks: dict[str, _RefTrack] = {}
    for key, t, received, i in sorted(keyed):
        track = tracks.get(key)
        if track is None or received - track.seen > 2 * timeout:
            track = tracks[key] = _RefTrack(received)
        track.seen = max(track.seen, received)
        pv = rows[i].pageview_id
        given = key.startswith("s:")
        if pv and pv in track.pageviews:
            session, previous = track.pageviews[pv]
            session.last = max(session.last, t)
            out[i] = Answer(session.id, not given, previous)
            continue
        if given:
            if track.current is None:
                track.current = _RefSession(key[2:], t)
        elif track.current is None or t - track.current.last > timeout:
            track.current = _RefSession(session_id(key, t), t)
        session = track.current
        session.last = max(session.last, t)
        previous = None
        if pv:
            previous = session.last_pageview
            track.pageviews[pv] = (session, previous)
            session.last_pageview = pv
        out[i] = Answer(session.id, not given, previous)
    return [a for a in out if a is not None]


# -- generated histories ----------------------------------------------------------------------

KEYS = [
    {"anonymous_id": "a-1"},
    {"anonymous_id": "a-2", "user_id": "u-2"},  # signed in: the anonymous id is the key
    {"user_id": "u-3"},
    {"session_id": "s-given"},
    {"session_id": "s-other", "anonymous_id": "a-1"},  # a client session wins over the key
    {},  # no key at all: no session
]
GAPS = [0, 1, 5, 29, 30, 31, 45, 61, 90, 200]  # minutes; 30 is the timeout, 60 the memory


def history(seed: int, n: int, gaps: Sequence[int] = GAPS) -> list[Row]:
    """Events of a few keys, each key's events in time order and received after a constant
    delay (so each key's events are delivered in time order). Generated from a seed: drawing
    every field through hypothesis made the tests 10× slower."""
    rnd = random.Random(seed)
    clock = {k: T0 + rnd.randint(0, 120) * MIN for k in range(len(KEYS))}
    delay = {k: rnd.randint(0, 10) * MIN for k in range(len(KEYS))}
    pageviews: dict[int, list[str]] = {k: [] for k in range(len(KEYS))}
    rows = []
    for _ in range(n):
        k = rnd.randrange(len(KEYS))
        clock[k] += rnd.choice(gaps) * MIN + rnd.randint(0, 999)
        choice = rnd.choice(["none", "new", "again"])
        pv = None
        if choice == "new" or (choice == "again" and not pageviews[k]):
            pv = f"pv-{k}-{len(pageviews[k])}"
            pageviews[k].append(pv)
        elif choice == "again":
            pv = rnd.choice(pageviews[k])
        rows.append(Row(clock[k], clock[k] + delay[k], pageview_id=pv, **KEYS[k]))
    return rows


histories = st.builds(history, st.integers(0, 2**32), st.integers(1, 80))
remembered = st.builds(history, st.integers(0, 2**32), st.integers(1, 80), st.just(GAPS[:7]))
"""Histories in which no key is forgotten (no gap reaches twice the timeout)."""
