"""Errors as values: a stable code and a sentence that says what to fix.

The same codes appear in HTTP responses, in the failed-events store and in CLI output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Request-level problems (the whole request is refused).
MALFORMED_JSON: Final = "malformed_json"
INVALID_UTF8: Final = "invalid_utf8"
INVALID_GZIP: Final = "invalid_gzip"
UNSUPPORTED_ENCODING: Final = "unsupported_encoding"
REQUEST_TOO_LARGE: Final = "request_too_large"
TOO_MANY_EVENTS: Final = "too_many_events"
NO_EVENTS: Final = "no_events"
WRONG_SHAPE: Final = "wrong_shape"
NOT_READY: Final = "not_ready"
METHOD_NOT_ALLOWED: Final = "method_not_allowed"
NOT_FOUND: Final = "not_found"
IP_BLOCKED: Final = "ip_blocked"
RATE_LIMITED: Final = "rate_limited"
ORIGIN_NOT_ALLOWED: Final = "origin_not_allowed"

# Query API problems (see docs/http-api.md).
INVALID_QUERY: Final = "invalid_query"
QUERY_FAILED: Final = "query_failed"
UNAUTHORIZED: Final = "unauthorized"

# Control-plane API problems (see docs/http-api.md).
INVALID_DEFINITION: Final = "invalid_definition"
CONFLICT: Final = "conflict"
FORBIDDEN: Final = "forbidden"
PRIVACY_BUDGET_EXHAUSTED: Final = "privacy_budget_exhausted"

# Event-level problems (one event is refused, the others are kept).
EVENT_TOO_LARGE: Final = "event_too_large"
NOT_AN_OBJECT: Final = "not_an_object"
MISSING_FIELD: Final = "missing_field"
UNKNOWN_FIELD: Final = "unknown_field"
INVALID_FIELD: Final = "invalid_field"
CLIENT_TS_IN_FUTURE: Final = "client_ts_in_future"
INVALID_ROW: Final = "invalid_row"
PERSONAL_DATA: Final = "personal_data"

CODES: Final = (
    MALFORMED_JSON,
    INVALID_UTF8,
    INVALID_GZIP,
    UNSUPPORTED_ENCODING,
    REQUEST_TOO_LARGE,
    TOO_MANY_EVENTS,
    NO_EVENTS,
    WRONG_SHAPE,
    NOT_READY,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    IP_BLOCKED,
    RATE_LIMITED,
    ORIGIN_NOT_ALLOWED,
    INVALID_QUERY,
    QUERY_FAILED,
    UNAUTHORIZED,
    INVALID_DEFINITION,
    CONFLICT,
    FORBIDDEN,
    PRIVACY_BUDGET_EXHAUSTED,
    EVENT_TOO_LARGE,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    UNKNOWN_FIELD,
    INVALID_FIELD,
    CLIENT_TS_IN_FUTURE,
    INVALID_ROW,
    PERSONAL_DATA,
)


@dataclass(frozen=True, slots=True)
class Problem:
    """What was wrong, as a code and a sentence a user can act on."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


_MISSING = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r"^(.*) - at `\$\.?([^`]*)`$")

_HINTS: Final = {
    "event_id": "a UUID such as 0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f",
    "name": "a lowercase dotted action of 1–128 characters such as project.commit",
    "client_ts": "an RFC 3339 timestamp with an offset or Z, such as 2026-11-02T14:03:11Z",
    "sent_ts": "an RFC 3339 timestamp with an offset or Z",
    "locale": "a BCP 47 language tag such as de-DE",
    "session.seq": "an integer starting at 1",
    "sample.rate": "a number greater than 0 and at most 1",
    "sample.unit": "one of event, session, user, pageview, device",
}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_validation_error(text: str) -> Problem:
    """Turn a msgspec validation message into a coded, actionable problem."""
    if m := _MISSING.match(text):
        field = _join(m.group(2) or "", m.group(1))
        hint = _HINTS.get(field)
        tail = f": add it ({hint})" if hint else ": add it"
        return Problem(MISSING_FIELD, f"required field `{field}` is missing{tail}.")
    if m := _UNKNOWN.match(text):
        field = _join(m.group(2) or "", m.group(1))
        return Problem(
            UNKNOWN_FIELD,
            f"unknown field `{field}`: check its spelling against the event schema, "
            "or put the instrument's own fields under `data`.",
        )
    if m := _AT.match(text):
        detail, where = m.group(1), m.group(2)
        where = where.replace("[...]", "")
        if where.startswith("data") and "key" in detail.lower():
            return Problem(
                INVALID_FIELD,
                "every key of `data` must be snake_case (lowercase letters, digits and "
                "underscores, starting with a letter or underscore, at most 64 characters).",
            )
        field = re.sub(r"\[\d+\]", "", where)
        hint = _HINTS.get(field)
        if hint and ("regex" in detail or "UUID" in detail or "datetime" in detail):
            return Problem(INVALID_FIELD, f"field `{where}` is invalid: it must be {hint}.")
        want = f"; it must be {hint}" if hint else ""
        return Problem(INVALID_FIELD, f"field `{where}` is invalid: {detail}{want}.")
    return Problem(INVALID_FIELD, f"the event is invalid: {text}.")
