"""The metric catalog: named metric definitions in YAML files, validated strictly.

Definitions live in the ``metrics/`` folder of the configuration directory (``*.yaml`` and
``*.yml``, sub-folders included). A file holds one definition (a mapping) or a list of them::

    name: weekly_active_users
    title: Weekly active users
    type: active
    params:
      active: [user.login, project.commit]
      unit: user.id
    importance: kpi

Every problem in every file is reported at once, each as ``FILE:LINE: what is wrong — how to fix
it`` (see ``Problem``); ``load_catalog`` raises ``CatalogError`` holding them all. Parameters are
the registry's (``tallystick.metrics.registry``) and are checked by building the analysis.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tallystick.metrics import registry
from tallystick.metrics.analysis import Analysis
from tallystick.metrics.params import GRAINS, Grain, MetricError, as_filters
from tallystick.schema import FIELDS_BY_PATH

TYPES: Final = ("core", "active", "count", "ratio", "percentile", "funnel", "retention")
IMPORTANCE: Final = ("kpi", "high", "normal", "low")
STANDARDS: Final = ("industry", "custom")
STATUSES: Final = ("draft", "active", "deprecated")
PRIVACY: Final = ("public", "internal", "personal", "sensitive")
DIRECTIONS: Final = ("higher", "lower")
"""``direction``: whether a higher or a lower value is better (experiments read it)."""
DATES: Final = ("implemented", "modified", "sunset")
REQUIRED_KEYS: Final = ("name", "title", "type")
KEYS: Final = (
    "name",
    "title",
    "description",
    "type",
    "params",
    "owner",
    "teams",
    "tags",
    "grain",
    "importance",
    "direction",
    "standard",
    "status",
    "sources",
    "calculation",
    "code_refs",
    "implemented",
    "modified",
    "sunset",
    "privacy",
    "access",
    "retention_days",
    "slo",
    "dashboards",
)
SCOPE_PARAMS: Final = ("unit", "where", "breakdown")
#: the parameters each type takes under ``params`` (dates and grain are not parameters here)
PARAMS: Final[dict[str, tuple[str, ...]]] = {
    t: (*registry.SPECIFIC[t], *SCOPE_PARAMS) for t in TYPES
}
ALL_PARAMS: Final = tuple(dict.fromkeys(p for names in PARAMS.values() for p in names))
SUFFIXES: Final = (".yaml", ".yml")
#: the parameters that name events, in every analysis
EVENT_PARAMS: Final = (
    "actions",
    "active",
    "event",
    "numerator",
    "denominator",
    "steps",
    "cohort_event",
    "return_events",
)
DEFAULT_GRAIN: Final[Grain] = "week"

_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELD_PARAMS: Final = ("unit", "breakdown", "field")
_FILTER_PARAMS: Final = ("where", "numerator_where")
_EXAMPLES: Final = {
    "name": "weekly_active_users",
    "title": "Weekly active users",
    "type": "active",
    "actions": "[project.commit, dataset.create]",
    "active": "[user.login, project.commit]",
    "event": "error.shown",
    "numerator": "error.shown",
    "denominator": "page.view",
    "numerator_where": "[data.pageviews=1]",
    "direction": "lower",
    "field": "data.duration_ms",
    "p": "[50, 90, 99]",
    "steps": "[signin.open, signin.completed]",
    "cohort_event": "user.signup",
    "return_events": "[user.login]",
    "window": "1h",
    "periods": "8",
    "stickiness": "true",
    "unit": "user.id",
    "breakdown": "app.instance",
    "where": "[app.environment=production]",
    "calculation": "distinct users with a core action in the week",
    "code_refs": "[reports/wau.sql, https://git.example.org/analytics/wau]",
    "implemented": "2025-03-01",
    "modified": "2026-01-15",
    "sunset": "2027-12-31",
    "privacy": "internal",
    "access": "[product, leadership]",
    "retention_days": "400",
    "slo": '"fresh by 06:00 UTC, 99 % of days"',
    "dashboards": "[board-weekly]",
    "teams": "[growth]",
    "tags": "[kpi]",
    "sources": "[user.login]",
}

Scalar: TypeAlias = str | int | float | bool
ParamValue: TypeAlias = Scalar | tuple[Scalar, ...]

#: valid values of each required parameter, to test one parameter at a time
_STAND_INS: Final[dict[str, ParamValue]] = {
    "actions": "a",
    "active": "a",
    "event": "e",
    "numerator": "n",
    "denominator": "d",
    "field": "data.x",
    "p": 50,
    "steps": ("a", "b"),
    "cohort_event": "c",
    "return_events": "r",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a catalog file: where, what, and how to fix it."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CatalogError(MetricError):
    """The catalog has problems; ``problems`` holds every one of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _day(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _plain(value: ParamValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One named metric: an analysis type, its parameters and what the team knows about it."""

    name: str
    title: str
    type: str
    params: Mapping[str, ParamValue] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    description: str = ""
    owner: str | None = None
    teams: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    grain: Grain = DEFAULT_GRAIN
    importance: str = "normal"
    direction: str = "higher"
    """``higher`` or ``lower``: which way is better (an experiment's verdict follows it)."""
    standard: str = "custom"
    status: str = "active"
    sources: tuple[str, ...] = ()
    calculation: str | None = None
    """How it is computed, in plain words."""
    code_refs: tuple[str, ...] = ()
    """Code and queries that compute or use it: paths or URLs."""
    implemented: dt.date | None = None
    modified: dt.date | None = None
    sunset: dt.date | None = None
    privacy: str | None = None
    """``public``, ``internal``, ``personal`` or ``sensitive`` (None: not classified)."""
    access: tuple[str, ...] = ()
    """Who may see it."""
    retention_days: int | None = None
    """How long its results are kept."""
    slo: str | None = None
    """What its users may count on (``fresh by 06:00 UTC, 99 % of days``)."""
    dashboards: tuple[str, ...] = ()
    """Dashboards that use it besides Tallystick's own pages."""
    file: str = ""
    """Where it is defined, as shown in messages (``metrics/kpis.yaml``)."""
    line: int = 0

    @property
    def events(self) -> tuple[str, ...]:
        """The event names its parameters read, in definition order, each once."""
        out: list[str] = []
        for key in EVENT_PARAMS:
            value = self.params.get(key)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, str):
                    out += [part.strip() for part in item.split(",") if part.strip()]
        return tuple(dict.fromkeys(out))

    def parameters(
        self,
        *,
        grain: str | None = None,
        date_from: Any = None,
        date_to: Any = None,
        include_bots: bool | None = None,
    ) -> dict[str, Any]:
        """Registry parameters: the definition's, its grain (or ``grain``), the dates and
        (when given) ``include_bots``."""
        out: dict[str, Any] = {k: _plain(v) for k, v in self.params.items()}
        out["grain"] = grain or self.grain
        if date_from is not None:
            out["from"] = date_from
        if date_to is not None:
            out["to"] = date_to
        if include_bots is not None:
            out["include_bots"] = include_bots
        return out

    def build(
        self,
        *,
        grain: str | None = None,
        date_from: Any = None,
        date_to: Any = None,
        today: Any = None,
        include_bots: bool | None = None,
    ) -> Analysis:
        """The analysis this metric runs (defaults: its grain, the registry's date range, and
        the definition's ``include_bots``, else bots left out)."""
        return registry.build(
            self.type,
            self.parameters(
                grain=grain, date_from=date_from, date_to=date_to, include_bots=include_bots
            ),
            today=today,
        )

    @property
    def analysis(self) -> str:
        """The registry analysis it runs (``stickiness`` for ``active`` with stickiness)."""
        return self.build().name

    def definition_hash(self) -> str:
        """A hash of what determines its results: the type and the parameters."""
        text = json.dumps(
            {"type": self.type, "params": {k: _plain(v) for k, v in self.params.items()}},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "type": self.type,
            "params": {k: _plain(v) for k, v in self.params.items()},
            "owner": self.owner,
            "teams": list(self.teams),
            "tags": list(self.tags),
            "grain": self.grain,
            "importance": self.importance,
            "direction": self.direction,
            "standard": self.standard,
            "status": self.status,
            "sources": list(self.sources),
            "calculation": self.calculation,
            "code_refs": list(self.code_refs),
            "implemented": _day(self.implemented),
            "modified": _day(self.modified),
            "sunset": _day(self.sunset),
            "privacy": self.privacy,
            "access": list(self.access),
            "retention_days": self.retention_days,
            "slo": self.slo,
            "dashboards": list(self.dashboards),
            "file": self.file,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every valid definition of a catalog directory, in file order; look-up by name."""

    directory: Path
    metrics: tuple[MetricDef, ...] = ()

    def __iter__(self) -> Iterator[MetricDef]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.metrics)

    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def get(self, name: str) -> MetricDef | None:
        return next((m for m in self.metrics if m.name == name), None)

    def __getitem__(self, name: str) -> MetricDef:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def find(self, name: str) -> MetricDef:
        """The metric ``name``, or a MetricError that suggests a close name."""
        found = self.get(name)
        if found is None:
            raise MetricError(
                f"no metric named {name!r} in {self.directory} — "
                f"{_suggest(name, self.names(), 'known metrics are')}"
                " (`tally metrics list` shows them all)"
            )
        return found


def _suggest(word: str, choices: Sequence[str], lead: str = "use one of") -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    if not choices:
        return "there are none"
    return f"{lead} {', '.join(choices)}"


def _identifier(text: str) -> str:
    ident = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not ident or not ident[0].isalpha():
        ident = "metric_" + ident
    return ident[:64]


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


@dataclass
class _Parsed:
    """What one definition yielded: its name (for the duplicate check) and, if valid, itself."""

    name: str | None
    name_line: int
    metric: MetricDef | None


class _FileReader:
    """Reads one YAML file, collecting every problem in it."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.problems: list[Problem] = []
        self.loader = yaml.SafeLoader(text)

    def problem(self, where: Node | int, message: str) -> None:
        line = where if isinstance(where, int) else _line(where)
        self.problems.append(Problem(self.file, line, message))

    def value(self, node: Node) -> tuple[bool, Any]:
        """``(True, value)`` of ``node``, or ``(False, None)`` after reporting why not."""
        try:
            return True, self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2025-13-01
            problem = getattr(exc, "problem", None) or str(exc)
            self.problem(node, f"cannot read this value: {problem} — write plain text or numbers")
            return False, None

    # -- the file --

    def read(self) -> list[_Parsed]:
        try:
            try:
                root = self.loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                line = int(mark.line) + 1 if mark is not None else 1
                self.problem(
                    line,
                    f"not valid YAML: {exc.problem or exc.context} — fix the syntax here "
                    "(indentation, a missing ':', an unclosed quote or bracket)",
                )
                return []
            except yaml.YAMLError as exc:
                self.problem(1, f"not valid YAML: {exc} — fix the syntax")
                return []
            if root is None:
                return []
            if isinstance(root, MappingNode):
                items: list[Node] = [root]
            elif isinstance(root, SequenceNode):
                items = list(root.value)
            else:
                self.problem(
                    root,
                    "a catalog file holds a metric definition (a mapping with name, title and "
                    "type) or a list of them — start with `name: ...` or `- name: ...`",
                )
                return []
            return [self.definition(item) for item in items]
        finally:
            self.loader.dispose()

    # -- one definition --

    def definition(self, node: Node) -> _Parsed:
        if not isinstance(node, MappingNode):
            self.problem(
                node,
                "a metric definition must be a mapping — write `name: ...`, `title: ...` and "
                "`type: ...` on lines of their own",
            )
            return _Parsed(None, _line(node), None)
        before = len(self.problems)
        entries = self.entries(node, KEYS, "key")
        for key in REQUIRED_KEYS:
            if key not in entries:
                self.problem(node, f"missing required key {key!r} — add `{key}: {_EXAMPLES[key]}`")
        name = self.name(entries["name"][1]) if "name" in entries else None
        name_line = _line(entries["name"][0]) if "name" in entries else _line(node)
        values: dict[str, Any] = {}
        if "title" in entries:
            values["title"] = self.text_value("title", entries["title"][1], required=True)
        for key in ("description", "owner", "calculation", "slo"):
            if key in entries:
                values[key] = self.text_value(key, entries[key][1], required=False)
        type_ = self.type_value(entries["type"][1]) if "type" in entries else None
        grain: Grain = DEFAULT_GRAIN
        if "grain" in entries:
            chosen = self.choice("grain", entries["grain"][1], GRAINS)
            grain = chosen if chosen in GRAINS else DEFAULT_GRAIN
            values["grain"] = grain
        for key, choices in (
            ("importance", IMPORTANCE),
            ("direction", DIRECTIONS),
            ("standard", STANDARDS),
            ("status", STATUSES),
        ):
            if key in entries:
                values[key] = self.choice(key, entries[key][1], choices)
        for key in ("teams", "tags", "sources", "code_refs", "dashboards"):
            if key in entries:
                values[key] = self.names(key, entries[key][1])
        if "privacy" in entries:
            values["privacy"] = self.choice("privacy", entries["privacy"][1], PRIVACY)
        if "access" in entries:
            values["access"] = self.text_or_names("access", entries["access"][1])
        if "retention_days" in entries:
            values["retention_days"] = self.days("retention_days", entries["retention_days"][1])
        for key in DATES:
            if key in entries:
                values[key] = self.date_value(key, entries[key][1])
        self.check_dates(values, entries)
        params: dict[str, ParamValue] = {}
        if type_ is not None:
            params = self.params(type_, node, entries.get("params"), grain)
        elif "params" in entries:
            self.params_shape(entries["params"][1])
        if len(self.problems) > before or name is None or type_ is None:
            return _Parsed(name, name_line, None)
        metric = MetricDef(
            name=name,
            type=type_,
            params=MappingProxyType(params),
            file=self.file,
            line=_line(node),
            **values,
        )
        return _Parsed(name, name_line, metric)

    def entries(
        self,
        node: MappingNode,
        allowed: Sequence[str],
        what: str,
        suggest: Sequence[str] | None = None,
    ) -> dict[str, tuple[Node, Node]]:
        """The mapping's entries by key, reporting unknown (suggesting from ``suggest``, default
        ``allowed``) and repeated keys."""
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(node, f"cannot read this mapping: {exc} — write plain `key: value` lines")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            ok, key = self.value(key_node) if isinstance(key_node, ScalarNode) else (False, None)
            if not ok or not isinstance(key, str):
                self.problem(key_node, f"a {what} must be a word — use one of {', '.join(allowed)}")
                continue
            if key in out:
                self.problem(
                    key_node,
                    f"{what} {key!r} appears twice (first on line {_line(out[key][0])}) — "
                    "keep one of them",
                )
                continue
            if key not in allowed:
                hint = _suggest(key, allowed if suggest is None else suggest)
                self.problem(key_node, f"unknown {what} {key!r} — {hint}")
                continue
            out[key] = (key_node, value_node)
        return out

    def scalar(self, key: str, node: Node) -> tuple[bool, Any]:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{key} must be a single value, not a list or mapping — {_fix(key)}")
            return False, None
        return self.value(node)

    def text_value(self, key: str, node: Node, *, required: bool) -> str | None:
        ok, value = self.scalar(key, node)
        if not ok:
            return None
        if value is None and not required:
            return "" if key == "description" else None
        if not isinstance(value, str):
            shown = "" if value is None else str(value)
            self.problem(
                node,
                f"{key} must be text, got {_kind(value)} — "
                + (f'put it in quotes: `{key}: "{shown}"`' if shown else f"write `{key}: ...`"),
            )
            return None
        if required and not value.strip():
            self.problem(node, f"{key} is empty — {_fix(key)}")
            return None
        return value.strip() if key != "description" else value.rstrip()

    def name(self, node: Node) -> str | None:
        ok, value = self.scalar("name", node)
        if not ok:
            return None
        if not isinstance(value, str) or not _NAME.match(value):
            shown = str(value)
            self.problem(
                node,
                f"metric name {shown!r} is not an identifier — use lower-case letters, digits "
                f"and '_', starting with a letter (at most 64), e.g. {_identifier(shown)!r}",
            )
            return None
        return value

    def type_value(self, node: Node) -> str | None:
        ok, value = self.scalar("type", node)
        if not ok:
            return None
        if value == "stickiness":
            self.problem(
                node,
                "type 'stickiness' does not exist — write `type: active` and, under params, "
                "`stickiness: true`",
            )
            return None
        if not isinstance(value, str) or value not in TYPES:
            self.problem(node, f"unknown type {value!r} — {_suggest(str(value), TYPES)}")
            return None
        return value

    def choice(self, key: str, node: Node, choices: Sequence[str]) -> str | None:
        ok, value = self.scalar(key, node)
        if not ok:
            return None
        if not isinstance(value, str) or value not in choices:
            self.problem(node, f"{key} {value!r} is not allowed — {_suggest(str(value), choices)}")
            return None
        return value

    def names(self, key: str, node: Node) -> tuple[str, ...]:
        if isinstance(node, ScalarNode):
            ok, value = self.value(node)
            if ok and value is None:
                return ()
            self.problem(node, f"{key} must be a list — write `{key}: [{value}]`")
            return ()
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{key} must be a list of names — write `{key}: [a, b]`")
            return ()
        out: list[str] = []
        for item in node.value:
            ok, value = self.value(item) if isinstance(item, ScalarNode) else (False, None)
            if not ok or not isinstance(value, str) or not value.strip():
                self.problem(
                    item, f"every entry of {key} must be a non-empty name — write `{key}: [a, b]`"
                )
                continue
            out.append(value.strip())
        return tuple(dict.fromkeys(out))

    def text_or_names(self, key: str, node: Node) -> tuple[str, ...]:
        """A text (one entry) or a list of names."""
        if isinstance(node, ScalarNode):
            ok, value = self.value(node)
            if not ok or value is None:
                return ()
            if not isinstance(value, str) or not value.strip():
                self.problem(node, f"{key} must be text or a list of names — {_fix(key)}")
                return ()
            return (value.strip(),)
        return self.names(key, node)

    def days(self, key: str, node: Node) -> int | None:
        ok, value = self.scalar(key, node)
        if not ok or value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.problem(node, f"{key} must be a whole number of days, at least 1 — {_fix(key)}")
            return None
        return value

    def date_value(self, key: str, node: Node) -> dt.date | None:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{key} must be a single value, not a list or mapping — {_fix(key)}")
            return None
        if _is_null(node):
            return None
        text = str(node.value).strip()
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            self.problem(node, f"{key} {text!r} is not a date — write YYYY-MM-DD, {_fix(key)}")
            return None
        self.problem(node, f"{key} is a date, not a time — write `{key}: {moment.date()}`")
        return None

    def check_dates(self, values: dict[str, Any], entries: dict[str, tuple[Node, Node]]) -> None:
        """Dates in order: implemented, then modified and sunset."""
        implemented = values.get("implemented")
        for key in ("modified", "sunset"):
            later = values.get(key)
            if implemented is not None and later is not None and later < implemented:
                self.problem(
                    entries[key][1],
                    f"{key} ({later}) is before implemented ({implemented}) — fix one of the dates",
                )

    # -- parameters --

    def params_shape(self, node: Node) -> None:
        """Report a ``params`` that is not a mapping (when the type is unknown)."""
        if not isinstance(node, MappingNode) and not _is_null(node):
            self.problem(node, "params must be a mapping of parameter names to values")

    def params(
        self,
        type_: str,
        definition: MappingNode,
        entry: tuple[Node, Node] | None,
        grain: Grain,
    ) -> dict[str, ParamValue]:
        allowed = PARAMS[type_]
        where_node: Node = definition if entry is None else entry[0]
        raw: dict[str, tuple[Node, Node]] = {}
        if entry is not None and not _is_null(entry[1]):
            if not isinstance(entry[1], MappingNode):
                self.problem(
                    entry[1],
                    f"params must be a mapping of parameter names to values — "
                    f"{type_} takes {', '.join(allowed)}",
                )
                return {}
            raw = self.param_entries(type_, entry[1])
        params: dict[str, ParamValue] = {}
        lines: dict[str, Node] = {}
        for key, (key_node, value_node) in raw.items():
            before = len(self.problems)
            value = self.param_value(key, value_node)
            if value is not None and len(self.problems) == before:
                params[key] = value
                lines[key] = key_node
        required = registry.REQUIRED[type_]
        for key in required:
            if key not in raw:
                self.problem(
                    where_node,
                    f"type {type_} needs the parameter {key!r} — add it under params: "
                    f"`{key}: {_EXAMPLES.get(key, '...')}`",
                )
        if all(key in params for key in required):
            # Build with the parameters that passed the checks above, to find the rest.
            self.check_build(
                type_, params, lines, grain, where_node, complete=params.keys() == raw.keys()
            )
        return params

    def param_entries(self, type_: str, node: MappingNode) -> dict[str, tuple[Node, Node]]:
        allowed = PARAMS[type_]
        known = {*ALL_PARAMS, "from", "to", "grain"}
        # Unknown keys are reported with a fix that depends on what they are.
        entries = self.entries(
            node, (*allowed, *sorted(known - set(allowed))), "parameter", suggest=allowed
        )
        out: dict[str, tuple[Node, Node]] = {}
        for key, pair in entries.items():
            if key in allowed:
                out[key] = pair
            elif key in ("from", "to"):
                self.problem(
                    pair[0],
                    f"{key!r} is chosen when the metric runs, not in its definition — remove it "
                    f"(use --{key} with tally metrics run)",
                )
            elif key == "grain":
                self.problem(
                    pair[0],
                    "grain is a field of the definition, not a parameter — move it out of "
                    "params: `grain: week`",
                )
            else:
                self.problem(
                    pair[0],
                    f"type {type_} does not take the parameter {key!r} — "
                    f"it takes {', '.join(allowed)}",
                )
        return out

    def param_value(self, key: str, node: Node) -> ParamValue | None:
        if isinstance(node, SequenceNode):
            items: list[Scalar] = []
            for item in node.value:
                value = self.param_scalar(key, item)
                if value is None:
                    return None
                items.append(value)
            if key in _FILTER_PARAMS:
                for item, value in zip(node.value, items, strict=True):
                    self.check_filter(item, value)
            return tuple(items)
        value = self.param_scalar(key, node)
        if value is not None and key in _FILTER_PARAMS:
            self.check_filter(node, value)
        if isinstance(value, str) and key in _FIELD_PARAMS:
            self.check_field(key, node, value)
        return value

    def param_scalar(self, key: str, node: Node) -> Scalar | None:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{key} takes a value or a list of values — {_fix(key)}")
            return None
        ok, value = self.value(node)
        if not ok:
            return None
        if value is None:
            self.problem(node, f"{key} has no value — {_fix(key)}")
            return None
        if not isinstance(value, str | int | float | bool):
            self.problem(
                node,
                f'{key}: {value!r} is read as {_kind(value)} — put it in quotes: "{node.value}"',
            )
            return None
        return value

    def check_filter(self, node: Node, value: Scalar) -> None:
        if not isinstance(value, str):
            self.problem(node, f"filter {value!r} is not text — write FIELD=VALUE, e.g. app.id=web")
            return
        try:
            as_filters([value])
        except MetricError as exc:
            self.problem(node, str(exc))

    def check_field(self, key: str, node: Node, value: str) -> None:
        if key == "unit" and value == "event":
            return
        if value in FIELDS_BY_PATH or value.startswith("data."):
            return
        fields = [*FIELDS_BY_PATH, "data.<key>"]
        self.problem(node, f"{key} {value!r} is not a field — {_suggest(value, fields)}")

    def check_build(
        self,
        type_: str,
        params: dict[str, ParamValue],
        lines: dict[str, Node],
        grain: Grain,
        fallback: Node,
        *,
        complete: bool,
    ) -> None:
        """Build the analysis; attribute a refusal to the parameter that causes it.

        The required parameters are tried alone, then each other one with them, then (when
        ``complete``: no parameter was left out for an earlier problem) all of them together.
        """

        def attempt(chosen: Mapping[str, ParamValue]) -> str | None:
            plain = {k: _plain(v) for k, v in chosen.items()}
            try:
                registry.build(type_, {**plain, "grain": grain})
            except MetricError as exc:
                return str(exc)
            except ImportError:
                return f"type {type_!r} is not available in this installation"
            return None

        required = registry.REQUIRED[type_]
        base = {k: params[k] for k in required}
        if attempt(base) is not None:
            # Find the culprits: each required parameter with valid stand-ins for the others.
            stand_ins = {k: _STAND_INS[k] for k in required}
            for key in required:
                error = attempt({**stand_ins, key: params[key]})
                if error is not None:
                    self.problem(lines[key], _with_fix(error, key))
            return
        found = False
        for key, value in params.items():
            if key in required:
                continue
            error = attempt({**base, key: value})
            if error is not None:
                self.problem(lines[key], _with_fix(error, key))
                found = True
        if complete and not found and (error := attempt(params)) is not None:
            self.problem(fallback, _with_fix(error, "params"))


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    return f"a {type(value).__name__} ({value})"


def _with_fix(message: str, key: str) -> str:
    """``message``, with an example of ``key`` appended unless it already says what to do."""
    if " — " in message or re.search(r"\b(use|write|give|add|remove)\b", message):
        return message
    return f"{message} — {_fix(key)}"


def _fix(key: str) -> str:
    example = _EXAMPLES.get(key)
    return f"e.g. `{key}: {example}`" if example else f"write `{key}: ...`"


def parse_text(text: str, file: str) -> tuple[list[MetricDef], list[Problem]]:
    """The valid definitions in ``text`` and the problems of the rest (no duplicate check)."""
    reader = _FileReader(text, file)
    parsed = reader.read()
    return [p.metric for p in parsed if p.metric is not None], reader.problems


def catalog_files(directory: Path) -> list[Path]:
    """The catalog's YAML files under ``directory``, sorted; hidden ones are skipped."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_catalog(directory: Path) -> tuple[Catalog, list[Problem]]:
    """Every valid, uniquely named definition under ``directory`` and every problem found."""
    problems: list[Problem] = []
    metrics: list[MetricDef] = []
    first: dict[str, tuple[str, int]] = {}
    for path in catalog_files(directory):
        shown = str(Path(directory.name) / path.relative_to(directory))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(shown, 1, "not UTF-8 text — save the file as UTF-8"))
            continue
        except OSError as exc:
            problems.append(Problem(shown, 1, f"cannot read the file: {exc.strerror}"))
            continue
        reader = _FileReader(text, shown)
        for parsed in reader.read():
            if parsed.name is not None:
                if parsed.name in first:
                    where, line = first[parsed.name]
                    reader.problem(
                        parsed.name_line,
                        f"metric name {parsed.name!r} is already defined at {where}:{line} — "
                        "rename one of them",
                    )
                    continue
                first[parsed.name] = (shown, parsed.name_line)
            if parsed.metric is not None:
                metrics.append(parsed.metric)
        problems.extend(sorted(reader.problems, key=lambda p: p.line))
    return Catalog(directory, tuple(metrics)), problems


def load_catalog(directory: Path) -> Catalog:
    """The catalog under ``directory`` (a missing folder is an empty catalog).

    Raises ``CatalogError`` with every problem of every file when any definition is invalid.
    """
    catalog, problems = read_catalog(directory)
    if problems:
        raise CatalogError(problems)
    return catalog
