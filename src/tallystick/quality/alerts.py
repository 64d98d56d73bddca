"""Alerts: rules per stream, evaluated against the lake, delivered on a change, kept as history.

The rules live in the stream definitions (``alerts:``, see ``control.definitions.Alert``). Each
evaluation measures every rule (``quality.alert_sql``, DuckDB over ``store.reader.connect``),
judges it (``quality.alert_rules``, pure), compares it with the rule's previous evaluation and
delivers what changed (``quality.alert_delivery``: the log and a webhook). Running experiments
have rules too (``experiment_srm``, ``experiment_guardrail``: ``quality.experiment_alerts``),
recorded under the subject ``experiment:KEY`` and announced the same way:

- a rule that fires after being quiet (or on its first evaluation) sends a ``fired`` notice;
- a rule that is quiet after firing sends a ``resolved`` notice;
- a rule that keeps firing, or stays quiet, sends nothing: nobody is paged every interval for
  the same ongoing problem. ``tally quality check`` still exits 1 while anything fires.

Every evaluation is recorded in the control plane's ``alert_runs`` table (one row per rule:
what was measured, against what, the message, and for a notice where it was sent and whether
that worked). Rows without a notice are pruned after ``KEEP_QUIET_DAYS``; notices are kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from tallystick.control import tables as t

if TYPE_CHECKING:
    import duckdb

    from tallystick.control.definitions import Stream
    from tallystick.control.store import ControlStore
    from tallystick.metrics.catalog import Catalog
    from tallystick.store.lake import Lake

_EXPERIMENT_PREFIX: Final = "experiment:"  # quality.experiment_alerts.SUBJECT_PREFIX
KEEP_QUIET_DAYS: Final = 30
"""How long evaluations without a notice (a rule quiet, or still firing) are kept."""
DEFAULT_LIMIT: Final = 200
NOTICES: Final = ("fired", "resolved")
"""What a delivery announces: a rule started firing, or stopped."""


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AlertRun:
    """One evaluation of one alert rule of one stream.

    ``value`` is what was measured (events in the window for ``volume``, a rate from 0 to 1 for
    the others) and ``expected`` what it was held against (the baseline mean for ``volume``, the
    highest rate allowed for the others); either is ``None`` when there was nothing to measure.
    ``delivery`` is ``None`` when the run announced nothing, else ``{"notice": "fired" |
    "resolved", "log": true, "webhook": {...} | null}`` (see ``alert_delivery.Delivery``).
    """

    at: dt.datetime
    stream: str
    rule: str
    label: str
    spec: Mapping[str, Any]
    fired: bool
    value: float | None
    expected: float | None
    message: str
    delivery: Mapping[str, Any] | None = None
    id: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a rule across evaluations: its stream and label."""
        return self.stream, self.label

    @property
    def experiment(self) -> str | None:
        """The key of the experiment whose rule this is (``None``: a stream's rule)."""
        from tallystick.quality.experiment_alerts import experiment_of

        return experiment_of(self.stream)

    @property
    def notice(self) -> str | None:
        """``fired`` or ``resolved`` when this run announced a change, else ``None``."""
        if self.delivery is None:
            return None
        notice = self.delivery.get("notice")
        return notice if isinstance(notice, str) else None

    @property
    def delivered(self) -> bool | None:
        """Whether the webhook took the notice (``None``: no notice, or no webhook)."""
        if self.delivery is None or not isinstance(self.delivery.get("webhook"), Mapping):
            return None
        return bool(self.delivery["webhook"].get("status") == "sent")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times in ISO 8601, UTC, with ``Z``)."""
        return {
            "id": self.id,
            "at": _iso(self.at),
            "stream": self.stream,
            "rule": self.rule,
            "label": self.label,
            "spec": dict(self.spec),
            "fired": self.fired,
            "value": self.value,
            "expected": self.expected,
            "message": self.message,
            "notice": self.notice,
            "delivery": None if self.delivery is None else dict(self.delivery),
        }


def _run(row: Any) -> AlertRun:
    return AlertRun(
        at=row.at,
        stream=row.stream,
        rule=row.rule,
        label=row.label,
        spec=row.spec,
        fired=bool(row.fired),
        value=None if row.value is None else float(row.value),
        expected=None if row.expected is None else float(row.expected),
        message=row.message,
        delivery=row.delivery,
        id=int(row.id),
    )


def record(store: ControlStore, runs: Iterable[AlertRun]) -> list[AlertRun]:
    """Store evaluations (in one transaction); returns them with their ids."""
    runs = list(runs)
    out: list[AlertRun] = []
    if not runs:
        return out
    with store.engine.begin() as conn:
        for r in runs:
            result = conn.execute(
                sa.insert(t.alert_runs).values(
                    at=r.at,
                    stream=r.stream,
                    rule=r.rule,
                    label=r.label[:200],
                    spec=dict(r.spec),
                    fired=r.fired,
                    value=r.value,
                    expected=r.expected,
                    message=r.message,
                    # SQL NULL, not JSON null: ``history(notices=True)`` filters on it
                    delivery=sa.null() if r.delivery is None else dict(r.delivery),
                )
            )
            key = result.inserted_primary_key
            out.append(dataclasses.replace(r, id=None if key is None else int(key[0])))
    return out


def history(
    store: ControlStore,
    since: dt.datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    *,
    stream: str | None = None,
    notices: bool = False,
    hidden: frozenset[str] = frozenset(),
) -> list[AlertRun]:
    """Recorded evaluations, newest first: those at or after ``since``, at most ``limit``;
    of one ``stream``; only those that announced a change (``notices``: fired or resolved);
    none of the ``hidden`` streams (private streams the reader may not see)."""
    c = t.alert_runs.c
    query = sa.select(t.alert_runs).order_by(c.at.desc(), c.id.desc()).limit(max(limit, 0))
    if since is not None:
        query = query.where(c.at >= since)
    if stream is not None:
        query = query.where(c.stream == stream)
    if hidden:
        # an experiment's rules read every stream: a reader who may not see them all does not
        # see those runs either
        query = query.where(
            c.stream.not_in(sorted(hidden)), sa.not_(c.stream.startswith(_EXPERIMENT_PREFIX))
        )
    if notices:
        query = query.where(c.delivery.is_not(None))
    with store.engine.connect() as conn:
        return [_run(r) for r in conn.execute(query)]


def current(store: ControlStore) -> dict[tuple[str, str], AlertRun]:
    """The latest evaluation of every rule ever evaluated, by (stream, label): whether each is
    firing now."""
    c = t.alert_runs.c
    newest = sa.select(sa.func.max(c.id).label("id")).group_by(c.stream, c.label).subquery()
    query = sa.select(t.alert_runs).join(newest, c.id == newest.c.id).order_by(c.stream, c.label)
    with store.engine.connect() as conn:
        return {(r.stream, r.label): _run(r) for r in conn.execute(query)}


def prune(store: ControlStore, before: dt.datetime) -> int:
    """Delete evaluations older than ``before`` that announced nothing (notices stay), except
    the latest of each rule (it holds the rule's state). Returns how many were deleted."""
    c = t.alert_runs.c
    latest = sa.select(sa.func.max(c.id)).group_by(c.stream, c.label).scalar_subquery()
    with store.engine.begin() as conn:
        candidates = conn.execute(
            sa.select(c.id, c.delivery).where(c.at < before, c.id.not_in(latest))
        ).all()
        doomed = [int(r.id) for r in candidates if not r.delivery]
        for start in range(0, len(doomed), 500):
            conn.execute(sa.delete(t.alert_runs).where(c.id.in_(doomed[start : start + 500])))
    return len(doomed)


# -- evaluating -----------------------------------------------------------------------------------


def evaluate(streams: Iterable[Stream], lake: Lake, at: dt.datetime) -> list[AlertRun]:
    """Every alert rule of ``streams`` measured and judged at ``at`` (nothing recorded, nothing
    delivered), on a fresh connection to ``lake`` (retried when compaction replaced a file
    mid-read)."""
    from tallystick.store.reader import with_retry

    chosen = [s for s in streams if s.alerts]
    return with_retry(lake, lambda con: evaluate_with(con, chosen, at)) if chosen else []


def evaluate_with(
    con: duckdb.DuckDBPyConnection, streams: Iterable[Stream], at: dt.datetime
) -> list[AlertRun]:
    """``evaluate`` on a connection from ``store.reader.connect``. A stream that is not
    collecting at ``at`` (disabled, not started, expired) is not measured: its rules are quiet,
    and say why."""
    from tallystick.quality.alert_rules import judge
    from tallystick.quality.alert_sql import measure, prepare

    chosen = [s for s in streams if s.alerts]
    prepare(con, [s for s in chosen if s.status(at) == "collecting"], at)
    runs = []
    for stream in chosen:
        status = stream.status(at)
        for alert in stream.alerts:
            run = AlertRun(
                at, stream.name, alert.rule, alert.label, alert.as_dict(), False, None, None, ""
            )
            if status != "collecting":
                runs.append(
                    dataclasses.replace(run, message=f"not evaluated: the stream is {status}")
                )
                continue
            verdict = judge(alert, measure(con, stream, alert, at))
            runs.append(
                dataclasses.replace(
                    run,
                    fired=verdict.fired,
                    value=verdict.value,
                    expected=verdict.expected,
                    message=verdict.message,
                )
            )
    return runs


def check(
    store: ControlStore,
    lake: Lake,
    *,
    at: dt.datetime | None = None,
    stream: str | None = None,
    experiment: str | None = None,
    catalog: Catalog | None = None,
    webhook_url: str | None = None,
    deliver: bool = True,
    timeout: float | None = None,
    retry_pause: float | None = None,
) -> list[AlertRun]:
    """Evaluate every alert rule at ``at`` (default: now), deliver what changed since each
    rule's previous evaluation (the log, and ``webhook_url`` when given) and record every
    evaluation. With ``deliver=False`` nothing is sent and nothing recorded (a dry run: the next
    evaluation still announces the change); each run's ``delivery`` then says which notice it
    would have sent (``log`` false, no webhook).

    Every rule: the streams' rules and, when a metric ``catalog`` is given, the rules of the
    running experiments (``quality.experiment_alerts``: one readout per experiment). Only
    ``stream``'s rules, or only ``experiment``'s (both: both).

    Returns the runs (recorded ones with their ids). A KeyError names an unknown ``stream``;
    ``control.experiments.UnknownExperiment`` (a KeyError too) an unknown ``experiment``."""
    from tallystick.quality import alert_delivery
    from tallystick.quality.alert_rules import notice

    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    streams = store.configuration().streams
    if stream is not None:
        streams = tuple(s for s in streams if s.name == stream)
        if not streams:
            raise KeyError(stream)
    elif experiment is not None:
        streams = ()
    previous = current(store)
    runs = evaluate(streams, lake, at)
    if catalog is not None and (experiment is not None or stream is None):
        runs += _experiment_runs(store, lake, catalog, at, experiment, previous)
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if retry_pause is not None:
        options["retry_pause"] = retry_pause
    out = []
    for run in runs:
        before = previous.get(run.key)
        change = notice(None if before is None else before.fired, run.fired)
        delivery: Mapping[str, Any] | None = None
        if change is not None:
            if deliver:
                delivery = alert_delivery.deliver(run, change, webhook_url, **options)
            else:
                delivery = {"notice": change, "log": False, "webhook": None}
        out.append(dataclasses.replace(run, delivery=delivery))
    if not deliver or not out:
        return out
    recorded = record(store, out)
    prune(store, at - dt.timedelta(days=KEEP_QUIET_DAYS))
    return recorded


def _experiment_runs(
    store: ControlStore,
    lake: Lake,
    catalog: Catalog,
    at: dt.datetime,
    key: str | None,
    previous: Mapping[tuple[str, str], AlertRun],
) -> list[AlertRun]:
    """The rules of the running experiments (of experiment ``key`` only, when given)."""
    from tallystick.control.experiments import get_experiment, list_experiments
    from tallystick.control.quarantine import list_rules
    from tallystick.metrics.engines import DuckDBEngine
    from tallystick.quality import experiment_alerts

    stored = list_experiments(store) if key is None else [get_experiment(store, key)]
    return experiment_alerts.evaluate(
        stored,
        catalog,
        DuckDBEngine(lake),
        at,
        rules=tuple(list_rules(store)),
        previous=previous,
        scope=None if key is None else [key],
    )
