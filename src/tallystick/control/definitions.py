"""What the control plane holds: streams, data models and their quality checks (pure: no I/O).

Every definition is read from plain data (a YAML file, a JSON request body, a database row) by
``parse_stream`` / ``parse_model``, which name the exact place of each problem
(``streams[2].sample.rate``) and say what to write instead, and written back by ``as_dict`` so
that ``tally config export`` followed by ``tally config apply`` reproduces the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from tallystick.control.curation import Rule, RuleError, parse_rule
from tallystick.control.routing import UNROUTED, RouteError, check_selector
from tallystick.control.sampling import SamplingError, Unit, check_rate, check_unit
from tallystick.schema import FIELDS

NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: the contextual attributes a stream can keep or leave out: the event's groups and the leaf
#: fields inside them (``page`` or ``page.url``); ``event_id``, ``name``, the timestamps and
#: ``data`` are always stored
CONTEXT_GROUPS: Final = (
    "app",
    "client",
    "user",
    "session",
    "page",
    "agent",
    "locale",
    "experiments",
)
KEEPABLE: Final = frozenset(
    CONTEXT_GROUPS
    + tuple(
        f.path for f in FIELDS if f.origin == "client" and f.path.split(".")[0] in CONTEXT_GROUPS
    )
)
MATERIALIZATIONS: Final = ("view", "table")
CHECK_TYPES: Final = (
    "not_null",
    "accepted_values",
    "range",
    "unique",
    "freshness",
    "row_count_change",
)


class DefinitionError(ValueError):
    """A definition that cannot be used: where (a dotted path) and why."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


# -- helpers ---------------------------------------------------------------------------------


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _mapping(raw: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise DefinitionError(where, f"{what} must be a mapping of `key: value` lines")
    return raw


def _only(raw: Mapping[str, Any], allowed: Sequence[str], where: str, what: str) -> None:
    for key in raw:
        if key not in allowed:
            raise DefinitionError(
                _join(where, str(key)),
                f"{what} has no setting {key!r}; use {', '.join(allowed)}",
            )


def _text(raw: Any, where: str, *, required: bool = False) -> str | None:
    if raw is None:
        if required:
            raise DefinitionError(where, "is required")
        return None
    if not isinstance(raw, str):
        raise DefinitionError(where, f"must be text, got {raw!r}")
    if required and not raw.strip():
        raise DefinitionError(where, "must not be empty")
    return raw


def check_name(raw: Any, where: str, what: str = "name") -> str:
    if not isinstance(raw, str) or not NAME_PATTERN.match(raw):
        raise DefinitionError(
            where,
            f"{what} {raw!r} is invalid: use 1–64 lowercase letters, digits, '_' or '-', "
            "starting with a letter (e.g. product_events)",
        )
    return raw


def parse_time(raw: Any, where: str) -> dt.datetime | None:
    """A time: an ISO 8601 date or date-time (a date means its midnight, UTC; a time without an
    offset is UTC)."""
    if raw is None:
        return None
    if isinstance(raw, dt.datetime):
        value = raw
    elif isinstance(raw, dt.date):
        value = dt.datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str):
        try:
            value = dt.datetime.fromisoformat(raw.strip().replace("z", "Z"))
        except ValueError:
            raise DefinitionError(
                where, f"{raw!r} is not a date or time; write 2027-01-31 or 2027-01-31T12:00:00Z"
            ) from None
    else:
        raise DefinitionError(where, f"must be a date or time such as 2027-01-31, got {raw!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def format_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _bool(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise DefinitionError(where, f"must be true or false, got {raw!r}")
    return raw


def _days(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise DefinitionError(where, f"must be a whole number of days (1 or more), got {raw!r}")
    return raw


def _list(raw: Any, where: str, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise DefinitionError(where, f"{what} must be a list")
    return raw


# -- streams ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    unit: Unit
    rate: float


# -- alert rules ------------------------------------------------------------------------------

ALERT_RULES: Final = ("volume", "keys", "failed_rate", "loss_rate")
KEY_TYPES: Final = ("any", "string", "number", "integer", "boolean", "object", "array")
"""What a ``keys`` rule may require of a key's value (``any``: present, whatever its type)."""
#: the value types the lake's typed columns can hold (the schema checks them at the door)
_COLUMN_TYPES: Final = {
    "string": ("string",),
    "timestamp": ("string",),
    "bool": ("boolean",),
    "int": ("integer", "number"),
    "float": ("number",),
    "map": ("object",),
    "json": ("object",),
}
_DATA_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_$@-]{1,128}$")
_MAX_WINDOW_HOURS: Final = 7 * 24.0
#: defaults of the settings a rule does not give
ALERT_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "volume": {"window_hours": 24.0, "drop": 0.5, "spike": 1.0, "weeks": 4, "min_events": 20},
    "keys": {"window_hours": 24.0, "max_rate": 0.05, "min_events": 20},
    "failed_rate": {"window_hours": 24.0, "max_rate": 0.01, "min_events": 20},
    "loss_rate": {"window_hours": 24.0, "max_rate": 0.02, "min_events": 20},
}


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert rule of a stream, judged over a trailing window of ``window_hours`` that ends
    at the evaluation time (see ``quality.alerts`` and docs/data-trust.md):

    - ``volume``: the stream's events in the window against the mean of the same window 1 to
      ``weeks`` weeks earlier (same weekday and hour); fires below ``(1 − drop) ×`` or above
      ``(1 + spike) ×`` that baseline (``None``: that side is not watched);
    - ``keys``: the share of the stream's events lacking one of ``keys`` or holding a value of
      the wrong type; fires above ``max_rate``;
    - ``failed_rate``: failed events ÷ (stored + failed), failed events attributed to the
      stream by the event name in their raw JSON; fires above ``max_rate``;
    - ``loss_rate``: messages lost (``session.seq`` gaps, as ``quality.loss`` counts them) of
      the sessions that sent the stream events in the window; fires above ``max_rate``.

    A rate is judged only over ``min_events`` events (or expected messages) or more; a volume
    only against a baseline mean of ``min_events`` or more: fewer say too little.
    """

    rule: str
    window_hours: float = 24.0
    drop: float | None = None
    spike: float | None = None
    weeks: int = 4
    keys: tuple[tuple[str, str], ...] = ()
    """(field, type) pairs: a monoschema path (``user.id``) or ``data.<key>``."""
    max_rate: float = 0.0
    min_events: int = 20

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.window_hours)

    @property
    def label(self) -> str:
        """What names the rule within its stream, across evaluations (``volume(24h)``,
        ``keys(data.project_id,user.id)``, ``keys(user.id; 6h)``): two rules of a stream never
        share one."""
        hours = f"{self.window_hours:g}h"
        if self.rule == "keys":  # the window only when it is not the default day
            window = "" if self.window_hours == 24 else f"; {hours}"
            return f"keys({','.join(k for k, _ in self.keys)}{window})"[:200]
        return f"{self.rule}({hours})"

    def as_dict(self) -> dict[str, Any]:
        """Every setting of the rule written out, defaults too: what is stored is what is
        evaluated, whatever later versions choose as defaults."""
        out: dict[str, Any] = {"rule": self.rule, "window_hours": self.window_hours}
        if self.rule == "volume":
            out |= {"drop": self.drop, "spike": self.spike, "weeks": self.weeks}
        else:
            if self.rule == "keys":
                out["keys"] = dict(self.keys)
            out["max_rate"] = self.max_rate
        out["min_events"] = self.min_events
        return out


def _fraction(raw: Any, where: str, *, above_one: bool) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise DefinitionError(where, f"must be a number, got {raw!r}")
    if raw <= 0 or (not above_one and raw > 1):
        span = "more than 0 (1.0 = +100 %)" if above_one else "more than 0 and at most 1"
        raise DefinitionError(where, f"must be {span}, got {raw!r}")
    return float(raw)


def _whole(raw: Any, where: str, least: int, what: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < least:
        raise DefinitionError(
            where, f"must be a whole number of {what} ({least} or more), got {raw!r}"
        )
    return raw


def _alert_key(field: Any, kind: Any, where: str) -> tuple[str, str]:
    if not isinstance(field, str):
        raise DefinitionError(
            where, f"a key is a field name such as data.project_id, got {field!r}"
        )
    spot = _join(where, field)
    if kind not in KEY_TYPES:
        raise DefinitionError(spot, f"unknown type {kind!r}; use one of {', '.join(KEY_TYPES)}")
    if field.startswith("data."):
        if not all(_DATA_SEGMENT.match(part) for part in field[len("data.") :].split(".")):
            raise DefinitionError(
                spot,
                f"{field!r} is not a data key: write data.<key> (letters, digits, _ $ @ -; "
                "dots for nested keys)",
            )
        return field, kind
    schema = next((f for f in FIELDS if f.path == field), None)
    if schema is None:
        raise DefinitionError(
            spot,
            f"no field {field!r}; use a monoschema field such as user.id or page.url, or "
            "data.<key> for your own fields",
        )
    if kind != "any" and kind not in _COLUMN_TYPES[schema.kind]:
        raise DefinitionError(
            spot,
            f"{field} always holds a {schema.kind} (the schema checks it when events arrive): "
            f"require {' or '.join(_COLUMN_TYPES[schema.kind])}, or any",
        )
    return field, kind


def _alert_keys(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, list):  # a list of fields: each must be present, whatever its type
        pairs = [(f, "any") for f in raw]
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        raise DefinitionError(
            where, "list the keys as `{data.project_id: string, user.id: any}` or a list of fields"
        )
    if not pairs:
        raise DefinitionError(where, "list at least one key")
    keys = [_alert_key(f, k, where) for f, k in pairs]
    fields = [f for f, _ in keys]
    twice = next((f for i, f in enumerate(fields) if f in fields[:i]), None)
    if twice is not None:
        raise DefinitionError(where, f"{twice!r} is listed twice")
    return tuple(keys)


def parse_alert(raw: Any, where: str) -> Alert:
    """An alert rule from plain data; missing settings take ``ALERT_DEFAULTS``."""
    raw = _mapping(raw, where, "an alert rule")
    rule = raw.get("rule")
    if rule not in ALERT_DEFAULTS:
        raise DefinitionError(
            _join(where, "rule"),
            f"unknown alert rule {rule!r}; use one of {', '.join(ALERT_RULES)}",
        )
    defaults = ALERT_DEFAULTS[rule]
    allowed = ("rule", *(("keys",) if rule == "keys" else ()), *defaults)
    _only(raw, allowed, where, f"a {rule} rule")
    given = defaults | {k: v for k, v in raw.items() if k != "rule"}
    hours = given["window_hours"]
    spot = _join(where, "window_hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
        raise DefinitionError(spot, f"must be a number of hours, got {hours!r}")
    if not 0 < hours <= _MAX_WINDOW_HOURS:
        raise DefinitionError(
            spot, f"must be more than 0 and at most {_MAX_WINDOW_HOURS:g} (a week), got {hours!r}"
        )
    min_events = _whole(given["min_events"], _join(where, "min_events"), 1, "events")
    if rule == "volume":
        drop = given["drop"]
        spike = given["spike"]
        if drop is None and spike is None:
            raise DefinitionError(
                where, "a volume rule watches a drop, a spike or both: give `drop` or `spike`"
            )
        return Alert(
            rule,
            window_hours=float(hours),
            drop=None if drop is None else _fraction(drop, _join(where, "drop"), above_one=False),
            spike=None
            if spike is None
            else _fraction(spike, _join(where, "spike"), above_one=True),
            weeks=_whole(given["weeks"], _join(where, "weeks"), 1, "weeks"),
            min_events=min_events,
        )
    keys: tuple[tuple[str, str], ...] = ()
    if rule == "keys":
        if raw.get("keys") is None:
            raise DefinitionError(
                _join(where, "keys"),
                "is required: the keys every event must have, e.g. {data.project_id: string}",
            )
        keys = _alert_keys(raw["keys"], _join(where, "keys"))
    max_rate = given["max_rate"]
    spot = _join(where, "max_rate")
    if isinstance(max_rate, bool) or not isinstance(max_rate, int | float):
        raise DefinitionError(spot, f"must be a number from 0 to 1 (0.05 = 5 %), got {max_rate!r}")
    if not 0 <= max_rate < 1:
        raise DefinitionError(
            spot, f"must be at least 0 and below 1 (0.05 = 5 %), got {max_rate!r}"
        )
    return Alert(
        rule,
        window_hours=float(hours),
        keys=keys,
        max_rate=float(max_rate),
        min_events=min_events,
    )


def _check_kept(alerts: Sequence[Alert], keep: Sequence[str], where: str) -> None:
    """A ``keys`` rule may not require a contextual attribute the stream does not store: every
    event would lack it."""
    for i, alert in enumerate(alerts):
        for field, _ in alert.keys:
            group = field.split(".")[0]
            if group in CONTEXT_GROUPS and field not in keep and group not in keep:
                raise DefinitionError(
                    _join(_join(_join(where, i), "keys"), field),
                    f"the stream does not keep {field} (keep: {', '.join(keep) or 'nothing'}), "
                    "so every event would lack it: keep it, or do not require it",
                )


def parse_alerts(raw: Any, where: str) -> tuple[Alert, ...]:
    """A stream's ``alerts`` list; two rules with the same label are refused."""
    alerts = [parse_alert(a, _join(where, i)) for i, a in enumerate(_list(raw, where, "alerts"))]
    labels = [a.label for a in alerts]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise DefinitionError(
                _join(where, i),
                f"the stream has this rule already (alerts[{labels.index(label)}], {label}); "
                "change the window, the keys, or merge the two",
            )
    return tuple(alerts)


PII_ACTIONS: Final = ("redact", "hash", "reject", "off")
"""What the collector does with personal data found in an event (``privacy.pii``)."""
IP_POLICIES: Final = ("truncate", "drop")
"""What is kept of the client's address after the country lookup (``privacy.ip``)."""
PII_DETECTORS: Final = ("email", "phone", "ip", "card")
"""The kinds of personal data the collector looks for (``privacy.detect``)."""


@dataclass(frozen=True, slots=True)
class Privacy:
    """What the collector removes from a stream's events before they are stored."""

    pii: str = "redact"
    """``redact``, ``hash``, ``reject`` or ``off`` (see ``PII_ACTIONS``)."""
    detect: tuple[str, ...] = PII_DETECTORS
    """Which detectors run (``PII_DETECTORS``)."""
    ip: str = "truncate"
    """``truncate`` (keep ``geo.network``) or ``drop`` (country and region only)."""

    def as_dict(self) -> dict[str, Any]:
        return {"pii": self.pii, "detect": list(self.detect), "ip": self.ip}


def _choice(raw: Any, where: str, choices: Sequence[str]) -> str:
    if not isinstance(raw, str) or raw not in choices:
        raise DefinitionError(where, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def parse_privacy(raw: Any, where: str) -> Privacy:
    """A stream's ``privacy`` block; a DefinitionError names the first problem."""
    raw = _mapping(raw, where, "privacy")
    _only(raw, ("pii", "detect", "ip"), where, "privacy")
    pii = _choice(raw.get("pii", "redact"), _join(where, "pii"), PII_ACTIONS)
    detect = PII_DETECTORS
    if raw.get("detect") is not None:
        spot = _join(where, "detect")
        listed = _list(raw["detect"], spot, "detect")
        for i, name in enumerate(listed):
            _choice(name, _join(spot, i), PII_DETECTORS)
        detect = tuple(dict.fromkeys(listed))
    ip = _choice(raw.get("ip", "truncate"), _join(where, "ip"), IP_POLICIES)
    return Privacy(pii=pii, detect=detect, ip=ip)


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream: which events it receives, which it keeps, what it stores and for how long."""

    name: str
    events: tuple[str, ...] = ()
    description: str = ""
    owner: str | None = None
    sample: Sample | None = None
    enabled: bool = True
    starts: dt.datetime | None = None
    expires: dt.datetime | None = None
    keep: tuple[str, ...] | None = None
    """Contextual attributes stored (``None``: all of them)."""
    curation: tuple[Rule, ...] = ()
    retention_days: int | None = None
    """How long events are kept (``None``: until deleted by hand)."""
    alerts: tuple[Alert, ...] = ()
    """Alert rules (``quality.alerts``)."""
    private: bool = False
    """Readable only with read keys granted this stream (admin keys read every stream)."""
    privacy: Privacy | None = None
    """What the collector removes before storing the stream's events (``None``: the server's
    ``pii_action`` and ``ip_policy``)."""

    def collecting(self, at: dt.datetime) -> bool:
        """Whether the stream receives events at ``at``: enabled, started and not expired."""
        if not self.enabled:
            return False
        if self.starts is not None and at < self.starts:
            return False
        return self.expires is None or at < self.expires

    def status(self, at: dt.datetime) -> str:
        if not self.enabled:
            return "disabled"
        if self.starts is not None and at < self.starts:
            return "scheduled"
        if self.expires is not None and at >= self.expires:
            return "expired"
        return "collecting"

    def as_dict(self) -> dict[str, Any]:
        """The stream as plain data, in the order a person writes it (``None``s left out)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.owner is not None:
            out["owner"] = self.owner
        out["events"] = list(self.events)
        if self.sample is not None:
            out["sample"] = {"unit": self.sample.unit, "rate": self.sample.rate}
        out["enabled"] = self.enabled
        if self.starts is not None:
            out["starts"] = format_time(self.starts)
        if self.expires is not None:
            out["expires"] = format_time(self.expires)
        if self.keep is not None:
            out["keep"] = list(self.keep)
        if self.curation:
            out["curation"] = [
                {
                    "field": r.field,
                    "op": r.op,
                    "value": list(r.value) if isinstance(r.value, tuple) else r.value,
                }
                for r in self.curation
            ]
        if self.retention_days is not None:
            out["retention_days"] = self.retention_days
        if self.alerts:
            out["alerts"] = [a.as_dict() for a in self.alerts]
        if self.private:
            out["private"] = True
        if self.privacy is not None:
            out["privacy"] = self.privacy.as_dict()
        return out


STREAM_KEYS: Final = (
    "name",
    "description",
    "owner",
    "events",
    "sample",
    "enabled",
    "starts",
    "expires",
    "keep",
    "curation",
    "retention_days",
    "alerts",
    "private",
    "privacy",
)


def parse_stream(raw: Any, where: str = "") -> Stream:
    """A stream from plain data; a DefinitionError names the first problem."""
    raw = _mapping(raw, where, "a stream")
    _only(raw, STREAM_KEYS, where, "a stream")
    name = check_name(raw.get("name"), _join(where, "name"), "stream name")
    events: list[str] = []
    for i, selector in enumerate(_list(raw.get("events", []), _join(where, "events"), "events")):
        spot = _join(_join(where, "events"), i)
        if not isinstance(selector, str):
            raise DefinitionError(spot, f"must be an event name or prefix, got {selector!r}")
        try:
            events.append(check_selector(selector))
        except RouteError as exc:
            raise DefinitionError(spot, str(exc)) from None
    if len(set(events)) != len(events):
        twice = next(e for e in events if events.count(e) > 1)
        raise DefinitionError(_join(where, "events"), f"{twice!r} is listed twice")
    sample = None
    if raw.get("sample") is not None:
        spot = _join(where, "sample")
        s = _mapping(raw["sample"], spot, "sample")
        _only(s, ("unit", "rate"), spot, "sample")
        try:
            unit = check_unit(str(s.get("unit", "session")))
        except SamplingError as exc:
            raise DefinitionError(_join(spot, "unit"), str(exc)) from None
        if "rate" not in s:
            raise DefinitionError(_join(spot, "rate"), "is required: a number from 0 to 1")
        try:
            rate = check_rate(s["rate"])
        except SamplingError as exc:
            raise DefinitionError(_join(spot, "rate"), str(exc)) from None
        sample = Sample(unit, rate)
    enabled = _bool(raw.get("enabled", True), _join(where, "enabled"))
    starts = parse_time(raw.get("starts"), _join(where, "starts"))
    expires = parse_time(raw.get("expires"), _join(where, "expires"))
    if starts is not None and expires is not None and expires <= starts:
        raise DefinitionError(_join(where, "expires"), "must be later than `starts`")
    keep = None
    if raw.get("keep") is not None:
        spot = _join(where, "keep")
        kept = _list(raw["keep"], spot, "keep")
        for i, attribute in enumerate(kept):
            if attribute not in KEEPABLE:
                raise DefinitionError(
                    _join(spot, i),
                    f"{attribute!r} is not a contextual attribute; use any of "
                    f"{', '.join(CONTEXT_GROUPS)} or a field inside one, such as page.url",
                )
        keep = tuple(dict.fromkeys(kept))
    rules: list[Rule] = []
    spot = _join(where, "curation")
    for i, rule in enumerate(_list(raw.get("curation", []), spot, "curation")):
        try:
            rules.append(parse_rule(rule))
        except RuleError as exc:
            raise DefinitionError(_join(spot, i), str(exc)) from None
    alerts = parse_alerts(
        [] if raw.get("alerts") is None else raw["alerts"], _join(where, "alerts")
    )
    if keep is not None:
        _check_kept(alerts, keep, _join(where, "alerts"))
    return Stream(
        name=name,
        events=tuple(events),
        description=_text(raw.get("description"), _join(where, "description")) or "",
        owner=_text(raw.get("owner"), _join(where, "owner")),
        sample=sample,
        enabled=enabled,
        starts=starts,
        expires=expires,
        keep=keep,
        curation=tuple(rules),
        retention_days=_days(raw.get("retention_days"), _join(where, "retention_days")),
        alerts=alerts,
        private=_bool(raw.get("private", False), _join(where, "private")),
        privacy=(
            None
            if raw.get("privacy") is None
            else parse_privacy(raw["privacy"], _join(where, "privacy"))
        ),
    )


# -- data models and checks --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelField:
    """A column of a model: a lake column or ``data.<key>``, under a name of its own."""

    source: str
    name: str

    def as_data(self) -> str | dict[str, str]:
        return self.source if self.source == self.name else {"field": self.source, "as": self.name}


@dataclass(frozen=True, slots=True)
class Check:
    """A data-quality assertion. ``field`` names a column of what is checked; ``params`` holds
    the rest (``values``; ``min``/``max``; ``max_age_hours``; ``max_change``)."""

    type: str
    field: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.type}({self.field})" if self.field else self.type

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.params)
        return out


_CHECK_PARAMS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # type: (required, optional) settings besides `type`
    "not_null": (("field",), ()),
    "accepted_values": (("field", "values"), ()),
    "range": (("field",), ("min", "max")),
    "unique": (("field",), ()),
    "freshness": (("max_age_hours",), ("field",)),
    "row_count_change": (("max_change",), ()),
}


def _number(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise DefinitionError(where, f"must be a number, got {raw!r}")
    return raw


def parse_check(raw: Any, where: str) -> Check:
    raw = _mapping(raw, where, "a check")
    kind = raw.get("type")
    if kind not in _CHECK_PARAMS:
        raise DefinitionError(
            _join(where, "type"), f"unknown check {kind!r}; use one of {', '.join(CHECK_TYPES)}"
        )
    required, optional = _CHECK_PARAMS[kind]
    _only(raw, ("type", *required, *optional), where, f"a {kind} check")
    for key in required:
        if raw.get(key) is None:
            raise DefinitionError(_join(where, key), f"is required for a {kind} check")
    column = raw.get("field")
    if column is not None and (not isinstance(column, str) or not column):
        raise DefinitionError(_join(where, "field"), "must be a column name")
    params: dict[str, Any] = {}
    if kind == "accepted_values":
        values = _list(raw["values"], _join(where, "values"), "values")
        if not values:
            raise DefinitionError(_join(where, "values"), "must list at least one value")
        params["values"] = list(values)
    elif kind == "range":
        if raw.get("min") is None and raw.get("max") is None:
            raise DefinitionError(where, "a range check needs `min`, `max` or both")
        for key in ("min", "max"):
            if raw.get(key) is not None:
                params[key] = _number(raw[key], _join(where, key))
        if "min" in params and "max" in params and params["min"] > params["max"]:
            raise DefinitionError(_join(where, "max"), "must not be below `min`")
    elif kind == "freshness":
        hours = _number(raw["max_age_hours"], _join(where, "max_age_hours"))
        if hours <= 0:
            raise DefinitionError(_join(where, "max_age_hours"), "must be more than 0")
        params["max_age_hours"] = hours
    elif kind == "row_count_change":
        change = _number(raw["max_change"], _join(where, "max_change"))
        if change <= 0:
            raise DefinitionError(
                _join(where, "max_change"), "must be more than 0 (0.5 allows ±50 %)"
            )
        params["max_change"] = change
    return Check(kind, column, params)


@dataclass(frozen=True, slots=True)
class Model:
    """A data model: a stream's events narrowed to chosen fields (renamed at will) and
    materialised in the engine as a view or a table, with quality checks."""

    name: str
    stream: str
    fields: tuple[ModelField, ...]
    description: str = ""
    owner: str | None = None
    materialize: Literal["view", "table"] = "view"
    checks: tuple[Check, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "stream": self.stream}
        if self.description:
            out["description"] = self.description
        if self.owner is not None:
            out["owner"] = self.owner
        out["materialize"] = self.materialize
        out["fields"] = [f.as_data() for f in self.fields]
        if self.checks:
            out["checks"] = [c.as_dict() for c in self.checks]
        return out


MODEL_KEYS: Final = ("name", "stream", "description", "owner", "materialize", "fields", "checks")
_COLUMN: Final = re.compile(r"^[a-z_][a-z0-9_]*$")
_SOURCE: Final = re.compile(r"^(data\.[a-z_][a-z0-9_]*|[a-z_][a-z0-9_.]*)$")
#: lake columns a model may select, by their column name or their monoschema path
LAKE_COLUMNS: Final = {f.path: f.column for f in FIELDS} | {f.column: f.column for f in FIELDS}


def source_column(source: str) -> str | None:
    """The lake column for a model field's source (``page.url`` → ``page_url``), or None for
    ``data.<key>`` (read from the event's ``data``)."""
    if source.startswith("data.") and source not in LAKE_COLUMNS:
        return None
    return LAKE_COLUMNS[source]


def _model_field(raw: Any, where: str) -> ModelField:
    source: Any
    name: Any
    if isinstance(raw, str):
        source, name = raw, None
    elif isinstance(raw, Mapping):
        _only(raw, ("field", "as"), where, "a model field")
        source, name = raw.get("field"), raw.get("as")
    else:
        raise DefinitionError(where, "write a field name, or `{field: data.key, as: name}`")
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise DefinitionError(where, f"{source!r} is not a field; use a lake field or data.<key>")
    if not source.startswith("data.") and source not in LAKE_COLUMNS:
        raise DefinitionError(
            where,
            f"no field {source!r}; use a monoschema field such as user.id or page.url, or "
            "data.<key> for your own fields",
        )
    if name is None:
        name = source.removeprefix("data.").replace(".", "_")
    if not isinstance(name, str) or not _COLUMN.match(name):
        raise DefinitionError(
            _join(where, "as"), f"{name!r} is not a column name (lowercase snake_case)"
        )
    return ModelField(source, name)


def parse_model(raw: Any, where: str = "") -> Model:
    raw = _mapping(raw, where, "a model")
    _only(raw, MODEL_KEYS, where, "a model")
    name = check_name(raw.get("name"), _join(where, "name"), "model name")
    if "-" in name:
        raise DefinitionError(_join(where, "name"), "a model name becomes a table name: no '-'")
    stream = check_name(raw.get("stream"), _join(where, "stream"), "stream")
    spot = _join(where, "fields")
    fields = [
        _model_field(f, _join(spot, i))
        for i, f in enumerate(_list(raw.get("fields"), spot, "fields"))
    ]
    if not fields:
        raise DefinitionError(spot, "list at least one field")
    names = [f.name for f in fields]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise DefinitionError(
                _join(spot, i), f"column {n!r} appears twice; rename one with `as`"
            )
    materialize = raw.get("materialize", "view")
    if materialize not in MATERIALIZATIONS:
        raise DefinitionError(_join(where, "materialize"), f"{materialize!r}: use view or table")
    spot = _join(where, "checks")
    checks = [
        parse_check(c, _join(spot, i))
        for i, c in enumerate(_list(raw.get("checks", []), spot, "checks"))
    ]
    for i, check in enumerate(checks):
        if check.field is not None and check.field not in names:
            raise DefinitionError(
                _join(_join(spot, i), "field"),
                f"the model has no column {check.field!r}; its columns are {', '.join(names)}",
            )
    return Model(
        name=name,
        stream=stream,
        fields=tuple(fields),
        description=_text(raw.get("description"), _join(where, "description")) or "",
        owner=_text(raw.get("owner"), _join(where, "owner")),
        materialize=materialize,
        checks=tuple(checks),
    )


# -- the whole configuration -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configuration:
    """Everything ``tally config export`` writes and ``tally config apply`` reads (streams and
    models in name order, as the store returns them)."""

    streams: tuple[Stream, ...] = ()
    models: tuple[Model, ...] = ()
    unrouted_stream: str = UNROUTED

    def stream(self, name: str) -> Stream | None:
        return next((s for s in self.streams if s.name == name), None)

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "unrouted_stream": self.unrouted_stream,
            "streams": [s.as_dict() for s in self.streams],
            "models": [m.as_dict() for m in self.models],
        }


def parse_configuration(raw: Any) -> Configuration:
    """A whole configuration file's content; the first problem as a DefinitionError."""
    if raw is None:
        raw = {}
    raw = _mapping(raw, "", "the configuration")
    _only(raw, ("version", "unrouted_stream", "streams", "models"), "", "the configuration")
    if raw.get("version", 1) != 1:
        raise DefinitionError("version", f"unknown version {raw['version']!r}; this is version 1")
    unrouted = check_name(raw.get("unrouted_stream", UNROUTED), "unrouted_stream", "stream name")
    streams = [
        parse_stream(s, f"streams[{i}]")
        for i, s in enumerate(_list(raw.get("streams") or [], "streams", "streams"))
    ]
    models = [
        parse_model(m, f"models[{i}]")
        for i, m in enumerate(_list(raw.get("models") or [], "models", "models"))
    ]
    check_consistent(streams, models, unrouted)
    return Configuration(
        tuple(sorted(streams, key=lambda s: s.name)),
        tuple(sorted(models, key=lambda m: m.name)),
        unrouted,
    )


def check_consistent(streams: Sequence[Stream], models: Sequence[Model], unrouted: str) -> None:
    """Names are unique and every model reads a stream that exists (or the unrouted stream)."""
    seen: dict[str, int] = {}
    for i, s in enumerate(streams):
        if s.name in seen:
            raise DefinitionError(
                f"streams[{i}].name",
                f"stream {s.name!r} is already defined (streams[{seen[s.name]}])",
            )
        seen[s.name] = i
    if unrouted in seen:
        raise DefinitionError(
            f"streams[{seen[unrouted]}].name",
            f"{unrouted!r} is the stream for undeclared events; give this stream another name",
        )
    names: dict[str, int] = {}
    for i, m in enumerate(models):
        if m.name in names:
            raise DefinitionError(
                f"models[{i}].name",
                f"model {m.name!r} is already defined (models[{names[m.name]}])",
            )
        names[m.name] = i
        if m.stream not in seen and m.stream != unrouted:
            raise DefinitionError(
                f"models[{i}].stream",
                f"no stream {m.stream!r}; define it under `streams` or read {unrouted!r}",
            )
