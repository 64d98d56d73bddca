"""The control-plane API's part of the OpenAPI 3.1 document (``/openapi.json``): its paths, the
schemas of what it takes and answers, and the admin key as a security scheme. Pure data; the
query API's ``openapi.document`` merges it in.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from tallystick import messages
from tallystick.control.curation import OPS
from tallystick.control.definitions import (
    ALERT_RULES,
    CHECK_TYPES,
    CONTEXT_GROUPS,
    KEY_TYPES,
    MATERIALIZATIONS,
)
from tallystick.control.sampling import UNIT_FIELDS

Schema = dict[str, Any]

TAGS: Final = [
    {"name": "admin", "description": "The control plane: streams, data models, configuration"},
    {"name": "catalog-admin", "description": "Streams, models and fields as the catalog sees them"},
    {"name": "flags", "description": "Feature flags for SDKs and servers: the ruleset, evaluation"},
    {"name": "experiments", "description": "Experiment definitions and their lifecycle"},
]
SECURITY_SCHEMES: Final[Schema] = {
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin key (`tally keys create --kind admin`, or the server's "
        "`admin_key` setting), once one exists; until then, changes are taken from loopback "
        "clients only. See docs/access.md.",
    }
}
_ADMIN_SECURITY: Final[list[dict[str, list[str]]]] = [{"adminKey": []}, {"readKey": []}, {}]
_READ_SECURITY: Final[list[dict[str, list[str]]]] = [{"readKey": []}, {"adminKey": []}, {}]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


_TEXT: Final[Schema] = {"type": "string"}
_TEXTS: Final[Schema] = {"type": "array", "items": _TEXT}
_INT: Final[Schema] = {"type": "integer", "minimum": 0}
_TIME: Final[Schema] = {"type": "string", "format": "date-time"}
_MAYBE_TIME: Final[Schema] = {"type": ["string", "null"], "format": "date-time"}
_NAME: Final[Schema] = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}


def _object(
    properties: dict[str, Schema], required: list[str] | None = None, *, closed: bool = True
) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": not closed,
    }


_STREAM_DEFINITION: Final[dict[str, Schema]] = {
    "name": _NAME,
    "description": _TEXT,
    "owner": {"type": ["string", "null"]},
    "events": {
        **_TEXTS,
        "description": "event names (signin.open) and prefixes (signin.*, or * for all)",
    },
    "sample": {
        "type": ["object", "null"],
        "properties": {
            "unit": {"type": "string", "enum": list(UNIT_FIELDS), "default": "session"},
            "rate": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["rate"],
        "additionalProperties": False,
    },
    "enabled": {"type": "boolean", "default": True},
    "starts": {**_MAYBE_TIME, "description": "a date or time; a date means its midnight, UTC"},
    "expires": {**_MAYBE_TIME, "description": "a date or time; expired streams stop collecting"},
    "keep": {
        "type": ["array", "null"],
        "items": _TEXT,
        "description": "contextual attributes stored: "
        + ", ".join(CONTEXT_GROUPS)
        + " or a field inside one (page.url); absent: all",
    },
    "curation": {
        "type": "array",
        "items": _object(
            {"field": _TEXT, "op": {"type": "string", "enum": list(OPS)}, "value": {}}
        ),
        "description": "rules: an event that matches one is dropped",
    },
    "retention_days": {"type": ["integer", "null"], "minimum": 1},
    "alerts": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "rule": {"type": "string", "enum": list(ALERT_RULES)},
                "window_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 168},
                "drop": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                "spike": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "weeks": {"type": "integer", "minimum": 1},
                "keys": {
                    "oneOf": [
                        {
                            "type": "object",
                            "additionalProperties": {"type": "string", "enum": list(KEY_TYPES)},
                        },
                        _TEXTS,
                    ],
                    "description": "keys every event must have: {field: type}, or a list",
                },
                "max_rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                "min_events": {"type": "integer", "minimum": 1},
            },
            "required": ["rule"],
            "additionalProperties": False,
        },
        "description": "alert rules: volume, keys, failed_rate, loss_rate (docs/data-trust.md)",
    },
}
_STREAM_EXTRA: Final[dict[str, Schema]] = {
    "status": {"type": "string", "enum": ["collecting", "disabled", "expired", "scheduled"]},
    "created_at": _MAYBE_TIME,
    "updated_at": _MAYBE_TIME,
    "expires_in_days": {
        "type": ["integer", "null"],
        "description": "whole days until it expires (negative once expired); null: never",
    },
}
_VOLUME: Final[Schema] = _object(
    {"last_7_days": _INT, "last_28_days": _INT},
)
_MODEL_FIELD: Final[Schema] = {
    "oneOf": [
        {"type": "string", "description": "a lake field (user.id) or data.<key>"},
        _object({"field": _TEXT, "as": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"}}),
    ]
}
_CHECK: Final[Schema] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(CHECK_TYPES)},
        "field": _TEXT,
        "values": {"type": "array"},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "max_age_hours": {"type": "number", "exclusiveMinimum": 0},
        "max_change": {"type": "number", "exclusiveMinimum": 0},
    },
    "required": ["type"],
    "additionalProperties": False,
}
_MODEL_DEFINITION: Final[dict[str, Schema]] = {
    "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
    "stream": _NAME,
    "description": _TEXT,
    "owner": {"type": ["string", "null"]},
    "materialize": {"type": "string", "enum": list(MATERIALIZATIONS), "default": "view"},
    "fields": {"type": "array", "items": _MODEL_FIELD, "minItems": 1},
    "checks": {"type": "array", "items": _CHECK},
}
_CHANGE: Final[Schema] = _object(
    {
        "kind": {"type": "string", "enum": ["stream", "model", "setting"]},
        "name": _TEXT,
        "action": {"type": "string", "enum": ["create", "update", "delete"]},
        "changed": {**_TEXTS, "description": "the settings that differ"},
        "before": {"type": ["object", "null"], "description": "null when created"},
        "after": {"type": ["object", "null"], "description": "null when deleted"},
    }
)
_CHECK_RESULT: Final[Schema] = _object(
    {
        "target_kind": {"type": "string", "enum": ["model", "stream"]},
        "target": _TEXT,
        "check": {**_TEXT, "description": "the check's label: not_null(user_id)"},
        "spec": {"type": "object", "description": "the check as defined"},
        "passed": {"type": "boolean"},
        "failing": {**_INT, "description": "rows that break it"},
        "checked": {**_INT, "description": "rows checked"},
        "message": {**_TEXT, "description": "what was found, naming the failure precisely"},
        "examples": {"type": ["array", "null"], "description": "a few failing values"},
        "ran_at": _MAYBE_TIME,
    }
)


_QUARANTINE_RULE: Final[Schema] = _object(
    {
        "id": _INT,
        "kind": {"type": "string", "enum": ["user", "session", "ip", "where"]},
        "field": {**_TEXT, "description": "the field compared: user.id, geo.network, data.plan…"},
        "value": {**_TEXT, "description": "the id, the network (CIDR) or the field's value"},
        "from": {**_MAYBE_TIME, "description": "only events with client_ts from then on"},
        "to": {**_MAYBE_TIME, "description": "only events with client_ts before then"},
        "matches": {**_TEXT, "description": "the rule in words"},
        "reason": _TEXT,
        "active": {"type": "boolean", "description": "false once lifted"},
        "created_at": _TIME,
        "created_by": _TEXT,
        "lifted_at": _MAYBE_TIME,
        "lifted_by": {"type": ["string", "null"]},
        "purged_at": {
            **_MAYBE_TIME,
            "description": "when `tally purge` last deleted what it matched from the lake",
        },
        "events": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "events the rule matches in the lake now (null once lifted)",
        },
    },
    [
        "id",
        "kind",
        "field",
        "value",
        "from",
        "to",
        "matches",
        "reason",
        "active",
        "created_at",
        "created_by",
        "lifted_at",
        "lifted_by",
        "purged_at",
    ],
)
_NEW_QUARANTINE: Final[Schema] = {
    "type": "object",
    "properties": {
        "user": {**_TEXT, "description": "a user.id"},
        "session": {**_TEXT, "description": "a session.id"},
        "ip": {
            **_TEXT,
            "description": "a network in CIDR notation, /24 or wider (IPv4), /48 or wider "
            "(IPv6): the lake keeps clients' networks, never addresses",
        },
        "where": {**_TEXT, "description": "FIELD=VALUE, such as app.version=1.4.2"},
        "from": {**_TEXT, "description": "a date or time (client_ts); a date is its midnight, UTC"},
        "to": {**_TEXT, "description": "a date (up to the end of that day, UTC) or a time"},
        "reason": {**_TEXT, "minLength": 1, "maxLength": 500},
    },
    "required": ["reason"],
    "oneOf": [{"required": [k]} for k in ("user", "session", "ip", "where")],
    "additionalProperties": False,
}
_BLOCK: Final[Schema] = _object(
    {
        "id": _INT,
        "network": {**_TEXT, "description": "CIDR, normalised"},
        "reason": _TEXT,
        "active": {"type": "boolean", "description": "false once removed"},
        "created_at": _TIME,
        "created_by": _TEXT,
        "removed_at": _MAYBE_TIME,
        "removed_by": {"type": ["string", "null"]},
        "requests_refused": {**_INT, "description": "requests the block refused (lake counts)"},
        "last_hit": _MAYBE_TIME,
    },
    ["id", "network", "reason", "active", "created_at", "created_by", "removed_at", "removed_by"],
)


_DELETION: Final[Schema] = _object(
    {
        "id": _INT,
        "subject_hash": {
            **_TEXT,
            "description": "keyed hash (HMAC-SHA-256) of the user id: never the id itself",
        },
        "status": {"type": "string", "enum": ["pending", "done", "failed"]},
        "requested_at": _TIME,
        "requested_by": _TEXT,
        "done_at": _MAYBE_TIME,
        "report": {
            "type": ["object", "null"],
            "description": "what was removed (numbers only): event_rows, ledger_rows, "
            "failed_rows, files_rewritten, files_deleted, session_tracks, metrics_recomputed, "
            "models_rebuilt, stale, …",
        },
        "message": {"type": ["string", "null"]},
    },
    ["id", "subject_hash", "status", "requested_at", "requested_by", "done_at", "report"],
)


_API_KEY: Final[Schema] = _object(
    {
        "id": _INT,
        "kind": {"type": "string", "enum": ["write", "read", "admin"]},
        "name": _TEXT,
        "prefix": {**_TEXT, "description": "the key's first characters (never the key)"},
        "app": {"type": ["string", "null"], "description": "a write key's app"},
        "origins": {**_TEXTS, "description": "browser origins a write key may send from"},
        "streams": {**_TEXTS, "description": "private streams a read key may read (`*`: all)"},
        "created_at": _TIME,
        "created_by": _TEXT,
        "revoked_at": _MAYBE_TIME,
        "revoked_by": {"type": ["string", "null"]},
        "last_used_at": {**_MAYBE_TIME, "description": "recorded at most once a minute"},
        "status": {"type": "string", "enum": ["active", "revoked"]},
    }
)
_NEW_KEY: Final[Schema] = _object(
    {
        "kind": {"type": "string", "enum": ["write", "read", "admin"]},
        "name": {**_TEXT, "minLength": 1},
        "app": {**_TEXT, "description": "required for write keys"},
        "origins": {**_TEXTS, "description": "write keys: scheme://host[:port] each"},
        "streams": {**_TEXTS, "description": "read keys: private streams granted (`*`: all)"},
    },
    ["kind", "name"],
)


def _with(definition: dict[str, Schema], extra: dict[str, Schema], required: list[str]) -> Schema:
    return _object({**copy.deepcopy(definition), **extra}, required)


def schemas() -> dict[str, Schema]:
    """The component schemas of the control-plane API."""
    stream = _with(_STREAM_DEFINITION, _STREAM_EXTRA, ["name", "events", "enabled", *_STREAM_EXTRA])
    model = _with(
        _MODEL_DEFINITION, {"built_at": _MAYBE_TIME}, ["name", "stream", "materialize", "fields"]
    )
    catalog_stream = copy.deepcopy(stream)
    catalog_stream["properties"]["volume"] = _ref("Volume")
    catalog_stream["required"].append("volume")
    catalog_model = copy.deepcopy(model)
    catalog_model["properties"] |= {
        "results": {"type": "array", "items": _ref("CheckResult")},
        "failing": {**_INT, "description": "checks whose latest result failed"},
    }
    catalog_model["required"] += ["results", "failing"]
    changes = {"type": "array", "items": _ref("Change")}
    return {
        "StreamDefinition": _object(copy.deepcopy(_STREAM_DEFINITION), ["name"], closed=False),
        "Stream": stream,
        "Streams": _object(
            {"unrouted_stream": _NAME, "streams": {"type": "array", "items": _ref("Stream")}}
        ),
        "StreamChanged": _object({"stream": _ref("Stream"), "changes": changes}),
        "QuarantineRule": copy.deepcopy(_QUARANTINE_RULE),
        "QuarantineRules": _object({"rules": {"type": "array", "items": _ref("QuarantineRule")}}),
        "QuarantineRuleChanged": _object({"rule": _ref("QuarantineRule")}),
        "NewQuarantineRule": copy.deepcopy(_NEW_QUARANTINE),
        "Block": copy.deepcopy(_BLOCK),
        "Blocks": _object({"blocks": {"type": "array", "items": _ref("Block")}}),
        "BlockChanged": _object({"block": _ref("Block")}),
        "ApiKey": copy.deepcopy(_API_KEY),
        "ApiKeys": _object({"keys": {"type": "array", "items": _ref("ApiKey")}}),
        "ApiKeyChanged": _object({"key": _ref("ApiKey")}),
        "ApiKeyCreated": _object(
            {
                "key": _ref("ApiKey"),
                "secret": {**_TEXT, "description": "the key itself: shown this once, never again"},
            }
        ),
        "NewApiKey": copy.deepcopy(_NEW_KEY),
        "Deletion": copy.deepcopy(_DELETION),
        "DeletionRequested": _object({"deletion": _ref("Deletion")}),
        "Deletions": _object({"deletions": {"type": "array", "items": _ref("Deletion")}}),
        "ModelDefinition": _object(
            copy.deepcopy(_MODEL_DEFINITION), ["name", "stream", "fields"], closed=False
        ),
        "Model": model,
        "Models": _object({"models": {"type": "array", "items": _ref("Model")}}),
        "ModelChanged": _object({"model": _ref("Model"), "changes": changes}),
        "Deleted": _object(
            {
                "deleted": _object(
                    {"kind": {"type": "string", "enum": ["stream", "model"]}, "name": _TEXT}
                ),
                "changes": changes,
                "dropped_view": {
                    "type": "boolean",
                    "description": "a deleted model's view and snapshot were removed",
                },
                "warning": {
                    **_TEXT,
                    "description": "why a deleted model's view stays until the next build",
                },
            },
            ["deleted", "changes"],
        ),
        "Change": _CHANGE,
        "CheckResult": _CHECK_RESULT,
        "Checks": _object({"checks": {"type": "array", "items": _ref("CheckResult")}}),
        "AuditLog": _object(
            {
                "entries": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": _INT,
                            "at": _TIME,
                            "actor": {
                                **_TEXT,
                                "description": "http:admin-key, http:loopback, or cli:<user>",
                            },
                            "action": {
                                **_TEXT,
                                "description": "create, update, delete, renew, enable, "
                                "disable, apply",
                            },
                            "kind": {
                                "type": "string",
                                "enum": [
                                    "stream",
                                    "model",
                                    "setting",
                                    "block",
                                    "quarantine",
                                    "deletion",
                                    "retention",
                                    "flags",
                                    "experiments",
                                ],
                            },
                            "name": _TEXT,
                            "changed": _TEXTS,
                            "before": {"type": ["object", "null"]},
                            "after": {"type": ["object", "null"]},
                            "version": {
                                **_INT,
                                "description": "the configuration version it made",
                            },
                        }
                    ),
                    "description": "newest first",
                }
            }
        ),
        "Configuration": _object(
            {
                "version": {"type": "integer", "const": 1},
                "unrouted_stream": _NAME,
                "streams": {"type": "array", "items": _ref("StreamDefinition")},
                "models": {"type": "array", "items": _ref("ModelDefinition")},
            },
            [],
        ),
        "Plan": _object({"summary": _TEXT, "changes": changes}),
        "Applied": _object(
            {
                "applied": {"type": "boolean", "description": "false: nothing to change"},
                "summary": _TEXT,
                "changes": changes,
                "version": {**_INT, "description": "the configuration version now"},
            }
        ),
        "Volume": _VOLUME,
        "CatalogStreams": _object(
            {
                "today": {"type": "string", "format": "date"},
                "unrouted_stream": _NAME,
                "streams": {"type": "array", "items": catalog_stream},
                "other": {
                    "type": "array",
                    "items": _object({"stream": {"type": ["string", "null"]}, "volume": _VOLUME}),
                    "description": "streams in the lake that are not defined: the unrouted "
                    "stream, deleted streams, null for events stored before streams existed",
                },
            }
        ),
        "Fields": _object(
            {
                "q": {**_TEXT, "description": 'the search text given ("" for none)'},
                "total": {**_INT, "description": "fields in the catalog, before the search"},
                "fields": {
                    "type": "array",
                    "items": _object(
                        {
                            "name": {**_TEXT, "description": "page.url, or data.<key>"},
                            "kind": {"type": "string", "enum": ["column", "data"]},
                            "type": _TEXT,
                            "first_seen": _TIME,
                            "last_seen": _TIME,
                            "events": _INT,
                            "per_day": {"type": "number", "minimum": 0},
                            "weekly": {
                                "type": "array",
                                "items": _object(
                                    {"week": {"type": "string", "format": "date"}, "events": _INT}
                                ),
                            },
                            "change_pct": {"type": ["number", "null"]},
                            "trend": _TEXT,
                            "event_names": _TEXTS,
                            "streams": _TEXTS,
                            "distinct": _INT,
                            "examples": {**_TEXTS, "description": "personal data redacted"},
                            "personal": {
                                "type": ["string", "null"],
                                "description": "why it looks personal",
                            },
                            "in_lake": {"type": "boolean"},
                        },
                        ["name", "type", "first_seen", "last_seen", "trend", "examples"],
                        closed=False,
                    ),
                    "description": "by name, or best match first with `q`",
                },
            }
        ),
        "SearchHits": _object(
            {
                "q": _TEXT,
                "kinds": {"type": "array", "items": {"enum": ["metric", "stream", "field"]}},
                "hits": {
                    "type": "array",
                    "items": _object(
                        {
                            "kind": {"type": "string", "enum": ["metric", "stream", "field"]},
                            "name": _TEXT,
                            "summary": _TEXT,
                            "score": _INT,
                            "matched": {**_TEXTS, "description": "where the words were found"},
                        }
                    ),
                    "description": "best first",
                },
            }
        ),
        "CatalogModels": _object(
            {
                "models": {
                    "type": "array",
                    "items": catalog_model,
                    "description": "models with failing checks first",
                }
            }
        ),
        **_experiment_schemas(),
    }


# -- paths -------------------------------------------------------------------------------------


def _name(what: str) -> Schema:
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": f"The {what}'s name.",
        "schema": _NAME,
    }


def _deletion_request() -> Schema:
    requested = _json(_ref("DeletionRequested"), "The request, pending already (asked before).")
    operation = _operation(
        "delete_user",
        "admin",
        "Delete a user",
        "Record a request to delete the user whose events carry `user_id` (as sent; its "
        "pseudonyms are found too): the server's loader removes their events from the lake, "
        "the delivery ledger, the failed events and the spool within seconds, and their later "
        "events are not stored. Answers 202 with the request (poll "
        "`GET /v1/admin/deletions/{id}`), 200 when a pending request for the user exists. "
        "Only a keyed hash of the id is kept. See docs/retention.md.",
        requested,
        write=True,
        body=_body(_object({"user_id": {**_TEXT, "minLength": 1}}), {"user_id": "u-123"}),
        errors={"400": _INVALID},
    )
    operation["responses"]["202"] = _json(_ref("DeletionRequested"), "The request, recorded.")
    operation["responses"] = dict(sorted(operation["responses"].items()))
    return operation


def _id(what: str) -> Schema:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 1},
    }


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_UNAUTHORIZED: Final = (
    f"`{messages.UNAUTHORIZED}`: an admin key exists (or, for reads without one, a read key) "
    "and the request carried none, an unknown or a revoked one as `Authorization: Bearer <key>`."
)
_FORBIDDEN: Final = (
    f"`{messages.FORBIDDEN}`: a key of the wrong kind (a write key; a read key once an admin key "
    "exists), or a change from another machine while the server has no admin key."
)
_INVALID: Final = (
    f"`{messages.INVALID_DEFINITION}`: the definition is wrong; the message and `where` name the "
    f"place (`sample.rate`). `{messages.MALFORMED_JSON}`: the body is not JSON. "
    f"`{messages.INVALID_QUERY}`: the body is not an object."
)


def _operation(
    operation: str,
    tag: str,
    summary: str,
    description: str,
    ok: Schema,
    *,
    write: bool = False,
    admin: bool = True,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    errors: dict[str, str] | None = None,
) -> Schema:
    responses: Schema = {"200": ok}
    if write and body is not None and body.get("x-creates"):
        responses["201"] = copy.deepcopy(ok) | {"description": "Created. " + ok["description"]}
    for status, text in (errors or {}).items():
        responses[status] = _error(text)
    responses["401"] = _error(_UNAUTHORIZED)
    if write:
        responses["403"] = _error(_FORBIDDEN)
    out: Schema = {
        "operationId": operation,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "responses": dict(sorted(responses.items())),
        "security": copy.deepcopy(_ADMIN_SECURITY if admin else _READ_SECURITY),
    }
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {k: v for k, v in body.items() if k != "x-creates"}
    return out


def _body(schema: Schema, example: Any, *, creates: bool = False, required: bool = True) -> Schema:
    return {
        "required": required,
        "content": {"application/json": {"schema": schema, "example": example}},
        "x-creates": creates,
    }


_STREAM_EXAMPLE: Final = {
    "name": "product",
    "owner": "product-team",
    "events": ["project.*", "dataset.create"],
    "sample": {"unit": "session", "rate": 0.1},
    "expires": "2027-03-01",
    "retention_days": 400,
}
_MODEL_EXAMPLE: Final = {
    "name": "commits",
    "stream": "product",
    "fields": ["user.id", {"field": "data.files", "as": "files"}],
    "checks": [{"type": "not_null", "field": "user_id"}],
}
_CONFIG_BODY: Final[Schema] = {
    "required": True,
    "content": {
        "application/json": {"schema": _ref("Configuration")},
        "application/yaml": {
            "schema": {"type": "string", "description": "what `tally config export` writes"}
        },
    },
}
_NOT_FOUND: Final = f"`{messages.NOT_FOUND}`: no such definition."
_FLAGS_RULESET: Final[Schema] = {
    "type": "object",
    "description": "a feature-flags ruleset: environments, segments, flags (docs/flags.md)",
}
_CONFLICT: Final = f"`{messages.CONFLICT}`: it clashes with what exists (the message says how)."


def paths() -> dict[str, Schema]:
    """The control-plane API's paths."""
    stream_ok = _json(_ref("StreamChanged"), "The stream as it is now, and what changed.")
    model_ok = _json(_ref("ModelChanged"), "The model as it is now, and what changed.")
    deleted = _json(_ref("Deleted"), "What was deleted.")
    write_errors = {"400": _INVALID, "404": _NOT_FOUND, "409": _CONFLICT}
    return {
        "/v1/admin/streams": {
            "get": _operation(
                "list_streams",
                "admin",
                "The streams",
                "Every stream's definition with its status now (collecting, disabled, expired, "
                "scheduled), when it was created and last changed, and the days until it expires.",
                _json(_ref("Streams"), "The streams, by name."),
            ),
            "post": _operation(
                "create_stream",
                "admin",
                "Create a stream",
                "Refused (409) when a stream of that name exists.",
                stream_ok,
                write=True,
                body=_body(_ref("StreamDefinition"), _STREAM_EXAMPLE, creates=True),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
        },
        "/v1/admin/streams/{name}": {
            "parameters": [_name("stream")],
            "get": _operation(
                "get_stream",
                "admin",
                "One stream",
                "As the list shows it.",
                _json(_ref("Stream"), "The stream."),
                errors={"404": _NOT_FOUND},
            ),
            "put": _operation(
                "put_stream",
                "admin",
                "Create or replace a stream",
                "The body is the whole definition (its `name`, if given, must be the path's). "
                "Read-only keys of an answer (status, times) are ignored, so a GET's answer can "
                "be edited and sent back.",
                stream_ok,
                write=True,
                body=_body(_ref("StreamDefinition"), _STREAM_EXAMPLE, creates=True),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
            "patch": _operation(
                "patch_stream",
                "admin",
                "Change some settings of a stream",
                "Only the settings given change; `null` removes one.",
                stream_ok,
                write=True,
                body=_body({"type": "object"}, {"owner": "web-team", "retention_days": 90}),
                errors=write_errors,
            ),
            "delete": _operation(
                "delete_stream",
                "admin",
                "Delete a stream",
                "Refused (409) while a model reads it.",
                deleted,
                write=True,
                errors={"404": _NOT_FOUND, "409": _CONFLICT},
            ),
        },
        "/v1/admin/streams/{name}/renew": {
            "parameters": [_name("stream")],
            "post": _operation(
                "renew_stream",
                "admin",
                "Renew a stream",
                "Sets its expiry to `until` (a future date or time) or to `days` from now; an "
                "expired stream collects again.",
                stream_ok,
                write=True,
                body=_body(
                    {
                        "oneOf": [
                            _object({"until": {"type": "string", "format": "date"}}),
                            _object({"days": {"type": "integer", "minimum": 1, "maximum": 3660}}),
                        ]
                    },
                    {"until": "2027-03-01"},
                ),
                errors=write_errors,
            ),
        },
        "/v1/admin/streams/{name}/enable": {
            "parameters": [_name("stream")],
            "post": _operation(
                "enable_stream",
                "admin",
                "Enable a stream",
                "No body.",
                stream_ok,
                write=True,
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/streams/{name}/disable": {
            "parameters": [_name("stream")],
            "post": _operation(
                "disable_stream",
                "admin",
                "Disable a stream",
                "No body. A disabled stream stores nothing until enabled.",
                stream_ok,
                write=True,
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/models": {
            "get": _operation(
                "list_models",
                "admin",
                "The data models",
                "Every model's definition and when it was last built.",
                _json(_ref("Models"), "The models, by name."),
            ),
            "post": _operation(
                "create_model",
                "admin",
                "Create a data model",
                "Its stream must exist.",
                model_ok,
                write=True,
                body=_body(_ref("ModelDefinition"), _MODEL_EXAMPLE, creates=True),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
        },
        "/v1/admin/models/{name}": {
            "parameters": [_name("model")],
            "get": _operation(
                "get_model",
                "admin",
                "One data model",
                "Its definition and when it was last built.",
                _json(_ref("Model"), "The model."),
                errors={"404": _NOT_FOUND},
            ),
            "put": _operation(
                "put_model",
                "admin",
                "Create or replace a data model",
                "The body is the whole definition.",
                model_ok,
                write=True,
                body=_body(_ref("ModelDefinition"), _MODEL_EXAMPLE, creates=True),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
            "delete": _operation(
                "delete_model",
                "admin",
                "Delete a data model",
                "Its definition goes; what was built stays until the next build.",
                deleted,
                write=True,
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/models/{name}/build": {
            "parameters": [_name("model")],
            "post": _operation(
                "build_model",
                "admin",
                "Build a data model",
                "Materialises it in the engine as a view or a table, as `tally models build`.",
                _json({"type": "object"}, "What was built."),
                write=True,
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/models/{name}/check": {
            "parameters": [_name("model")],
            "post": _operation(
                "check_model",
                "admin",
                "Run a data model's checks",
                "Runs its quality checks now and stores the results, as `tally models check`.",
                _json({"type": "object"}, "The results."),
                write=True,
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/quarantine": {
            "get": _operation(
                "list_quarantine",
                "admin",
                "Quarantine rules",
                "The rules in force (every one with `all=true`), oldest first, each with the "
                "events it matches in the lake now. Analyses leave those events out.",
                _json(_ref("QuarantineRules"), "The rules."),
                parameters=[_query("all", "Include lifted rules.", {"type": "boolean"})],
                errors={"400": f"`{messages.INVALID_QUERY}`: a parameter is wrong."},
            ),
            "post": _operation(
                "add_quarantine",
                "admin",
                "Quarantine data",
                "Leave out of every analysis the events of a user, a session, a network or "
                "with a field's value (optionally only with client_ts in `from`..`to`), as "
                "`tally quarantine add`. Applies from the next analysis; reversible (lift). "
                "Refused (409) when the same rule is in force.",
                _json(_ref("QuarantineRuleChanged"), "The rule."),
                write=True,
                body=_body(
                    _ref("NewQuarantineRule"),
                    {"user": "u-123", "reason": "load-test account", "from": "2026-03-01"},
                    creates=True,
                ),
                errors={
                    "400": _INVALID + " A network narrower than /24 (/48) is refused: the lake "
                    "keeps clients' networks, never addresses.",
                    "409": _CONFLICT,
                },
            ),
        },
        "/v1/admin/quarantine/{id}/lift": {
            "parameters": [_id("quarantine rule")],
            "post": _operation(
                "lift_quarantine",
                "admin",
                "Lift a quarantine rule",
                "No body. Its events count again from the next analysis, except what "
                "`tally purge` deleted; the rule stays listed (`all=true`).",
                _json(_ref("QuarantineRuleChanged"), "The rule, lifted."),
                write=True,
                errors={"404": _NOT_FOUND, "409": f"`{messages.CONFLICT}`: lifted already."},
            ),
        },
        "/v1/admin/blocks": {
            "get": _operation(
                "list_blocks",
                "admin",
                "Blocked IP ranges",
                "The blocks in force (every one with `all=true`), with the requests each "
                "refused and the time of the last one, as `tally block list`.",
                _json(_ref("Blocks"), "The blocks."),
                parameters=[_query("all", "Include removed blocks.", {"type": "boolean"})],
                errors={"400": f"`{messages.INVALID_QUERY}`: a parameter is wrong."},
            ),
            "post": _operation(
                "add_block",
                "admin",
                "Block an IP range",
                "The collector answers requests from the network with 403 and counts them; "
                "running collectors apply it within `control_poll_seconds`. Refused (409) when "
                "the network is blocked already.",
                _json(_ref("BlockChanged"), "The block."),
                write=True,
                body=_body(
                    _object({"network": _TEXT, "reason": {**_TEXT, "minLength": 1}}),
                    {"network": "203.0.113.0/24", "reason": "scraper"},
                    creates=True,
                ),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
        },
        "/v1/admin/blocks/{id}": {
            "parameters": [_id("block")],
            "delete": _operation(
                "remove_block",
                "admin",
                "Remove an IP block",
                "Collectors take requests from the network again; the block stays listed "
                "(`all=true`) with its counts.",
                _json(_ref("BlockChanged"), "The block, removed."),
                write=True,
                errors={"404": _NOT_FOUND, "409": f"`{messages.CONFLICT}`: removed already."},
            ),
        },
        "/v1/admin/keys": {
            "get": _operation(
                "list_keys",
                "admin",
                "API keys",
                "Every key, as `tally keys list`: kind, name, prefix, grants, when made and last "
                "used, status. Never the keys themselves. Needs an admin key (or, while the "
                "server has none, a loopback client in open mode).",
                _json(_ref("ApiKeys"), "The keys."),
                parameters=[
                    _query("all", "Include revoked keys (default true).", {"type": "boolean"})
                ],
                errors={"400": f"`{messages.INVALID_QUERY}`: a parameter is wrong."},
            ),
            "post": _operation(
                "create_key",
                "admin",
                "Create an API key",
                "As `tally keys create`. The answer carries the key itself (`secret`) this once "
                "(`Cache-Control: no-store`); the control plane keeps only its hash.",
                _json(_ref("ApiKeyCreated"), "The key, with its secret."),
                write=True,
                body=_body(
                    _ref("NewApiKey"),
                    {"kind": "read", "name": "alice", "streams": ["deals"]},
                    creates=True,
                ),
                errors={"400": _INVALID},
            ),
        },
        "/v1/admin/keys/{id}": {
            "parameters": [_id("key")],
            "delete": _operation(
                "revoke_key",
                "admin",
                "Revoke an API key",
                "As `tally keys revoke`: the very next request with the key fails, on every "
                "server process, and its dashboard sessions end. The key stays listed.",
                _json(_ref("ApiKeyChanged"), "The key, revoked."),
                write=True,
                errors={"404": _NOT_FOUND, "409": f"`{messages.CONFLICT}`: revoked already."},
            ),
        },
        "/v1/admin/users/delete": {
            "post": _deletion_request(),
        },
        "/v1/admin/deletions": {
            "get": _operation(
                "list_deletions",
                "admin",
                "User-deletion requests",
                "The requests to delete a user, newest first: status, who asked and when, and "
                "what was removed. The user id is never kept: a keyed hash stands for it.",
                _json(_ref("Deletions"), "The requests."),
                parameters=[
                    _query(
                        "status",
                        "Only requests with this status.",
                        {"type": "string", "enum": ["pending", "done", "failed"]},
                    ),
                    _query("limit", "At most this many (1 to 1000; 100).", _INT),
                ],
                errors={"400": f"`{messages.INVALID_QUERY}`: a parameter is wrong."},
            ),
        },
        "/v1/admin/deletions/{id}": {
            "parameters": [_id("deletion request")],
            "get": _operation(
                "get_deletion",
                "admin",
                "One user-deletion request",
                "Its status (pending until the server's loader has carried it out, within "
                "seconds) and what was removed.",
                _json(_ref("DeletionRequested"), "The request."),
                errors={"404": _NOT_FOUND},
            ),
        },
        "/v1/admin/checks": {
            "get": _operation(
                "list_checks",
                "admin",
                "Latest check results",
                "The newest result of every quality check, failed ones first.",
                _json(_ref("Checks"), "The results."),
                parameters=[_query("target", "Only this model's (or stream's) checks.", _TEXT)],
            ),
        },
        "/v1/admin/audit-log": {
            "get": _operation(
                "audit_log",
                "admin",
                "The audit log",
                "Every change to the configuration, newest first: who made it (the actor), "
                "when, and the definition before and after.",
                _json(_ref("AuditLog"), "The entries."),
                parameters=[
                    _query(
                        "kind",
                        "stream, model, setting, block (IP blocks), quarantine, deletion (user "
                        "deletions), retention or flags",
                        {
                            "enum": [
                                "stream",
                                "model",
                                "setting",
                                "block",
                                "quarantine",
                                "deletion",
                                "retention",
                                "flags",
                                "experiments",
                            ]
                        },
                    ),
                    _query("name", "One definition's changes.", _TEXT),
                    _query(
                        "limit",
                        "At most this many (default 100).",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                    ),
                ],
                errors={"400": f"`{messages.INVALID_QUERY}`: a parameter is wrong."},
            ),
        },
        "/v1/admin/config": {
            "get": _operation(
                "get_config",
                "admin",
                "The whole configuration",
                "What `tally config export` writes: as JSON, or as YAML with `format=yaml`.",
                {
                    "description": "The configuration.",
                    "content": {
                        "application/json": {"schema": _ref("Configuration")},
                        "application/yaml": {"schema": {"type": "string"}},
                    },
                },
                parameters=[_query("format", "json (default) or yaml", {"enum": ["json", "yaml"]})],
                errors={"400": f"`{messages.INVALID_QUERY}`: an unknown format."},
            ),
        },
        "/v1/admin/config/plan": {
            "post": _operation(
                "plan_config",
                "admin",
                "Plan a configuration",
                "What applying the document (JSON, or YAML with a YAML content type) would "
                "change; nothing changes.",
                _json(_ref("Plan"), "The changes, each with its definition before and after."),
                write=True,
                body=_CONFIG_BODY,
                errors={"400": _INVALID + " A YAML document's error also has its `line`."},
            ),
        },
        "/v1/admin/config/apply": {
            "post": _operation(
                "apply_config",
                "admin",
                "Apply a configuration",
                "Makes the control plane equal the document, in one transaction (one new "
                "version; what the document does not define is deleted). A bad document "
                "changes nothing.",
                _json(_ref("Applied"), "What changed."),
                write=True,
                body=_CONFIG_BODY,
                errors={"400": _INVALID + " A YAML document's error also has its `line`."},
            ),
        },
        "/v1/admin/flags": {
            "get": _operation(
                "get_flags",
                "admin",
                "The feature-flags ruleset",
                "The whole ruleset (docs/flags.md), every environment, with each environment's "
                "version and who changed it last, as `tally flags show`.",
                _json(
                    _object({"ruleset": _FLAGS_RULESET, "environments": {"type": "array"}}),
                    "The ruleset.",
                ),
            ),
            "put": _operation(
                "put_flags",
                "admin",
                "Replace the feature-flags ruleset",
                "Validates the whole ruleset (JSON or YAML), writes the environments whose "
                "rules changed under one new configuration version and records each in the "
                "audit log (kind `flags`), as `tally flags apply`. A `version` sent is ignored.",
                _json(
                    _object(
                        {
                            "changed": _TEXTS,
                            "removed": _TEXTS,
                            "version": {"type": ["integer", "null"]},
                            "ruleset": _FLAGS_RULESET,
                        }
                    ),
                    "What changed, and the ruleset now in force.",
                ),
                write=True,
                body=_body(_FLAGS_RULESET, {"flags": {}}),
                errors={"400": _INVALID},
            ),
        },
        "/v1/flags": {
            "get": _operation(
                "flags_overview",
                "flags",
                "The feature-flags ruleset, for people",
                "What `GET /v1/admin/flags` answers — the whole ruleset, every environment, each "
                "environment's version, when and by whom it was changed last — for a read key "
                "(the dashboard's Flags page). A write key gets a 403: SDKs read one "
                "environment at `/v1/flags/ruleset`.",
                _json(
                    _object({"ruleset": _FLAGS_RULESET, "environments": {"type": "array"}}),
                    "The ruleset.",
                ),
                admin=False,
            ),
        },
        "/v1/flags/ruleset": {
            "get": _operation(
                "flags_ruleset",
                "flags",
                "One environment's flags ruleset",
                "The ruleset restricted to one environment, with its `version`, for SDKs to "
                "compile and evaluate locally. Any key may read it (an app's write key too). "
                "Answers with an `ETag`; `If-None-Match` with it gives 304 while it is current.",
                _json(_FLAGS_RULESET, "The environment's ruleset."),
                admin=False,
                parameters=[
                    {**_query("environment", "dev, prod, …", _TEXT), "required": True},
                ],
                errors={"404": f"`{messages.NOT_FOUND}`: no such environment."},
            ),
        },
        "/v1/flags/stream": {
            "get": _operation(
                "flags_stream",
                "flags",
                "One environment's flags ruleset, as server-sent events",
                "`text/event-stream`: `event: ruleset` with `id: <version>` and `data:` the "
                "document `GET /v1/flags/ruleset` answers (JSON on one line), at once (unless "
                "`Last-Event-ID` names the version in force) and again on every change; "
                "`: keep-alive` comments every 15 s; `event: error` and the end when the "
                "environment is removed. A stream ends after 5 minutes and when the server "
                "stops: reconnect with `Last-Event-ID`. Any key may listen (docs/flags.md).",
                {
                    "description": "The events, as they happen.",
                    "content": {"text/event-stream": {"schema": _TEXT}},
                },
                admin=False,
                parameters=[
                    {**_query("environment", "dev, prod, …", _TEXT), "required": True},
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "the version the client has: not sent again",
                        "schema": _TEXT,
                    },
                ],
                errors={
                    "404": f"`{messages.NOT_FOUND}`: no such environment.",
                    "503": f"`{messages.NOT_READY}`: this worker holds `flags_max_streams` "
                    "streams already (poll `GET /v1/flags/ruleset` meanwhile; `Retry-After`).",
                },
            ),
        },
        "/v1/flags/evaluate": {
            "post": _operation(
                "evaluate_flags",
                "flags",
                "Evaluate flags for one unit",
                "Every flag (or those listed in `flags`) for a unit's `attributes`: value, "
                "reason and, for an experiment, the variation. The `X-Tally-Flags` header lists "
                "`key=variation` for experiment assignments and `key=value` for targeted and "
                "rolled-out values. Any key may call it.",
                _json(
                    _object(
                        {
                            "environment": _TEXT,
                            "version": _INT,
                            "flags": {"type": "object"},
                        }
                    ),
                    "The evaluations, by flag key.",
                ),
                admin=False,
                body=_body(
                    _object(
                        {"environment": _TEXT, "attributes": {"type": "object"}, "flags": _TEXTS},
                        ["environment"],
                    ),
                    {"environment": "prod", "attributes": {"id": "user-42"}},
                ),
                errors={
                    "400": f"`{messages.INVALID_QUERY}`: the body is wrong.",
                    "404": f"`{messages.NOT_FOUND}`: no such environment.",
                },
            ),
        },
        "/v1/catalog/streams": {
            "get": _operation(
                "catalog_streams",
                "catalog-admin",
                "Streams and their volume",
                "Every stream with its status and the events it stored over the last 7 and 28 "
                "days (UTC days, today included), from the lake's `stream` column.",
                _json(_ref("CatalogStreams"), "The streams."),
                admin=False,
            ),
        },
        "/v1/catalog/models": {
            "get": _operation(
                "catalog_models",
                "catalog-admin",
                "Models and their checks",
                "Every data model with its latest check results, models with failing checks first.",
                _json(_ref("CatalogModels"), "The models."),
                admin=False,
            ),
        },
        "/v1/catalog/fields": {
            "get": _operation(
                "catalog_fields",
                "catalog-admin",
                "The field catalog",
                "Every field ever seen in the lake: type, first and last seen, events per day, "
                "growth over 4 weeks, example values with personal data redacted. Refreshed "
                "from the lake when its files changed since the last ask.",
                _json(_ref("Fields"), "The fields."),
                admin=False,
                parameters=[_query("q", "Only fields matching this text.", _TEXT)],
            ),
        },
        "/v1/catalog/search": {
            "get": _operation(
                "catalog_search",
                "catalog-admin",
                "Search the catalog",
                "Streams, fields and metrics matching a text, best first.",
                _json(_ref("SearchHits"), "The matches."),
                admin=False,
                parameters=[
                    {**_query("q", "The words; every one must match.", _TEXT), "required": True},
                    _query("kind", "metric, stream or field; several by commas.", _TEXT),
                    _query("limit", "At most so many hits.", {"type": "integer", "minimum": 1}),
                ],
                errors={"400": f"`{messages.INVALID_QUERY}`: no words, or an unknown kind."},
            ),
        },
        **_experiment_paths(),
        "/v1/audit": {
            "get": _operation(
                "audit_report",
                "catalog-admin",
                "The audit and gap report",
                "What `tally audit` reports: undefined and unowned metrics, unread streams, "
                "undeclared events, expiring streams, long retention, expensive metrics, "
                "unreliable sources, personal-looking fields. It covers every stream, so a "
                "key that does not see every private stream gets a 403.",
                {
                    "description": "The report.",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/markdown": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                admin=False,
                parameters=[
                    _query("format", "json (default), md or html", {"enum": ["json", "md", "html"]})
                ],
                errors={
                    "403": f"`{messages.FORBIDDEN}`: the key does not see every private stream."
                },
            ),
        },
    }


# -- experiments -------------------------------------------------------------------------------

_EXPERIMENT_KEY: Final[Schema] = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,188}$",
}
_METRIC_REF: Final[Schema] = {
    "oneOf": [
        {"type": "string", "description": "a catalog metric's name"},
        _object(
            {
                "metric": _TEXT,
                "kind": {"type": "string", "enum": ["conversion", "mean", "ratio"]},
                "inverse": {"type": "boolean", "description": "lower is better"},
                "cuped_days": {"type": "integer", "minimum": 0},
            },
            ["metric"],
        ),
    ]
}
_METRIC_REFS: Final[Schema] = {"type": "array", "items": _METRIC_REF}
_EXPERIMENT_EXAMPLE: Final = {
    "key": "signin-dialog",
    "name": "Sign-in dialog: e-mail pre-filled",
    "hypothesis": "Pre-filling the e-mail from the institution's SSO lowers the bounce rate",
    "owner": "ux-lead@research-portal.eu",
    "unit": "user.anonymous_id",
    "variations": [
        {"key": "a", "name": "Control: empty e-mail field"},
        {"key": "b", "name": "E-mail pre-filled"},
    ],
    "metrics": {"primary": ["bounce_rate"], "guardrails": ["signin_latency"]},
}


def _experiment_schemas() -> dict[str, Schema]:
    definition = _object(
        {
            "key": _EXPERIMENT_KEY,
            "name": _TEXT,
            "hypothesis": {**_TEXT, "minLength": 1},
            "owner": {**_TEXT, "minLength": 1},
            "teams": _TEXTS,
            "flag": {**_TEXT, "description": "the flag whose rule serves it (default: the key)"},
            "environment": {**_TEXT, "default": "prod"},
            "unit": {
                "type": "string",
                "enum": ["user.id", "user.anonymous_id", "session.id", "user", "device", "session"],
                "default": "user.id",
            },
            "variations": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "oneOf": [
                        {"type": "string", "description": "a key (its value is the key)"},
                        _object({"key": _TEXT, "name": _TEXT, "value": {}}, ["key"]),
                    ]
                },
                "description": "the control first",
            },
            "weights": {"type": "array", "items": {"type": "number", "minimum": 0}},
            "coverage": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1},
            "targeting": {"type": ["object", "null"], "description": "a flags condition"},
            "namespace": {
                "type": ["array", "null"],
                "description": "[namespace id, start, end]",
            },
            "status": {"type": "string", "enum": ["draft", "running", "stopped"]},
            "start": _MAYBE_TIME,
            "stop": _MAYBE_TIME,
            "metrics": _object(
                {"primary": _METRIC_REFS, "secondary": _METRIC_REFS, "guardrails": _METRIC_REFS},
                ["primary"],
            ),
            "mde": {"type": "number", "exclusiveMinimum": 0, "default": 0.05},
            "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "power": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "planned_sample_size": {"type": ["integer", "null"], "minimum": 1},
            "sequential": {"type": "boolean", "default": False},
            "correction": {"type": "string", "enum": ["holm", "bh", "none"], "default": "holm"},
            "alerts": {
                "type": ["array", "null"],
                "items": {
                    "oneOf": [
                        {"type": "string", "enum": ["experiment_srm", "experiment_guardrail"]},
                        _object(
                            {
                                "rule": {
                                    "type": "string",
                                    "enum": ["experiment_srm", "experiment_guardrail"],
                                },
                                "min_units": {"type": "integer", "minimum": 0, "default": 100},
                            },
                            ["rule"],
                        ),
                    ]
                },
                "description": "alert rules while it runs (docs/experiments.md#alerts); "
                "default: both, [] for none",
            },
        },
        ["hypothesis", "owner", "variations", "metrics"],
    )
    definition["description"] = "an experiment definition (docs/experiments.md)"
    summary = _object(
        {
            "key": _TEXT,
            "name": _TEXT,
            "status": {"type": "string", "enum": ["draft", "running", "stopped"]},
            "owner": _TEXT,
            "unit": _TEXT,
            "variations": {
                "type": "array",
                "items": _object({"key": _TEXT, "name": _TEXT, "weight": {"type": "number"}}),
            },
            "start": _MAYBE_TIME,
            "stop": _MAYBE_TIME,
            "flag": _TEXT,
            "environment": _TEXT,
            "metrics": _object({"primary": _TEXTS, "secondary": _TEXTS, "guardrails": _TEXTS}),
            "version": _INT,
            "updated_at": _TIME,
        }
    )
    stored = _object(
        {
            "experiment": _ref("Experiment"),
            "version": {**_INT, "description": "the configuration version that last wrote it"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "updated_by": _TEXT,
        }
    )
    change = _object(
        {
            "key": _TEXT,
            "action": {
                "type": "string",
                "enum": ["create", "update", "start", "stop", "delete", "unchanged"],
            },
            "changes": {**_TEXTS, "description": "what changed, one line each"},
            "flags_environments": {
                **_TEXTS,
                "description": "the flags ruleset's environments written (the rule in or out)",
            },
            "version": {"type": ["integer", "null"], "description": "null: nothing changed"},
            "notes": {**_TEXTS, "description": "worth knowing: a status kept, a flag created"},
            "experiment": {"oneOf": [_ref("StoredExperiment"), {"type": "null"}]},
        }
    )
    return {
        "Experiment": definition,
        "ExperimentSummary": summary,
        "StoredExperiment": stored,
        "ExperimentChange": change,
    }


def _experiment_paths() -> dict[str, Schema]:
    key = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "The experiment's key.",
        "schema": _EXPERIMENT_KEY,
    }
    changed = _json(_ref("ExperimentChange"), "What changed, and the experiment now.")
    missing = {"404": f"`{messages.NOT_FOUND}`: no such experiment."}
    lifecycle = {**missing, "409": _CONFLICT}
    return {
        "/v1/experiments": {
            "get": _operation(
                "list_experiments",
                "experiments",
                "The experiments",
                "Every experiment: key, name, status, owner, unit, variations with their "
                "weights, start, stop, flag, environment and metrics by role, as `tally "
                "experiments list`. A read key will do.",
                _json(
                    _object({"experiments": {"type": "array", "items": _ref("ExperimentSummary")}}),
                    "The experiments, by key.",
                ),
                admin=False,
                parameters=[_query("status", "Only draft, running or stopped ones.", _TEXT)],
                errors={"400": f"`{messages.INVALID_QUERY}`: an unknown status."},
            ),
        },
        "/v1/experiments/{key}": {
            "parameters": [key],
            "get": _operation(
                "get_experiment",
                "experiments",
                "One experiment",
                "Its normalised definition (every default filled in), the configuration version "
                "that last wrote it, when and by whom. A read key will do.",
                _json(_ref("StoredExperiment"), "The experiment."),
                admin=False,
                errors=missing,
            ),
        },
        "/v1/admin/experiments/{key}": {
            "parameters": [key],
            "put": _operation(
                "put_experiment",
                "experiments",
                "Create or replace an experiment",
                "Validates the definition (JSON or YAML; its `key`, when given, must be the "
                "address's) and stores it, audited (kind `experiments`), as `tally experiments "
                "apply`. An existing experiment keeps its status, start and stop unless the "
                "body gives a start or stop; a new one sent as `running` starts at once. A "
                "running experiment's flag rule follows the new definition.",
                changed,
                write=True,
                body=_body(_ref("Experiment"), _EXPERIMENT_EXAMPLE, creates=True),
                errors={"400": _INVALID, "409": _CONFLICT},
            ),
            "delete": _operation(
                "delete_experiment",
                "experiments",
                "Delete an experiment",
                "Removes the definition (and a running experiment's flag rule), audited.",
                changed,
                write=True,
                errors=missing,
            ),
        },
        "/v1/admin/experiments/{key}/start": {
            "parameters": [key],
            "post": _operation(
                "start_experiment",
                "experiments",
                "Start an experiment",
                "Writes its rule into the flag's ruleset for its environment (creating the "
                "flag, default the control's value, when there is none) under a new "
                "configuration version, so SDKs assign units within seconds, and sets its start "
                "to now unless it has one. A stopped experiment cannot be restarted (409).",
                changed,
                write=True,
                errors=lifecycle,
            ),
        },
        "/v1/admin/experiments/{key}/stop": {
            "parameters": [key],
            "post": _operation(
                "stop_experiment",
                "experiments",
                "Stop an experiment",
                "Removes its flag rule (the flag then serves its default) and sets its stop to "
                "now. A draft cannot be stopped (409); a stopped one is left as it is.",
                changed,
                write=True,
                errors=lifecycle,
            ),
        },
    }
