"""What the control plane holds: streams, data models and their quality checks (pure: no I/O).

Every definition is read from plain data (a YAML file, a JSON request body, a database row) by
``parse_stream`` / ``parse_model``, which name the exact place of each problem
(``streams[2].sample.rate``) and say what to write instead, and written back by ``as_dict`` so
that ``tally config export`` followed by ``tally config apply`` reproduces the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
