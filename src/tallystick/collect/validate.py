"""Validate raw events against the monoschema (pure: no I/O).

The collector and the importer share this code so an event is judged the same way wherever it
comes from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import msgspec

from tallystick import messages
from tallystick.messages import Problem
from tallystick.schema import Event

_decode_event = msgspec.json.Decoder(Event).decode
_decode_raws = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_raw = msgspec.json.Decoder(msgspec.Raw).decode
_convert = msgspec.convert

_OBJECT_START: Final = ord("{")


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused event: its position in the request, its id if it had one, and why."""

    index: int
    event_id: str | None
    problem: Problem
    raw: bytes


def _event_id_of(raw: bytes) -> str | None:
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if isinstance(obj, dict):
        value = obj.get("event_id")
        return value if isinstance(value, str) else None
    return None


def check_event(
    raw: bytes, *, max_event_bytes: int, latest_client_ts: dt.datetime
) -> Event | Problem:
    """Decode and validate one event's JSON; return the event or what is wrong with it."""
    if len(raw) > max_event_bytes:
        return Problem(
            messages.EVENT_TOO_LARGE,
            f"the event is {len(raw):,} bytes; the limit is {max_event_bytes:,} bytes per event: "
            "send less in `data` or split it into several events.",
        )
    stripped = raw.lstrip()
    if not stripped or stripped[0] != _OBJECT_START:
        return Problem(messages.NOT_AN_OBJECT, "each event must be a JSON object.")
    try:
        event = _decode_event(raw)
    except msgspec.ValidationError as exc:
        return messages.from_validation_error(str(exc))
    except UnicodeDecodeError:
        return Problem(messages.INVALID_UTF8, "the event contains invalid UTF-8: send UTF-8 text.")
    except msgspec.DecodeError:
        return Problem(messages.MALFORMED_JSON, "the event is not valid JSON.")
    if event.client_ts > latest_client_ts:
        return Problem(
            messages.CLIENT_TS_IN_FUTURE,
            f"`client_ts` {event.client_ts.isoformat()} is more than 24 h ahead of the "
            "collector's clock: check the client's clock and time zone.",
        )
    return event


def latest_allowed(now: dt.datetime, max_future_seconds: float) -> dt.datetime:
    return now + dt.timedelta(seconds=max_future_seconds)


@dataclass(slots=True)
class Checked:
    """The outcome of validating a batch: accepted events (with their raw JSON) and rejections."""

    events: list[Event]
    raws: list[bytes]
    rejected: list[Rejected]


def check_batch(
    raws: list[bytes], *, max_event_bytes: int, now: dt.datetime, max_future_seconds: float
) -> Checked:
    latest = latest_allowed(now, max_future_seconds)
    out = Checked([], [], [])
    for i, raw in enumerate(raws):
        result = check_event(raw, max_event_bytes=max_event_bytes, latest_client_ts=latest)
        if isinstance(result, Problem):
            out.rejected.append(Rejected(i, _event_id_of(raw), result, raw))
        else:
            out.events.append(result)
            out.raws.append(raw)
    return out


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def split_events(body: bytes) -> list[bytes] | Problem:
    """Split a request body into the raw JSON of each event.

    Accepts one event object, a JSON array of events, or ``{"events": [...]}``.
    """
    try:
        top = _decode_raw(body)
    except UnicodeDecodeError:
        return Problem(messages.INVALID_UTF8, "the request body is not valid UTF-8: send UTF-8 JSON.")
    except msgspec.DecodeError as exc:
        if not _is_utf8(body):
            return Problem(
                messages.INVALID_UTF8, "the request body is not valid UTF-8: send UTF-8 JSON."
            )
        return Problem(messages.MALFORMED_JSON, f"the request body is not valid JSON ({exc}).")
    data = bytes(top).lstrip()
    if data[:1] == b"[":
        return [bytes(r) for r in _decode_raws(data)]
    if data[:1] == b"{":
        envelope = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
        if "events" in envelope and "event_id" not in envelope and "name" not in envelope:
            inner = bytes(envelope["events"]).lstrip()
            if inner[:1] != b"[":
                return Problem(messages.WRONG_SHAPE, "`events` must be a JSON array of events.")
            if len(envelope) > 1:
                extra = ", ".join(sorted(k for k in envelope if k != "events"))
                return Problem(
                    messages.WRONG_SHAPE,
                    f"unexpected keys next to `events`: {extra}; send only `events`.",
                )
            return [bytes(r) for r in _decode_raws(inner)]
        return [data]
    return Problem(
        messages.WRONG_SHAPE,
        "send one event object, a JSON array of events, or {\"events\": [...]}.",
    )
