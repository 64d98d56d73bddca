"""The audit and gap report: what is collected and measured, and what nobody looks after.

Two steps, like every part of the catalog:

* ``gather`` reads the facts (I/O): the metric catalog, the control plane's configuration and
  run records, and what the lake holds (event names with their volume, senders and streams,
  events received and refused per source, and its fields from the field catalog).
* ``audit`` turns facts into a ``Report`` (pure): nine ``Section``\\ s, always all of them, each
  with a one-line "why it matters / what to do" and rows naming the owner or team to ask.

``report(settings)`` does both; ``tally audit`` renders it (``audit_render``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from tallystick.control.definitions import CONTEXT_GROUPS, Configuration, Stream
from tallystick.control.routing import Router
from tallystick.metrics.catalog import MetricDef, Problem

if TYPE_CHECKING:
    import duckdb

    from tallystick.catalog.fields import FieldInfo
    from tallystick.config import Settings
    from tallystick.control.store import ControlStore, MetricCost
    from tallystick.store.lake import Lake

Value: TypeAlias = str | int | float | None
Row: TypeAlias = Mapping[str, Value]

EXPIRY_DAYS: Final = 30
"""Streams expiring within this many days are listed."""
RETENTION_DAYS: Final = 90
"""Streams keeping events longer than this (or forever) are listed."""
FAILURE_DAYS: Final = 30
"""Failed-event rates are measured over this many days, up to today."""
MOST_EXPENSIVE: Final = 10
"""How many metrics the query-time section lists."""


# -- the facts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventName:
    """One event name in the lake."""

    name: str
    events: int
    """Distinct events (each counted once, however many streams stored it)."""
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    """The earliest and latest event time (``client_ts``)."""
    sources: tuple[str, ...] = ()
    """Who sends it: ``app / client library``."""
    streams: Mapping[str | None, int] = field(default_factory=dict)
    """Stored copies per stream (``None``: stored before streams existed)."""


@dataclass(frozen=True, slots=True)
class Received:
    """Events accepted from one source (app and client library) in the failure window."""

    app: str | None
    library: str | None
    events: int


@dataclass(frozen=True, slots=True)
class Failed:
    """Failed-event records of one source and error code in the failure window; app and library
    are None when the record does not tell (a refused request, a payload that is not JSON)."""

    app: str | None
    library: str | None
    code: str
    count: int


@dataclass(frozen=True, slots=True)
class FieldSeen:
    """A field the lake holds (``user.id``, ``data.email``), from the field catalog."""

    name: str
    personal: str | None = None
    """Why it looks personal (``catalog.personal.looks_personal``), or None."""
    events: tuple[str, ...] = ()
    """The event names that carry it."""
    streams: tuple[str, ...] = ()
    """The streams that stored it (empty when the lake's files predate streams)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A metric name used somewhere: ``where`` says where."""

    metric: str
    where: str


@dataclass(frozen=True, slots=True)
class Cost:
    """Measured query times of one metric."""

    metric: str
    runs: int
    mean_seconds: float
    max_seconds: float
    last_run: dt.datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the audit looks at."""

    metrics: tuple[MetricDef, ...] = ()
    problems: tuple[Problem, ...] = ()
    """Catalog entries that do not validate."""
    configuration: Configuration = field(default_factory=Configuration)
    names: tuple[EventName, ...] = ()
    references: tuple[Reference, ...] = ()
    costs: tuple[Cost, ...] = ()
    received: tuple[Received, ...] = ()
    failed: tuple[Failed, ...] = ()
    fields: tuple[FieldSeen, ...] = ()


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """One kind of gap: how many, why it matters, and the rows (column name -> value)."""

    key: str
    title: str
    why: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...] = ()
    note: str = ""

    @property
    def count(self) -> int:
        return len(self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "count": self.count,
            "why": self.why,
            "note": self.note,
            "columns": list(self.columns),
            "rows": [{c: row.get(c) for c in self.columns} for row in self.rows],
        }


@dataclass(frozen=True, slots=True)
class Report:
    today: dt.date
    generated_at: dt.datetime
    sections: tuple[Section, ...]
    source: str = ""
    """What was audited (the data directory)."""

    @property
    def total(self) -> int:
        return sum(s.count for s in self.sections)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": TITLE,
            "today": self.today.isoformat(),
            "generated_at": _time(self.generated_at),
            "source": self.source,
            "total": self.total,
            "sections": [s.as_dict() for s in self.sections],
        }


TITLE: Final = "Audit and gap report"
SECTION_KEYS: Final = (
    "undefined_metrics",
    "unseen_events",
    "unread_streams",
    "undeclared_events",
    "expiring_streams",
    "long_retention",
    "expensive_metrics",
    "unreliable_sources",
    "personal_fields",
)
NO_COSTS: Final = (
    "No query times recorded yet: they are recorded whenever a catalog metric runs "
    "(tally metrics run, GET /v1/metrics/NAME)."
)
LOSS_NOTE: Final = (
    "Messages sent but never received are counted per client library and version from the "
    "per-session message index: tally quality loss (GET /v1/quality/loss, the data-health page)."
)


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _date(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).date().isoformat()


def _days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def _joined(items: Iterable[str], limit: int = 6) -> str:
    unique = list(dict.fromkeys(i for i in items if i))
    if len(unique) > limit:
        return ", ".join(unique[:limit]) + f" and {len(unique) - limit} more"
    return ", ".join(unique)


# -- pure helpers ----------------------------------------------------------------------------


def ask_metric(metric: MetricDef) -> str:
    """Who to ask about a metric: its owner, else its teams, else whoever edits its file."""
    if metric.owner:
        return metric.owner
    if metric.teams:
        return "team " + ", ".join(metric.teams) + " (no owner named)"
    return f"nobody named: whoever edits {metric.file}"


def _ask_stream(stream: Stream | None) -> str:
    if stream is None:
        return "nobody: undeclared events have no owner"
    return stream.owner or "no owner named: whoever changed it last (tally streams log NAME)"


def _router(config: Configuration) -> Router:
    return Router.build({s.name: s.events for s in config.streams}, config.unrouted_stream)


@dataclass(frozen=True, slots=True)
class _Reader:
    kind: str
    name: str
    ask: str


def needed_by(found: Iterable[_Reader]) -> str:
    """Readers grouped by whom to ask: ``sre@x: metric error_rate, model errors; ...``."""
    by_ask: dict[str, list[str]] = defaultdict(list)
    for reader in found:
        by_ask[reader.ask].append(f"{reader.kind} {reader.name}")
    return "; ".join(f"{ask}: {', '.join(names)}" for ask, names in by_ask.items()) or (
        "nobody reads it"
    )


def readers(facts: Facts) -> dict[str, list[_Reader]]:
    """Per stream, the metrics and models that read it: a metric reads every stream one of its
    events is routed to (the unrouted stream for undeclared ones); a model names its stream."""
    router = _router(facts.configuration)
    out: dict[str, list[_Reader]] = defaultdict(list)
    for metric in facts.metrics:
        streams = {s for e in metric.events for s in router.streams(e)}
        for stream in sorted(streams):
            out[stream].append(_Reader("metric", metric.name, ask_metric(metric)))
    for model in facts.configuration.models:
        out[model.stream].append(_Reader("model", model.name, model.owner or "no owner named"))
    return dict(out)


def undeclared(facts: Facts) -> list[EventName]:
    """Event names the current configuration routes to no stream, or that the lake holds in
    the unrouted stream only."""
    router = _router(facts.configuration)
    unrouted = facts.configuration.unrouted_stream
    out = []
    for seen in facts.names:
        stored = {s for s, n in seen.streams.items() if n}
        only_unrouted = bool(stored) and stored <= {unrouted}
        if not router.declared(seen.name) or only_unrouted:
            out.append(seen)
    return out


# -- the sections ----------------------------------------------------------------------------


def _undefined_metrics(facts: Facts) -> Section:
    rows: list[Row] = []
    for metric in facts.metrics:
        missing = []
        if not metric.owner:
            missing.append("no owner")
        if not metric.description.strip() and not (metric.calculation or "").strip():
            missing.append("no description or calculation")
        if missing:
            rows.append(
                {
                    "metric": metric.name,
                    "problem": "; ".join(missing),
                    "where": f"{metric.file}:{metric.line}",
                    "ask": ask_metric(metric),
                }
            )
    for problem in facts.problems:
        rows.append(
            {
                "metric": "(invalid entry)",
                "problem": f"does not validate: {problem.message}",
                "where": f"{problem.file}:{problem.line}",
                "ask": f"whoever edits {problem.file}",
            }
        )
    defined = {m.name for m in facts.metrics}
    wheres: dict[str, list[str]] = defaultdict(list)
    for ref in facts.references:
        if ref.metric not in defined:
            wheres[ref.metric].append(ref.where)
    for name in sorted(wheres):
        rows.append(
            {
                "metric": name,
                "problem": "no catalog entry",
                "where": "; ".join(wheres[name]),
                "ask": "nobody named: whoever asks for it",
            }
        )
    return Section(
        "undefined_metrics",
        "Metrics without a definition or owner",
        "A number nobody defined or owns cannot be trusted, explained or fixed: give each an "
        "owner and a description in the catalog (docs/catalog.md), or define the missing ones.",
        ("metric", "problem", "where", "ask"),
        tuple(rows),
    )


def _unseen_events(facts: Facts) -> Section:
    seen = {n.name for n in facts.names}
    rows: list[Row] = []
    for metric in facts.metrics:
        missing = [e for e in metric.events if e not in seen]
        if missing:
            rows.append(
                {
                    "metric": metric.name,
                    "events never seen": ", ".join(missing),
                    "status": metric.status,
                    "ask": ask_metric(metric),
                }
            )
    return Section(
        "unseen_events",
        "Metrics that reference events never seen",
        "These metrics count events the lake has never received, so they show nothing (or "
        "less than they claim): fix the event name, ship the instrumentation, or retire them.",
        ("metric", "events never seen", "status", "ask"),
        tuple(rows),
    )


def _stream_volumes(facts: Facts) -> dict[str, int]:
    """Events stored per stream: from the lake's ``stream`` column where the lake has one,
    else the events its selectors match (files from before streams carry no stream)."""
    stored: dict[str, int] = defaultdict(int)
    for seen in facts.names:
        for stream, count in seen.streams.items():
            if stream is not None:
                stored[stream] += count
    if stored:
        return dict(stored)
    router = _router(facts.configuration)
    matched: dict[str, int] = defaultdict(int)
    for seen in facts.names:
        for stream in router.streams(seen.name):
            matched[stream] += seen.events
    return dict(matched)


def _unread_streams(facts: Facts, now: dt.datetime) -> Section:
    read = readers(facts)
    volumes = _stream_volumes(facts)
    rows: list[Row] = [
        {
            "stream": s.name,
            "events": volumes.get(s.name, 0),
            "routes": ", ".join(s.events) or "(no events)",
            "status": s.status(now),
            "ask": _ask_stream(s),
        }
        for s in sorted(facts.configuration.streams, key=lambda s: s.name)
        if s.name not in read
    ]
    return Section(
        "unread_streams",
        "Streams no metric or model reads",
        "Data is collected, stored and paid for that nothing reads: ask the owner whether to "
        "add a metric or a model, let the stream expire, or delete it.",
        ("stream", "events", "routes", "status", "ask"),
        tuple(rows),
    )


def _undeclared_events(facts: Facts) -> Section:
    rows: list[Row] = [
        {
            "event": seen.name,
            "events": seen.events,
            "first seen": _date(seen.first),
            "last seen": _date(seen.last),
            "sent by": _joined(seen.sources),
            "ask": f"the team of {_joined(seen.sources)}" if seen.sources else "unknown sender",
        }
        for seen in sorted(undeclared(facts), key=lambda n: (-n.events, n.name))
    ]
    unrouted = facts.configuration.unrouted_stream
    return Section(
        "undeclared_events",
        "Undeclared events",
        f"Events no stream routes land in the {unrouted!r} stream: nobody reviewed their "
        "fields, sampling or retention. Route them to a stream (tally streams) or stop sending "
        "them.",
        ("event", "events", "first seen", "last seen", "sent by", "ask"),
        tuple(rows),
    )


def _expiring_streams(facts: Facts, now: dt.datetime) -> Section:
    horizon = now + dt.timedelta(days=EXPIRY_DAYS)
    rows: list[Row] = []
    for s in sorted(facts.configuration.streams, key=lambda s: (s.expires or horizon, s.name)):
        if s.expires is None or s.expires > horizon:
            continue
        days = (s.expires.date() - now.date()).days
        if s.expires <= now:
            when = "expired today" if days == 0 else f"expired {_days(-days)} ago"
        else:
            when = "expires today" if days == 0 else f"expires in {_days(days)}"
        rows.append(
            {
                "stream": s.name,
                "expires": _date(s.expires),
                "status": when,
                "enabled": "yes" if s.enabled else "no",
                "ask": _ask_stream(s),
            }
        )
    return Section(
        "expiring_streams",
        f"Streams expiring within {EXPIRY_DAYS} days",
        "An expired stream stops collecting: if it is still needed, renew it in time "
        "(tally streams renew NAME); if not, let it end.",
        ("stream", "expires", "status", "enabled", "ask"),
        tuple(rows),
    )


def _long_retention(facts: Facts) -> Section:
    read = readers(facts)
    rows: list[Row] = []
    for s in sorted(facts.configuration.streams, key=lambda s: s.name):
        if s.retention_days is not None and s.retention_days <= RETENTION_DAYS:
            continue
        kept = "until deleted" if s.retention_days is None else _days(s.retention_days)
        rows.append(
            {
                "stream": s.name,
                "kept": kept,
                "needed by": needed_by(read.get(s.name, ())),
                "ask": _ask_stream(s),
            }
        )
    unrouted = facts.configuration.unrouted_stream
    if undeclared(facts):
        rows.append(
            {
                "stream": unrouted,
                "kept": "until deleted",
                "needed by": needed_by(read.get(unrouted, ())),
                "ask": _ask_stream(None),
            }
        )
    return Section(
        "long_retention",
        f"Data kept beyond {RETENTION_DAYS} days",
        "Keeping events longer than 90 days needs a reason: confirm with the readers that they "
        "need the history, and set retention_days on the stream otherwise.",
        ("stream", "kept", "needed by", "ask"),
        tuple(rows),
    )


def _expensive_metrics(facts: Facts) -> Section:
    by_name = {m.name: m for m in facts.metrics}
    costs = sorted(facts.costs, key=lambda c: (-c.mean_seconds, c.metric))[:MOST_EXPENSIVE]
    rows: list[Row] = [
        {
            "metric": c.metric,
            "mean seconds": round(c.mean_seconds, 3),
            "max seconds": round(c.max_seconds, 3),
            "runs": c.runs,
            "last run": _time(c.last_run),
            "ask": ask_metric(by_name[c.metric])
            if c.metric in by_name
            else "not in the catalog any more",
        }
        for c in costs
    ]
    return Section(
        "expensive_metrics",
        "The most expensive metrics by measured query time",
        "Slow metrics make dashboards slow and cost compute: materialise them (tally metrics "
        "materialize), narrow their filters, or simplify them.",
        ("metric", "mean seconds", "max seconds", "runs", "last run", "ask"),
        tuple(rows),
        note="" if facts.costs else NO_COSTS,
    )


def _source(app: str | None, library: str | None) -> str:
    return f"{app or '(no app)'} / {library or '(no client library)'}"


def _unreliable_sources(facts: Facts) -> Section:
    accepted: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for r in facts.received:
        accepted[(r.app, r.library)] += r.events
    failed: dict[tuple[str | None, str | None], dict[str, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    unknown: dict[str, int] = defaultdict(int)
    for f in facts.failed:
        if f.app is None and f.library is None:
            unknown[f.code] += f.count
        else:
            failed[(f.app, f.library)][f.code] += f.count
    total = sum(accepted.values()) + sum(f.count for f in facts.failed)
    rows: list[dict[str, Value]] = []
    for (app, library), codes in failed.items():
        count = sum(codes.values())
        received = count + accepted.get((app, library), 0)
        rows.append(
            {
                "source": _source(app, library),
                "failed": count,
                "received": received,
                "failed %": round(100 * count / received, 2),
                "errors": _codes(codes),
                "ask": f"the team of {_source(app, library)}; see tally failed",
            }
        )
    for code, count in unknown.items():
        rows.append(
            {
                "source": f"unknown sender ({code})",
                "failed": count,
                "received": total,
                "failed %": round(100 * count / total, 2) if total else 100.0,
                "errors": f"{code} ×{count}",
                "ask": "whoever sends it: the payloads are in tally failed",
            }
        )
    rows.sort(key=lambda r: (-float(r["failed %"] or 0), -int(r["failed"] or 0), str(r["source"])))
    return Section(
        "unreliable_sources",
        "Unreliable sources",
        f"Refused events are lost to every metric: over the last {FAILURE_DAYS} days, the "
        "share of each source's events the collector refused. Read the errors (tally failed) "
        "and fix the client.",
        ("source", "failed", "received", "failed %", "errors", "ask"),
        tuple(rows),
        note=LOSS_NOTE,
    )


def _codes(codes: Mapping[str, int]) -> str:
    return ", ".join(f"{code} ×{n}" for code, n in sorted(codes.items(), key=lambda c: -c[1]))


def _stores(stream: Stream, path: str) -> bool:
    """Whether ``stream`` keeps the standard field ``path``."""
    if stream.keep is None:
        return True
    group = path.split(".")[0]
    return group not in CONTEXT_GROUPS or any(k in (group, path) for k in stream.keep)


def _personal_fields(facts: Facts) -> Section:
    config = facts.configuration
    router = _router(config)
    by_name = {s.name: s for s in config.streams}
    rows: list[Row] = []
    for seen in sorted(facts.fields, key=lambda f: f.name):
        if seen.personal is None:
            continue
        if seen.streams:
            streams = list(seen.streams)
        else:  # files from before streams: where the configuration would store it now
            routed = {s for e in seen.events for s in router.streams(e)}
            streams = sorted(
                s for s in routed if s not in by_name or _stores(by_name[s], seen.name)
            )
        owners = [_ask_stream(by_name[s]) for s in streams if s in by_name]
        rows.append(
            {
                "field": seen.name,
                "why": seen.personal,
                "events": _joined(seen.events, 4),
                "stored in": ", ".join(streams) or "(no stream)",
                "ask": _joined(owners, 8) or _ask_stream(None),
            }
        )
    return Section(
        "personal_fields",
        "Fields that look personal",
        "Personal data needs a purpose, protection and a short retention: stop storing the "
        "field (a stream's keep list or a curation rule), pseudonymise it, or write down why "
        "it is needed.",
        ("field", "why", "events", "stored in", "ask"),
        tuple(rows),
    )


def audit(
    facts: Facts, now: dt.datetime, *, today: dt.date | None = None, source: str = ""
) -> Report:
    """The report on ``facts`` as of ``now`` (pure)."""
    sections = (
        _undefined_metrics(facts),
        _unseen_events(facts),
        _unread_streams(facts, now),
        _undeclared_events(facts),
        _expiring_streams(facts, now),
        _long_retention(facts),
        _expensive_metrics(facts),
        _unreliable_sources(facts),
        _personal_fields(facts),
    )
    assert tuple(s.key for s in sections) == SECTION_KEYS
    return Report(today or now.date(), now, sections, source)


# -- gathering the facts (I/O) ---------------------------------------------------------------


def _has_column(con: duckdb.DuckDBPyConnection, view: str, column: str) -> bool:
    return any(r[0] == column for r in con.execute(f"DESCRIBE {view}").fetchall())


def _per_event(con: duckdb.DuckDBPyConnection) -> None:
    """``per_event``: one row per event (``event_id`` and ``name``) over all its stored copies,
    with who sent it. A stream that keeps fewer attributes stores a copy without them, so the
    sender is read from whichever copy has it, not from the copy the ``events`` view picks."""
    con.execute(
        "CREATE TEMP TABLE per_event AS SELECT name, min(client_ts) AS client_ts, "
        "min(received_ts) AS received_ts, max(app_id) AS app, max(client_library) AS library "
        "FROM raw_events GROUP BY event_id, name"
    )


def _event_names(con: duckdb.DuckDBPyConnection) -> list[EventName]:
    stream = "stream" if _has_column(con, "raw_events", "stream") else "NULL::VARCHAR"
    per_stream: dict[str, dict[str | None, int]] = defaultdict(dict)
    for name, in_stream, count in con.execute(
        f"SELECT name, {stream}, count(*) FROM raw_events GROUP BY ALL"
    ).fetchall():
        per_stream[name][in_stream] = int(count)
    rows = con.execute(
        "SELECT name, count(*), min(client_ts), max(client_ts), "
        "list(DISTINCT concat_ws(' / ', coalesce(app, '(no app)'), "
        "coalesce(library, '(no client library)')) ORDER BY 1) "
        "FROM per_event GROUP BY name ORDER BY name"
    ).fetchall()
    return [
        EventName(
            str(name),
            int(count),
            first,
            last,
            tuple(sources or ()),
            per_stream.get(name, {}),
        )
        for name, count, first, last, sources in rows
    ]


def _received(con: duckdb.DuckDBPyConnection, since: dt.datetime) -> list[Received]:
    return [
        Received(app, library, int(n))
        for app, library, n in con.execute(
            "SELECT app, library, count(*) FROM per_event WHERE received_ts >= ? GROUP BY ALL",
            [since],
        ).fetchall()
    ]


def _failed(con: duckdb.DuckDBPyConnection, since: dt.datetime) -> list[Failed]:
    rows = con.execute(
        "SELECT "
        "CASE WHEN json_valid(raw) THEN json_extract_string(raw, '$.app.id') END, "
        "CASE WHEN json_valid(raw) THEN json_extract_string(raw, '$.client.library') END, "
        "error_code, count(*) "
        "FROM failed_events WHERE received_ts >= ? GROUP BY ALL",
        [since],
    ).fetchall()
    return [Failed(app, library, str(code), int(n)) for app, library, code, n in rows]


def _materialised(lake: Lake) -> list[Reference]:
    from tallystick.metrics.materialize import METRICS

    folder = lake.root / METRICS
    if not folder.is_dir():
        return []
    return [
        Reference(p.name, f"materialised results in {Path(METRICS) / p.name}")
        for p in sorted(folder.iterdir())
        if p.is_dir() and not p.name.startswith((".", "_"))
    ]


def _field_catalog(lake: Lake, store: ControlStore, today: dt.date) -> list[FieldInfo]:
    """The field catalog as measured today: the stored one when it was refreshed today, else
    measured from the lake now (and stored, as ``tally catalog fields --refresh`` does)."""
    from tallystick.catalog.fields import read_fields, refresh

    stored = read_fields(store)
    if stored and all(f.as_of == today for f in stored):
        return stored
    return refresh(lake, store, today).fields


def _costs(costs: Sequence[MetricCost]) -> tuple[Cost, ...]:
    return tuple(Cost(c.metric, c.runs, c.mean_seconds, c.max_seconds, c.last_run) for c in costs)


def gather(settings: Settings, store: ControlStore, *, now: dt.datetime) -> Facts:
    """Read the facts: the catalog under ``settings``, the control store's configuration and
    run records, and the lake."""
    from tallystick.metrics.catalog import read_catalog
    from tallystick.store.lake import Lake
    from tallystick.store.reader import with_retry

    catalog, problems = read_catalog(settings.catalog_dir)
    configuration = store.configuration()
    costs = _costs(store.metric_costs())
    lake = Lake(settings.lake_dir)
    since = now - dt.timedelta(days=FAILURE_DAYS)

    def work(
        con: duckdb.DuckDBPyConnection,
    ) -> tuple[list[EventName], list[Received], list[Failed]]:
        _per_event(con)
        return _event_names(con), _received(con, since), _failed(con, since)

    names, received, failed = with_retry(lake, work)
    fields = [
        FieldSeen(f.name, f.personal, f.event_names, f.streams)
        for f in _field_catalog(lake, store, now.date())
        if f.in_lake
    ]
    references = [
        Reference(
            c.metric, f"queried {c.runs} time{'s' if c.runs != 1 else ''}, last {_date(c.last_run)}"
        )
        for c in costs
    ] + _materialised(lake)
    return Facts(
        metrics=tuple(catalog),
        problems=tuple(problems),
        configuration=configuration,
        names=tuple(names),
        references=tuple(references),
        costs=costs,
        received=tuple(received),
        failed=tuple(failed),
        fields=tuple(fields),
    )


class AuditError(RuntimeError):
    """The audit cannot read what it needs; the message says what to do."""


def report(
    settings: Settings,
    *,
    today: dt.date | None = None,
    store: ControlStore | None = None,
) -> Report:
    """The audit of the data directory of ``settings`` (``today``: pretend it is that date,
    midnight UTC). Uses ``store`` when given, else opens (and closes) the control store."""
    from tallystick.control.store import ControlStore

    now = dt.datetime.now(dt.UTC)
    if today is not None:
        now = dt.datetime.combine(today, dt.time(), dt.UTC)
    if store is not None:
        facts = gather(settings, store, now=now)
    else:
        if settings.control_url is None and not settings.data.is_dir():
            raise AuditError(
                f"no data directory at {settings.data}: pass the one `tally serve` or "
                "`tally demo` writes (--data DIR or TALLYSTICK_DATA)"
            )
        try:
            opened = ControlStore.for_settings(settings)
        except Exception as exc:
            raise AuditError(
                f"cannot read the control plane's database ({type(exc).__name__}: {exc}); "
                "check TALLYSTICK_CONTROL_URL and that the database is reachable"
            ) from exc
        with opened:
            facts = gather(settings, opened, now=now)
    return audit(facts, now, today=today, source=str(settings.data))
