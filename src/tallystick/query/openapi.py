"""The query API's parameters (their JSON types, checked before the registry sees them) and its
OpenAPI 3.1 document, built from the registry so that every analysis is described.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from tallystick import messages
from tallystick.admin import openapi as control
from tallystick.metrics.catalog import (
    DIRECTIONS,
    IMPORTANCE,
    PRIVACY,
    STANDARDS,
    STATUSES,
    TYPES,
)
from tallystick.metrics.params import GRAINS, MetricError
from tallystick.metrics.registry import (
    ANALYSES,
    COMMON,
    DEFAULT_PERIODS,
    DEFAULT_WINDOW,
    REQUIRED,
    SPECIFIC,
)
from tallystick.privacy import dp
from tallystick.query.catalog import PAGES

QUERY_PREFIX: Final = "/v1/query/"
METRICS_PREFIX: Final = "/v1/metrics/"
CATALOG_PATH: Final = "/v1/catalog"
META_PATH: Final = "/v1/meta"
HEALTH_PATH: Final = "/v1/health"
OPENAPI_PATH: Final = "/openapi.json"
EXPERIMENT_RESULTS_PATH: Final = "/v1/experiments/{key}/results"

Kind: TypeAlias = Literal[
    "text", "date", "names", "where", "bool", "int", "number", "percentiles", "window"
]
Schema: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: its kind (what JSON it takes), description and schemas."""

    kind: Kind
    description: str
    body: Schema
    example: Any = None

    @property
    def repeatable(self) -> bool:
        """May be given several times in a query string (a list)."""
        return self.kind in ("names", "where", "percentiles")

    @property
    def query(self) -> Schema:
        """The schema of its query-string values."""
        if self.repeatable:
            return {"type": "array", "items": {"type": "string"}}
        if self.kind == "bool":
            return {"type": "boolean", "default": False}
        if self.kind in ("int", "number"):
            return dict(self.body)
        schema = {k: v for k, v in self.body.items() if k not in ("oneOf", "type")}
        return {"type": "string", **schema}


_NAMES: Final[Schema] = {
    "oneOf": [
        {"type": "string", "description": "names separated by commas"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
    ]
}
_FILTER: Final[Schema] = {
    "oneOf": [
        {"type": "string", "description": "FIELD=VALUE, FIELD!=VALUE or FIELD in A,B"},
        {
            "type": "array",
            "description": "[field, op, value]; for op 'in', value is a list",
            "prefixItems": [
                {"type": "string"},
                {"type": "string", "enum": ["=", "!=", "in"]},
                {},
            ],
            "minItems": 3,
            "maxItems": 3,
        },
        {
            "type": "object",
            "properties": {
                "field": {"type": "string"},
                "op": {"type": "string", "enum": ["=", "!=", "in"]},
                "value": {},
            },
            "required": ["field", "op", "value"],
            "additionalProperties": False,
        },
    ]
}

PARAMS: Final[dict[str, Param]] = {
    "from": Param(
        "date",
        "First UTC date, inclusive (YYYY-MM-DD). Default: 12 whole weeks before `to`, from a "
        "Monday.",
        {"type": "string", "format": "date"},
        "2026-01-01",
    ),
    "to": Param(
        "date",
        "Last UTC date, inclusive (YYYY-MM-DD). Default: today.",
        {"type": "string", "format": "date"},
        "2026-03-31",
    ),
    "grain": Param(
        "text",
        "Length of a period (weeks start on Monday, UTC).",
        {"type": "string", "enum": list(GRAINS), "default": "week"},
        "week",
    ),
    "unit": Param(
        "text",
        "What is counted: a field such as user.id or session.id; `event` counts events "
        "(ratio only).",
        {"type": "string", "default": "user.id"},
        "user.id",
    ),
    "where": Param(
        "where",
        "Filters, all of which must hold: FIELD=VALUE, FIELD!=VALUE or FIELD in A,B (in a query "
        "string, repeat `where`). Fields are dotted event paths (app.environment) or "
        "data.<key>.",
        {"oneOf": [_FILTER["oneOf"][0], {"type": "array", "items": _FILTER}]},
        ["app.environment=prod"],
    ),
    "breakdown": Param(
        "text",
        "A field to split the results by; rows get a `breakdown` value.",
        {"type": "string"},
        "app.instance",
    ),
    "include_bots": Param(
        "bool",
        "Count events from bots too (`agent.is_bot`); by default they are left out. Quarantined "
        "data is left out either way.",
        {"type": "boolean", "default": False},
        True,
    ),
    "actions": Param("names", "The core actions.", _NAMES, "project.commit,dataset.create"),
    "active": Param("names", "The actions that make a unit active.", _NAMES, "user.login"),
    "stickiness": Param(
        "bool",
        "Report DAU/MAU per month instead (the result of the `stickiness` analysis).",
        {"type": "boolean", "default": False},
        False,
    ),
    "event": Param("text", "The event name.", {"type": "string"}, "workflow.run"),
    "numerator": Param("text", "Event of the numerator.", {"type": "string"}, "project.commit"),
    "denominator": Param("text", "Event of the denominator.", {"type": "string"}, "user.login"),
    "numerator_where": Param(
        "where",
        "Filters on the numerator's events only, written like `where` (bounced sessions: "
        "data.pageviews=1 on session.end over session.end).",
        {"oneOf": [_FILTER["oneOf"][0], {"type": "array", "items": _FILTER}]},
        ["data.pageviews=1"],
    ),
    "field": Param(
        "text", "The numeric field, data.<key>.", {"type": "string"}, "data.duration_ms"
    ),
    "p": Param(
        "percentiles",
        "Percentiles between 0 and 100 (in a query string: 50,90,99 or repeated).",
        {
            "oneOf": [
                {"type": "string"},
                {"type": "number", "minimum": 0, "maximum": 100},
                {"type": "array", "items": {"type": ["number", "string"]}, "minItems": 1},
            ]
        },
        "50,90,99",
    ),
    "steps": Param(
        "names", "The funnel's step events, in order.", _NAMES, "signin.open,signin.completed"
    ),
    "window": Param(
        "window",
        "Time from step 1 within which later steps count: 90s, 30m, 1h, 1d, 2w (or seconds).",
        {
            "oneOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdw]\s*$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "default": DEFAULT_WINDOW,
        },
        "1h",
    ),
    "cohort_event": Param(
        "text", "The event that puts a unit in a cohort.", {"type": "string"}, "user.signup"
    ),
    "return_events": Param("names", "The events that count as a return.", _NAMES, "user.login"),
    "periods": Param(
        "int",
        "How many periods after the cohort's to report.",
        {"type": "integer", "minimum": 0, "default": DEFAULT_PERIODS},
        8,
    ),
    dp.EPSILON: Param(
        "number",
        "Make a differentially private release instead, spending this epsilon of the "
        "dataset's privacy budget (smaller: more noise, more privacy); the answer carries a "
        "`dp` block. See docs/differential-privacy.md.",
        {"type": "number", "exclusiveMinimum": 0},
        1.0,
    ),
    dp.MAX_EVENTS: Param(
        "int",
        "With `dp_epsilon`: count at most this many events of a unit over the release.",
        {"type": "integer", "minimum": 1, "default": dp.DEFAULT_MAX_EVENTS},
        10,
    ),
    dp.MAX_PERIODS: Param(
        "int",
        "With `dp_epsilon`: count a unit in at most this many periods (default: every period).",
        {"type": "integer", "minimum": 1},
        4,
    ),
}
_UNKNOWN: Final = Param("text", "See the metrics reference (docs/metrics.md).", {})


def param(name: str) -> Param:
    return PARAMS.get(name, _UNKNOWN)


def parameters(analysis: str) -> list[str]:
    """The parameters ``analysis`` takes, common ones first, differential privacy's last."""
    return [*COMMON, *SPECIFIC[analysis], *dp.PARAMS.get(analysis, ())]


# -- checking values ---------------------------------------------------------------------------


def _wrong(name: str, want: str, value: object) -> MetricError:
    return MetricError(f"parameter {name!r} must be {want}, got {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _names(name: str, value: object) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [n.strip() for v in value for n in v.split(",") if n.strip()]
    raise _wrong(name, 'an event name list such as ["a", "b"] or "a,b"', value)


def _filter(item: object, name: str = "where") -> str | tuple[str, str, object]:
    if isinstance(item, str):
        return item
    if isinstance(item, list) and len(item) == 3 and all(isinstance(v, str) for v in item[:2]):
        return (item[0], item[1], item[2])
    if (
        isinstance(item, dict)
        and set(item) == {"field", "op", "value"}
        and isinstance(item["field"], str)
        and isinstance(item["op"], str)
    ):
        return (item["field"], item["op"], item["value"])
    raise _wrong(
        name,
        'a list of filters: "FIELD=VALUE", [field, op, value] or {"field", "op", "value"}',
        item,
    )


def check(name: str, value: object) -> object:
    """``value`` of parameter ``name`` from JSON or a query string, in the registry's terms;
    MetricError naming the parameter when its JSON type is wrong."""
    kind = param(name).kind
    if kind in ("text", "date"):
        if not isinstance(value, str):
            want = "a date string such as 2026-01-31" if kind == "date" else "a string"
            raise _wrong(name, want, value)
        return value
    if kind == "names":
        return _names(name, value)
    if kind == "where":
        items = value if isinstance(value, list) else [value]
        return [_filter(item, name) for item in items]
    if kind == "bool":
        if isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no")
        ):
            return value
        raise _wrong(name, "true or false", value)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise _wrong(name, "a whole number", value)
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _wrong(name, "a number", value)
    if kind == "percentiles":
        ok = (str, int, float)
        if isinstance(value, ok) and not isinstance(value, bool):
            return value
        if isinstance(value, list) and all(
            isinstance(v, ok) and not isinstance(v, bool) for v in value
        ):
            return value
        raise _wrong(name, 'percentiles such as [50, 90, 99] or "50,90,99"', value)
    if kind == "window":
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return value
        raise _wrong(name, 'a duration such as "1h" or a number of seconds', value)
    raise AssertionError(kind)


# -- the document ------------------------------------------------------------------------------

#: analysis -> (summary, description)
ABOUT: Final[dict[str, tuple[str, str]]] = {
    "core": (
        "Core actions",
        "Per period and action: `users` (distinct units who did the action), `active_users` "
        "(distinct units who did any `active` action) and `share` (`users / active_users`).",
    ),
    "active": (
        "Active units",
        "Per period: `active_users`, distinct units with an event of any `active` action. With "
        "`stickiness=true` the result of the stickiness analysis.",
    ),
    "stickiness": (
        "Stickiness (DAU/MAU)",
        "Per calendar month: `dau_mean` (average daily active units over the month's days in "
        "the range), `mau` and `stickiness = dau_mean / mau`.",
    ),
    "count": (
        "Event counts",
        "Per period: `events` (events named `event`, anonymous ones included) and `units` "
        "(distinct units among them).",
    ),
    "ratio": (
        "Ratio of two events",
        "Per period: `numerator` and `denominator` (distinct units with such an event, or with "
        "`unit=event` the numbers of events) and `ratio`.",
    ),
    "percentile": (
        "Percentiles of a numeric field",
        "Per period, over the events named `event`: `count` of numeric values and `p<P>` for "
        "each percentile (exact, linear interpolation as numpy.percentile).",
    ),
    "funnel": (
        "Conversion funnel",
        "Over the whole range, per step: `users` reaching it in order within `window` of step "
        "1, `conversion_from_previous`, `conversion_from_start`, "
        "`median_seconds_from_previous`.",
    ),
    "retention": (
        "Cohort retention",
        "Per cohort (period of a unit's first `cohort_event`): `size`, and `retained`/`rates`, "
        "lists of `periods + 1` values (index 0 the cohort's period; null after `to`).",
    ),
}

_INT: Final[Schema] = {"type": "integer", "minimum": 0}
_RATE: Final[Schema] = {"type": ["number", "null"], "description": "null when dividing by 0"}
_PERIOD: Final[Schema] = {"type": "string", "format": "date", "description": "first date"}

#: analysis -> its row's columns (besides ``breakdown``) and, for percentiles, a pattern
COLUMNS: Final[dict[str, dict[str, Schema]]] = {
    "core": {
        "period": _PERIOD,
        "action": {"type": "string"},
        "users": _INT,
        "active_users": _INT,
        "share": _RATE,
    },
    "active": {"period": _PERIOD, "active_users": _INT},
    "stickiness": {
        "period": _PERIOD,
        "dau_mean": {"type": "number"},
        "mau": _INT,
        "stickiness": _RATE,
    },
    "count": {"period": _PERIOD, "events": _INT, "units": _INT},
    "ratio": {"period": _PERIOD, "numerator": _INT, "denominator": _INT, "ratio": _RATE},
    "percentile": {"period": _PERIOD, "count": _INT},
    "funnel": {
        "step": {"type": "integer", "minimum": 1},
        "name": {"type": "string"},
        "users": _INT,
        "conversion_from_previous": _RATE,
        "conversion_from_start": _RATE,
        "median_seconds_from_previous": {"type": ["number", "null"]},
    },
    "retention": {
        "cohort": _PERIOD,
        "size": _INT,
        "retained": {"type": "array", "items": {"type": ["integer", "null"]}},
        "rates": {"type": "array", "items": _RATE},
    },
}


def _row_schema(analysis: str) -> Schema:
    if analysis == "active":  # with stickiness=true, the rows of stickiness
        return {"anyOf": [_columns_schema("active"), _columns_schema("stickiness")]}
    return _columns_schema(analysis)


def _columns_schema(analysis: str) -> Schema:
    columns = COLUMNS.get(analysis)
    if columns is None:
        return {"type": "object"}
    schema: Schema = {
        "type": "object",
        "properties": {
            **copy.deepcopy(columns),
            "breakdown": {
                "type": ["string", "null"],
                "description": "the breakdown value (only with `breakdown`)",
            },
        },
        "required": list(columns),
        "additionalProperties": False,
    }
    if analysis == "percentile":
        schema["patternProperties"] = {r"^p[0-9.e+-]+$": {"type": ["number", "null"]}}
    return schema


def _result_schema(analysis: str) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": {
            "analysis": {"type": "string", "description": "the analysis that ran"},
            "engine": {"type": "string", "enum": ["duckdb", "clickhouse"]},
            "rows": {"type": "array", "items": _ref(f"{analysis.capitalize()}Row")},
            "sql": {"type": "string", "description": "the SQL that ran"},
        },
        "required": ["analysis", "engine", "rows", "sql"],
        "additionalProperties": False,
    }
    if analysis in dp.PARAMS:
        schema["properties"]["dp"] = _ref("DpRelease")
    return schema


_NUMBER: Final[Schema] = {"type": "number", "minimum": 0}
DP_RELEASE: Final[Schema] = {
    "type": "object",
    "description": "With `dp_epsilon`: what the differentially private release spent, and how "
    "much noise its rows carry (docs/differential-privacy.md).",
    "properties": {
        "epsilon": {**_NUMBER, "description": "the privacy loss this release spent"},
        "mechanism": {"type": "string", "enum": [dp.MECHANISM]},
        "unit": {"type": "string", "description": "whose data is protected (the unit)"},
        "sensitivity": {**_INT, "description": "L1 change one unit's data can make"},
        "scale": {**_NUMBER, "description": "the Laplace noise scale, sensitivity / epsilon"},
        "interval95": {
            **_NUMBER,
            "description": "each value is within ± this of the bounded count with 95% "
            "probability (before rounding and clamping at 0)",
        },
        "max_events_per_user": {"type": "integer", "minimum": 1},
        "max_periods_per_user": {"type": "integer", "minimum": 1},
        "anonymous_events": {"type": "string", "enum": ["excluded"]},
        "dataset": {"type": "string", "description": "whose privacy budget was spent"},
        "release": {"type": "integer", "description": "the release's id in the ledger"},
        "budget": _NUMBER,
        "spent": {**_NUMBER, "description": "spent of the budget, this release included"},
        "remaining": _NUMBER,
    },
    "required": [
        "epsilon",
        "mechanism",
        "unit",
        "sensitivity",
        "scale",
        "interval95",
        "max_periods_per_user",
        "anonymous_events",
        "dataset",
        "release",
        "budget",
        "spent",
        "remaining",
    ],
    "additionalProperties": False,
}


_ERROR: Final[Schema] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string", "description": "what to change"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


#: on every endpoint but the OpenAPI document: a read key when the server has one, else nothing
_SECURITY: Final[list[dict[str, list[str]]]] = [{"readKey": []}, {}]
_SECURITY_SCHEMES: Final[Schema] = {
    "readKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A read or admin key (`tally keys create`, or the server's `read_key` / "
        "`admin_key` settings), once one exists. See docs/access.md.",
    }
}


def _unauthorized() -> Schema:
    return _error(
        f"`{messages.UNAUTHORIZED}`: the server has a read key and the request did not carry it "
        "(or carried another) as `Authorization: Bearer <key>`."
    )


def _responses(analysis: str) -> Schema:
    title = analysis.capitalize()
    return {
        "200": {
            "description": "The result rows and the SQL that produced them.",
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{title}Result"}}
            },
        },
        "400": _error(
            f"`{messages.INVALID_QUERY}`: a parameter is missing or wrong; the message names it "
            f"and says what to write. `{messages.MALFORMED_JSON}`: the body is not JSON."
        ),
        "401": _unauthorized(),
        "413": _error(f"`{messages.REQUEST_TOO_LARGE}`: the body is larger than 64 KiB."),
        "500": _error(f"`{messages.QUERY_FAILED}`: the engine could not run the query."),
        **(
            {
                "403": _error(
                    f"`{messages.PRIVACY_BUDGET_EXHAUSTED}`: with `dp_epsilon`, the release "
                    "would spend more than the dataset's privacy budget has left; nothing was "
                    "spent or released."
                )
            }
            if analysis in dp.PARAMS
            else {}
        ),
    }


def _query_parameter(analysis: str, name: str) -> Schema:
    p = param(name)
    out: Schema = {
        "name": name,
        "in": "query",
        "required": name in REQUIRED[analysis],
        "description": p.description,
        "schema": p.query,
    }
    if p.repeatable:
        out |= {"style": "form", "explode": True}
    if p.example is not None:
        example = p.example
        out["example"] = example if not p.repeatable or isinstance(example, list) else [example]
    return out


def _body(analysis: str) -> Schema:
    names = parameters(analysis)
    properties = {}
    for name in names:
        p = param(name)
        properties[name] = {**copy.deepcopy(p.body), "description": p.description}
    example = {
        name: param(name).example
        for name in [*REQUIRED[analysis], "from", "to"]
        if param(name).example is not None
    }
    return {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": properties,
                    "required": list(REQUIRED[analysis]),
                    "additionalProperties": False,
                },
                "example": example,
            }
        },
    }


def _operations(analysis: str) -> Schema:
    summary, description = ABOUT.get(analysis, (analysis, ""))
    responses = _responses(analysis)
    return {
        "get": {
            "operationId": f"get_{analysis}",
            "tags": ["query"],
            "summary": summary,
            "description": description + " Lists may be repeated parameters or a,b.",
            "parameters": [_query_parameter(analysis, n) for n in parameters(analysis)],
            "responses": responses,
            "security": copy.deepcopy(_SECURITY),
        },
        "post": {
            "operationId": f"post_{analysis}",
            "tags": ["query"],
            "summary": summary,
            "description": description + " The body is a JSON object of the same parameters.",
            "requestBody": _body(analysis),
            "responses": copy.deepcopy(responses),
            "security": copy.deepcopy(_SECURITY),
        },
    }


def document(version: str, analyses: Sequence[str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the query API."""
    names = list(analyses if analyses is not None else ANALYSES)
    paths: dict[str, Any] = {f"{QUERY_PREFIX}{n}": _operations(n) for n in names}
    paths[f"{METRICS_PREFIX}{{name}}"] = _metric_operations()
    paths[CATALOG_PATH] = _read_only(
        "catalog",
        "catalog",
        "The metric catalog",
        "Every valid definition of the catalog directory with the analysis it runs, its headline "
        "column (`value`), the dashboard pages that show it (`used_in`) and the grains whose "
        "materialised results are on disk; `problems` lists what is wrong in the others. A "
        "missing directory is an empty catalog.",
        "Catalog",
    )
    paths[META_PATH] = _read_only(
        "meta",
        "data",
        "What the lake holds",
        "When data last arrived, the event names stored (most frequent first, copies included), "
        "the fields a filter or breakdown takes and the `data` keys of the latest three date "
        "partitions: what a dashboard's pickers offer.",
        "Meta",
    )
    paths[HEALTH_PATH] = _read_only(
        "health",
        "data",
        "Data health",
        "Per UTC day of the range: events received (each event once, on the day its first copy "
        "arrived) and failed-event records received; failures by error code; the spool backlog. "
        "`loss_rate`: messages lost of those expected from `session.seq` (sessions that started "
        "in the range; null when none carries a sequence); `bot_rate`: the share of received "
        "events flagged `agent.is_bot`.",
        "Health",
        [_date_parameter("from"), _date_parameter("to")],
    )
    paths |= _quality_paths()
    paths[EXPERIMENT_RESULTS_PATH] = _experiment_results_operations()
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "tags": ["meta"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document of the query API.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
            "security": [],
        }
    }
    schemas: dict[str, Any] = {"Error": _ERROR, "DpRelease": copy.deepcopy(DP_RELEASE)}
    for n in names:
        schemas[f"{n.capitalize()}Result"] = _result_schema(n)
        schemas[f"{n.capitalize()}Row"] = _row_schema(n)
    schemas |= {
        "MetricResult": _metric_result_schema(names),
        "MetricDefinition": _definition_schema(),
        "Catalog": _catalog_schema(),
        "Meta": _META,
        "Health": _HEALTH,
        **_QUALITY_SCHEMAS,
        "ExperimentResults": _EXPERIMENT_RESULTS,
    }
    paths |= control.paths()
    schemas |= control.schemas()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tallystick query API",
            "version": version,
            "description": "Run Tallystick's analyses and catalog metrics over the collector's "
            "lake with DuckDB, and read what the lake holds and how data is arriving. The same "
            "analyses and parameters as `tally metrics` and `tallystick.metrics`. The control "
            "plane (streams, data models, the configuration and its audit log) is under "
            "/v1/admin/; see docs/http-api.md.",
        },
        "tags": [
            {"name": "query", "description": "Analyses"},
            {"name": "catalog", "description": "The metric catalog and its metrics"},
            {"name": "data", "description": "What the lake holds and how data arrives"},
            {
                "name": "quality",
                "description": "Whether the data can be trusted: loss, duplicates, clock skew, "
                "alerts",
            },
            {"name": "meta", "description": "About the API"},
            *control.TAGS,
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": copy.deepcopy(_SECURITY_SCHEMES | control.SECURITY_SCHEMES),
        },
    }


# -- catalog metrics, the catalog, meta and health ----------------------------------------------


def _date_parameter(name: str) -> Schema:
    p = param(name)
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": p.description,
        "schema": p.query,
        "example": p.example,
    }


def _read_only(
    operation: str,
    tag: str,
    summary: str,
    description: str,
    schema: str,
    query: list[Schema] | None = None,
) -> Schema:
    """A GET endpoint answering ``schema``, with ``query`` parameters (400 when wrong)."""
    responses: Schema = {"200": _ok(summary + ".", schema)}
    if query:
        responses["400"] = _error(
            f"`{messages.INVALID_QUERY}`: a date is wrong, `from` is after `to`, or the range is "
            "longer than about ten years; the message says what to write."
        )
    responses["401"] = _unauthorized()
    operation_: Schema = {
        "operationId": f"get_{operation}",
        "tags": [tag],
        "summary": summary,
        "description": description,
        "responses": responses,
        "security": copy.deepcopy(_SECURITY),
    }
    if query:
        operation_["parameters"] = query
    return {"get": operation_}


def _metric_operations() -> Schema:
    description = (
        "Runs the catalog metric `name` as `/v1/query/<analysis>` runs its analysis with the "
        "definition's parameters: the same rows and SQL, plus the definition. Only the range "
        "and the grain can be chosen."
    )
    name: Schema = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The metric's name in the catalog (`GET /v1/catalog` lists them).",
        "schema": {"type": "string"},
        "example": "weekly_active_users",
    }
    grain = {**param("grain").body, "description": "Default: the definition's grain."}
    bots_help = param("include_bots").description + " Default: the definition's, else false."
    responses: Schema = {
        "200": _ok(
            "The metric's rows, the SQL that produced them and its definition.", "MetricResult"
        ),
        "400": _error(
            f"`{messages.INVALID_QUERY}`: a parameter is wrong or is not one of from, to, "
            f"grain and include_bots. `{messages.MALFORMED_JSON}`: the body is not JSON."
        ),
        "401": _unauthorized(),
        "404": _error(f"`{messages.NOT_FOUND}`: no such metric (the message suggests a name)."),
        "413": _error(f"`{messages.REQUEST_TOO_LARGE}`: the body is larger than 64 KiB."),
        "500": _error(f"`{messages.QUERY_FAILED}`: the engine could not run the query."),
    }
    body_properties = {
        "from": {**param("from").body, "description": param("from").description},
        "to": {**param("to").body, "description": param("to").description},
        "grain": grain,
        "include_bots": {**param("include_bots").body, "description": bots_help},
    }
    return {
        "get": {
            "operationId": "get_metric",
            "tags": ["catalog"],
            "summary": "Run a catalog metric",
            "description": description,
            "parameters": [
                name,
                _date_parameter("from"),
                _date_parameter("to"),
                {
                    "name": "grain",
                    "in": "query",
                    "required": False,
                    "description": grain["description"],
                    "schema": {k: v for k, v in grain.items() if k != "default"},
                    "example": "week",
                },
                {
                    "name": "include_bots",
                    "in": "query",
                    "required": False,
                    "description": bots_help,
                    "schema": {"type": "boolean"},
                    "example": True,
                },
            ],
            "responses": responses,
            "security": copy.deepcopy(_SECURITY),
        },
        "post": {
            "operationId": "post_metric",
            "tags": ["catalog"],
            "summary": "Run a catalog metric",
            "description": description + " The body is a JSON object of the same parameters.",
            "parameters": [copy.deepcopy(name)],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": body_properties,
                            "additionalProperties": False,
                        },
                        "example": {"from": "2026-01-01", "to": "2026-03-31", "grain": "month"},
                    }
                },
            },
            "responses": copy.deepcopy(responses),
            "security": copy.deepcopy(_SECURITY),
        },
    }


_TEXT: Final[Schema] = {"type": "string"}
_TEXTS: Final[Schema] = {"type": "array", "items": {"type": "string"}}
_MAYBE_TIME: Final[Schema] = {"type": ["string", "null"], "format": "date-time"}
_MAYBE_DAY: Final[Schema] = {"type": ["string", "null"], "format": "date"}
_DAY: Final[Schema] = {"type": "string", "format": "date"}


def _object(properties: dict[str, Schema], description: str | None = None) -> Schema:
    out: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        out["description"] = description
    return out


def _definition_properties() -> dict[str, Schema]:
    return {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "title": _TEXT,
        "description": _TEXT,
        "type": {"type": "string", "enum": list(TYPES)},
        "params": {
            "type": "object",
            "description": "the analysis's parameters (registry names), as in the YAML file",
        },
        "owner": {"type": ["string", "null"]},
        "teams": _TEXTS,
        "tags": _TEXTS,
        "grain": {"type": "string", "enum": list(GRAINS)},
        "importance": {"type": "string", "enum": list(IMPORTANCE)},
        "direction": {
            "type": "string",
            "enum": list(DIRECTIONS),
            "description": "which way is better (experiments read it)",
        },
        "standard": {"type": "string", "enum": list(STANDARDS)},
        "status": {"type": "string", "enum": list(STATUSES)},
        "sources": _TEXTS,
        "calculation": {"type": ["string", "null"], "description": "how it is computed"},
        "code_refs": {**_TEXTS, "description": "code and queries behind it: paths or URLs"},
        "implemented": _MAYBE_DAY,
        "modified": _MAYBE_DAY,
        "sunset": _MAYBE_DAY,
        "privacy": {"type": ["string", "null"], "enum": [*PRIVACY, None]},
        "access": {**_TEXTS, "description": "who may see it"},
        "retention_days": {"type": ["integer", "null"], "minimum": 1},
        "slo": {"type": ["string", "null"], "description": "what its users may count on"},
        "dashboards": {**_TEXTS, "description": "dashboards using it beyond `used_in`"},
        "file": {"type": "string", "description": "where it is defined (metrics/kpis.yaml)"},
        "line": {"type": "integer", "minimum": 0},
    }


def _definition_schema() -> Schema:
    return _object(_definition_properties(), "A metric definition of the catalog.")


def _catalog_schema() -> Schema:
    metric = _object(
        {
            **_definition_properties(),
            "analysis": {
                "type": "string",
                "enum": list(ANALYSES),
                "description": "the analysis it runs (stickiness for active with stickiness)",
            },
            "value": {
                "type": ["string", "null"],
                "description": "the row column of its headline number (null: funnel, retention)",
            },
            "used_in": {
                "type": "array",
                "items": {"type": "string", "enum": list(PAGES)},
                "description": "the dashboard pages that show it",
            },
            "materialized": {
                "type": "array",
                "items": {"type": "string", "enum": list(GRAINS)},
                "description": "grains whose materialised results of this definition are on disk",
            },
            "runs_per_week": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "mean runs per week over the last 4 weeks (null: not recorded)",
            },
        }
    )
    return _object(
        {
            "directory": {"type": "string", "description": "the catalog directory"},
            "metrics": {"type": "array", "items": metric},
            "problems": {
                "type": "array",
                "items": {"type": "string"},
                "description": "FILE:LINE: what is wrong — how to fix it",
            },
        }
    )


def _metric_result_schema(analyses: Sequence[str]) -> Schema:
    return _object(
        {
            "metric": {"type": "string"},
            "analysis": {"type": "string", "description": "the analysis that ran"},
            "engine": {"type": "string", "enum": ["duckdb", "clickhouse"]},
            "rows": {
                "type": "array",
                "items": {"anyOf": [_ref(f"{n.capitalize()}Row") for n in analyses]},
                "description": "the rows of the analysis that ran",
            },
            "sql": {"type": "string", "description": "the SQL that ran"},
            "definition": _ref("MetricDefinition"),
        }
    )


_META: Final[Schema] = _object(
    {
        "data_as_of": {**_MAYBE_TIME, "description": "the newest received_ts stored"},
        "latest_event": {**_MAYBE_TIME, "description": "the newest client_ts stored"},
        "first_day": {**_MAYBE_DAY, "description": "the first event date partition"},
        "last_day": {**_MAYBE_DAY, "description": "the last event date partition"},
        "today": {**_DAY, "description": "the server's UTC date"},
        "events": {
            "type": "array",
            "items": _object({"name": _TEXT, "count": _INT}),
            "description": "event names stored, most frequent first (copies included)",
        },
        "fields": {**_TEXTS, "description": "fields a filter or breakdown takes, schema order"},
        "data_keys": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^data\."},
            "description": "data.<key> names of the latest three date partitions, sorted",
        },
    }
)

_HEALTH: Final[Schema] = _object(
    {
        "from": _DAY,
        "to": _DAY,
        "days": {
            "type": "array",
            "items": _object(
                {
                    "day": _DAY,
                    "received": {
                        **_INT,
                        "description": "events whose first copy was received this UTC day",
                    },
                    "occurred": {
                        **_INT,
                        "description": "stored events whose client_ts falls on this UTC day",
                    },
                    "failed": {**_INT, "description": "failed-event records received this day"},
                    "bots": {**_INT, "description": "of received, events flagged as bots"},
                }
            ),
            "description": "every day of the range, in order",
        },
        "failed_by_reason": {
            "type": "array",
            "items": _object(
                {
                    "code": _TEXT,
                    "count": _INT,
                    "example": {**_TEXT, "description": "the latest one's message"},
                    "latest": {"type": "string", "format": "date-time"},
                }
            ),
            "description": "failed-event records of the range by code, most frequent first",
        },
        "latest_event": {**_MAYBE_TIME, "description": "the newest client_ts stored"},
        "latest_received": {**_MAYBE_TIME, "description": "the newest received_ts stored"},
        "spool_backlog": {**_INT, "description": "sealed spool segments waiting to be loaded"},
        "quarantined": {**_INT, "description": "spool segments the loader set aside"},
        "loss_rate": {
            "type": ["number", "null"],
            "description": "lost / expected over the range's sessions (null: nothing expected)",
        },
        "bot_rate": {
            "type": ["number", "null"],
            "description": "bots / received over the range (null: nothing received)",
        },
        "notes": _TEXTS,
    }
)


# -- data quality: loss and duplicates, clock skew, alert history -------------------------------

_MAYBE_RATE: Final[Schema] = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_MAYBE_MS: Final[Schema] = {"type": ["number", "null"]}
_REPORT_QUERY: Final[dict[str, Schema]] = {
    "from": {**_MAYBE_DAY, "description": "the first day asked for (null: unbounded)"},
    "to": {**_MAYBE_DAY, "description": "the last day asked for (null: unbounded)"},
    "library": {"type": ["string", "null"], "description": "the library asked for"},
}
_LOSS_COUNTS: Final[dict[str, Schema]] = {
    "sessions": {**_INT, "description": "sessions with a seq that started this period"},
    "expected": {**_INT, "description": "messages sent: the highest seq of each session, summed"},
    "received": {**_INT, "description": "distinct seq values received"},
    "lost": {**_INT, "description": "expected − received: the gaps"},
    "loss_rate": {**_MAYBE_RATE, "description": "lost / expected (null when 0 expected)"},
    "seq_conflicts": {**_INT, "description": "(session, seq) carried by two event ids"},
    "events": {**_INT, "description": "distinct event ids first delivered this period"},
    "duplicates_natural": {
        **_INT,
        "description": "deliveries of an event's payload beyond its first (retries)",
    },
    "duplicates_synthetic": {
        **_INT,
        "description": "payloads of an event id beyond its first (one id reused: a client bug)",
    },
}
_CLIENT: Final[dict[str, Schema]] = {
    "library": {"type": ["string", "null"], "description": "client.library (null: none named)"},
    "version": {"type": ["string", "null"], "description": "client.library_version"},
}


def _loss_row() -> Schema:
    period = {**_DAY, "description": "the UTC day, or the week's Monday (grain week)"}
    row = _object({"day": period, **_CLIENT, **_LOSS_COUNTS})
    row["required"] = [k for k in row["required"] if k != "day"]
    row["properties"]["week"] = copy.deepcopy(period)
    row["oneOf"] = [{"required": ["day"]}, {"required": ["week"]}]
    return row


def _skew_row() -> Schema:
    period = {**_DAY, "description": "the UTC day received, or the week's Monday"}
    row = _object(
        {
            **_CLIENT,
            "events": {**_INT, "description": "events (each once) received in the period"},
            "measured": {**_INT, "description": "events with a skew: they carried sent_ts"},
            "median_skew_ms": {
                **_MAYBE_MS,
                "description": "median of received_ts − sent_ts (positive: the client's clock "
                "is behind)",
            },
            "median_abs_skew_ms": {**_MAYBE_MS, "description": "median of |skew|"},
            "p95_abs_skew_ms": {**_MAYBE_MS, "description": "95th percentile of |skew|"},
            "max_abs_skew_ms": {"type": ["integer", "null"], "description": "largest |skew|"},
            "corrected": {**_INT, "description": "events whose client_ts was corrected"},
            "corrected_share": {**_MAYBE_RATE, "description": "corrected / measured"},
        }
    )
    row["properties"] |= {"day": copy.deepcopy(period), "week": copy.deepcopy(period)}
    return row


_ALERT: Final[Schema] = _object(
    {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time", "description": "when it was evaluated"},
        "stream": _TEXT,
        "rule": {**_TEXT, "description": "the kind of rule"},
        "label": {**_TEXT, "description": "what names the rule in its stream"},
        "spec": {"type": "object", "description": "the rule's definition"},
        "fired": {"type": "boolean", "description": "whether the rule's condition held"},
        "value": {"type": ["number", "null"], "description": "what was measured"},
        "expected": {"type": ["number", "null"], "description": "what it was held against"},
        "message": _TEXT,
        "notice": {
            "type": ["string", "null"],
            "enum": ["fired", "resolved", None],
            "description": "the change this evaluation announced, if any",
        },
        "delivery": {
            "type": ["object", "null"],
            "description": "where the notice went and whether that worked (null: no notice)",
        },
    }
)

_QUALITY_SCHEMAS: Final[dict[str, Schema]] = {
    "LossReport": _object(
        {
            "grain": {"type": "string", "enum": ["day", "week"]},
            **copy.deepcopy(_REPORT_QUERY),
            "rows": {
                "type": "array",
                "items": _loss_row(),
                "description": "by day (or week), then library and version, nulls last",
            },
            "totals": _object(copy.deepcopy(_LOSS_COUNTS), "the sums of the rows"),
        }
    ),
    "SkewReport": _object(
        {
            "grain": {"type": "string", "enum": ["day", "week", "all"]},
            **copy.deepcopy(_REPORT_QUERY),
            "rows": {
                "type": "array",
                "items": _skew_row(),
                "description": "by period (none for all), then library and version, nulls last",
            },
        }
    ),
    "AlertHistory": _object(
        {
            "since": {**_MAYBE_TIME, "description": "as asked"},
            "limit": {"type": "integer", "minimum": 1},
            "stream": {"type": ["string", "null"]},
            "notices": {"type": "boolean"},
            "alerts": {"type": "array", "items": _ALERT, "description": "newest first"},
        }
    ),
}


def _query_text(name: str, description: str, schema: Schema, example: Any = None) -> Schema:
    out: Schema = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    if example is not None:
        out["example"] = example
    return out


def _report_parameters(grains: Sequence[str], default: str) -> list[Schema]:
    return [
        _query_text(
            "grain",
            "One row per "
            + " or ".join(g if g != "all" else "client over the whole range (all)" for g in grains)
            + ". Weeks start on Monday.",
            {"type": "string", "enum": list(grains), "default": default},
            default,
        ),
        _query_text(
            "from",
            "First UTC date, inclusive (YYYY-MM-DD). Default: unbounded.",
            {"type": "string", "format": "date"},
            "2026-03-01",
        ),
        _query_text(
            "to",
            "Last UTC date, inclusive (YYYY-MM-DD). Default: unbounded.",
            {"type": "string", "format": "date"},
            "2026-03-31",
        ),
        _query_text(
            "library",
            "Only this client library (client.library, exact).",
            {"type": "string"},
            "tallystick-js",
        ),
    ]


def _quality_get(
    operation: str, summary: str, description: str, schema: str, query: list[Schema], bad: str
) -> Schema:
    return {
        "get": {
            "operationId": f"get_{operation}",
            "tags": ["quality"],
            "summary": summary,
            "description": description,
            "parameters": query,
            "responses": {
                "200": _ok(summary + ".", schema),
                "400": _error(
                    f"`{messages.INVALID_QUERY}`: {bad}; the message says what to write."
                ),
                "401": _unauthorized(),
            },
            "security": copy.deepcopy(_SECURITY),
        }
    }


def _quality_paths() -> dict[str, Schema]:
    from tallystick.query.quality import ALERTS_PATH, LOSS_PATH, MAX_ALERTS, SKEW_PATH

    wrong = "a parameter is unknown, empty or wrong, or `from` is after `to`"
    alerts = _quality_get(
        "quality_alerts",
        "Alert history",
        "Evaluations of the alert rules of the streams and of the running experiments (stream "
        "experiment:KEY), newest first: what was measured, against what, whether the rule "
        "fired, and the notice it sent (fired or resolved) with where it went. Quiet "
        "evaluations are pruned after 30 days; notices are kept.",
        "AlertHistory",
        [
            _query_text(
                "since",
                "Only evaluations at or after this date (UTC midnight) or date-time.",
                {"type": "string"},
                "2026-03-01",
            ),
            _query_text(
                "limit",
                f"At most this many (1–{MAX_ALERTS}).",
                {"type": "integer", "minimum": 1, "maximum": MAX_ALERTS, "default": 200},
            ),
            _query_text(
                "stream",
                "Only this stream's rules (experiment:KEY: an experiment's).",
                {"type": "string"},
            ),
            _query_text(
                "notices",
                "Only evaluations that announced a change (fired or resolved).",
                {"type": "boolean", "default": False},
            ),
        ],
        "a parameter is unknown, empty or wrong",
    )
    alerts["get"]["responses"]["503"] = _error(
        f"`{messages.NOT_READY}`: the control-plane database could not be read just now."
    )
    return {
        LOSS_PATH: _quality_get(
            "quality_loss",
            "Loss and duplicates",
            "Per UTC day (or week) and client library version, from the per-session message "
            "index `session.seq` and the delivery ledger (exact after compaction): sessions, "
            "messages expected, received and lost, `loss_rate`, seq conflicts, events, and "
            "duplicates — natural (the same payload delivered again: retries) and synthetic "
            "(one event id with another payload: a client bug). A session counts on the day it "
            "started, an event on its first delivery. See docs/data-trust.md.",
            "LossReport",
            _report_parameters(("day", "week"), "day"),
            wrong,
        ),
        SKEW_PATH: _quality_get(
            "quality_skew",
            "Clock skew by client",
            "Per client library version (and day or week the events were received, with "
            "`grain`): events, those with a measured skew (`received_ts − sent_ts`), its median "
            "and the median, 95th percentile and maximum of its absolute value in ms, and the "
            "events whose `client_ts` the collector corrected. See docs/data-trust.md.",
            "SkewReport",
            _report_parameters(("day", "week", "all"), "all"),
            wrong,
        ),
        ALERTS_PATH: alerts,
    }


# -- experiment results --------------------------------------------------------------------------

_NUM_OR_NULL: Final[Schema] = {"type": ["number", "null"]}
_INTERVAL: Final[Schema] = {"type": "array", "items": _NUM_OR_NULL, "minItems": 2, "maxItems": 2}
_EXPERIMENT_RESULTS: Final[Schema] = {
    "type": "object",
    "description": "An experiment's readout (docs/experiments.md, Results).",
    "properties": {
        "experiment": {
            "type": "object",
            "description": "the definition (as GET /v1/experiments/{key})",
        },
        "version": {"type": ["integer", "null"], "description": "the definition's version"},
        "analysed_at": {"type": "string", "format": "date-time"},
        "window": {
            "type": "object",
            "description": "the exposures read: from the start to the stop, or `at` / now",
            "properties": {
                "start": {"type": ["string", "null"], "format": "date-time"},
                "end": {"type": "string", "format": "date-time"},
            },
        },
        "unit": {"type": "string", "enum": ["user.id", "user.anonymous_id", "session.id"]},
        "variations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "name": {"type": "string"},
                    "weight": {"type": "number"},
                    "units": {"type": "integer", "description": "units exposed"},
                    "control": {"type": "boolean"},
                },
            },
        },
        "multiple_variations": {
            "type": "integer",
            "description": "units exposed to two or more variations (left out)",
        },
        "srm": {
            "type": "object",
            "description": "sample-ratio mismatch: chi-square of the units against the weights",
            "properties": {
                "p_value": {"type": "number"},
                "flagged": {"type": "boolean"},
                "threshold": {"type": "number"},
                "expected": {"type": "object", "additionalProperties": {"type": "number"}},
                "observed": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
        "planned_sample_size": {"type": ["integer", "null"]},
        "progress": {**_NUM_OR_NULL, "description": "units exposed / planned sample size"},
        "sequential": {"type": "boolean"},
        "correction": {"type": "string", "enum": ["holm", "bh", "none"]},
        "alpha": {"type": "number"},
        "metrics": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metric": {"type": "string"},
                    "title": {"type": ["string", "null"]},
                    "role": {"type": "string", "enum": ["primary", "secondary", "guardrail"]},
                    "kind": {
                        "type": ["string", "null"],
                        "enum": ["conversion", "mean", "ratio", None],
                    },
                    "inverse": {"type": "boolean", "description": "lower is better"},
                    "error": {
                        "type": ["string", "null"],
                        "description": "why the metric is left out (no variations then)",
                    },
                    "variations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "variation": {"type": "string"},
                                "control": {"type": "boolean"},
                                "n": {"type": "integer"},
                                "mean": _NUM_OR_NULL,
                                "effect": {**_NUM_OR_NULL, "description": "relative"},
                                "ci": _INTERVAL,
                                "absolute_effect": _NUM_OR_NULL,
                                "absolute_ci": _INTERVAL,
                                "p_value": _NUM_OR_NULL,
                                "p_value_adjusted": _NUM_OR_NULL,
                                "chance_to_win": _NUM_OR_NULL,
                                "risk": {
                                    "type": "object",
                                    "properties": {
                                        "control": _NUM_OR_NULL,
                                        "treatment": _NUM_OR_NULL,
                                    },
                                },
                                "status": {
                                    "type": "string",
                                    "enum": ["ok", "no_units", "zero_variance", "baseline_zero"],
                                },
                                "significant": {"type": "boolean"},
                                "verdict": {
                                    "type": "string",
                                    "enum": ["better", "worse", "inconclusive"],
                                },
                            },
                        },
                    },
                },
            },
        },
        "exposures": {
            "type": "array",
            "description": "units newly exposed per UTC day: {day, <variation key>: units, ...}",
            "items": {
                "type": "object",
                "properties": {"day": {"type": "string", "format": "date"}},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def _experiment_results_operations() -> Schema:
    return {
        "get": {
            "operationId": "get_experiment_results",
            "tags": ["experiments"],
            "summary": "An experiment's results",
            "description": (
                "The readout of experiment `key` from the lake: units exposed per variation, the "
                "sample-ratio-mismatch check, the planned sample size and the progress towards "
                "it, and per metric and variation the effect against the control with its "
                "interval, p-values, chance to win and verdict; the units exposed per day; "
                "warnings. The same document as `tally experiments analyze KEY --format json`."
            ),
            "parameters": [
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "description": "The experiment's key (`GET /v1/experiments` lists them).",
                    "schema": {"type": "string"},
                    "example": "signin-dialog",
                },
                {
                    "name": "at",
                    "in": "query",
                    "required": False,
                    "description": "Read as of this instant (ISO-8601; default now).",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "include_bots",
                    "in": "query",
                    "required": False,
                    "description": param("include_bots").description,
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": _ok("The readout.", "ExperimentResults"),
                "400": _error(f"`{messages.INVALID_QUERY}`: `at` or `include_bots` is wrong."),
                "401": _unauthorized(),
                "404": _error(
                    f"`{messages.NOT_FOUND}`: no such experiment (the message suggests a key)."
                ),
                "500": _error(f"`{messages.QUERY_FAILED}`: the engine could not run the query."),
                "503": _error(
                    f"`{messages.NOT_READY}`: the control-plane database could not be read."
                ),
            },
            "security": copy.deepcopy(_SECURITY),
        }
    }
