"""The control-plane API: an ASGI application the collector hands ``/v1/admin/...``,
``/v1/catalog/...`` and ``/v1/audit`` to.

``/v1/admin/...`` creates, reads, changes and deletes streams and data models, renews, enables
and disables streams, builds and checks models, exports, plans and applies the whole
configuration and reads the audit log; ``/v1/catalog/...`` and ``/v1/audit`` are read-only (the
streams with their volume, the models with their check results, the field catalog, search and
the audit report). Who may call what is ``access``'s business. Every store call runs in a worker
thread, so ingestion never waits for the database; one ``ControlStore`` per app, opened on first
use and closed by ``close()`` (or the ASGI lifespan's shutdown). See docs/http-api.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.to_thread
import sqlalchemy as sa

from tallystick import messages
from tallystick.admin import access, views
from tallystick.admin.documents import read_configuration, read_document, refuse_definition
from tallystick.admin.flag_stream import FlagStreams, last_event_id
from tallystick.admin.http import invalid, not_allowed, not_found, query_params, read_body
from tallystick.admin.volume import WINDOWS, Volume, stream_volumes, window_start
from tallystick.collect.asgi import JSON, Headers, Receive, Scope, Send, respond, respond_json
from tallystick.collect.body import ClientDisconnected
from tallystick.collect.requests import Refused, json_object
from tallystick.config import Settings
from tallystick.control.config_file import dump
from tallystick.control.definitions import (
    DefinitionError,
    Model,
    Stream,
    format_time,
    parse_model,
    parse_stream,
)
from tallystick.control.plan import Plan
from tallystick.control.principal import principal_of
from tallystick.control.store import Conflict, ControlStore, NotFound
from tallystick.control.visibility import EVERYTHING, Visibility, formerly_private, visibility
from tallystick.messages import Problem
from tallystick.query.answers import Answers
from tallystick.store.lake import EVENTS, Lake

if TYPE_CHECKING:
    from tallystick.catalog.fields import FieldInfo
    from tallystick.control.flags import StoredRuleset
    from tallystick.flags.evaluate import CompiledRuleset

log = logging.getLogger("tallystick.admin")

T = TypeVar("T")

STORE_THREADS: Final = 4
YAML: Final = b"application/yaml; charset=utf-8"
STREAM_EXAMPLE: Final = '{"name": "product", "events": ["project.*"]}'
MODEL_EXAMPLE: Final = '{"name": "commits", "stream": "product", "fields": ["user.id"]}'
_RETRY: Final = ((b"retry-after", b"1"),)
AUDIT_FORMATS: Final = {
    "json": JSON,
    "md": b"text/markdown; charset=utf-8",
    "html": b"text/html; charset=utf-8",
}
#: the audit report's HTML has inline styles only: nothing else may load or run
_REPORT_HEADERS: Final = (
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_LIST_HINTS: Final = {
    "`tally streams list` shows the streams": "GET /v1/admin/streams lists them",
    "`tally models list` shows the models": "GET /v1/admin/models lists them",
    "`tally quarantine list` shows the rules": "GET /v1/admin/quarantine lists them",
    "`tally block list` shows the blocks": "GET /v1/admin/blocks lists them",
    "`tally block list` shows it": "GET /v1/admin/blocks lists it",
    "`tally users deletions` lists them": "GET /v1/admin/deletions lists them",
    "`tally keys list` shows the keys": "GET /v1/admin/keys lists them",
    "`tally experiments list` shows the experiments": "GET /v1/experiments lists them",
    "`tally experiments apply FILE`": "PUT /v1/admin/experiments/{key} defines one",
}
PRIVATE_AUDIT: Final = Problem(
    messages.FORBIDDEN,
    "the audit report covers every stream, private ones included: ask with a key that reads "
    "every stream (an admin key, or a read key granted all streams)",
)
KEY_EXAMPLE: Final = '{"kind": "read", "name": "alice", "streams": ["deals"]}'
_NO_STORE: Final = ((b"cache-control", b"no-store"),)
QUARANTINE_EXAMPLE: Final = '{"user": "u-123", "reason": "load-test account"}'
BLOCK_EXAMPLE: Final = '{"network": "203.0.113.0/24", "reason": "scraper"}'
DELETE_USER_EXAMPLE: Final = '{"user_id": "u-123"}'
FLAGS_EXAMPLE: Final = '{"environment": "prod", "attributes": {"id": "user-42"}}'
#: what a quarantine rule is written as in a request: one of these, with its value
QUARANTINE_KINDS: Final = ("user", "session", "ip", "where")


@dataclass
class Call:
    """One request to a route: its path parameters, query string and who makes it."""

    scope: Scope
    receive: Receive
    params: dict[str, str]
    actor: str | None

    @property
    def query(self) -> str:
        raw: bytes = self.scope.get("query_string", b"")
        return raw.decode("latin-1")

    @property
    def name(self) -> str:
        return self.params["name"]

    @property
    def content_type(self) -> str:
        for key, value in self.scope.get("headers") or ():
            if key.lower() == b"content-type":
                text: str = value.decode("latin-1")
                return text
        return ""

    @property
    def who(self) -> str:
        """The actor of a change (``access.authorize`` gives every change one)."""
        assert self.actor is not None
        return self.actor

    async def body(self) -> bytes:
        return await read_body(self.receive)

    async def json(self, example: str) -> dict[str, Any]:
        return json_object(await self.body(), example)

    def only(self, *allowed: str) -> dict[str, str]:
        return query_params(self.query, allowed)


@dataclass
class Reply:
    """What a route answers: JSON by default."""

    body: object
    status: int = 200
    content_type: bytes = JSON
    headers: Headers = field(default_factory=tuple)
    stream: Callable[[Send], Awaitable[None]] | None = None
    """Answers by itself instead (a long-lived response: ``GET /v1/flags/stream``)."""


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    """A path pattern (``/v1/admin/streams/{name}``) and a handler per method."""

    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]

    @classmethod
    def of(cls, path: str, methods: Mapping[str, Handler]) -> Route:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        return cls(re.compile(f"^{regex}/?$"), methods)


def _stream(raw: Mapping[str, Any]) -> Stream:
    return parse_stream(views.definition(raw, views.STREAM_READ_ONLY))


def _model(raw: Mapping[str, Any]) -> Model:
    return parse_model(views.definition(raw, views.MODEL_READ_ONLY))


def _created(plan: Plan) -> int:
    return 201 if any(c.action == "create" for c in plan) else 200


class ControlApi:
    """The control-plane API over one data directory's control store and lake."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lake = Lake(settings.lake_dir)
        self.answers = Answers(max_answers=16)
        self._store: ControlStore | None = None
        self._opening = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None
        self._compiled: dict[str, tuple[int, CompiledRuleset]] = {}
        """Each environment's compiled flags ruleset and its version (``POST /v1/flags/...``)."""
        self.flag_streams = FlagStreams(settings.flags_max_streams)
        self.routes = self._routes()

    # -- lifecycle -------------------------------------------------------------------------------

    def store(self) -> ControlStore:
        """The control store, opened (and migrated) on first use."""
        with self._opening:
            if self._store is None:
                self._store = ControlStore.for_settings(self.settings)
            return self._store

    def close(self) -> None:
        self.flag_streams.stop()
        with self._opening:
            if self._store is not None:
                self._store.close()
                self._store = None

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().date()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            handler, params = self._find(scope["path"], scope["method"])
            actor = access.authorize(scope, self.settings)
            reply = await handler(Call(scope, receive, params, actor))
        except Refused as refused:
            await respond_json(send, refused.status, refused.body(), refused.headers)
            return
        except ClientDisconnected:
            return
        if reply.stream is not None:
            await reply.stream(send)
        elif reply.content_type == JSON and reply.status != 304:
            await respond_json(send, reply.status, reply.body, reply.headers)
        else:
            assert isinstance(reply.body, bytes)
            await respond(send, reply.status, reply.content_type, reply.body, reply.headers)

    def _find(self, path: str, method: str) -> tuple[Handler, dict[str, str]]:
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            handler = route.methods.get(method)
            if handler is None:
                raise not_allowed(*route.methods)
            return handler, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
        raise not_found(
            f"no such endpoint: {method} {path}; events go to POST /v1/events and GET /v1 "
            "lists the API."
        )

    def _routes(self) -> list[Route]:
        return [
            Route.of("/v1/admin/streams", {"GET": self.list_streams, "POST": self.create_stream}),
            Route.of("/v1/admin/streams/{name}/renew", {"POST": self.renew_stream}),
            Route.of("/v1/admin/streams/{name}/enable", {"POST": self.enable_stream}),
            Route.of("/v1/admin/streams/{name}/disable", {"POST": self.disable_stream}),
            Route.of(
                "/v1/admin/streams/{name}",
                {
                    "GET": self.get_stream,
                    "PUT": self.put_stream,
                    "PATCH": self.patch_stream,
                    "DELETE": self.delete_stream,
                },
            ),
            Route.of("/v1/admin/models", {"GET": self.list_models, "POST": self.create_model}),
            Route.of("/v1/admin/models/{name}/build", {"POST": self.build_model}),
            Route.of("/v1/admin/models/{name}/check", {"POST": self.check_model}),
            Route.of(
                "/v1/admin/models/{name}",
                {"GET": self.get_model, "PUT": self.put_model, "DELETE": self.delete_model},
            ),
            Route.of(
                "/v1/admin/quarantine", {"GET": self.list_quarantine, "POST": self.add_quarantine}
            ),
            Route.of("/v1/admin/quarantine/{id}/lift", {"POST": self.lift_quarantine}),
            Route.of("/v1/admin/blocks", {"GET": self.list_blocks, "POST": self.add_block}),
            Route.of("/v1/admin/blocks/{id}", {"DELETE": self.remove_block}),
            Route.of("/v1/admin/keys", {"GET": self.list_keys, "POST": self.create_key}),
            Route.of("/v1/admin/keys/{id}", {"DELETE": self.revoke_key}),
            Route.of("/v1/admin/users/delete", {"POST": self.delete_user}),
            Route.of("/v1/admin/deletions", {"GET": self.list_deletions}),
            Route.of("/v1/admin/deletions/{id}", {"GET": self.get_deletion}),
            Route.of("/v1/admin/checks", {"GET": self.list_checks}),
            Route.of("/v1/admin/audit-log", {"GET": self.audit_log}),
            Route.of("/v1/admin/config", {"GET": self.get_config}),
            Route.of("/v1/admin/config/plan", {"POST": self.plan_config}),
            Route.of("/v1/admin/config/apply", {"POST": self.apply_config}),
            Route.of("/v1/admin/flags", {"GET": self.get_flags, "PUT": self.put_flags}),
            Route.of("/v1/flags", {"GET": self.get_flags}),
            Route.of("/v1/flags/ruleset", {"GET": self.flags_ruleset}),
            Route.of("/v1/flags/stream", {"GET": self.flags_stream}),
            Route.of("/v1/flags/evaluate", {"POST": self.evaluate_flags}),
            Route.of("/v1/experiments", {"GET": self.list_experiments}),
            Route.of("/v1/experiments/{key}", {"GET": self.get_experiment}),
            Route.of(
                "/v1/admin/experiments/{key}",
                {"PUT": self.put_experiment, "DELETE": self.delete_experiment},
            ),
            Route.of("/v1/admin/experiments/{key}/start", {"POST": self.start_experiment}),
            Route.of("/v1/admin/experiments/{key}/stop", {"POST": self.stop_experiment}),
            Route.of("/v1/catalog/streams", {"GET": self.catalog_streams}),
            Route.of("/v1/catalog/models", {"GET": self.catalog_models}),
            Route.of("/v1/catalog/fields", {"GET": self.catalog_fields}),
            Route.of("/v1/catalog/search", {"GET": self.catalog_search}),
            Route.of("/v1/audit", {"GET": self.audit_report}),
        ]

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread; the store's refusals become HTTP ones."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(STORE_THREADS)
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._limiter)
        except NotFound as exc:
            raise not_found(_http_hints(str(exc)) + ".") from None
        except Conflict as exc:
            raise Refused(409, Problem(messages.CONFLICT, _http_hints(str(exc)) + ".")) from None
        except DefinitionError as exc:
            raise refuse_definition(exc) from None
        except sa.exc.SQLAlchemyError:
            log.exception("the control-plane database failed")
            raise Refused(
                503,
                Problem(
                    messages.NOT_READY,
                    "the control-plane database could not be used just now (see the server's "
                    "log): try again in a moment",
                ),
                _RETRY,
            ) from None

    async def _with_store(self, work: Callable[[ControlStore], T]) -> T:
        return await self._in_thread(lambda: work(self.store()))

    def _view(self, store: ControlStore, call: Call) -> Visibility:
        """What the request's principal may see of the configuration in force (private
        streams it is not granted are hidden, with the models that read them)."""
        principal = principal_of(call.scope)
        if principal.sees_everything:
            return EVERYTHING
        config = store.configuration()
        with store.engine.connect() as conn:
            deleted = formerly_private(conn, config)
        return visibility(principal, config, deleted)

    def _visible_stream(self, store: ControlStore, call: Call, name: str) -> None:
        """A 404, as for a stream that does not exist, when stream ``name`` is hidden."""
        if not self._view(store, call).stream(name):
            raise NotFound(f"no stream {name!r}; `tally streams list` shows the streams")

    def _visible_model(self, store: ControlStore, call: Call, name: str) -> None:
        """A 404, as for a model that does not exist, when model ``name`` reads a hidden
        stream."""
        view = self._view(store, call)
        if view.everything:
            return
        model = store.configuration().model(name)
        if model is not None and not view.stream(model.stream):
            raise NotFound(f"no model {name!r}; `tally models list` shows the models")

    # -- streams ---------------------------------------------------------------------------------

    def _stream_reply(self, store: ControlStore, name: str, plan: Plan | None = None) -> Reply:
        view = views.stream_view(store.stream(name), self.now(), store.stream_times())
        if plan is None:
            return Reply(view)
        return Reply({"stream": view, "changes": views.changes(plan)}, _created(plan))

    async def list_streams(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            config = views.visible_configuration(store.configuration(), self._view(store, call))
            times = store.stream_times()
            at = self.now()
            return Reply(
                {
                    "unrouted_stream": config.unrouted_stream,
                    "streams": [views.stream_view(s, at, times) for s in config.streams],
                }
            )

        return await self._with_store(work)

    async def get_stream(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            self._visible_stream(store, call, call.name)
            return self._stream_reply(store, call.name)

        return await self._with_store(work)

    async def create_stream(self, call: Call) -> Reply:
        stream = _parsed(_stream, await call.json(STREAM_EXAMPLE))

        def work(store: ControlStore) -> Reply:
            plan = store.put_stream(stream, call.who, create_only=True)
            return self._stream_reply(store, stream.name, plan)

        return await self._with_store(work)

    async def put_stream(self, call: Call) -> Reply:
        body = await call.json(STREAM_EXAMPLE)
        stream = _parsed(lambda raw: _stream(views.named(raw, call.name, "stream")), body)

        def work(store: ControlStore) -> Reply:
            plan = store.put_stream(stream, call.who)
            return self._stream_reply(store, stream.name, plan)

        return await self._with_store(work)

    async def patch_stream(self, call: Call) -> Reply:
        body = await call.json('{"owner": "web-team"}')
        settings = _parsed(lambda raw: views.stream_patch(raw, call.name), body)
        return await self._update_stream(call, "update", settings)

    async def _update_stream(self, call: Call, action: str, settings: dict[str, Any]) -> Reply:
        def work(store: ControlStore) -> Reply:
            plan = store.update_stream(call.name, call.who, action, **settings)
            return self._stream_reply(store, call.name, plan)

        return await self._with_store(work)

    async def delete_stream(self, call: Call) -> Reply:
        call.only()
        plan = await self._with_store(lambda store: store.delete_stream(call.name, call.who))
        return Reply(
            {"deleted": {"kind": "stream", "name": call.name}, "changes": views.changes(plan)}
        )

    async def renew_stream(self, call: Call) -> Reply:
        body = await call.json(views.RENEW_EXAMPLE)

        def work(store: ControlStore) -> Reply:
            expires = views.renewal(body, self.now(), store.stream(call.name))
            plan = store.update_stream(call.name, call.who, "renew", expires=format_time(expires))
            return self._stream_reply(store, call.name, plan)

        return await self._with_store(work)

    async def enable_stream(self, call: Call) -> Reply:
        await _no_settings(call, "enable")
        return await self._update_stream(call, "enable", {"enabled": True})

    async def disable_stream(self, call: Call) -> Reply:
        await _no_settings(call, "disable")
        return await self._update_stream(call, "disable", {"enabled": False})

    # -- models ----------------------------------------------------------------------------------

    def _model_reply(self, store: ControlStore, name: str, plan: Plan | None = None) -> Reply:
        view = views.model_view(store.model(name), store.model_built())
        if plan is None:
            return Reply(view)
        return Reply({"model": view, "changes": views.changes(plan)}, _created(plan))

    async def list_models(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            built = store.model_built()
            config = views.visible_configuration(store.configuration(), self._view(store, call))
            return Reply({"models": [views.model_view(m, built) for m in config.models]})

        return await self._with_store(work)

    async def get_model(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            self._visible_model(store, call, call.name)
            return self._model_reply(store, call.name)

        return await self._with_store(work)

    async def create_model(self, call: Call) -> Reply:
        model = _parsed(_model, await call.json(MODEL_EXAMPLE))

        def work(store: ControlStore) -> Reply:
            plan = store.put_model(model, call.who, create_only=True)
            return self._model_reply(store, model.name, plan)

        return await self._with_store(work)

    async def put_model(self, call: Call) -> Reply:
        body = await call.json(MODEL_EXAMPLE)
        model = _parsed(lambda raw: _model(views.named(raw, call.name, "model")), body)

        def work(store: ControlStore) -> Reply:
            plan = store.put_model(model, call.who)
            return self._model_reply(store, model.name, plan)

        return await self._with_store(work)

    async def delete_model(self, call: Call) -> Reply:
        call.only()
        plan = await self._with_store(lambda store: store.delete_model(call.name, call.who))
        from tallystick.models import ModelError, drop_model

        body: dict[str, Any] = {
            "deleted": {"kind": "model", "name": call.name},
            "changes": views.changes(plan),
        }
        try:  # the definition is gone; its view and snapshot go too, or the next build drops them
            body["dropped_view"] = await anyio.to_thread.run_sync(
                drop_model, self.settings, call.name
            )
        except ModelError as exc:
            body["dropped_view"] = False
            body["warning"] = f"the view stays until the next `tally models build`: {exc}"
        return Reply(body)

    async def build_model(self, call: Call) -> Reply:
        await _no_settings(call, "build")
        from tallystick.models import build_models

        def work(store: ControlStore) -> Reply:
            with _engine_busy():
                built = build_models(self.settings, store, [call.name])
            return Reply({"built": [b.as_dict() for b in built]})

        return await self._with_store(work)

    async def check_model(self, call: Call) -> Reply:
        since = views.since_days(await call.json('{"since_days": 7}'))
        from tallystick.models import run_checks

        def work(store: ControlStore) -> Reply:
            with _engine_busy():
                runs = run_checks(self.settings, store, [call.name], since)
            return Reply(
                {
                    "passed": all(r.passed for r in runs),
                    "failing": sum(not r.passed for r in runs),
                    "results": views.ordered_results(runs),
                }
            )

        return await self._with_store(work)

    async def list_checks(self, call: Call) -> Reply:
        target = call.only("target").get("target") or None

        def work(store: ControlStore) -> Reply:
            runs = store.latest_checks(target)
            view = self._view(store, call)
            if not view.everything:
                models = {m.name: m for m in store.models()}
                runs = [r for r in runs if views.check_visible(r, view, models)]
            return Reply({"checks": views.ordered_results(runs)})

        return await self._with_store(work)

    # -- quarantine and IP blocks ----------------------------------------------------------------

    async def list_quarantine(self, call: Call) -> Reply:
        everything = _flag(call.only("all").get("all", "false"), "all")
        from tallystick.control.quarantine import list_rules
        from tallystick.store.purge import matched_events

        def work(store: ControlStore) -> Reply:
            rules = list_rules(store, include_lifted=everything)
            active = [r for r in rules if r.active]
            counts = matched_events(self.lake, active) if self.lake.files(EVENTS) else {}
            return Reply(
                {
                    "rules": [
                        r.as_dict() | {"events": counts.get(r.id, 0) if r.active else None}
                        for r in rules
                    ]
                }
            )

        return await self._with_store(work)

    async def add_quarantine(self, call: Call) -> Reply:
        body = await call.json(QUARANTINE_EXAMPLE)
        kind, value = _quarantine_kind(body)
        from tallystick.control.quarantine import add_rule

        def work(store: ControlStore) -> Reply:
            rule = add_rule(
                store,
                kind,
                value,
                reason=_optional_text(body, "reason"),
                actor=call.who,
                time_from=_optional_text(body, "from"),
                time_to=_optional_text(body, "to"),
            )
            return Reply({"rule": rule.as_dict()}, 201)

        return await self._with_store(work)

    async def lift_quarantine(self, call: Call) -> Reply:
        await _no_settings(call, "lift")
        rule_id = _id(call, "quarantine rule")
        from tallystick.control.quarantine import lift_rule

        def work(store: ControlStore) -> Reply:
            return Reply({"rule": lift_rule(store, rule_id, call.who).as_dict()})

        return await self._with_store(work)

    async def list_blocks(self, call: Call) -> Reply:
        everything = _flag(call.only("all").get("all", "false"), "all")
        from tallystick.control.blocks import hits, list_blocks

        def work(store: ControlStore) -> Reply:
            blocks = list_blocks(store, include_removed=True)
            counts = hits(self.lake, blocks)
            return Reply(
                {
                    "blocks": [
                        b.as_dict()
                        | {
                            "requests_refused": counts[b.id].count if b.id in counts else 0,
                            "last_hit": _iso(counts[b.id].last if b.id in counts else None),
                        }
                        for b in blocks
                        if everything or b.active
                    ]
                }
            )

        return await self._with_store(work)

    async def add_block(self, call: Call) -> Reply:
        body = await call.json(BLOCK_EXAMPLE)
        unknown = sorted(set(body) - {"network", "reason"})
        if unknown:
            raise invalid(f"unknown key {unknown[0]!r}: a block has network and reason")
        from tallystick.control.blocks import add_block

        def work(store: ControlStore) -> Reply:
            network = _optional_text(body, "network") or ""
            block = add_block(store, network, _optional_text(body, "reason") or "", call.who)
            return Reply({"block": block.as_dict()}, 201)

        return await self._with_store(work)

    async def remove_block(self, call: Call) -> Reply:
        call.only()
        block_id = _id(call, "block")
        from tallystick.control.blocks import remove_block

        def work(store: ControlStore) -> Reply:
            return Reply({"block": remove_block(store, block_id, call.who).as_dict()})

        return await self._with_store(work)

    # -- feature flags -----------------------------------------------------------------------------

    async def get_flags(self, call: Call) -> Reply:
        """``GET /v1/admin/flags`` and, for readers (the dashboard's Flags page), ``GET
        /v1/flags``: the whole ruleset, each environment's version, when and by whom."""
        call.only()
        from tallystick.control.flags import list_rulesets, merge

        def work(store: ControlStore) -> Reply:
            stored = list_rulesets(store)
            return Reply(
                {
                    "ruleset": merge({s.environment: s.document for s in stored}),
                    "environments": [
                        {
                            "environment": s.environment,
                            "version": s.version,
                            "updated_at": _iso(s.updated_at),
                            "updated_by": s.updated_by,
                        }
                        for s in stored
                    ],
                }
            )

        return await self._with_store(work)

    async def put_flags(self, call: Call) -> Reply:
        call.only()
        from tallystick.control.flags import put_ruleset, validate

        document = read_document(await call.body(), call.content_type)
        try:
            validate(document.data)
        except DefinitionError as exc:
            raise refuse_definition(exc, document.root) from None

        def work(store: ControlStore) -> Reply:
            return Reply(put_ruleset(store, document.data, call.who).as_dict())

        return await self._with_store(work)

    async def flags_ruleset(self, call: Call) -> Reply:
        environment = _environment(call.only("environment"))
        from tallystick.control.flags import etag_matches, get_environment

        def work(store: ControlStore) -> Reply:
            stored = get_environment(store, environment)
            headers = ((b"etag", stored.etag.encode()), (b"cache-control", b"no-cache"))
            if etag_matches(_header(call.scope, b"if-none-match"), stored.etag):
                return Reply(b"", 304, headers=headers)
            return Reply(stored.document, headers=headers)

        return await self._with_store(work)

    async def flags_stream(self, call: Call) -> Reply:
        """Server-sent events of the environment's ruleset (``admin.flag_stream``)."""
        environment = _environment(call.only("environment"))
        from tallystick.control.flags import environment_version, get_environment

        async def version() -> int:
            return await self._with_store(lambda s: environment_version(s, environment) or 0)

        async def document() -> StoredRuleset:
            return await self._with_store(lambda s: get_environment(s, environment))

        first = await document()  # an unknown environment: 404, as for /v1/flags/ruleset
        last_id = last_event_id(call.scope)
        return Reply(
            b"",
            stream=lambda send: self.flag_streams.serve(
                call.receive, send, first, last_id, version, document
            ),
        )

    async def evaluate_flags(self, call: Call) -> Reply:
        call.only()
        body = await call.json(FLAGS_EXAMPLE)
        environment, attributes, keys = _evaluation_request(body)
        from tallystick.control.flags import ACTIVE_HEADER, active_header, evaluation_dict

        def work(store: ControlStore) -> tuple[int, CompiledRuleset]:
            return self._ruleset(store, environment)

        version, compiled = await self._with_store(work)
        if keys is None:
            evaluations = compiled.evaluate_all(attributes)
        else:
            evaluations = {k: compiled.evaluate(k, attributes) for k in keys}
        header = active_header(evaluations)
        return Reply(
            {
                "environment": environment,
                "version": version,
                "flags": {k: evaluation_dict(e) for k, e in evaluations.items()},
            },
            headers=((ACTIVE_HEADER.lower().encode(), header.encode("ascii")),),
        )

    def _ruleset(self, store: ControlStore, environment: str) -> tuple[int, CompiledRuleset]:
        """The environment's compiled ruleset, compiled again only when its version moved."""
        from tallystick.control.flags import environment_version, get_environment
        from tallystick.flags.evaluate import parse_ruleset

        cached = self._compiled.get(environment)
        version = environment_version(store, environment)
        if cached is not None and cached[0] == (version or 0):
            return cached
        stored = get_environment(store, environment)
        compiled = parse_ruleset(stored.document).compile(environment)
        self._compiled[environment] = (stored.version, compiled)
        return stored.version, compiled

    # -- experiments -------------------------------------------------------------------------------

    async def list_experiments(self, call: Call) -> Reply:
        status = call.only("status").get("status")
        from tallystick.control.experiments import list_experiments
        from tallystick.experiments.definition import STATUSES

        if status is not None and status not in STATUSES:
            raise invalid(f"unknown status {status!r}: use {', '.join(STATUSES)}")

        def work(store: ControlStore) -> Reply:
            return Reply(
                {
                    "experiments": [
                        s.summary()
                        for s in list_experiments(store)
                        if status is None or s.experiment.status == status
                    ]
                }
            )

        return await self._with_store(work)

    async def get_experiment(self, call: Call) -> Reply:
        call.only()
        from tallystick.control.experiments import get_experiment

        key = call.params["key"]
        return await self._with_store(lambda store: Reply(get_experiment(store, key).as_dict()))

    async def put_experiment(self, call: Call) -> Reply:
        call.only()
        from tallystick.control.experiments import put_experiment
        from tallystick.experiments.definition import ExperimentError, parse_experiment

        key = call.params["key"]
        document = read_document(await call.body(), call.content_type)
        data = document.data
        try:
            if not isinstance(data, dict):
                raise DefinitionError(
                    "", f"send one experiment (an object), not {type(data).__name__}"
                )
            given = data.get("key", key)
            if given != key:
                raise DefinitionError(
                    "key",
                    f"the body is experiment {given!r} but the address is experiment {key!r}: "
                    f"an experiment cannot be renamed; PUT it to /v1/admin/experiments/{given}",
                )
            data = {"key": key, **data}
            try:
                parse_experiment(data)
            except ExperimentError as exc:
                raise DefinitionError(exc.path, exc.message) from None
        except DefinitionError as exc:
            raise refuse_definition(exc, document.root) from None

        def work(store: ControlStore) -> Reply:
            change = put_experiment(store, data, call.who)
            return Reply(change.as_dict(), 201 if change.action == "create" else 200)

        return await self._with_store(work)

    async def start_experiment(self, call: Call) -> Reply:
        call.only()
        await _no_settings(call, "starting an experiment")
        from tallystick.control.experiments import start_experiment

        key = call.params["key"]
        return await self._with_store(
            lambda store: Reply(start_experiment(store, key, call.who).as_dict())
        )

    async def stop_experiment(self, call: Call) -> Reply:
        call.only()
        await _no_settings(call, "stopping an experiment")
        from tallystick.control.experiments import stop_experiment

        key = call.params["key"]
        return await self._with_store(
            lambda store: Reply(stop_experiment(store, key, call.who).as_dict())
        )

    async def delete_experiment(self, call: Call) -> Reply:
        call.only()
        from tallystick.control.experiments import delete_experiment

        key = call.params["key"]
        return await self._with_store(
            lambda store: Reply(delete_experiment(store, key, call.who).as_dict())
        )

    # -- keys ------------------------------------------------------------------------------------

    async def list_keys(self, call: Call) -> Reply:
        access.require_key_admin(call.scope)
        everything = _flag(call.only("all").get("all", "true"), "all")
        from tallystick.control.keys import list_keys

        def work(store: ControlStore) -> Reply:
            keys = list_keys(store, include_revoked=everything)
            return Reply({"keys": [k.as_dict() for k in keys]})

        return await self._with_store(work)

    async def create_key(self, call: Call) -> Reply:
        access.require_key_admin(call.scope)
        body = await call.json(KEY_EXAMPLE)
        unknown = sorted(set(body) - {"kind", "name", "app", "origins", "streams"})
        if unknown:
            raise invalid(
                f"unknown key {unknown[0]!r}: a key has kind, name, and app, origins (write "
                "keys), streams (read keys)"
            )
        from tallystick.control.keys import create_key

        def work(store: ControlStore) -> Reply:
            key, secret = create_key(
                store,
                str(body.get("kind") or ""),
                str(body.get("name") or ""),
                actor=call.who,
                app=_optional_text(body, "app"),
                origins=_texts(body, "origins"),
                streams=_texts(body, "streams"),
            )
            return Reply({"key": key.as_dict(), "secret": secret}, 201, JSON, _NO_STORE)

        return await self._with_store(work)

    async def revoke_key(self, call: Call) -> Reply:
        access.require_key_admin(call.scope)
        call.only()
        key_id = _id(call, "key")
        from tallystick.control.keys import revoke_key

        def work(store: ControlStore) -> Reply:
            return Reply({"key": revoke_key(store, key_id, call.who).as_dict()})

        return await self._with_store(work)

    # -- user deletion ---------------------------------------------------------------------------

    async def delete_user(self, call: Call) -> Reply:
        """Record a request to delete a user (only keyed hashes of the id are kept); the loader
        carries it out within seconds: 202 with the request."""
        call.only()
        body = await call.json(DELETE_USER_EXAMPLE)
        unknown = sorted(set(body) - {"user_id"})
        if unknown:
            raise invalid(f"unknown key {unknown[0]!r}: a deletion has user_id")
        user_id = body.get("user_id")
        if not isinstance(user_id, str) or not user_id.strip():
            raise invalid(f"user_id must be a non-empty string: {DELETE_USER_EXAMPLE}")
        from tallystick.control.deletions import pending, request_deletion

        def work(store: ControlStore) -> Reply:
            asked = {r.id for r in pending(store)}
            try:
                request = request_deletion(store, self.settings, user_id, call.who)
            except ValueError as exc:
                raise invalid(str(exc)) from None
            # 202: recorded now, carried out by the loader; 200: pending already
            return Reply({"deletion": request.as_dict()}, 200 if request.id in asked else 202)

        return await self._with_store(work)

    async def list_deletions(self, call: Call) -> Reply:
        params = call.only("status", "limit")
        from tallystick.control.deletions import STATUSES, list_deletions

        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise invalid(f"unknown status {status!r}: use {', '.join(STATUSES)}")
        raw = params.get("limit") or "100"
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise invalid(f"limit {raw!r} must be a whole number from 1 to 1000")

        def work(store: ControlStore) -> Reply:
            found = list_deletions(store, status=status, limit=int(raw))
            return Reply({"deletions": [r.as_dict() for r in found]})

        return await self._with_store(work)

    async def get_deletion(self, call: Call) -> Reply:
        call.only()
        request_id = _id(call, "deletion request")
        from tallystick.control.deletions import get_deletion

        def work(store: ControlStore) -> Reply:
            return Reply({"deletion": get_deletion(store, request_id).as_dict()})

        return await self._with_store(work)

    # -- the configuration and its audit log -----------------------------------------------------

    async def audit_log(self, call: Call) -> Reply:
        kind, name, limit = views.audit_query(call.only(*views.AUDIT_PARAMS))

        def work(store: ControlStore) -> Reply:
            entries = store.audit_log(kind=kind, name=name, limit=limit)
            view = self._view(store, call)
            if not view.everything:
                models = {m.name: m for m in store.models()}
                entries = [e for e in entries if views.audit_visible(e, view, models)]
            return Reply({"entries": [e.as_dict() for e in entries]})

        return await self._with_store(work)

    async def get_config(self, call: Call) -> Reply:
        form = call.only("format").get("format") or "json"
        if form not in ("json", "yaml"):
            raise invalid(f"unknown format {form!r}: use json or yaml")
        config = await self._with_store(
            lambda store: views.visible_configuration(
                store.configuration(), self._view(store, call)
            )
        )
        if form == "json":
            return Reply(config.as_dict())
        return Reply(dump(config).encode(), content_type=YAML)

    async def plan_config(self, call: Call) -> Reply:
        call.only()
        wanted = read_configuration(await call.body(), call.content_type)
        plan = await self._with_store(lambda store: store.plan(wanted))
        return Reply({"summary": plan.summary(), "changes": views.changes(plan)})

    async def apply_config(self, call: Call) -> Reply:
        call.only()
        wanted = read_configuration(await call.body(), call.content_type)

        def work(store: ControlStore) -> Reply:
            plan = store.apply(wanted, call.who)
            return Reply(
                {
                    "applied": bool(plan),
                    "summary": plan.summary(),
                    "changes": views.changes(plan),
                    "version": store.version(),
                }
            )

        return await self._with_store(work)

    # -- the catalog -----------------------------------------------------------------------------

    def volumes(self, today: dt.date) -> dict[str | None, Volume]:
        """Each stream's events over the last 7 and 28 days (kept while the lake files of the
        window are unchanged)."""
        first = window_start(today, max(WINDOWS))
        return self.answers.get(
            ("volume", today),
            self.lake.stamp(EVENTS, first),
            partial(stream_volumes, self.lake, today),
        )

    async def catalog_streams(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            full = store.configuration()
            view = self._view(store, call)
            config = views.visible_configuration(full, view)
            times = store.stream_times()
            at = self.now()
            volumes = self.volumes(at.date())
            defined = {s.name for s in full.streams}
            streams = [
                views.stream_view(s, at, times)
                | {"volume": volumes.get(s.name, Volume()).as_dict()}
                for s in config.streams
            ]
            other = [
                {"stream": name, "volume": volume.as_dict()}
                for name, volume in sorted(
                    volumes.items(), key=lambda kv: (kv[0] is None, kv[0] or "")
                )
                if name not in defined and view.stream(name)
            ]
            return Reply(
                {
                    "today": at.date().isoformat(),
                    "unrouted_stream": config.unrouted_stream,
                    "streams": streams,
                    "other": other,
                }
            )

        return await self._with_store(work)

    async def catalog_models(self, call: Call) -> Reply:
        call.only()

        def work(store: ControlStore) -> Reply:
            built = store.model_built()
            runs = store.latest_checks()
            config = views.visible_configuration(store.configuration(), self._view(store, call))
            models = [views.catalog_model(m, built, runs) for m in config.models]
            models.sort(key=lambda m: (-m["failing"], m["name"]))
            return Reply({"models": models})

        return await self._with_store(work)

    def fields(
        self, store: ControlStore, today: dt.date, view: Visibility = EVERYTHING
    ) -> list[FieldInfo]:
        """Every field ever seen, refreshed from the lake whenever its files changed since the
        last refresh (the control store remembers fields the lake no longer holds). For a
        reader who may not see every stream, the lake's fields are measured without the hidden
        streams' copies (and not stored), with the remembered ones it may see."""
        from tallystick.catalog.fields import compute, merge, read_fields, refresh

        if view.everything:
            return self.answers.get(
                ("fields", today),
                self.lake.stamp(EVENTS),
                lambda: refresh(self.lake, store, today).fields,
            )

        def measure() -> list[FieldInfo]:
            current = compute(self.lake, today, view.hidden)
            stored = views.visible_fields(read_fields(store), view)
            return views.visible_fields(merge(stored, current, today), view)

        return self.answers.get(
            ("fields", today, *sorted(view.hidden)), self.lake.stamp(EVENTS), measure
        )

    async def catalog_fields(self, call: Call) -> Reply:
        q = call.only("q").get("q", "").strip()
        from tallystick.catalog.search import search, words

        def work(store: ControlStore) -> Reply:
            found = self.fields(store, self.today(), self._view(store, call))
            shown = found
            if words(q):
                by_name = {f.name: f for f in found}
                shown = [by_name[h.name] for h in search(q, (), found, (), kinds=("field",))]
            return Reply({"q": q, "total": len(found), "fields": [f.as_dict() for f in shown]})

        return await self._with_store(work)

    async def catalog_search(self, call: Call) -> Reply:
        q, kinds, limit = views.search_query(call.only("q", "kind", "limit"))
        from tallystick.catalog.search import SearchError, search
        from tallystick.query.catalog import CatalogFiles

        def work(store: ControlStore) -> Reply:
            catalog, _problems = CatalogFiles(self.settings.catalog_dir).read()
            view = self._view(store, call)
            found = self.fields(store, self.today(), view) if "field" in kinds else []
            streams = views.visible_configuration(store.configuration(), view).streams
            metrics = [m for m in catalog if view.events(m.events)]
            try:
                hits = search(q, streams, found, metrics, kinds=kinds, limit=limit)
            except SearchError as exc:
                raise invalid(str(exc)) from None
            return Reply({"q": q, "kinds": list(kinds), "hits": [h.as_dict() for h in hits]})

        return await self._with_store(work)

    async def audit_report(self, call: Call) -> Reply:
        form = call.only("format").get("format") or "json"
        if form not in AUDIT_FORMATS:
            raise invalid(f"unknown format {form!r}: use {', '.join(AUDIT_FORMATS)}")
        from tallystick.catalog import audit_render
        from tallystick.catalog.audit import report

        def work(store: ControlStore) -> Reply:
            if not self._view(store, call).everything:
                raise Refused(403, PRIVATE_AUDIT)
            audited = report(self.settings, store=store)
            if form == "json":
                return Reply(audited.as_dict())
            text = audit_render.render(audited, form).encode()
            return Reply(text, content_type=AUDIT_FORMATS[form], headers=_REPORT_HEADERS)

        return await self._with_store(work)


@contextlib.contextmanager
def _engine_busy() -> Iterator[None]:
    """A model that cannot be built or checked now (its database is busy) is a 503; one that
    cannot be built at all (a reserved column name...) is a 400."""
    from tallystick.models import EngineBusy, ModelError

    try:
        yield
    except EngineBusy as exc:
        raise Refused(
            503, Problem(messages.NOT_READY, f"{exc}; try again in a moment"), _RETRY
        ) from None
    except ModelError as exc:
        raise Refused(400, Problem(messages.INVALID_DEFINITION, str(exc))) from None


def _flag(raw: str, name: str) -> bool:
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no", ""):
        return False
    raise invalid(f"{name} must be true or false, got {raw!r}")


def _id(call: Call, what: str) -> int:
    raw = call.params["id"]
    if not raw.isdigit():
        raise not_found(f"no {what} {raw!r}: ids are whole numbers")
    return int(raw)


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _texts(body: Mapping[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise invalid(f"{key} must be a list of strings, got {value!r}")


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise invalid(f"{key} must be a string, got {value!r}")


def _quarantine_kind(body: Mapping[str, Any]) -> tuple[str, str]:
    """The rule's kind and value: exactly one of ``user``, ``session``, ``ip``, ``where``."""
    allowed = {*QUARANTINE_KINDS, "from", "to", "reason"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(
            f"unknown key {unknown[0]!r}: a quarantine rule has one of "
            f"{', '.join(QUARANTINE_KINDS)}, and reason, from, to"
        )
    chosen = [k for k in QUARANTINE_KINDS if body.get(k) is not None]
    if len(chosen) != 1:
        raise invalid(
            "give exactly one of user, session, ip or where (FIELD=VALUE)"
            + (f", not {' and '.join(chosen)}" if chosen else "")
        )
    value = _optional_text(body, chosen[0])
    assert value is not None
    return chosen[0], value


def _environment(params: Mapping[str, str]) -> str:
    environment = params.get("environment", "")
    if not environment:
        raise invalid("give the environment: ?environment=prod")
    return environment


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _evaluation_request(body: Mapping[str, Any]) -> tuple[str, dict[str, Any], list[str] | None]:
    """``{"environment", "attributes"?, "flags"?}``: the environment, the unit's attributes and
    the flags asked for (``None``: every flag)."""
    unknown = sorted(set(body) - {"environment", "attributes", "flags"})
    if unknown:
        raise invalid(f"unknown key {unknown[0]!r}: send environment, attributes and flags")
    environment = body.get("environment")
    if not isinstance(environment, str) or not environment:
        raise invalid('give the environment: {"environment": "prod", "attributes": {...}}')
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        raise invalid("attributes is an object: attribute name → value")
    keys = body.get("flags")
    if keys is not None and (
        not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
    ):
        raise invalid("flags is a list of flag keys (leave it out for every flag)")
    return environment, attributes, keys


def _http_hints(message: str) -> str:
    for cli, http in _LIST_HINTS.items():
        message = message.replace(cli, http)
    return message


def _parsed(parse: Callable[[dict[str, Any]], T], raw: dict[str, Any]) -> T:
    """``parse(raw)``; a DefinitionError becomes a 400 naming the place."""
    try:
        return parse(raw)
    except DefinitionError as exc:
        raise refuse_definition(exc) from None


async def _no_settings(call: Call, action: str) -> None:
    if await call.json("{}"):
        raise invalid(f"{action} takes no settings: send an empty body")
