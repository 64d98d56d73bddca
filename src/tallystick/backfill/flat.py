"""Convert one imported row into a monoschema event (pure: no I/O).

Two row shapes are accepted.

**Monoschema**: a row with ``client_ts`` and at least one nested object (``user``, ``app``, …),
as clients send it and as ``tally export --format jsonl|parquet`` writes it. It is passed on
unchanged, so the collector's rules apply in full. Only three things are done to it:
``received_ts`` (written by our own export) is taken out and kept as the received time,
``data`` and ``experiments`` given as JSON text (Parquet) are decoded, and a missing
``event_id`` is filled in (see below).

**Flat**: one column per attribute, as most trackers export:

======================  ========================================================================
column                  becomes
======================  ========================================================================
event_id                ``event_id`` (derived from the row when missing, see below)
name, event             ``name``
timestamp, client_ts    ``client_ts``: RFC 3339 with an offset or ``Z``; without an offset the
                        time is UTC; numbers are epoch seconds, milliseconds, microseconds or
                        nanoseconds, told apart by magnitude
user_id, anonymous_id   ``user.id``, ``user.anonymous_id``
session_id              ``session.id``
properties, data        ``data``: an object, or its JSON text (CSV)
experiments             ``experiments``: an object, or its JSON text (CSV)
a dotted field or its   that field, e.g. ``app.instance`` or ``app_instance``, ``session.seq``
lake column             or ``session_seq``, ``locale``, ``page_url`` (see ``schema.FIELDS``)
received_ts             kept as the event's received time (our own exports carry it)
anything else           ``data.<column>`` when the column name is snake_case and the value a
                        scalar; otherwise the row is reported
======================  ========================================================================

Keys of ``data`` / ``properties`` that are not snake_case are converted instead of refused:
``pageTitle`` → ``page_title``, ``HTTPStatus`` → ``http_status``, ``utm-source`` and
``utm source`` → ``utm_source``, ``$browser`` → ``browser``, accents are dropped
(``café`` → ``cafe``) and a key starting with a digit gets a leading underscore (``2fa`` →
``_2fa``). Two keys that end up the same with different values are reported.

Values are coerced to the field's type where the intent is clear (CSV cells are text): ``"7"`` →
7 for ``session.seq``; ``"true"``, ``"1"``, ``"yes"`` → true for ``user.is_logged_in``;
``"0.25"`` → 0.25 for ``sample.rate``; numeric ids → strings. Anything else is left for the
validator (``collect.validate.check_event``) to judge. ``None`` means missing and is dropped.

A row without ``event_id`` gets a deterministic one: ``uuid5(IMPORT_NAMESPACE, canonical JSON
of the converted event)`` (keys sorted at every level, no whitespace, UTF-8; ``received_ts``
left out), so importing the same file twice adds nothing. Two rows with the same content get
the same id, and the second counts as a duplicate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from tallystick import messages
from tallystick.messages import Problem
from tallystick.schema import FIELDS, FIELDS_BY_PATH, KEY_PATTERN, SCHEMA_VERSION, Field

IMPORT_NAMESPACE: Final = uuid.UUID("6f1c2b4e-8d3a-5e7f-9a0b-7a11e5c0ffee")
"""Namespace of the uuid5 ids given to imported rows without ``event_id``. Never change it:
re-importing a file must produce the same ids."""

ALIASES: Final[Mapping[str, str]] = {
    "event": "name",
    "timestamp": "client_ts",
    "anonymous_id": "user.anonymous_id",
    "properties": "data",
}
"""Flat column names used by common trackers → dotted field."""

GROUPS: Final = frozenset(f.path.split(".")[0] for f in FIELDS if "." in f.path)
RECEIVED_TS: Final = "received_ts"
SCHEMA_VERSION_COLUMN: Final = "schema_version"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_KEY = re.compile(KEY_PATTERN)
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")
_INT = re.compile(r"[+-]?\d+")
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")  # underscores too: runs collapse to one
_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})


def _targets() -> dict[str, Field]:
    out: dict[str, Field] = {}
    for f in FIELDS:
        out[f.path] = f
        out[f.column] = f
    for alias, path in ALIASES.items():
        out[alias] = FIELDS_BY_PATH[path]
    return out


_TARGETS: Final = _targets()


@dataclass(frozen=True, slots=True)
class Converted:
    """A row turned into a JSON-ready monoschema event, ready for ``check_event``."""

    event: dict[str, Any]
    received_ts: dt.datetime | None
    shape: Literal["monoschema", "flat"]
    server: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Fields the collector sets (``agent.browser``, ``geo.country``, …; ``origin="server"`` in
    ``schema.FIELDS``) as our own exports carry them, by lake column: kept as they were, since an
    import cannot enrich them again (no sender address, sending moment or session state)."""


class _RowError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(code, message)


# --- timestamps ----------------------------------------------------------------------------


def from_epoch(value: int | float) -> dt.datetime | None:
    """An epoch number as a UTC time; seconds, ms, µs or ns are told apart by magnitude.

    Below 10¹¹ it is seconds (up to the year 5138), below 10¹⁴ milliseconds, below 10¹⁷
    microseconds, else nanoseconds.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    magnitude = abs(value)
    try:
        if magnitude < 1e11:
            micros = value * 1_000_000 if isinstance(value, int) else round(value * 1e6)
        elif magnitude < 1e14:
            micros = value * 1_000 if isinstance(value, int) else round(value * 1e3)
        elif magnitude < 1e17:
            micros = int(value) if isinstance(value, int) else round(value)
        else:
            micros = value // 1_000 if isinstance(value, int) else round(value / 1e3)
        return _EPOCH + dt.timedelta(microseconds=micros)
    except (OverflowError, ValueError):
        return None


def parse_timestamp(value: object) -> dt.datetime | None:
    """Read a timestamp leniently: RFC 3339/ISO 8601 (no offset = UTC) or an epoch number.

    Returns ``None`` when ``value`` cannot be read as a time.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return from_epoch(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return from_epoch(int(text) if _INT.fullmatch(text) else float(text))
    text = _LONG_FRACTION.sub(r"\1", text, count=1)
    if text[-1:] == "z":
        text = text[:-1] + "Z"
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def format_timestamp(ts: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``."""
    return ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- keys and ids --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def to_snake_case(key: str) -> str | None:
    """``key`` as a valid ``data`` key (snake_case); ``None`` when nothing usable is left.

    Keys that are already valid are returned unchanged.
    """
    if _KEY.fullmatch(key):
        return key
    text = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode("ascii")
    text = _ACRONYM.sub(r"\1_\2", text)
    text = _CAMEL.sub(r"\1_\2", text)
    text = _NON_WORD.sub("_", text).strip("_").lower()
    if not text:
        return None
    if text[0].isdigit() or key.startswith("_"):
        text = "_" + text
    return text if _KEY.fullmatch(text) else None


_canonical_encode = msgspec.json.Encoder(order="sorted", enc_hook=str).encode
_decode_json = msgspec.json.Decoder().decode


def canonical_json(value: object) -> str:
    """Sorted-key, compact UTF-8 JSON: the same content always gives the same text."""
    return _canonical_encode(value).decode("utf-8")


def deterministic_event_id(event: Mapping[str, Any]) -> str:
    """A uuid5 over the event's content (everything but ``event_id`` and ``received_ts``)."""
    content = {k: v for k, v in event.items() if k not in ("event_id", RECEIVED_TS)}
    return str(uuid.uuid5(IMPORT_NAMESPACE, canonical_json(content)))


# --- conversion ----------------------------------------------------------------------------


def is_monoschema(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` has the nested shape: ``client_ts`` and at least one nested object."""
    return "client_ts" in row and any(isinstance(row.get(g), dict) for g in GROUPS)


def _json_object(value: object, source: str) -> dict[str, Any]:
    if isinstance(value, str):
        text = value
        try:
            value = _decode_json(text)
        except msgspec.DecodeError:
            try:
                value = json.loads(text, strict=False)  # allows raw newlines (CSV cells)
            except ValueError:
                raise _RowError(
                    messages.INVALID_FIELD, f"column `{source}` is not valid JSON: give an object."
                ) from None
    if not isinstance(value, Mapping):
        raise _RowError(
            messages.INVALID_FIELD,
            f"column `{source}` must be an object (or its JSON text), not {_kind(value)}.",
        )
    return dict(value)


def _kind(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _timestamp(value: object, source: str) -> dt.datetime:
    ts = parse_timestamp(value)
    if ts is None:
        raise _RowError(
            messages.INVALID_FIELD,
            f"column `{source}`: cannot read {value!r} as a time; use RFC 3339 such as "
            "2026-11-02T14:03:11Z (no offset means UTC) or epoch seconds/milliseconds.",
        )
    return ts


def _coerce(field: Field, value: object, source: str) -> object:
    kind = field.kind
    if type(value) is str and kind == "string":
        return value
    if kind == "timestamp":
        return format_timestamp(_timestamp(value, source))
    if kind == "string":
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else repr(value)
        if isinstance(value, uuid.UUID):
            return str(value)
        return value
    if kind == "int":
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if kind == "bool":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return value
    if kind == "map":
        return _json_object(value, source)
    return value


def _server_value(field: Field, value: object, source: str) -> object:
    """A server-set field's value from a file, typed as the lake stores it."""
    if field.kind == "timestamp":
        return _timestamp(value, source)
    coerced = _coerce(field, value, source)
    wanted = {"string": str, "int": int, "bool": bool}.get(field.kind, object)
    if not isinstance(coerced, wanted) or (wanted is int and isinstance(coerced, bool)):
        raise _RowError(
            messages.INVALID_FIELD,
            f"`{source}` is {_kind(value)}; it must be a {field.kind} (it is set by the collector "
            "and kept from our own exports).",
        )
    return coerced


SERVER_FIELDS: Final = tuple(f for f in FIELDS if f.origin == "server" and f.path != RECEIVED_TS)


class _Flat:
    """Collects the fields of one flat row, refusing contradictions."""

    def __init__(self) -> None:
        self.event: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.data_sources: dict[str, str] = {}
        self.received: dt.datetime | None = None
        self.server: dict[str, Any] = {}

    def set(self, path: str, value: object, source: str) -> None:
        if path in self.sources:
            if self._get(path) != value:
                raise _RowError(
                    messages.INVALID_ROW,
                    f"columns `{self.sources[path]}` and `{source}` both give `{path}` but "
                    "differ: keep one.",
                )
            return
        self.sources[path] = source
        head, _, tail = path.partition(".")
        if tail:
            self.event.setdefault(head, {})[tail] = value
        else:
            self.event[head] = value

    def _get(self, path: str) -> object:
        head, _, tail = path.partition(".")
        return self.event[head][tail] if tail else self.event[head]

    def put_data(self, key: str, value: object, source: str) -> None:
        if key in self.data_sources:
            if self.data[key] != value:
                raise _RowError(
                    messages.INVALID_ROW,
                    f"`{self.data_sources[key]}` and `{source}` both become `data.{key}` but "
                    "differ: rename one.",
                )
            return
        self.data_sources[key] = source
        self.data[key] = value

    def merge_data(self, value: object, source: str) -> None:
        for raw_key, item in _json_object(value, source).items():
            key = to_snake_case(str(raw_key))
            if key is None:
                raise _RowError(
                    messages.INVALID_FIELD,
                    f"key {raw_key!r} of `{source}` has no letters or digits to make a "
                    "snake_case `data` key from: rename it.",
                )
            self.put_data(key, item, f"{source}.{raw_key}")

    def column(self, key: str, value: object) -> None:
        if value is None:
            return
        target = _TARGETS.get(key)
        if target is not None:
            if target.path == "data":
                self.merge_data(value, key)
            elif target.origin == "server" and target.path != RECEIVED_TS:
                self.server[target.column] = _server_value(target, value, key)
            elif target.path == RECEIVED_TS:
                self.received = _timestamp(value, key)
            else:
                self.set(target.path, _coerce(target, value, key), key)
            return
        if key in GROUPS and isinstance(value, Mapping):
            for sub, item in value.items():
                path = f"{key}.{sub}"
                field = FIELDS_BY_PATH.get(path)
                if field is None:
                    raise _RowError(
                        messages.UNKNOWN_FIELD,
                        f"unknown field `{path}`: check its spelling against the event schema.",
                    )
                if item is not None and field.origin == "server":
                    self.server[field.column] = _server_value(field, item, path)
                elif item is not None:
                    self.set(path, _coerce(field, item, path), path)
            return
        if key == SCHEMA_VERSION_COLUMN:
            if str(value) != str(SCHEMA_VERSION):
                raise _RowError(
                    messages.INVALID_ROW,
                    f"schema version {value!r} is not supported: this version reads "
                    f"{SCHEMA_VERSION}.",
                )
            return
        if not _KEY.fullmatch(key):
            hint = to_snake_case(key)
            rename = f" (e.g. `{hint}`)" if hint else ""
            raise _RowError(
                messages.UNKNOWN_FIELD,
                f"column `{key}` is not an event field, and extra columns go into `data` only "
                f"with a snake_case name: rename it{rename} or move it into `properties`.",
            )
        if not isinstance(value, str | int | float | bool):
            raise _RowError(
                messages.UNKNOWN_FIELD,
                f"column `{key}` is not an event field and holds {_kind(value)}; extra columns "
                "go into `data` only as scalars: move it into `properties`.",
            )
        self.put_data(key, value, key)

    def finish(self) -> Converted:
        if "name" not in self.event:
            raise _RowError(
                messages.MISSING_FIELD, "no event name: add a `name` (or `event`) column."
            )
        if "client_ts" not in self.event:
            raise _RowError(
                messages.MISSING_FIELD,
                "no time: add a `timestamp` (or `client_ts`) column, RFC 3339 or epoch "
                "seconds/milliseconds.",
            )
        event = dict(self.event)
        if self.data:
            event["data"] = self.data
        if "event_id" not in event:
            event["event_id"] = deterministic_event_id(event)
        return Converted(event, self.received, "flat", self.server)


def _from_flat(row: Mapping[str, Any]) -> Converted:
    flat = _Flat()
    for key, value in row.items():
        flat.column(str(key), value)
    return flat.finish()


def _from_monoschema(row: Mapping[str, Any]) -> Converted:
    event = dict(row)
    received: dt.datetime | None = None
    raw_received = event.pop(RECEIVED_TS, None)
    if raw_received is not None:
        received = _timestamp(raw_received, RECEIVED_TS)
    server: dict[str, Any] = {}
    for f in SERVER_FIELDS:
        head, _, tail = f.path.partition(".")
        group = event.get(head) if tail else None
        if tail and isinstance(group, dict) and tail in group:
            group = event[head] = dict(group)
            value = group.pop(tail)
            if not group:
                del event[head]
        elif not tail and head in event:
            value = event.pop(head)
        else:
            continue
        if value is not None:
            server[f.column] = _server_value(f, value, f.path)
    for key in ("data", "experiments"):
        if isinstance(event.get(key), str):
            event[key] = _json_object(event[key], key)
    if event.get("event_id") is None:
        event.pop("event_id", None)
        event["event_id"] = deterministic_event_id(event)
    return Converted(event, received, "monoschema", server)


def convert_row(row: Mapping[str, Any]) -> Converted | Problem:
    """Turn one row into a monoschema event, or say why it cannot be."""
    try:
        return _from_monoschema(row) if is_monoschema(row) else _from_flat(row)
    except _RowError as exc:
        return exc.problem
