"""What the control-plane API answers and takes, as plain data (pure: no I/O).

A stream is answered as its definition (``Stream.as_dict()``, what ``tally config export``
writes) plus read-only keys: its ``status`` now, when it was created and last changed, and the
days until it expires. Those keys are ignored when a stream is sent back, so a client may GET a
stream, edit it and PUT it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from tallystick.admin.http import invalid
from tallystick.control.definitions import (
    STREAM_KEYS,
    Configuration,
    DefinitionError,
    Model,
    Stream,
    format_time,
    parse_time,
)
from tallystick.control.plan import Change
from tallystick.control.store import AuditEntry, CheckRun
from tallystick.control.visibility import Visibility

if TYPE_CHECKING:
    from tallystick.catalog.fields import FieldInfo

STREAM_READ_ONLY: Final = ("status", "created_at", "updated_at", "expires_in_days", "volume")
"""Keys of an answered stream that are not part of its definition."""
MODEL_READ_ONLY: Final = ("built_at", "results", "failing")
AUDIT_KINDS: Final = (
    "stream",
    "model",
    "setting",
    "block",
    "quarantine",
    "deletion",
    "retention",
    "flags",
    "experiments",
)
AUDIT_PARAMS: Final = ("kind", "name", "limit")
DEFAULT_AUDIT_LIMIT: Final = 100
MAX_AUDIT_LIMIT: Final = 1000
MAX_RENEW_DAYS: Final = 3660
DEFAULT_RENEW_DAYS: Final = 90
SEARCH_KINDS: Final = ("metric", "stream", "field")
"""What the catalog search finds (``catalog.search.KINDS``)."""
RENEW_EXAMPLE: Final = '{"until": "2027-03-01"} or {"days": 90}'


def stream_view(
    stream: Stream,
    at: dt.datetime,
    times: Mapping[str, tuple[dt.datetime, dt.datetime]],
) -> dict[str, Any]:
    """A stream as the API answers it."""
    out = stream.as_dict()
    created, updated = times.get(stream.name, (None, None))
    out["status"] = stream.status(at)
    out["created_at"] = format_time(created)
    out["updated_at"] = format_time(updated)
    out["expires_in_days"] = expires_in_days(stream, at)
    return out


def expires_in_days(stream: Stream, at: dt.datetime) -> int | None:
    """Whole days left until the stream expires (0 on its last day, negative once expired), or
    ``None`` when it never does."""
    if stream.expires is None:
        return None
    return math.floor((stream.expires - at) / dt.timedelta(days=1))


def model_view(model: Model, built: Mapping[str, dt.datetime | None]) -> dict[str, Any]:
    """A model as the API answers it: its definition and when it was last built."""
    return model.as_dict() | {"built_at": format_time(built.get(model.name))}


def ordered_results(runs: Iterable[CheckRun]) -> list[dict[str, Any]]:
    """Check results, failed ones first, then by target and check."""
    ordered = sorted(runs, key=lambda r: (r.passed, r.target, r.label))
    return [r.as_dict() for r in ordered]


def catalog_model(
    model: Model, built: Mapping[str, dt.datetime | None], runs: Sequence[CheckRun]
) -> dict[str, Any]:
    """A model in the catalog: its definition, when it was built and its latest check results
    (failed first)."""
    mine = [r for r in runs if r.target_kind == "model" and r.target == model.name]
    return model_view(model, built) | {
        "results": ordered_results(mine),
        "failing": sum(not r.passed for r in mine),
    }


def changes(plan: Iterable[Change]) -> list[dict[str, Any]]:
    return [c.as_dict() for c in plan]


def definition(body: Mapping[str, Any], read_only: Sequence[str]) -> dict[str, Any]:
    """A sent definition without the read-only keys an answer carries."""
    return {k: v for k, v in body.items() if k not in read_only}


def named(body: Mapping[str, Any], name: str, what: str) -> dict[str, Any]:
    """The body of a PUT to ``/<what>s/<name>``: its ``name`` is the path's (when it gives one,
    it must be the same)."""
    given = body.get("name", name)
    if given != name:
        raise DefinitionError(
            "name",
            f"the body names {what} {given!r} but the address is {what} {name!r}: a {what} "
            f"cannot be renamed; create {given!r} and delete {name!r}",
        )
    return {**body, "name": name}


def stream_patch(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The settings a PATCH changes (``null`` removes one); refuses unknown keys and renames."""
    out = definition(body, STREAM_READ_ONLY)
    if not out:
        raise DefinitionError(
            "",
            f'send the settings to change, such as {{"owner": "web-team"}}; a stream '
            f"has {', '.join(k for k in STREAM_KEYS if k != 'name')}",
        )
    for key in out:
        if key not in STREAM_KEYS:
            raise DefinitionError(
                key, f"a stream has no setting {key!r}; use {', '.join(STREAM_KEYS)}"
            )
    named(out, name, "stream")
    out.pop("name", None)
    return out


def renewal(body: Mapping[str, Any], at: dt.datetime, current: Stream) -> dt.datetime:
    """The new expiry of ``POST …/renew``: ``until`` a date or time, or ``days`` from ``at``;
    with neither, as long as its last term (``expires − starts``), else 90 days (as ``tally
    streams renew``)."""
    unknown = sorted(set(body) - {"until", "days"})
    if unknown:
        raise DefinitionError(
            unknown[0], f"renew takes `until` or `days`, not {unknown[0]!r}: {RENEW_EXAMPLE}"
        )
    if "until" in body and "days" in body:
        raise DefinitionError("", f"give `until` or `days`, not both: {RENEW_EXAMPLE}")
    if "until" in body:
        until = parse_time(body["until"], "until")
        if until is None:
            raise DefinitionError("until", f"must be a date such as 2027-03-01: {RENEW_EXAMPLE}")
        if until <= at:
            raise DefinitionError(
                "until", f"{format_time(until)} is not in the future: give a later date"
            )
        return until
    days = body.get("days")
    if days is None:
        days = DEFAULT_RENEW_DAYS
        if current.starts is not None and current.expires is not None:
            days = max(1, (current.expires - current.starts).days)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RENEW_DAYS:
        raise DefinitionError(
            "days", f"must be a whole number of days from 1 to {MAX_RENEW_DAYS}, got {days!r}"
        )
    return (at + dt.timedelta(days=days)).replace(microsecond=0)


def since_days(body: Mapping[str, Any]) -> int | None:
    """``since_days`` of ``POST …/check``: only events of the last that many days."""
    unknown = sorted(set(body) - {"since_days"})
    if unknown:
        raise invalid(f'check takes only since_days, not {unknown[0]!r}: {{"since_days": 7}}')
    days = body.get("since_days")
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise invalid(f"since_days must be a whole number of days (1 or more), got {days!r}")
    return days


def search_query(params: Mapping[str, str]) -> tuple[str, tuple[str, ...], int | None]:
    """``q``, ``kind`` (one kind or several, by commas) and ``limit`` of a catalog search."""
    q = params.get("q", "").strip()
    if not q:
        raise invalid("give a text to search for: ?q=signin (every word must match)")
    kinds = tuple(k.strip() for k in params.get("kind", "").split(",") if k.strip()) or SEARCH_KINDS
    unknown = [k for k in kinds if k not in SEARCH_KINDS]
    if unknown:
        raise invalid(
            f"unknown kind {unknown[0]!r}: use {', '.join(SEARCH_KINDS)} (or several, by commas)"
        )
    raw = params.get("limit", "")
    if raw and (not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT_LIMIT):
        raise invalid(f"limit {raw!r} must be a whole number from 1 to {MAX_AUDIT_LIMIT}")
    return q, tuple(dict.fromkeys(kinds)), int(raw) if raw else None


def audit_query(params: Mapping[str, str]) -> tuple[str | None, str | None, int]:
    """``kind``, ``name`` and ``limit`` of ``GET /v1/admin/audit-log``."""
    kind = params.get("kind") or None
    if kind is not None and kind not in AUDIT_KINDS:
        raise invalid(f"unknown kind {kind!r}: use {', '.join(AUDIT_KINDS)}")
    raw = params.get("limit") or str(DEFAULT_AUDIT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT_LIMIT:
        raise invalid(f"limit {raw!r} must be a whole number from 1 to {MAX_AUDIT_LIMIT}")
    return kind, params.get("name") or None, int(raw)


# -- private streams (``control.visibility``): what a reader who may not see every stream gets


def visible_configuration(config: Configuration, view: Visibility) -> Configuration:
    """``config`` without the streams ``view`` hides and the models that read them."""
    if view.everything:
        return config
    return Configuration(
        tuple(s for s in config.streams if view.stream(s.name)),
        tuple(m for m in config.models if view.stream(m.stream)),
        config.unrouted_stream,
    )


def _definition_streams(definition: Mapping[str, Any] | None) -> set[str]:
    stream = (definition or {}).get("stream")
    return {stream} if isinstance(stream, str) else set()


def audit_visible(entry: AuditEntry, view: Visibility, models: Mapping[str, Model]) -> bool:
    """Whether an audit-log entry may be shown: not one about a hidden stream, a model that
    reads one (now, before or after the change) or a key granted one."""
    if view.everything:
        return True
    if entry.kind == "stream":
        return view.stream(entry.name)
    if entry.kind == "model":
        streams = _definition_streams(entry.before) | _definition_streams(entry.after)
        current = models.get(entry.name)
        if current is not None:
            streams.add(current.stream)
        return all(view.stream(s) for s in streams)
    if entry.kind == "key":  # a key's grants name private streams
        granted = [
            s
            for d in (entry.before, entry.after)
            for s in ((d or {}).get("streams") or ())
            if isinstance(s, str)
        ]
        return all(view.stream(s) for s in granted)
    return True


def check_visible(run: CheckRun, view: Visibility, models: Mapping[str, Model]) -> bool:
    """Whether a check result may be shown: not one of a hidden stream or of a model that reads
    one (a model no longer defined is shown only to readers who see every stream)."""
    if view.everything:
        return True
    if run.target_kind == "stream":
        return view.stream(run.target)
    model = models.get(run.target)
    return model is not None and view.stream(model.stream)


def visible_fields(fields: Iterable[FieldInfo], view: Visibility) -> list[FieldInfo]:
    """Fields as a reader who may not see every stream is shown them: those seen in some
    stream it sees (or in rows without one), with only those streams and the event names
    routed to them."""
    if view.everything:
        return list(fields)
    out = []
    for f in fields:
        streams = tuple(s for s in f.streams if view.stream(s))
        if f.streams and not streams:
            continue
        names = tuple(n for n in f.event_names if view.event(n))
        out.append(dataclasses.replace(f, streams=streams, event_names=names))
    return out
