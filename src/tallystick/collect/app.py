"""The collector: a small ASGI application.

``POST /v1/events`` accepts one event, a JSON array of events or ``{"events": [...]}``
(optionally gzip). Valid events and the failed-event records of invalid ones are written to the
spool and fsync'd before the response is sent; see docs/collector.md for the contract. Before
its body is read, a request passes the edge (``collect.edge``): blocked ranges and rate limits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from tallystick import messages
from tallystick.admin.access import NOTHING, Credential, Need, decide, need_of
from tallystick.collect import cors
from tallystick.collect.asgi import Receive, Scope, Send, respond, respond_json
from tallystick.collect.body import ClientDisconnected, decode_content, read_body
from tallystick.collect.edge import Edge
from tallystick.collect.limits import retry_after
from tallystick.collect.refusals import FLUSH_SECONDS, Refusals, write_quietly
from tallystick.collect.requests import Refused
from tallystick.collect.validate import Checked, check_array, split_events
from tallystick.config import Settings, from_env
from tallystick.control.blocks import BLOCKED, RATE_LIMITED
from tallystick.control.controls import Controls
from tallystick.control.deletions import DELETED_USER, suppressed_indexes
from tallystick.control.keys import ApiKey, Keyed, KeysUnavailable, Verifier
from tallystick.control.principal import OPEN, SCOPE_KEY, Principal
from tallystick.messages import Problem
from tallystick.privacy import ingest as privacy
from tallystick.query.auth import bearer, cookie, query_key
from tallystick.store import spool
from tallystick.store.failed import SOURCE_HTTP, FailedEvent
from tallystick.store.spool import RequestContext, SpoolUnavailable, SpoolWriter

if TYPE_CHECKING:
    from tallystick.control.store import ControlStore
    from tallystick.dashboard.app import Dashboard
    from tallystick.enrich.client_ip import Address

log = logging.getLogger("tallystick.collector")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
CONTROL_PREFIXES: Final = ("/v1/admin/", "/v1/catalog/", "/v1/flags/")
"""Paths served by the control-plane API (``GET /v1/catalog`` itself is the query API's)."""
_CONTROL_EXPERIMENTS: Final = re.compile(r"/v1/experiments(?:/[^/]+)?/?")
"""``/v1/experiments`` and ``/v1/experiments/{key}`` (definitions: the control-plane API's);
deeper paths (``/v1/experiments/{key}/results``) are the query API's."""


def is_control_path(path: str) -> bool:
    """Whether the control-plane API serves ``path`` (the query API serves the rest of /v1/)."""
    return (
        path.startswith(CONTROL_PREFIXES)
        or path in ("/v1/audit", "/v1/flags")
        or _CONTROL_EXPERIMENTS.fullmatch(path) is not None
    )


_STATUS_BODY_TOO_LARGE: Final = (messages.REQUEST_TOO_LARGE, messages.TOO_MANY_EVENTS)

ENDPOINTS: Final = {
    "POST /v1/events": "send events (see docs/collector.md)",
    "OPTIONS /v1/events": "CORS preflight for pages on origins a write key allows",
    "GET /healthz": "alive",
    "GET /readyz": "ready to accept events",
    "GET /v1/query/{analysis}": "run an analysis (see docs/http-api.md)",
    "POST /v1/query/{analysis}": "run an analysis, parameters as JSON",
    "GET /v1/metrics/{name}": "run a catalog metric",
    "GET /v1/catalog": "the metric catalog: definitions, owners and where each is used",
    "GET /v1/meta": "what the lake holds: data as of, event names, fields",
    "GET /v1/health": "data health: events received and failed per day, failures by reason",
    "GET /v1/quality/loss": "loss and duplicates per day and client library version",
    "GET /v1/quality/skew": "clients' clock skew by library version",
    "GET /v1/quality/alerts": "the alert history: rules evaluated, fired and resolved",
    "GET /openapi.json": "the HTTP API's OpenAPI 3.1 document",
    "GET /v1/admin/streams": "the streams, with their status (see docs/http-api.md)",
    "POST /v1/admin/streams": "create a stream",
    "GET /v1/admin/streams/{name}": "one stream",
    "PUT /v1/admin/streams/{name}": "create or replace a stream",
    "PATCH /v1/admin/streams/{name}": "change some settings of a stream",
    "DELETE /v1/admin/streams/{name}": "delete a stream",
    "POST /v1/admin/streams/{name}/renew": "move a stream's expiry later",
    "POST /v1/admin/streams/{name}/enable": "enable a stream",
    "POST /v1/admin/streams/{name}/disable": "disable a stream",
    "GET /v1/admin/models": "the data models",
    "POST /v1/admin/models": "create a data model",
    "GET /v1/admin/models/{name}": "one data model",
    "PUT /v1/admin/models/{name}": "create or replace a data model",
    "DELETE /v1/admin/models/{name}": "delete a data model",
    "POST /v1/admin/models/{name}/build": "build a data model in the engine",
    "POST /v1/admin/models/{name}/check": "run a data model's quality checks",
    "GET /v1/admin/quarantine": "the quarantine rules: data every analysis leaves out",
    "POST /v1/admin/quarantine": "quarantine a user, session, network or field value",
    "POST /v1/admin/quarantine/{id}/lift": "lift a quarantine rule",
    "GET /v1/admin/blocks": "the blocked IP ranges, with the requests each refused",
    "POST /v1/admin/blocks": "block an IP range",
    "DELETE /v1/admin/blocks/{id}": "remove an IP block",
    "GET /v1/admin/keys": "the API keys (never the keys themselves)",
    "POST /v1/admin/keys": "create an API key: the answer shows it once",
    "DELETE /v1/admin/keys/{id}": "revoke an API key, at once",
    "POST /v1/admin/users/delete": "delete a user's events everywhere, suppress later ones (202)",
    "GET /v1/admin/deletions": "the user-deletion requests and their status",
    "GET /v1/admin/deletions/{id}": "one user-deletion request",
    "GET /v1/admin/checks": "the latest result of every quality check",
    "GET /v1/admin/audit-log": "who changed what, when: before and after",
    "GET /v1/admin/config": "the whole configuration (JSON, or YAML with ?format=yaml)",
    "POST /v1/admin/config/plan": "what applying a configuration would change",
    "POST /v1/admin/config/apply": "apply a whole configuration",
    "GET /v1/admin/flags": "the whole feature-flags ruleset, every environment",
    "PUT /v1/admin/flags": "replace the feature-flags ruleset (validated, audited)",
    "GET /v1/flags/ruleset": "one environment's flags ruleset for SDKs (ETag; any key)",
    "GET /v1/flags/stream": "one environment's flags ruleset as server-sent events (any key)",
    "POST /v1/flags/evaluate": "evaluate flags for a unit's attributes (any key)",
    "GET /v1/flags": "the whole flags ruleset, each environment's version and who changed it",
    "GET /v1/experiments": "the experiments: key, status, owner, variations, metrics",
    "GET /v1/experiments/{key}": "one experiment's definition and version",
    "GET /v1/experiments/{key}/results": "an experiment's results: effects, SRM, exposures",
    "PUT /v1/admin/experiments/{key}": "create or replace an experiment (validated, audited)",
    "DELETE /v1/admin/experiments/{key}": "delete an experiment (a running one's flag rule too)",
    "POST /v1/admin/experiments/{key}/start": "start an experiment: its rule joins the flags",
    "POST /v1/admin/experiments/{key}/stop": "stop an experiment: its flag rule is removed",
    "GET /v1/catalog/streams": "the streams with their status and event volume",
    "GET /v1/catalog/models": "the data models with their latest check results",
    "GET /v1/catalog/fields": "every field seen in the lake (?q= searches)",
    "GET /v1/catalog/search": "search streams, fields and metrics",
    "GET /v1/audit": "the audit and gap report (?format=json|md|html)",
    "GET /": "the dashboard (see docs/dashboard.md)",
    "GET /signin": "the dashboard's sign-in page (when reads need a key)",
    "POST /signin": "sign in to the dashboard with a read key: sets the session cookie",
    "POST /signout": "end the dashboard session",
}


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers") or ())


def _problem_body(problem: Problem) -> dict[str, object]:
    return {"accepted": 0, "rejected": 0, "error": problem.as_dict()}


def _keys_unavailable(exc: Exception) -> Refused:
    problem = Problem(messages.NOT_READY, f"{exc}. Retry later.")
    return Refused(503, problem, ((b"retry-after", b"1"),))


def _with_headers(send: Send, extra: tuple[tuple[bytes, bytes], ...]) -> Send:
    """``send`` with ``extra`` headers added to the response's start."""

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*(message.get("headers") or ()), *extra]}
        await send(message)

    return sending


class Collector:
    """The collector ASGI app. Owns one spool writer, started and stopped by ASGI lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spool = SpoolWriter(
            settings.spool_dir,
            rotate_seconds=settings.spool_rotate_seconds,
            rotate_bytes=settings.spool_rotate_bytes,
            min_free_bytes=settings.min_free_bytes,
        )
        self.edge = Edge(settings)
        self.refusals = Refusals()
        """Requests refused at the edge, not yet written (see ``collect.refusals``)."""
        self._flush_at: asyncio.TimerHandle | None = None
        self._flushed_at = 0.0
        self.started = False
        self.store: ControlStore | None = None
        self.controls: Controls | None = None
        """The configuration in force: replaced whole when its version changes, never edited."""
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._query: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._dashboard: Dashboard | None = None
        self._control_api: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        self._building = threading.Lock()
        self.privacy = privacy.Guard(settings)
        """What is removed from events before they are stored (``privacy.ingest``)."""
        self.keys: Verifier | None = None
        """Checks keys and dashboard sessions (from start-up)."""
        self._secret: bytes | None = None
        """The installation's secret, read when a deleted user's events must be recognised."""

    def query_app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The query API (``/v1/...`` but events, ``/openapi.json``), built on first use."""
        with self._building:
            if self._query is None:
                from tallystick.query.app import QueryApp

                self._query = QueryApp(self.settings)
            return self._query

    def control_api(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The control-plane API (``/v1/admin/...``, ``/v1/catalog/...``, ``/v1/audit``), built
        on first use."""
        with self._building:
            if self._control_api is None:
                from tallystick.admin.app import ControlApi

                self._control_api = ControlApi(self.settings)
            return self._control_api

    def dashboard_app(self) -> Dashboard:
        """The web dashboard (``/``, its pages and ``/static/``), built on first use."""
        with self._building:
            if self._dashboard is None:
                from tallystick.dashboard.app import Dashboard

                self._dashboard = Dashboard(self.settings)
            self._dashboard.keys = self.keys
            return self._dashboard

    def warm_up(self) -> None:
        """Build the query API and the dashboard, with their imports, assets and database, and
        compute the answers every page asks first, so that the first person to open the
        dashboard does not wait for them."""
        try:
            query = self.query_app()
            for asset in self.dashboard_app().assets.values():
                asset.gzipped  # noqa: B018 - compresses the static files once
            from tallystick.metrics.engines import warm_up
            from tallystick.query.app import QueryApp

            warm_up()
            if isinstance(query, QueryApp):
                query.prime()
            from tallystick.admin.app import ControlApi

            control = self.control_api()
            if isinstance(control, ControlApi):
                control.store()  # imports and opens the control store's pool
        except Exception:  # pragma: no cover - the first request builds them again
            log.exception("warming up the query API failed")

    # -- lifecycle ---------------------------------------------------------------------------

    def startup(self) -> None:
        if not self.started:
            from tallystick.control.store import ControlStore

            try:
                self.store = ControlStore.for_settings(self.settings)
                self.controls = self.store.controls()
            except Exception as exc:
                if self.store is not None:
                    self.store.close()
                    self.store = None
                raise RuntimeError(
                    "cannot read the control plane's database "
                    f"({type(exc).__name__}: {exc}); check TALLYSTICK_CONTROL_URL and that the "
                    "database is reachable"
                ) from exc
            try:
                self.edge.open()
            except Exception:
                self.store.close()
                self.store = None
                raise
            self.keys = Verifier(self.store, self.settings)
            if self._dashboard is not None:
                self._dashboard.keys = self.keys
            self.spool.start()
            self._watching.clear()
            self._watcher = threading.Thread(
                target=self._watch, name="tallystick-controls", daemon=True
            )
            self._watcher.start()
            self.started = True

    def shutdown(self) -> None:
        if self.started:
            self._watching.set()
            if self._watcher is not None:
                self._watcher.join()
            if self._flush_at is not None:
                self._flush_at.cancel()
                self._flush_at = None
            write_quietly(self.spool, self.refusals.take_frames())
            self.spool.close()
            self.edge.close()
            if self.keys is not None:
                self.keys.close()
                self.keys = None
            if self.store is not None:
                self.store.close()
            for app in (self._control_api, self._query):
                close = getattr(app, "close", None)
                if close is not None:
                    close()
            self.started = False

    def _watch(self) -> None:
        """Reload the configuration whenever its version moves (every ``control_poll_seconds``).
        An unreadable database keeps the configuration in force and is logged."""
        assert self.store is not None
        failing = False
        while not self._watching.wait(self.settings.control_poll_seconds):
            try:
                current = self.controls
                if current is None or self.store.version() != current.version:
                    self.controls = self.store.controls()
                    log.info(
                        "control plane: now at configuration version %d", self.controls.version
                    )
                if failing:
                    log.warning("control plane readable again")
                failing = False
                if self.edge.geo is not None:
                    self.edge.geo.refresh()
            except Exception:
                if not failing:
                    log.exception(
                        "control plane unreadable; keeping configuration version %s",
                        self.controls.version if self.controls else "(none)",
                    )
                failing = True

    def reload_controls(self) -> Controls:
        """Read the configuration now (tests and admin writes in this process)."""
        assert self.store is not None
        self.controls = self.store.controls()
        return self.controls

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:  # pragma: no cover - reported to the server
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/v1/events":
            if method == "POST":
                await self.ingest(scope, receive, send)
            elif method == "OPTIONS":
                await self.preflight(scope, send)
            else:
                await self._not_allowed(send, "POST")
        elif path in ("/v1", "/v1/"):
            await respond_json(send, 200, {"service": "tallystick", "endpoints": ENDPOINTS})
        elif is_control_path(path):
            if await self._authenticated(scope, send):
                await self.control_api()(scope, receive, send)
        elif path.startswith("/v1/") or path == "/openapi.json":
            if await self._authenticated(scope, send):
                await self.query_app()(scope, receive, send)
        elif path == "/healthz":
            await respond_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            problem = self.spool.problem() if self.started else "the collector is starting"
            if problem is None:
                version = self.controls.version if self.controls else None
                await respond_json(send, 200, {"status": "ready", "config_version": version})
            else:
                await respond_json(send, 503, {"status": "not ready", "reason": problem})
        elif self.dashboard_app().serves(path):
            dashboard = self.dashboard_app()
            if dashboard.is_page(path):
                try:
                    scope[SCOPE_KEY] = self.principal(scope, "read")
                except Refused as refused:
                    if refused.status == 503:
                        await respond_json(send, 503, refused.body(), refused.headers)
                    else:
                        await dashboard.to_sign_in(scope, send)
                    return
            await dashboard(scope, receive, send)
        else:
            await respond_json(
                send,
                404,
                {
                    "error": Problem(
                        messages.NOT_FOUND,
                        f"no such endpoint: {method} {path}; events go to POST /v1/events, "
                        "GET /v1 lists the API and / is the dashboard.",
                    ).as_dict()
                },
            )

    # -- access ------------------------------------------------------------------------------

    def _keyed(self) -> Keyed:
        if self.keys is None:
            from tallystick.admin.access import static_keyed

            return static_keyed(self.settings)
        try:
            return self.keys.keyed()
        except KeysUnavailable as exc:
            raise _keys_unavailable(exc) from None

    def credential(
        self, token: bytes | None, *, session: bool = False
    ) -> tuple[Credential, ApiKey | None]:
        """Who a key (or, with ``session``, a dashboard session cookie) is; and its row."""
        if token is None:
            return NOTHING, None
        if self.keys is None:
            from tallystick.admin.access import static_credential

            return static_credential(
                {"headers": [(b"authorization", b"Bearer " + token)]}, self.settings
            ), None
        try:
            if session:
                return Credential(True, self.keys.session(token), cookie=True), None
            found = self.keys.lookup(token)
        except KeysUnavailable as exc:
            raise _keys_unavailable(exc) from None
        if found is None:
            return Credential(True), None
        return Credential(True, found.principal, revoked=found.principal is None), found.key

    def principal(self, scope: Scope, need: Need) -> Principal:
        """Who makes a request (a key, else the dashboard's session cookie); raises Refused."""
        headers = scope.get("headers") or ()
        token = bearer(headers)
        if token is not None:
            credential, _ = self.credential(token)
        else:
            credential, _ = self.credential(cookie(headers), session=True)
        return decide(need, credential, self._keyed, scope["method"], scope.get("client"))

    async def _authenticated(self, scope: Scope, send: Send) -> bool:
        """Decide who makes a request and leave it in the scope; answer a refusal."""
        try:
            scope[SCOPE_KEY] = self.principal(scope, need_of(scope["path"], scope["method"]))
        except Refused as refused:
            await respond_json(send, refused.status, refused.body(), refused.headers)
            return False
        return True

    async def preflight(self, scope: Scope, send: Send) -> None:
        """``OPTIONS /v1/events``: the CORS grant for an origin some active write key allows
        (in open mode, a page on this machine); see ``collect.cors``."""
        origin = cors.normalized(_headers(scope).get(b"origin"))
        allowed = None
        if origin is not None:
            try:
                keyed = self._keyed().write
                origins = self.keys.origins() if keyed and self.keys is not None else frozenset()
            except (Refused, KeysUnavailable):
                keyed, origins = True, frozenset()  # unknown: grant nothing
            if origin in origins or (not keyed and cors.is_local(origin)):
                allowed = origin
        await respond(send, 204, b"text/plain", b"", cors.preflight_headers(allowed))

    async def _not_allowed(self, send: Send, allowed: str) -> None:
        problem = Problem(messages.METHOD_NOT_ALLOWED, f"use {allowed} for this endpoint.")
        await respond_json(send, 405, {"error": problem.as_dict()}, ((b"allow", allowed.encode()),))

    # -- ingestion ---------------------------------------------------------------------------

    async def ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        headers = _headers(scope)
        received_us = time.time_ns() // 1000
        address = self.edge.client_address(scope)
        query = scope.get("query_string", b"")
        if not await self._admitted(address, headers, received_us, send, query):
            return
        token = bearer(headers.items()) or query_key(query)
        try:
            credential, key = self.credential(token)
            writer = decide("write", credential, self._keyed, "POST", None)
        except Refused as refused:
            await respond_json(
                send, refused.status, _problem_body(refused.problem), refused.headers
            )
            return
        origin = cors.normalized(headers.get(b"origin"))
        if origin is not None:
            if key is not None and key.origins:
                if origin not in key.origins:
                    problem = Problem(
                        messages.ORIGIN_NOT_ALLOWED,
                        f"this write key does not allow pages from {origin}: add it "
                        "(`tally keys create --kind write --origin ...` makes a key for it)",
                    )
                    await respond_json(send, 403, _problem_body(problem))
                    return
                send = _with_headers(send, cors.response_headers(origin))
            elif writer is OPEN and cors.is_local(origin):
                send = _with_headers(send, cors.response_headers(origin))
        declared = headers.get(b"content-length", b"")
        try:
            body = await read_body(
                receive, settings.max_request_bytes, int(declared) if declared.isdigit() else None
            )
        except ClientDisconnected:
            return
        if isinstance(body, bytes):
            body = decode_content(
                body,
                headers.get(b"content-encoding", b"").decode("latin-1"),
                settings.max_request_bytes,
            )
        if isinstance(body, Problem):
            await self._refuse(send, body, b"", received_us)
            return
        array = split_events(body)
        if isinstance(array, Problem):
            await self._refuse(send, array, body, received_us)
            return
        now = dt.datetime.fromtimestamp(received_us / 1e6, tz=dt.UTC)
        checked = check_array(
            array,
            max_event_bytes=settings.max_event_bytes,
            max_events=settings.max_events_per_request,
            now=now,
            max_future_seconds=settings.max_future_seconds,
        )
        if isinstance(checked, Problem):
            await self._refuse(send, checked, body, received_us)
            return
        controls = self.controls
        if controls is None:
            problem = Problem(messages.NOT_READY, "the collector is starting. Retry later.")
            await respond_json(send, 503, _problem_body(problem), ((b"retry-after", b"1"),))
            return
        context = self.edge.context(address, headers.get(b"user-agent"))
        del address  # what is kept of it is in the context: the address itself goes no further
        frames = self._frames(checked, received_us, now, controls, context)
        try:
            await self.spool.append(frames)
        except SpoolUnavailable as exc:
            problem = Problem(messages.NOT_READY, f"{exc}. Retry later.")
            await respond_json(send, 503, _problem_body(problem), ((b"retry-after", b"1"),))
            return
        accepted, rejected = len(checked.events), len(checked.rejected)
        if not rejected:
            await respond_json(send, 200, {"accepted": accepted, "rejected": 0})
            return
        errors = [
            {"index": r.index, "event_id": r.event_id, **r.problem.as_dict()}
            for r in checked.rejected
        ]
        if accepted:
            status = 207
        elif all(r.problem.code == messages.EVENT_TOO_LARGE for r in checked.rejected):
            status = 413
        else:
            status = 400
        await respond_json(
            send, status, {"accepted": accepted, "rejected": rejected, "errors": errors}
        )

    def _frames(
        self,
        checked: Checked,
        received_us: int,
        now: dt.datetime,
        controls: Controls,
        context: RequestContext,
    ) -> list[bytes]:
        """The spool frames of a request: one per stream that stores some of its events, then
        the failed-event records, which carry no client address (it is personal data, and the
        failed store keeps only what is needed to fix the client) and are redacted
        (``privacy.ingest``). Events a stream refuses for personal data join the rejected."""
        frames = []
        if checked.events:
            frames += self._stream_frames(checked, received_us, now, controls, context)
        if checked.rejected:
            limit = self.settings.failed_raw_max_bytes
            guard = self.privacy
            failed = []
            for r in checked.rejected:
                raw, cut = guard.failed_raw(r.raw, controls, limit)
                failed.append(
                    FailedEvent(
                        received_ts=now,
                        source=SOURCE_HTTP,
                        error_code=r.problem.code,
                        error_message=guard.failed_text(r.problem.message, controls),
                        raw=raw,
                        raw_truncated=cut,
                        index=r.index,
                        event_id=guard.failed_id(r.event_id, controls),
                    )
                )
            frames.append(spool.frame(spool.FAILED, received_us, _encode(failed)))
        return frames

    def _stream_frames(
        self,
        checked: Checked,
        received_us: int,
        now: dt.datetime,
        controls: Controls,
        context: RequestContext,
    ) -> list[bytes]:
        """Route, curate, sample and narrow the accepted events (see ``control.controls``).
        Events stored as sent keep the bytes the client sent; what streams declined is counted
        in a frame of its own. Each stream's events go in one frame with the request's context
        (``spool.context_frame``). Each copy is cleaned by its stream's privacy policy
        (``privacy.ingest``): events without personal data keep their bytes; events a stream
        refuses for it are moved to ``checked.rejected``."""
        guard = self.privacy

        def frame(stream: str, events_json: bytes) -> bytes:
            return spool.context_frame(
                msgspec.structs.replace(
                    context,
                    stream=stream,
                    keep_user_agent=stream not in controls.drops_user_agent,
                    keep_session=stream not in controls.drops_session,
                    network=None
                    if guard.policy(controls, stream).ip == "drop"
                    else context.network,
                ),
                received_us,
                events_json,
            )

        suspects = guard.suspects(checked.events, controls)
        changes = guard.changes()
        gone = self._deleted_users(checked, controls)
        if controls.passthrough and not suspects and not changes and not gone:
            return [frame(controls.unrouted, checked.accepted_json())]
        raws = checked.accepted_raws()
        if controls.by_name_only and not suspects and not changes:
            mappings: list[dict[str, object]] = [{"name": e.name} for e in checked.events]
        else:
            mappings = _decode(checked.accepted_json())  # one call for the whole array
        groups: dict[str, list[bytes]] = {}
        declined: Counter[tuple[str, str, str]] = Counter()
        refused: dict[int, privacy.Refused] = {}
        for i, (fields, raw) in enumerate(zip(mappings, raws, strict=True)):
            if i in gone:  # a deleted user's: counted, not stored (``control.deletions``)
                name = checked.events[i].name
                for target in controls.routes(name):
                    declined[(target, DELETED_USER, name)] += 1
                continue
            copies: list[tuple[str, bytes]] = []
            # copies stored as sent under the same policy are cleaned once, not once per stream
            cleaned_once: dict[tuple[int, privacy.Policy], bytes | None] = {}
            for placed in controls.place(fields, now, declined):
                if i in suspects or changes:
                    policy = guard.policy(controls, placed.stream)
                    source = fields if placed.event is None else placed.event
                    memo = (id(source), policy)
                    if memo in cleaned_once:
                        encoded = cleaned_once[memo]
                    else:
                        cleaned = guard.clean(source, policy, placed.stream, i in suspects)
                        if isinstance(cleaned, privacy.Refused):
                            refused[i] = cleaned
                            break
                        encoded = None if cleaned is None else _encode(cleaned)
                        cleaned_once[memo] = encoded
                    if encoded is not None:
                        copies.append((placed.stream, encoded))
                        continue
                copy = bytes(raw) if placed.event is None else _encode(placed.event)
                copies.append((placed.stream, copy))
            if i not in refused:
                for stream, copy in copies:
                    groups.setdefault(stream, []).append(copy)
        if refused:
            privacy.refuse(checked, refused)
        frames = [frame(stream, b"[" + b",".join(items) + b"]") for stream, items in groups.items()]
        if declined:
            counts = [
                {"stream": stream, "reason": reason, "name": name, "count": n}
                for (stream, reason, name), n in declined.items()
            ]
            frames.append(spool.frame(spool.DECLINED, received_us, _encode(counts)))
        return frames

    def _deleted_users(self, checked: Checked, controls: Controls) -> set[int]:
        """The events of deleted users (``control.deletions``): their user id's keyed hash is
        one the configuration in force suppresses."""
        if not controls.suppressed:
            return set()
        if self._secret is None:
            from tallystick.privacy.secrets import install_secret

            self._secret = install_secret(self.settings.data)
        return suppressed_indexes(
            (e.user.id if e.user is not None else None for e in checked.events),
            controls.suppressed,
            self._secret,
        )

    async def _admitted(
        self,
        address: Address | None,
        headers: dict[bytes, bytes],
        received_us: int,
        send: Send,
        scope_query: bytes = b"",
    ) -> bool:
        """Whether a request may be read: not from a blocked range (403), within the rate limits
        (429 with ``Retry-After``). A refusal is answered here and counted, not recorded as a
        failed event (its body is never read)."""
        controls = self.controls
        if address is not None and controls is not None and controls.blocks:
            block = controls.blocks.match(address)
            if block is not None:
                self._count_refusal(BLOCKED, block.network, received_us)
                problem = Problem(
                    messages.IP_BLOCKED,
                    "requests from your network are blocked by this collector's operator. "
                    "Contact them if you think this is a mistake.",
                )
                await respond_json(send, 403, _problem_body(problem))
                return False
        if self.edge.limits:
            authorization = headers.get(b"authorization")
            if authorization is None and b"key=" in scope_query:
                beacon = query_key(scope_query)  # sendBeacon's write key counts as one too
                authorization = b"Bearer " + beacon if beacon else None
            limit, wait = self.edge.limits.check(address, authorization)
            if limit:
                self._count_refusal(RATE_LIMITED, limit, received_us)
                seconds = retry_after(wait)
                who = "your address" if limit == "ip" else "your write key"
                problem = Problem(
                    messages.RATE_LIMITED,
                    f"too many requests from {who}: wait {seconds} s (Retry-After) and send "
                    "again; batch events into fewer requests to stay under the limit.",
                )
                await respond_json(
                    send, 429, _problem_body(problem), ((b"retry-after", str(seconds).encode()),)
                )
                return False
        return True

    def _count_refusal(self, reason: str, name: str, received_us: int) -> None:
        """Count a refused request; write the counts at most once every ``FLUSH_SECONDS``."""
        self.refusals.add(reason, name, received_us)
        if self._flush_at is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._flushed_at + FLUSH_SECONDS - loop.time())
            self._flush_at = loop.call_later(delay, self._flush_refusals)

    def _flush_refusals(self) -> None:
        self._flush_at = None
        self._flushed_at = asyncio.get_running_loop().time()
        write_quietly(self.spool, self.refusals.take_frames())

    async def _refuse(self, send: Send, problem: Problem, body: bytes, received_us: int) -> None:
        """Refuse the whole request; keep a record of it, redacted, in the failed-events store."""
        now = dt.datetime.fromtimestamp(received_us / 1e6, tz=dt.UTC)
        controls = self.controls
        raw, cut = self.privacy.failed_raw(body, controls, self.settings.failed_raw_max_bytes)
        record = FailedEvent(
            received_ts=now,
            source=SOURCE_HTTP,
            error_code=problem.code,
            error_message=self.privacy.failed_text(problem.message, controls),
            raw=raw,
            raw_truncated=cut,
        )
        status = 413 if problem.code in _STATUS_BODY_TOO_LARGE else 400
        if problem.code == messages.UNSUPPORTED_ENCODING:
            status = 415
        try:
            await self.spool.append([spool.frame(spool.FAILED, received_us, _encode([record]))])
        except SpoolUnavailable as exc:
            log.warning("could not record a refused request: %s", exc)
        await respond_json(send, status, _problem_body(problem))


def create_app(settings: Settings | None = None) -> Collector:
    return Collector(settings or from_env())
