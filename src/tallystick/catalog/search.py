"""Catalog search: streams, fields and metric catalog entries ranked for a text (pure).

The text is split into words (case ignored; ``_``, ``.`` and ``-`` count as spaces), and an entry
is found when every word occurs in one of its attributes. Each word scores by the best attribute
it occurs in, so a match in the name ranks above one in the description, the owner or the teams:

====================  =====================================================================
name                  whole name 100, a whole part of it (``signin`` in ``signin.open``) 80,
                      inside it 60
title                 50 (metrics)
events                30: the events a stream receives, a metric's sources and the events it
                      reads, the event names that carry a field
description           20: a stream's or metric's description, a metric's calculation
owner and teams       15: owner, teams, tags, access, dashboards, a field's streams, privacy
====================  =====================================================================

An entry's score is the sum over the words, plus 100 when the whole text is its name. Hits come
best first, then metrics before streams before fields, then by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tallystick.catalog.fields import FieldInfo
    from tallystick.control.definitions import Stream
    from tallystick.metrics.catalog import MetricDef

__all__ = ["KINDS", "Hit", "SearchError", "search"]

KINDS: Final = ("metric", "stream", "field")
NAME_EXACT: Final = 100
NAME_PART: Final = 80
NAME_INSIDE: Final = 60
WEIGHTS: Final = {"title": 50, "events": 30, "description": 20, "owner": 15}
WHOLE_NAME_BONUS: Final = 100
_SEPARATORS: Final = re.compile(r"[\s_.\-/]+")


class SearchError(ValueError):
    """The search cannot run (no words to look for)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One entry found: what it is, why it was found and how well it matches."""

    kind: str
    """``metric``, ``stream`` or ``field``."""
    name: str
    summary: str
    """A line about it: a metric's title, a stream's description, a field's type and volume."""
    score: int
    matched: tuple[str, ...]
    """The attributes the words were found in, best first (``name``, ``description``...)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "score": self.score,
            "matched": list(self.matched),
        }


def _normal(text: str) -> str:
    return _SEPARATORS.sub(" ", text.lower()).strip()


def words(text: str) -> tuple[str, ...]:
    """The words of a search text, lower case, each once."""
    return tuple(dict.fromkeys(_normal(text).split()))


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    name: str
    summary: str
    attributes: tuple[tuple[str, str], ...]
    """(attribute class, normalised text) other than the name."""


def _texts(*values: str | Iterable[str] | None) -> str:
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, str):
            out.append(value)
        else:
            out.extend(value)
    return _normal(" ".join(out))


def _metric(metric: MetricDef) -> _Entry:
    return _Entry(
        "metric",
        metric.name,
        metric.title,
        (
            ("title", _texts(metric.title)),
            ("events", _texts(metric.sources, list(metric.events))),
            ("description", _texts(metric.description, metric.calculation)),
            (
                "owner",
                _texts(
                    metric.owner,
                    metric.teams,
                    metric.tags,
                    metric.access,
                    metric.dashboards,
                    metric.privacy,
                ),
            ),
        ),
    )


def _stream(stream: Stream) -> _Entry:
    first_line = stream.description.strip().splitlines()[0] if stream.description.strip() else ""
    return _Entry(
        "stream",
        stream.name,
        first_line or f"receives {', '.join(stream.events) or 'no events'}",
        (
            ("events", _texts(stream.events)),
            ("description", _texts(stream.description)),
            ("owner", _texts(stream.owner)),
        ),
    )


def _field(info: FieldInfo) -> _Entry:
    per_day = f"{info.per_day:,.0f}" if info.per_day >= 100 else f"{info.per_day:.3g}"
    volume = f"{per_day} events a day, {info.trend}" if info.in_lake else "no longer seen"
    return _Entry(
        "field",
        info.name,
        f"{'|'.join(info.types)}; {volume}",
        (
            ("events", _texts(info.event_names)),
            ("owner", _texts(info.streams, "personal" if info.personal else None)),
        ),
    )


def _name_score(word: str, name: str) -> int:
    parts = name.split()
    if name == word:
        return NAME_EXACT
    if word in parts:
        return NAME_PART
    if word in name:
        return NAME_INSIDE
    return 0


def _score(entry: _Entry, wanted: Sequence[str], phrase: str) -> Hit | None:
    name = _normal(entry.name)
    total = 0
    matched: dict[str, int] = {}
    for word in wanted:
        best, where = _name_score(word, name), "name"
        for attribute, text in entry.attributes:
            weight = WEIGHTS[attribute]
            if weight > best and word in text:
                best, where = weight, attribute
        if best == 0:
            return None
        total += best
        matched[where] = max(matched.get(where, 0), best)
    if phrase == name:
        total += WHOLE_NAME_BONUS
    order = sorted(matched, key=lambda a: -matched[a])
    return Hit(entry.kind, entry.name, entry.summary, total, tuple(order))


def search(
    text: str,
    streams: Iterable[Stream],
    fields: Iterable[FieldInfo],
    metrics: Iterable[MetricDef],
    *,
    kinds: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Hit]:
    """The streams, fields and metrics matching every word of ``text``, best first.

    ``kinds`` keeps only some kinds (``metric``, ``stream``, ``field``); ``limit`` the first so
    many hits. Raises ``SearchError`` when ``text`` holds no word.
    """
    wanted = words(text)
    if not wanted:
        raise SearchError("give a word to search for, e.g. `signin` or `user id`")
    chosen = set(KINDS if kinds is None else kinds)
    unknown = chosen - set(KINDS)
    if unknown:
        raise SearchError(f"unknown kind {', '.join(sorted(unknown))}: use {', '.join(KINDS)}")
    entries: list[_Entry] = []
    if "metric" in chosen:
        entries += [_metric(m) for m in metrics]
    if "stream" in chosen:
        entries += [_stream(s) for s in streams]
    if "field" in chosen:
        entries += [_field(f) for f in fields]
    phrase = " ".join(wanted)
    hits = [hit for entry in entries if (hit := _score(entry, wanted, phrase)) is not None]
    hits.sort(key=lambda h: (-h.score, KINDS.index(h.kind), h.name))
    return hits if limit is None else hits[:limit]
