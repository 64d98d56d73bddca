"""Validate raw events against the monoschema (pure: no I/O).

The collector and the importer share this code so an event is judged the same way wherever it
comes from. msgspec checks types, lengths and ranges in C; the patterns of names and keys are
checked here against a bounded cache, because products use a small vocabulary of them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from tallystick import messages
from tallystick.messages import Problem
from tallystick.schema import (
    EXPERIMENT_KEY_PATTERN,
    KEY_PATTERN,
    LOCALE_PATTERN,
    NAME_PATTERN,
    Event,
)

RawEvent = bytes | msgspec.Raw

_decode_event = msgspec.json.Decoder(Event).decode
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode
_decode_object = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_events = msgspec.json.Decoder(list[Event]).decode

_CACHE_LIMIT: Final = 50_000


class _Vocabulary:
    """Strings already known to match a pattern (bounded; cleared when full)."""

    __slots__ = ("_match", "_ok")

    def __init__(self, pattern: str) -> None:
        self._match = re.compile(pattern).fullmatch
        self._ok: set[str] = set()

    def __call__(self, value: str) -> bool:
        if value in self._ok:
            return True
        if self._match(value) is None:
            return False
        if len(self._ok) >= _CACHE_LIMIT:
            self._ok.clear()
        self._ok.add(value)
        return True


_name_ok = _Vocabulary(NAME_PATTERN)
_key_ok = _Vocabulary(KEY_PATTERN)
_experiment_ok = _Vocabulary(EXPERIMENT_KEY_PATTERN)
_locale_ok = _Vocabulary(LOCALE_PATTERN)

_NAME_PROBLEM: Final = Problem(
    messages.INVALID_FIELD,
    "field `name` is invalid: it must be a lowercase dotted action of 1–128 characters such as "
    "project.commit (letters a–z, digits and underscores, parts joined by dots, starting with a "
    "letter).",
)
_LOCALE_PROBLEM: Final = Problem(
    messages.INVALID_FIELD,
    "field `locale` is invalid: it must be a BCP 47 language tag such as de-DE.",
)


def _key_problem(key: str) -> Problem:
    return Problem(
        messages.INVALID_FIELD,
        f"`data` key {key!r} is invalid: keys must be snake_case (lowercase letters, digits and "
        "underscores, starting with a letter or underscore), e.g. "
        f"{_snake(key)!r}.",
    )


def _snake(key: str) -> str:
    out = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key)
    out = re.sub(r"[^a-z0-9_]+", "_", out.lower()).strip("_")
    return out if out and not out[0].isdigit() else f"_{out}"


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused event: its position in the request, its id if it had one, and why."""

    index: int
    event_id: str | None
    problem: Problem
    raw: bytes


def _event_id_of(raw: RawEvent) -> str | None:
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if isinstance(obj, dict):
        value = obj.get("event_id")
        return value if isinstance(value, str) else None
    return None


def _patterns(event: Event) -> Problem | None:
    if not _name_ok(event.name):
        return _NAME_PROBLEM
    for key in event.data:
        if not _key_ok(key):
            return _key_problem(key)
    for key in event.experiments:
        if not _experiment_ok(key):
            return Problem(
                messages.INVALID_FIELD,
                f"experiment key {key!r} is invalid: use lowercase letters, digits, `_`, `-` "
                "and `.`, starting with a letter or digit.",
            )
    if event.locale is not None and not _locale_ok(event.locale):
        return _LOCALE_PROBLEM
    return None


def check_event(
    raw: RawEvent, *, max_event_bytes: int, latest_client_ts: dt.datetime
) -> Event | Problem:
    """Decode and validate one event's JSON; return the event or what is wrong with it."""
    if len(raw) > max_event_bytes:
        return Problem(
            messages.EVENT_TOO_LARGE,
            f"the event is {len(raw):,} bytes; the limit is {max_event_bytes:,} bytes per event "
            "(max_event_bytes): send less in `data` or split it into several events.",
        )
    try:
        event = _decode_event(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Expected `object`, got"):
            return Problem(messages.NOT_AN_OBJECT, "each event must be a JSON object.")
        return messages.from_validation_error(text)
    except UnicodeDecodeError:
        return Problem(messages.INVALID_UTF8, "the event contains invalid UTF-8: send UTF-8 text.")
    except msgspec.DecodeError:
        return Problem(messages.MALFORMED_JSON, "the event is not valid JSON.")
    problem = _patterns(event)
    if problem is not None:
        return problem
    if event.client_ts > latest_client_ts:
        return Problem(
            messages.CLIENT_TS_IN_FUTURE,
            f"`client_ts` {event.client_ts.isoformat()} is more than "
            f"{_hours(latest_client_ts)} ahead of the collector's clock: check the client's "
            "clock and time zone.",
        )
    return event


def _hours(_latest: dt.datetime) -> str:
    return "the allowed margin (max_future_seconds, 24 h by default)"


def latest_allowed(now: dt.datetime, max_future_seconds: float) -> dt.datetime:
    return now + dt.timedelta(seconds=max_future_seconds)


@dataclass(slots=True)
class Checked:
    """The outcome of validating a batch: accepted events (with their raw JSON) and rejections."""

    events: list[Event]
    raws: list[RawEvent]
    rejected: list[Rejected]
    payload: bytes | None = None  # set when every event passed: the events' JSON array as sent

    def accepted_raws(self) -> list[RawEvent]:
        """Each accepted event's JSON, in order (the same order as ``events``)."""
        if self.payload is not None:
            return list(_decode_raws(self.payload))
        return self.raws

    def accepted_json(self) -> bytes:
        """The accepted events as one JSON array (what the spool stores)."""
        if self.payload is not None:
            return self.payload
        return b"[" + b",".join(self.raws) + b"]"


def check_batch(
    raws: Sequence[RawEvent],
    *,
    max_event_bytes: int,
    now: dt.datetime,
    max_future_seconds: float,
) -> Checked:
    """Validate events one by one (the path that can name each bad event)."""
    latest = latest_allowed(now, max_future_seconds)
    out = Checked([], [], [])
    for i, raw in enumerate(raws):
        result = check_event(raw, max_event_bytes=max_event_bytes, latest_client_ts=latest)
        if isinstance(result, Problem):
            out.rejected.append(Rejected(i, _event_id_of(raw), result, bytes(raw)))
        else:
            out.events.append(result)
            out.raws.append(raw)
    return out


def _all_good(events: list[Event], latest: dt.datetime) -> bool:
    """Whether every event passes the pattern and clock checks (set-wise, for speed)."""
    names = {e.name for e in events}
    keys: set[str] = set()
    others = False
    for e in events:
        if e.data:
            keys.update(e.data)
        if e.experiments or e.locale is not None:
            others = True
    if not all(map(_name_ok, names)) or not all(map(_key_ok, keys)):
        return False
    if others and any(_patterns(e) is not None for e in events):
        return False
    return max(e.client_ts for e in events) <= latest


def check_array(
    array: RawEvent,
    *,
    max_event_bytes: int,
    max_events: int,
    now: dt.datetime,
    max_future_seconds: float,
) -> Checked | Problem:
    """Validate a JSON array of events.

    The fast path decodes the whole array in one call and keeps its bytes as they are; only when
    something is wrong does it fall back to judging each event on its own.
    """
    try:
        events: list[Event] | None = _decode_events(array)
    except msgspec.ValidationError:
        events = None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _syntax_problem(bytes(array), exc)
    latest = latest_allowed(now, max_future_seconds)
    if events is not None:
        if len(events) > max_events:
            return too_many(len(events), max_events)
        if not events:
            return _NO_EVENTS
        small = len(array) <= max_event_bytes or all(
            len(r) <= max_event_bytes for r in _decode_raws(array)
        )
        if small and _all_good(events, latest):
            return Checked(events, [], [], bytes(array))
    try:
        raws = _decode_raws(array)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _syntax_problem(bytes(array), exc)
    if len(raws) > max_events:
        return too_many(len(raws), max_events)
    if not raws:
        return _NO_EVENTS
    return check_batch(
        raws, max_event_bytes=max_event_bytes, now=now, max_future_seconds=max_future_seconds
    )


_NO_EVENTS: Final = Problem(messages.NO_EVENTS, "the request holds no events: send at least one.")


def too_many(count: int, limit: int) -> Problem:
    return Problem(
        messages.TOO_MANY_EVENTS,
        f"the request holds {count:,} events; the limit is {limit:,} per request "
        "(max_events_per_request): split it into several requests.",
    )


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_SHAPE: Final = Problem(
    messages.WRONG_SHAPE, 'send one event object, a JSON array of events, or {"events": [...]}.'
)


def _syntax_problem(body: bytes, exc: Exception) -> Problem:
    if isinstance(exc, UnicodeDecodeError) or not _is_utf8(body):
        return Problem(
            messages.INVALID_UTF8, "the request body is not valid UTF-8: send UTF-8 JSON."
        )
    return Problem(messages.MALFORMED_JSON, f"the request body is not valid JSON ({exc}).")


def split_events(body: bytes) -> RawEvent | Problem:
    """Find the JSON array of events in a request body.

    Accepts one event object, a JSON array of events, or ``{"events": [...]}``.
    """
    first = body.lstrip()[:1]
    if first == b"[":
        return body  # its syntax is checked as it is decoded
    try:
        if first != b"{":
            _decode_raw(body)  # valid JSON, but of the wrong shape?
            return _SHAPE
        top = _decode_object(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _syntax_problem(body, exc)
    if "events" in top and "event_id" not in top and "name" not in top:
        if len(top) > 1:
            extra = ", ".join(sorted(k for k in top if k != "events"))
            return Problem(
                messages.WRONG_SHAPE,
                f"unexpected keys next to `events`: {extra}; send only `events`.",
            )
        inner = top["events"]
        if bytes(memoryview(inner)[:1]) != b"[":
            return Problem(messages.WRONG_SHAPE, "`events` must be a JSON array of events.")
        return inner
    return b"[" + body + b"]"
