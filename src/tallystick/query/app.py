"""The query API: every analysis over HTTP, as an ASGI application the collector delegates to.

``GET /v1/query/<analysis>?from=...&where=...`` and ``POST /v1/query/<analysis>`` (a JSON object
of the same parameters) answer ``{"analysis", "engine", "rows", "sql"}`` with dates as ISO
strings; ``GET|POST /v1/metrics/<name>`` runs a catalog metric the same way; ``GET /v1/catalog``
lists the catalog, ``GET /v1/meta`` what the lake holds and ``GET /v1/health`` how data is
arriving; ``GET /v1/quality/loss``, ``/v1/quality/skew`` and ``/v1/quality/alerts`` whether it
can be trusted (loss and duplicates, clock skew, alert history); ``GET /openapi.json`` describes
it all. When reads are keyed (docs/access.md) every endpoint but the OpenAPI document needs a
read or admin key; the collector's router decides (``admin.access``). Queries and lake reads
run in worker threads (at most ``QUERY_THREADS`` at a time per process), so the event loop, and
with it ingestion, never waits for one. See docs/http-api.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.to_thread
import msgspec

from tallystick import messages
from tallystick.admin import access
from tallystick.catalog.runs import MetricRuns
from tallystick.collect.asgi import Receive, Scope, Send, respond_json
from tallystick.collect.body import ClientDisconnected
from tallystick.collect.requests import Refused, json_object, read_body
from tallystick.config import Settings
from tallystick.control.principal import SCOPE_KEY, principal_of
from tallystick.control.quarantine import ActiveRules, Rule, RulesUnavailable, rules_key
from tallystick.control.visibility import (
    EVERYTHING,
    Definitions,
    DefinitionsUnavailable,
    Visibility,
)
from tallystick.messages import Problem
from tallystick.metrics.analysis import Analysis, Outcome
from tallystick.metrics.api import QueryFailed, run
from tallystick.metrics.catalog import MetricDef
from tallystick.metrics.engines import DuckDBEngine, Engine
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import ANALYSES, REQUIRED, build, default_range, normalise
from tallystick.privacy import dp
from tallystick.query import experiments as experiments_api
from tallystick.query import overview
from tallystick.query import quality as quality_api
from tallystick.query.answers import Answers
from tallystick.query.catalog import CatalogFiles, listing
from tallystick.query.openapi import (
    CATALOG_PATH,
    HEALTH_PATH,
    META_PATH,
    METRICS_PREFIX,
    OPENAPI_PATH,
    QUERY_PREFIX,
    check,
    document,
    param,
    parameters,
)
from tallystick.store.lake import EVENTS, FAILED, MESSAGES, Lake
from tallystick.store.loader import QUARANTINE

if TYPE_CHECKING:
    from tallystick.control.dp_ledger import Ledger
    from tallystick.control.store import ControlStore

log = logging.getLogger("tallystick.query")

QUERY_THREADS: Final = 2
MAX_KEPT_ROWS: Final = 10_000
"""Answers with more rows than this are not kept (see ``query.answers``)."""
MAX_BODY_BYTES: Final = 64 * 1024
METRIC_PARAMS: Final = ("from", "to", "grain", "include_bots")
"""What ``/v1/metrics/<name>`` takes; everything else is in the metric's definition."""

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


def _invalid(message: str) -> Refused:
    return Refused(400, Problem(messages.INVALID_QUERY, message))


def query_params(query_string: str) -> dict[str, Any]:
    """Parameters from a query string: repeatable ones as lists when repeated, others once."""
    out: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True):
        name = normalise({key: ""}).popitem()[0]
        if name in out:
            if not param(name).repeatable:
                raise _invalid(f"parameter {key!r} is given twice: give it once")
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


async def _read_json(receive: Receive) -> dict[str, Any]:
    body = await read_body(receive, MAX_BODY_BYTES, "send only the analysis's parameters.")
    return json_object(body, '{"event": "user.login"}')


class QueryApp:
    """The query API over one lake (DuckDB by default; any ``Engine`` can be given)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.lake = Lake(settings.lake_dir)
        # the quarantine rules in force, read for every analysis (see ``_execute``)
        self.quarantine = ActiveRules(settings)
        self.engine: Engine = engine or DuckDBEngine(self.lake, quarantine=self.quarantine)
        # Answers are reused while the lake files they read are unchanged; an engine given from
        # outside may read something else than this lake, so its answers are never kept.
        self.answers: Answers | None = Answers() if engine is None else None
        self.catalog = CatalogFiles(settings.catalog_dir)
        # catalog metrics' query times, for the audit (the control store opens on first use)
        self.runs = MetricRuns(settings, "http")
        self._limiter: anyio.CapacityLimiter | None = None
        self._openapi: bytes | None = None
        # the stream definitions, for what a reader may not see (private streams)
        self.definitions = Definitions(settings)
        # the control store, for the alert history (opened on first use)
        self._store: ControlStore | None = None
        self._opening = threading.Lock()

    def openapi(self) -> bytes:
        if self._openapi is None:
            from tallystick.version import __version__

            self._openapi = _encode(document(__version__))
        return self._openapi

    def today(self) -> dt.date:
        """The server's UTC date (default ranges end on it)."""
        return dt.datetime.now(dt.UTC).date()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == OPENAPI_PATH:
            if method == "GET":
                await respond_json(send, 200, self.openapi())
            else:
                await self._refuse(send, _not_allowed("GET"))
            return
        try:
            if _needs_key(path) and SCOPE_KEY not in scope:
                # called without the collector's router (which decides who may read): the
                # settings' static keys decide
                scope[SCOPE_KEY] = access.authorize_read(scope, self.settings)
            body = await self._route(path, method, scope, receive)
        except Refused as refused:
            await self._refuse(send, refused)
            return
        except ClientDisconnected:
            return
        await respond_json(send, 200, body)

    async def _visibility(self, scope: Scope) -> Visibility:
        """What the request's principal may see (private streams it is not granted are
        hidden); a 503 when the stream definitions cannot be read."""
        principal = principal_of(scope)
        if principal.sees_everything:
            return EVERYTHING
        try:
            return await anyio.to_thread.run_sync(self.definitions.visibility, principal)
        except DefinitionsUnavailable as exc:
            log.warning("%s", exc)
            raise Refused(503, Problem(messages.NOT_READY, f"{exc}.")) from None

    async def _route(self, path: str, method: str, scope: Scope, receive: Receive) -> object:
        query_string = scope.get("query_string", b"").decode("latin-1")
        if path == META_PATH:
            _only_get(method)
            view = await self._visibility(scope)
            return await self._in_thread(self.meta, view)
        if path == HEALTH_PATH:
            _only_get(method)
            try:
                date_from, date_to = overview.health_range(query_params(query_string), self.today())
            except MetricError as exc:
                raise _invalid(str(exc)) from None
            view = await self._visibility(scope)
            return await self._in_thread(self.health, date_from, date_to, view)
        if path == CATALOG_PATH:
            _only_get(method)
            view = await self._visibility(scope)
            return await anyio.to_thread.run_sync(self._listing, view)
        if path.rstrip("/") in quality_api.PATHS:
            _only_get(method)
            params = query_params(query_string)
            view = await self._visibility(scope)
            return await self._quality(path.rstrip("/"), params, view)
        if path.startswith(METRICS_PREFIX) and path[len(METRICS_PREFIX) :].strip("/"):
            name = path[len(METRICS_PREFIX) :].rstrip("/")
            raw = await _params(method, query_string, receive)
            view = await self._visibility(scope)
            metric = await anyio.to_thread.run_sync(self._metric, name, view)
            analysis = _metric_analysis(metric, raw)
            outcome = await self._execute(analysis, metric.name, view)
            return {
                "metric": metric.name,
                "analysis": analysis.name,
                "engine": outcome.engine,
                "rows": outcome.rows,
                "sql": outcome.sql,
                "definition": metric.to_dict(),
            }
        experiment = experiments_api.results_key(path)
        if experiment is not None:
            _only_get(method)
            params = query_params(query_string)
            view = await self._visibility(scope)
            return await self._experiment_results(experiment, params, view)
        if path.startswith(QUERY_PREFIX):
            name = path[len(QUERY_PREFIX) :].rstrip("/")
            if name in ANALYSES:
                raw = await _params(method, query_string, receive)
                view = await self._visibility(scope)
                if dp.requested(raw):
                    return await self._release(name, raw, view, principal_of(scope).name)
                outcome = await self._run(name, raw, view)
                return {
                    "analysis": name,
                    "engine": outcome.engine,
                    "rows": outcome.rows,
                    "sql": outcome.sql,
                }
        raise _no_endpoint(path, method)

    def meta(self, view: Visibility = EVERYTHING) -> dict[str, Any]:
        """The body of ``GET /v1/meta`` (kept while the lake's event files are unchanged)."""
        today = self.today()
        return self._answer(
            ("meta", today, *_hidden_key(view)),
            lambda: self.lake.stamp(EVENTS),
            partial(overview.meta_body, self.lake, today, view.hidden),
        )

    def health(
        self, date_from: dt.date, date_to: dt.date, view: Visibility = EVERYTHING
    ) -> dict[str, Any]:
        """The body of ``GET /v1/health`` (kept while the lake and the spool are unchanged)."""
        return self._answer(
            ("health", date_from, date_to, self.today(), *_hidden_key(view)),
            self._health_stamp,
            partial(
                overview.health_body,
                self.lake,
                self.settings.spool_dir,
                date_from,
                date_to,
                view.hidden,
            ),
        )

    async def _quality(
        self, path: str, params: dict[str, Any], view: Visibility = EVERYTHING
    ) -> dict[str, Any]:
        """The body of ``GET /v1/quality/loss``, ``/skew`` or ``/alerts``."""
        from tallystick.quality import reports

        hidden = _hidden_key(view)
        try:
            if path == quality_api.ALERTS_PATH:
                alerts = quality_api.alert_query(params)
                return await self._in_thread(self._alerts, alerts, view)
            if path == quality_api.LOSS_PATH:
                query = reports.loss_query(params)
                # the whole ledger is read whatever the range (see quality.loss_sql)
                return await self._in_thread(
                    self._answer,
                    ("quality-loss", query, *hidden),
                    lambda: self.lake.stamp(MESSAGES),
                    partial(reports.loss_body, self.lake, query, view.hidden),
                )
            query = reports.skew_query(params)
            return await self._in_thread(
                self._answer,
                ("quality-skew", query, *hidden),
                lambda: self.lake.stamp(EVENTS),
                partial(reports.skew_body, self.lake, query, view.hidden),
            )
        except MetricError as exc:
            raise _invalid(f"{exc}.") from None

    def _alerts(
        self, query: quality_api.AlertQuery, view: Visibility = EVERYTHING
    ) -> dict[str, Any]:
        """The alert history from the control store (a 503 when it cannot be read)."""
        import sqlalchemy as sa

        try:
            with self._opening:
                if self._store is None:
                    from tallystick.control.store import ControlStore

                    self._store = ControlStore.for_settings(self.settings)
                store = self._store
            # a hidden stream asked for by name has no runs, as one that does not exist
            return quality_api.alerts_body(store, query, view.hidden)
        except (sa.exc.SQLAlchemyError, OSError):
            log.exception("the alert history could not be read")
            raise Refused(
                503,
                Problem(
                    messages.NOT_READY,
                    "the control-plane database could not be read just now (see the server's "
                    "log): try again in a moment",
                ),
            ) from None

    async def _experiment_results(
        self, key: str, params: dict[str, Any], view: Visibility = EVERYTHING
    ) -> dict[str, Any]:
        """The body of ``GET /v1/experiments/{key}/results`` (``query.experiments``): 404 for
        an unknown experiment, 400 for a bad ``at``, 500 when the engine fails."""
        try:
            at, include_bots = experiments_api.check_params(params)
        except MetricError as exc:
            raise _invalid(f"{exc}.") from None

        def answer() -> dict[str, Any]:
            import sqlalchemy as sa

            from tallystick.control.store import NotFound

            catalog, _ = self.catalog.read()
            try:
                with self._opening:
                    if self._store is None:
                        from tallystick.control.store import ControlStore

                        self._store = ControlStore.for_settings(self.settings)
                    store = self._store
                return experiments_api.results_body(
                    store,
                    catalog,
                    self.engine,
                    self._rules(),
                    key,
                    at=at,
                    include_bots=include_bots,
                    view=view,
                )
            except NotFound as exc:
                message = view.redact(str(exc).rstrip("."))
                raise Refused(
                    404,
                    Problem(messages.NOT_FOUND, f"{message}; GET /v1/experiments lists them."),
                ) from None
            except (sa.exc.SQLAlchemyError, OSError):
                log.exception("experiment %s could not be read", key)
                raise Refused(
                    503,
                    Problem(
                        messages.NOT_READY,
                        "the control-plane database could not be read just now (see the "
                        "server's log): try again in a moment",
                    ),
                ) from None

        try:
            return await self._in_thread(answer)
        except QueryFailed as exc:
            log.warning("the results of experiment %s failed: %s", key, exc)
            raise Refused(
                500, Problem(messages.QUERY_FAILED, view.redact(f"{exc}. Try again later."))
            ) from None
        except MetricError as exc:
            raise _invalid(view.redact(f"{exc}.")) from None

    def prime(self) -> None:
        """Compute what every dashboard page asks first (the lake summary, the catalog, the
        default range's health), so that the first visitor finds the answers kept."""
        self.meta()
        self._listing()
        self.health(*default_range(self.today()))

    def _listing(self, view: Visibility = EVERYTHING) -> dict[str, Any]:
        catalog, problems = self.catalog.read()
        shown = None if view.everything else (lambda m: view.events(m.events))
        return listing(catalog, problems, self.lake, self.runs.usage(), shown)

    def _metric(self, name: str, view: Visibility = EVERYTHING) -> MetricDef:
        """Catalog metric ``name``; a 404 when there is none, or when it reads an event that
        only streams hidden from the reader hold (as if there were none: its name is not
        suggested either)."""
        catalog, _ = self.catalog.read()
        metric = catalog.get(name)
        if metric is not None and view.events(metric.events):
            return metric
        if view.everything:
            message = f"no metric named {name!r}"
            try:
                catalog.find(name)
            except MetricError as exc:
                message = str(exc)
        else:
            from tallystick.metrics.catalog import _suggest

            shown = [m.name for m in catalog if view.events(m.events)]
            message = (
                f"no metric named {name!r} in {catalog.directory} — "
                f"{_suggest(name, shown, 'known metrics are')}"
            )
        raise Refused(404, Problem(messages.NOT_FOUND, f"{message}."))

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in a worker thread, sharing the queries' limit."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(QUERY_THREADS)
        return await anyio.to_thread.run_sync(partial(work, *args), limiter=self._limiter)

    async def _run(self, name: str, raw: dict[str, Any], view: Visibility = EVERYTHING) -> Outcome:
        return await self._execute(_analysis(name, raw), view=view)

    async def _release(
        self, name: str, raw: dict[str, Any], view: Visibility, actor: str
    ) -> dict[str, Any]:
        """A differentially private release (``dp_epsilon``; see ``privacy.dp``): the budget is
        checked, the bounded exact values computed (kept like any answer: they never leave the
        server), the epsilon spent, and fresh noise drawn. Every request is a new release, so
        the noisy answer is never kept; over budget, a 403 and nothing spent."""
        from tallystick.control.dp_ledger import BudgetExhausted

        try:
            checked = {
                k: check(k, v) if k in dp.ALL_PARAMS else v for k, v in normalise(raw).items()
            }
            params, request = dp.split(name, checked)
            if request is None:
                raise AssertionError("dp.requested and dp.split disagree")
            bounded = dp.bound(_analysis(name, params), request)
        except MetricError as exc:
            raise _invalid(str(exc)) from None
        ledger = await self._in_thread(self._ledger)
        try:
            await self._in_thread(ledger.check, dp.dataset(bounded), request.epsilon)
            outcome = await self._execute(bounded, view=view)
            made = await self._in_thread(dp.finish, bounded, request, outcome, ledger, actor)
        except BudgetExhausted as exc:
            raise Refused(403, Problem(messages.PRIVACY_BUDGET_EXHAUSTED, f"{exc}.")) from None
        return {
            "analysis": name,
            "engine": made.engine,
            "rows": made.rows,
            "sql": made.sql,
            "dp": made.dp,
        }

    def _ledger(self) -> Ledger:
        """The privacy-budget ledger in the control store (a 503 when it cannot be opened)."""
        import sqlalchemy as sa

        from tallystick.control.dp_ledger import Ledger

        try:
            with self._opening:
                if self._store is None:
                    from tallystick.control.store import ControlStore

                    self._store = ControlStore.for_settings(self.settings)
                return Ledger.of(self._store, self.settings)
        except (sa.exc.SQLAlchemyError, OSError):
            log.exception("the privacy-budget ledger could not be opened")
            raise Refused(
                503,
                Problem(
                    messages.NOT_READY,
                    "the control-plane database could not be opened just now (see the server's "
                    "log): try again in a moment",
                ),
            ) from None

    def _answer(
        self,
        question: Hashable,
        stamp: Callable[[], Hashable],
        compute: Callable[[], T],
        keep: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """``compute()``, or the answer kept from an earlier ask over the same lake files."""
        if self.answers is None:
            return compute()
        return self.answers.get(question, stamp(), compute, keep)

    def _health_stamp(self) -> Hashable:
        spool_dir = self.settings.spool_dir
        waiting = tuple(sorted(os.listdir(spool_dir))) if spool_dir.is_dir() else ()
        quarantined = spool_dir / QUARANTINE
        held = tuple(sorted(os.listdir(quarantined))) if quarantined.is_dir() else ()
        return (self.lake.stamp(EVENTS), self.lake.stamp(FAILED), waiting, held)

    async def _execute(
        self, analysis: Analysis, metric: str | None = None, view: Visibility = EVERYTHING
    ) -> Outcome:
        """Run ``analysis`` (or reuse its kept answer), leaving out the streams ``view``
        hides; a computation of catalog metric ``metric`` has its query time recorded."""
        window = analysis.read_window()

        def answer() -> Outcome:
            # The answer depends on the lake files and on the quarantine rules (read once here,
            # and the same rules applied); whether bots count is part of the analysis, the
            # hidden streams part of the question.
            rules = self._rules()
            compute: Callable[[], Outcome] = partial(run, analysis, self.engine, rules, view.hidden)
            if metric is not None:
                compute = partial(self.runs.timed, metric, compute)
            return self._answer(
                ("analysis", repr(analysis), *_hidden_key(view)),
                lambda: (self.lake.stamp(EVENTS, *window), rules_key(rules)),
                compute,
                lambda outcome: len(outcome.rows) <= MAX_KEPT_ROWS,
            )

        try:
            outcome = await self._in_thread(answer)
        except QueryFailed as exc:
            log.warning("query %s failed: %s", analysis.name, exc)
            message = view.redact(f"{exc}. Try again later.")
            raise Refused(500, Problem(messages.QUERY_FAILED, message)) from None
        except MetricError as exc:
            raise _invalid(view.redact(str(exc))) from None
        if view.everything:
            return outcome
        # the SQL names the streams it leaves out: not to a reader they are hidden from
        return Outcome(outcome.rows, view.redact(outcome.sql), outcome.engine)

    def _rules(self) -> tuple[Rule, ...]:
        """The quarantine rules the engine applies now; QueryFailed when unreadable."""
        quarantine = getattr(self.engine, "quarantine", None)
        try:
            return quarantine.rules() if quarantine is not None else ()
        except RulesUnavailable as exc:
            raise QueryFailed(str(exc)) from None

    def close(self) -> None:
        """Release the control stores opened to record query times and read alerts."""
        self.runs.close()
        self.quarantine.close()
        self.definitions.close()
        with self._opening:
            if self._store is not None:
                self._store.close()
                self._store = None

    async def _refuse(self, send: Send, refused: Refused) -> None:
        body = {"error": refused.problem.as_dict()}
        await respond_json(send, refused.status, body, refused.headers)


def _analysis(name: str, raw: dict[str, Any]) -> Analysis:
    """Analysis ``name`` from a request's parameters (a 400 saying what to fix)."""
    try:
        params = normalise(raw)
        missing = [k for k in REQUIRED[name] if k not in params]
        if missing:
            example = " and ".join(f"{k}={param(k).example}" for k in missing)
            raise MetricError(f"{name} needs {' and '.join(missing)}: add e.g. {example}")
        taken = set(parameters(name))
        params = {k: check(k, v) if k in taken else v for k, v in params.items()}
        return build(name, params)
    except MetricError as exc:
        raise _invalid(str(exc)) from None


async def _params(method: str, query_string: str, receive: Receive) -> dict[str, Any]:
    """The parameters of a GET (query string) or POST (JSON object) request."""
    if method == "GET":
        return query_params(query_string)
    if method == "POST":
        return await _read_json(receive)
    raise _not_allowed("GET", "POST")


def _metric_analysis(metric: MetricDef, raw: dict[str, Any]) -> Analysis:
    """The analysis of ``metric`` over the request's ``from``, ``to`` and ``grain``."""
    try:
        params = normalise(raw)
        unknown = sorted(set(params) - set(METRIC_PARAMS))
        if unknown:
            raise MetricError(
                f"a catalog metric takes only from, to, grain and include_bots, not "
                f"{', '.join(unknown)}: "
                f"its other parameters are in its definition ({metric.file}:{metric.line}); "
                f"for other ones use /v1/query/{metric.type}"
            )
        params = {k: check(k, v) for k, v in params.items()}
        bots = params.get("include_bots")
        return metric.build(
            grain=params.get("grain"),
            date_from=params.get("from"),
            date_to=params.get("to"),
            include_bots=None if bots is None else _flag(bots),
        )
    except MetricError as exc:
        raise _invalid(str(exc)) from None


def _hidden_key(view: Visibility) -> tuple[str, ...]:
    """What a kept answer's question adds for a reader who may not see every stream (nothing
    for one who sees them all)."""
    return ("hidden", *sorted(view.hidden)) if view.hidden else ()


def _flag(value: object) -> bool:
    """A checked boolean parameter (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "yes"))


def _needs_key(path: str) -> bool:
    """Whether ``path`` reads data (and so needs the read key, when the server has one); an
    unknown path is a 404 for anyone."""
    family = path.rstrip("/")
    return family in (
        CATALOG_PATH,
        META_PATH,
        HEALTH_PATH,
        QUERY_PREFIX.rstrip("/"),
        METRICS_PREFIX.rstrip("/"),
        *quality_api.PATHS,
    ) or path.startswith((QUERY_PREFIX, METRICS_PREFIX, "/v1/experiments/"))


def _only_get(method: str) -> None:
    if method != "GET":
        raise _not_allowed("GET")


def _no_endpoint(path: str, method: str) -> Refused:
    if path.startswith(QUERY_PREFIX) or path.rstrip("/") == QUERY_PREFIX.rstrip("/"):
        name = path[len(QUERY_PREFIX) :].rstrip("/")
        what = f"no analysis {name!r}" if name else "name the analysis"
        message = f"{what}: use /v1/query/<analysis> with one of {', '.join(ANALYSES)}."
    elif path.rstrip("/") == METRICS_PREFIX.rstrip("/"):
        message = "name the metric: use /v1/metrics/<name>; GET /v1/catalog lists them."
    else:
        message = (
            f"no such endpoint: {method} {path}; events go to POST /v1/events and GET /v1 "
            "lists the API."
        )
    return Refused(404, Problem(messages.NOT_FOUND, message))


def _not_allowed(*methods: str) -> Refused:
    return Refused(
        405,
        Problem(messages.METHOD_NOT_ALLOWED, f"use {' or '.join(methods)} for this endpoint."),
        ((b"allow", ", ".join(methods).encode()),),
    )
