"""Alerts: rules per stream, evaluated against the lake, delivered on a change, kept as history.

The rules live in the stream definitions (``alerts:``, see ``control.definitions.Alert``). Each
evaluation measures every rule (``quality.alert_sql``, DuckDB over ``store.reader.connect``),
judges it (``quality.alert_rules``, pure), compares it with the rule's previous evaluation and
delivers what changed (``quality.alert_delivery``: the log and a webhook):

- a rule that fires after being quiet (or on its first evaluation) sends a ``fired`` notice;
- a rule that is quiet after firing sends a ``resolved`` notice;
- a rule that keeps firing, or stays quiet, sends nothing: nobody is paged every interval for
  the same ongoing problem. ``tally quality check`` still exits 1 while anything fires.

Every evaluation is recorded in the control plane's ``alert_runs`` table (one row per rule:
what was measured, against what, the message, and for a notice where it was sent and whether
that worked). Rows without a notice are pruned after ``KEEP_QUIET_DAYS``; notices are kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from tallystick.control import tables as t

if TYPE_CHECKING:
    from tallystick.control.store import ControlStore

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
            out.append(_with_id(r, None if key is None else int(key[0])))
    return out


def _with_id(run: AlertRun, id_: int | None) -> AlertRun:
    return AlertRun(
        run.at,
        run.stream,
        run.rule,
        run.label,
        run.spec,
        run.fired,
        run.value,
        run.expected,
        run.message,
        run.delivery,
        id_,
    )


def history(
    store: ControlStore,
    since: dt.datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    *,
    stream: str | None = None,
    notices: bool = False,
) -> list[AlertRun]:
    """Recorded evaluations, newest first: those at or after ``since``, at most ``limit``;
    of one ``stream``; only those that announced a change (``notices``: fired or resolved)."""
    c = t.alert_runs.c
    query = sa.select(t.alert_runs).order_by(c.at.desc(), c.id.desc()).limit(max(limit, 0))
    if since is not None:
        query = query.where(c.at >= since)
    if stream is not None:
        query = query.where(c.stream == stream)
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
