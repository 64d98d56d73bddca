"""The event monoschema, version 1.

One typed definition (msgspec Structs) serves three purposes: it validates events at near-C speed
in the collector, it generates the published JSON Schema (``tally schema export``), and ``FIELDS``
maps every dotted field (``user.id``) to its flat column in the lake (``user_id``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1

NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
KEY_PATTERN: Final = r"^[a-z_][a-z0-9_]*$"
EXPERIMENT_KEY_PATTERN: Final = r"^[a-z0-9][a-z0-9_.-]*$"
LOCALE_PATTERN: Final = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"

MAX_DATA_KEYS: Final = 200
MAX_LIST_ITEMS: Final = 100
MAX_EXPERIMENTS: Final = 100

# Patterns are checked by ``collect.validate`` with a cache (names and keys are a small
# vocabulary); msgspec's per-value regex would cost more than the rest of the decode.
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        description="The action, lowercase and dotted: `object.verb`.",
        examples=["project.commit"],
    ),
]
Str = Annotated[str, msgspec.Meta(max_length=256)]
LongStr = Annotated[str, msgspec.Meta(max_length=2048)]
Timestamp = Annotated[dt.datetime, msgspec.Meta(tz=True)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ExperimentKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Scalar = str | int | float | bool | None
DataValue = Scalar | Annotated[list[Scalar], msgspec.Meta(max_length=MAX_LIST_ITEMS)]
Data = Annotated[dict[Key, DataValue], msgspec.Meta(max_length=MAX_DATA_KEYS)]
SampleUnit = Literal["event", "session", "user", "pageview", "device"]
Rate = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Locale = Annotated[str, msgspec.Meta(max_length=35)]


class _Part(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """A group of contextual attributes. Unknown keys are rejected so typos surface at once."""


class App(_Part):
    id: Str | None = None
    version: Str | None = None
    environment: Str | None = None
    instance: Str | None = None


class Client(_Part):
    library: Str | None = None
    library_version: Str | None = None
    platform: Str | None = None


class User(_Part):
    id: Str | None = None
    anonymous_id: Str | None = None
    is_logged_in: bool | None = None


class Session(_Part):
    id: Str | None = None
    seq: Seq | None = None


class Page(_Part):
    pageview_id: Str | None = None
    url: LongStr | None = None
    referrer: LongStr | None = None


class Agent(_Part):
    user_agent: LongStr | None = None


class Sample(_Part):
    unit: SampleUnit
    rate: Rate


class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """One event as a client sends it (monoschema v1)."""

    event_id: uuid.UUID
    name: Name
    client_ts: Timestamp
    sent_ts: Timestamp | None = None
    app: App | None = None
    client: Client | None = None
    user: User | None = None
    session: Session | None = None
    page: Page | None = None
    agent: Agent | None = None
    locale: Locale | None = None
    experiments: Annotated[dict[ExperimentKey, Str], msgspec.Meta(max_length=MAX_EXPERIMENTS)] = {}
    sample: Sample | None = None
    data: Data = {}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the monoschema and its flat column in the lake."""

    path: str
    column: str
    kind: Literal["string", "timestamp", "bool", "int", "float", "map", "json"]
    description: str
    example: Any
    origin: Literal["client", "server"] = "client"
    required: bool = False


FIELDS: Final[tuple[Field, ...]] = (
    Field(
        "event_id",
        "event_id",
        "string",
        "Unique id of the event (UUID). Re-sending the same id never counts twice.",
        "0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f",
        required=True,
    ),
    Field(
        "name",
        "name",
        "string",
        "The action, lowercase and dotted (`object.verb`), 1–128 characters.",
        "project.commit",
        required=True,
    ),
    Field(
        "client_ts",
        "client_ts",
        "timestamp",
        "When the action happened, RFC 3339 with an offset or `Z`, at most 24 h in the future.",
        "2026-11-02T14:03:11.250Z",
        required=True,
    ),
    Field(
        "sent_ts",
        "sent_ts",
        "timestamp",
        "When the client sent the batch (lets analyses correct client clock skew).",
        "2026-11-02T14:03:12Z",
    ),
    Field(
        "received_ts",
        "received_ts",
        "timestamp",
        "Stamped by the collector when the event was accepted; never sent by clients.",
        "2026-11-02T14:03:12.031Z",
        origin="server",
    ),
    Field(
        "client_ts_original",
        "client_ts_original",
        "timestamp",
        "The client's own clock reading, kept when the collector corrected `client_ts` for clock "
        "skew (null when no correction was needed); never sent by clients.",
        "2026-11-02T13:58:40.000Z",
        origin="server",
    ),
    Field(
        "clock_skew_ms",
        "clock_skew_ms",
        "int",
        "`received_ts − sent_ts` in milliseconds: how far the client's clock is behind "
        "(positive) or ahead (negative) of the collector's, transit time included; null without "
        "`sent_ts`. Set by the collector.",
        272031,
        origin="server",
    ),
    Field("app.id", "app_id", "string", "Which product or application.", "research-portal"),
    Field("app.version", "app_version", "string", "Version of the application.", "4.2.1"),
    Field("app.environment", "app_environment", "string", "Deployment environment.", "production"),
    Field(
        "app.instance",
        "app_instance",
        "string",
        "Which deployment (site, customer, institution) the event came from.",
        "uni-heidelberg",
    ),
    Field(
        "client.library",
        "client_library",
        "string",
        "Client library that produced the event.",
        "tallystick-python",
    ),
    Field(
        "client.library_version",
        "client_library_version",
        "string",
        "Version of the client library.",
        "0.1.0",
    ),
    Field("client.platform", "client_platform", "string", "Platform of the client.", "web"),
    Field(
        "user.id",
        "user_id",
        "string",
        "Stable id of a signed-in user. Empty or missing means "
        "anonymous: such events count as events, never as users.",
        "u-1842",
    ),
    Field(
        "user.anonymous_id",
        "user_anonymous_id",
        "string",
        "Device or browser id for users who are not signed in.",
        "a-7f3e9c",
    ),
    Field(
        "user.is_logged_in", "user_is_logged_in", "bool", "Whether the user was signed in.", True
    ),
    Field("session.id", "session_id", "string", "Session the event belongs to.", "s-5f1a0e"),
    Field(
        "session.seq",
        "session_seq",
        "int",
        "Per-session message index starting at 1; gaps measure loss, repeats measure duplicates.",
        7,
    ),
    Field(
        "session.inferred",
        "session_inferred",
        "bool",
        "True when the collector assigned `session.id` (the event came without one): a new "
        "session after 30 minutes of inactivity per user or anonymous id.",
        False,
        origin="server",
    ),
    Field(
        "page.pageview_id",
        "page_pageview_id",
        "string",
        "Id of the page view (one per page load).",
        "pv-91c2",
    ),
    Field("page.url", "page_url", "string", "URL of the page.", "https://app.example.org/projects"),
    Field("page.referrer", "page_referrer", "string", "Referring URL.", "https://example.org/"),
    Field(
        "page.previous_pageview_id",
        "page_previous_pageview_id",
        "string",
        "The page view that started before this one in the same session (the in-app referrer as "
        "a page-view id; null for a session's first page view and for events without "
        "`page.pageview_id`). Set by the collector.",
        "pv-91c1",
        origin="server",
    ),
    Field(
        "agent.user_agent",
        "agent_user_agent",
        "string",
        "Raw User-Agent string.",
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
    ),
    Field(
        "agent.browser",
        "agent_browser",
        "string",
        "Browser family parsed from the user agent by the collector (`Other` when unknown).",
        "Chrome",
        origin="server",
    ),
    Field(
        "agent.browser_version",
        "agent_browser_version",
        "string",
        "Major version of the browser, parsed by the collector.",
        "131",
        origin="server",
    ),
    Field(
        "agent.os",
        "agent_os",
        "string",
        "Operating-system family parsed from the user agent by the collector.",
        "Windows",
        origin="server",
    ),
    Field(
        "agent.os_version",
        "agent_os_version",
        "string",
        "Major version of the operating system, parsed by the collector.",
        "10",
        origin="server",
    ),
    Field(
        "agent.device",
        "agent_device",
        "string",
        "Device family parsed from the user agent by the collector (`Spider` for crawlers).",
        "iPhone",
        origin="server",
    ),
    Field(
        "agent.is_bot",
        "agent_is_bot",
        "bool",
        "True when the user agent is a known crawler or an automation tool (headless browser, "
        "HTTP library). Bots are left out of every analysis unless asked for.",
        False,
        origin="server",
    ),
    Field(
        "geo.country",
        "geo_country",
        "string",
        "ISO 3166-1 country code looked up from the client's IP address when a GeoIP database "
        "is configured (the address itself is never stored).",
        "DE",
        origin="server",
    ),
    Field(
        "geo.region",
        "geo_region",
        "string",
        "ISO 3166-2 subdivision code (region, state) looked up from the client's IP address.",
        "DE-BW",
        origin="server",
    ),
    Field(
        "geo.network",
        "geo_network",
        "string",
        "The client's network: its IP address cut to /24 (IPv4) or /48 (IPv6), for quarantine "
        "by IP range; the full address is never stored.",
        "203.0.113.0/24",
        origin="server",
    ),
    Field("locale", "locale", "string", "BCP 47 language tag of the user interface.", "de-DE"),
    Field(
        "experiments",
        "experiments",
        "map",
        "Experiment assignments: experiment key → variant.",
        {"signin-dialog": "b"},
    ),
    Field(
        "sample.unit",
        "sample_unit",
        "string",
        "Unit the event was sampled by: event, session, user, pageview or device.",
        "session",
    ),
    Field(
        "sample.rate",
        "sample_rate",
        "float",
        "Sampling rate in (0, 1]; weight an event by 1 / rate.",
        0.25,
    ),
    Field(
        "data",
        "data",
        "json",
        "The instrument's own fields: snake_case keys; values are "
        "scalars (string, number, bool, null) or lists of scalars.",
        {"project_id": "p-12", "files": 3},
    ),
)

FIELDS_BY_PATH: Final = {f.path: f for f in FIELDS}
FIELDS_BY_COLUMN: Final = {f.column: f for f in FIELDS}


def column_for(path: str) -> str:
    """Map a dotted field (``user.id``) to its lake column (``user_id``).

    ``data.<key>`` fields live inside the JSON ``data`` column and are returned unchanged.
    """
    if path in FIELDS_BY_PATH:
        return FIELDS_BY_PATH[path].column
    if path.startswith("data.") and len(path) > 5:
        return path
    known = ", ".join(f.path for f in FIELDS)
    raise KeyError(f"unknown field {path!r}; use one of {known}, or data.<key>")


def _describe(schema: dict[str, Any]) -> None:
    """Add descriptions, examples and the cached-pattern checks to the generated schema."""
    defs = schema["$defs"]
    groups = {name.lower(): name for name in defs}
    for f in FIELDS:
        if f.origin != "client":
            continue
        *group, leaf = f.path.split(".")
        target = defs["Event"] if not group else defs[groups[group[0]]]
        prop = target["properties"][leaf]
        prop["description"] = f.description
        prop["examples"] = [f.example]
    props = defs["Event"]["properties"]
    props["name"]["pattern"] = NAME_PATTERN
    props["locale"]["anyOf"][0]["pattern"] = LOCALE_PATTERN
    props["data"]["propertyNames"] = {"pattern": KEY_PATTERN, "maxLength": 64}
    props["experiments"]["propertyNames"] = {"pattern": EXPERIMENT_KEY_PATTERN, "maxLength": 128}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an event as clients send it."""
    schema = msgspec.json.schema(Event)
    _describe(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"Tallystick event (monoschema v{SCHEMA_VERSION})"
    return schema


def event_to_builtins(event: Event) -> dict[str, Any]:
    """The event as plain JSON-ready Python values (UUIDs and datetimes as strings)."""
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out
