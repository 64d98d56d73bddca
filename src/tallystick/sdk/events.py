"""Build one event in the shape of the monoschema v1 and encode it as JSON (pure, no I/O).

Events are encoded once, on the caller's thread, so that a value JSON cannot represent fails at
once with a clear error in ``track()`` instead of spoiling a whole batch later. Two fields are
known only later and are spliced into the encoded bytes: ``session`` (its ``seq`` is assigned
under the tracker's lock) and ``sent_ts`` (stamped each time a batch is sent).

The SDK uses only the standard library here; the collector is the judge of names, lengths and
patterns (see :mod:`tallystick.schema`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final, Literal, TypedDict

LIBRARY: Final = "tallystick-python"
DEFAULT_PLATFORM: Final = "python"

SampleUnit = Literal["event", "session", "user", "pageview", "device"]


class TrackContext(TypedDict, total=False):
    """Optional context of one event, passed to ``Tracker.track`` as keyword arguments."""

    app_version: str | None
    app_environment: str | None
    app_instance: str | None
    platform: str | None
    locale: str | None
    page_url: str | None
    page_referrer: str | None
    pageview_id: str | None
    user_agent: str | None
    is_logged_in: bool | None
    experiments: Mapping[str, str] | None
    sample_unit: SampleUnit | None
    sample_rate: float | None
    client_ts: dt.datetime | str | None
    event_id: str | uuid.UUID | None


CONTEXT_KEYS: Final = frozenset(TrackContext.__optional_keys__ | TrackContext.__required_keys__)


@functools.cache
def library_version() -> str:
    """The installed version of the ``tallystick`` distribution (``0.0.0`` when unknown)."""
    try:
        return metadata.version("tallystick")
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, slots=True)
class Defaults:
    """Context that is the same for every event of a tracker (each may be overridden per event)."""

    app_id: str | None = None
    app_version: str | None = None
    app_environment: str | None = None
    app_instance: str | None = None
    platform: str = DEFAULT_PLATFORM


def format_ts(value: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: ``2026-11-02T14:03:11.250000Z``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"client_ts {value.isoformat()} has no time zone: pass an aware datetime such as "
            "datetime.now(timezone.utc)"
        )
    utc = value.astimezone(dt.UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def now_ts() -> str:
    return format_ts(dt.datetime.now(dt.UTC))


def check_context(context: Mapping[str, object]) -> None:
    """Raise ``TypeError`` naming any key ``track()`` does not know (with a suggestion)."""
    unknown = sorted(k for k in context if k not in CONTEXT_KEYS)
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, CONTEXT_KEYS, n=1)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    allowed = ", ".join(sorted(CONTEXT_KEYS))
    raise TypeError(
        f"track() got unknown context keyword argument(s) {', '.join(parts)}; the known ones are "
        f"{allowed}. Put your own fields into data={{...}}."
    )


def _optional_str(what: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{what} must be a str or None, not {type(value).__name__}")


def _group(**values: object) -> dict[str, object] | None:
    kept = {k: v for k, v in values.items() if v is not None}
    return kept or None


def build_event(
    name: str,
    *,
    defaults: Defaults,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The event as a JSON-ready dict, without ``session`` and ``sent_ts``.

    Raises ``TypeError`` for unknown context keys and wrongly typed arguments, ``ValueError`` for
    a naive ``client_ts`` or half a sample (``sample_unit`` without ``sample_rate``).
    """
    ctx: Mapping[str, Any] = context or {}
    check_context(ctx)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    user_id = _optional_str("user_id", user_id)
    anonymous_id = _optional_str("anonymous_id", anonymous_id)
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"data must be a dict, not {type(data).__name__}")

    event_id = ctx.get("event_id")
    if event_id is None:
        event_id = str(uuid.uuid4())
    elif isinstance(event_id, uuid.UUID):
        event_id = str(event_id)
    elif not isinstance(event_id, str):
        raise TypeError(f"event_id must be a str or UUID, not {type(event_id).__name__}")

    client_ts = ctx.get("client_ts")
    if client_ts is None:
        client_ts = now_ts()
    elif isinstance(client_ts, dt.datetime):
        client_ts = format_ts(client_ts)
    elif not isinstance(client_ts, str):
        raise TypeError(
            f"client_ts must be a datetime or an RFC 3339 str, not {type(client_ts).__name__}"
        )

    event: dict[str, Any] = {"event_id": event_id, "name": name, "client_ts": client_ts}
    app = _group(
        id=defaults.app_id,
        version=_pick(ctx, "app_version", defaults.app_version),
        environment=_pick(ctx, "app_environment", defaults.app_environment),
        instance=_pick(ctx, "app_instance", defaults.app_instance),
    )
    if app:
        event["app"] = app
    event["client"] = _group(
        library=LIBRARY,
        library_version=library_version(),
        platform=_pick(ctx, "platform", defaults.platform),
    )
    is_logged_in = ctx.get("is_logged_in")
    if is_logged_in is None and (user_id is not None or anonymous_id is not None):
        is_logged_in = bool(user_id)
    if user := _group(id=user_id, anonymous_id=anonymous_id, is_logged_in=is_logged_in):
        event["user"] = user
    page = _group(
        pageview_id=ctx.get("pageview_id"),
        url=ctx.get("page_url"),
        referrer=ctx.get("page_referrer"),
    )
    if page:
        event["page"] = page
    if (user_agent := ctx.get("user_agent")) is not None:
        event["agent"] = {"user_agent": user_agent}
    if (locale := ctx.get("locale")) is not None:
        event["locale"] = locale
    experiments = ctx.get("experiments")
    if experiments is not None:
        if not isinstance(experiments, Mapping):
            raise TypeError(f"experiments must be a dict, not {type(experiments).__name__}")
        if experiments:
            event["experiments"] = dict(experiments)
    unit, rate = ctx.get("sample_unit"), ctx.get("sample_rate")
    if (unit is None) != (rate is None):
        raise ValueError("sample_unit and sample_rate go together: pass both or neither")
    if unit is not None:
        event["sample"] = {"unit": unit, "rate": rate}
    if data:
        event["data"] = dict(data)
    return event


def _pick(ctx: Mapping[str, Any], key: str, default: str | None) -> Any:
    value = ctx.get(key)
    return default if value is None else value


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; ``TypeError``/``ValueError`` for values JSON cannot hold."""
    try:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise TypeError(f"the event cannot be sent as JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"the event cannot be sent as JSON (NaN or infinity?): {exc}") from None
    return text.encode("utf-8")


def with_session(raw: bytes, session_id: str, seq: int) -> bytes:
    """Splice ``"session": {"id": ..., "seq": ...}`` into an encoded event."""
    session = json.dumps(session_id, ensure_ascii=False).encode("utf-8")
    return b'{"session":{"id":' + session + b',"seq":' + str(seq).encode() + b"}," + raw[1:]


def with_sent_ts(raw: bytes, sent_ts: str) -> bytes:
    """Splice ``"sent_ts"`` into an encoded event (which must not have one yet)."""
    return b'{"sent_ts":"' + sent_ts.encode("ascii") + b'",' + raw[1:]


def batch_body(raws: list[bytes], sent_ts: str | None = None) -> bytes:
    """The request body ``{"events": [...]}``, stamping ``sent_ts`` on every event if given."""
    if sent_ts is not None:
        raws = [with_sent_ts(raw, sent_ts) for raw in raws]
    return b'{"events":[' + b",".join(raws) + b"]}"
