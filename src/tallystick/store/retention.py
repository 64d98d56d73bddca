"""Retention: rows older than their policy allows leave the lake's Parquet files.

What is kept, and by which setting (days are whole UTC days; ``0`` or no value keeps forever):

* **events** (``events/``): a row of stream S is removed once its date — the UTC date of
  ``client_ts``, the date its partition is named after — is more than S's ``retention_days``
  before today. Rows of a stream without ``retention_days``, of a stream no longer defined and
  rows stored without a stream follow the ``retention_days`` setting. With ``N`` days, today and
  the ``N`` days before it are kept: the cutoff is ``today − N``, and rows dated before it go.
* **the delivery ledger** (``messages/``): a ledger row records one stored copy of an event, so
  it goes with that copy: the same rule on the row's ``day`` (the event's date) and ``stream``.
  The loss report of a day then says nothing rather than counting messages whose events are gone.
* **failed events** (``failed/``) and **declined-event counts** (``declined/``): by
  ``failed_retention_days``, on the date they were received (their partition's date): whole files
  go without being read.
* **materialised metric results** (``metrics/<name>/grain=<grain>/``): by
  ``results_retention_days``: a result row goes once its whole period ended before the cutoff.
  Its period is then marked expired in the state file (``expired_before``), so materialising again
  does not compute it back (``tally metrics materialize --full`` does).

Files are rewritten by the purge's machinery (``store.purge``: read whole, rows dropped, written
atomically, deleted when empty, an emptied partition directory removed), holding the loader's
lock: ``tally retention enforce`` takes it, and ``tally serve``'s loader process, which holds it
anyway, enforces retention every ``retention_interval_seconds`` between batches. Enforcing twice
removes nothing the second time. Each run that removed something is written to the audit log
(kind ``retention``) as numbers only: no row's content.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tallystick.store.durable import replace_durably
from tallystick.store.lake import DECLINED, EVENTS, FAILED, MESSAGES, Lake
from tallystick.store.purge import (
    LOCK_WAIT_SECONDS,
    FileChange,
    Selection,
    apply,
    changes,
    loader_locked,
)
from tallystick.store.reader import connect, retry_io

if TYPE_CHECKING:
    import duckdb

    from tallystick.config import Settings
    from tallystick.control.definitions import Stream
    from tallystick.control.store import ControlStore
    from tallystick.metrics.params import Grain

RESULTS: Final = "metrics"
"""The kind of materialised metric results in a report (``metrics/`` under the lake root)."""
AUDIT_KIND: Final = "retention"
_ONE_DAY: Final = dt.timedelta(days=1)


def _cutoff(today: dt.date, days: int | None) -> dt.date | None:
    return None if not days or days <= 0 else today - dt.timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Policy:
    """The retention in force on ``today``: per stream and by default, in days (``None``/0:
    forever)."""

    today: dt.date
    default_days: int = 0
    stream_days: Mapping[str, int] = field(default_factory=dict)
    """Streams with their own ``retention_days``."""
    failed_days: int = 0
    results_days: int = 0

    @classmethod
    def of(
        cls, settings: Settings, streams: Sequence[Stream], today: dt.date | None = None
    ) -> Policy:
        return cls(
            today or dt.datetime.now(dt.UTC).date(),
            settings.retention_days,
            {s.name: s.retention_days for s in streams if s.retention_days},
            settings.failed_retention_days,
            settings.results_retention_days,
        )

    @property
    def default_cutoff(self) -> dt.date | None:
        return _cutoff(self.today, self.default_days)

    @property
    def stream_cutoffs(self) -> dict[str, dt.date]:
        out: dict[str, dt.date] = {}
        for name, days in sorted(self.stream_days.items()):
            cut = _cutoff(self.today, days)
            if cut is not None:
                out[name] = cut
        return out

    @property
    def failed_cutoff(self) -> dt.date | None:
        return _cutoff(self.today, self.failed_days)

    @property
    def results_cutoff(self) -> dt.date | None:
        return _cutoff(self.today, self.results_days)

    def event_condition(self, date_sql: str) -> str | None:
        """The condition on an event's (or a ledger row's) date expression ``date_sql`` and its
        ``stream`` under which it goes; ``None`` when nothing ever does."""
        cases = [
            f"WHEN stream = {_text(name)} THEN {date_sql} < DATE '{cut.isoformat()}'"
            for name, cut in self.stream_cutoffs.items()
        ]
        default = self.default_cutoff
        otherwise = f"{date_sql} < DATE '{default.isoformat()}'" if default else "FALSE"
        if not cases:
            return None if default is None else otherwise
        return f"(CASE {' '.join(cases)} ELSE {otherwise} END)"

    def as_dict(self) -> dict[str, Any]:
        """The cutoffs (first date kept) per kind, for reports and the audit log."""

        def iso(day: dt.date | None) -> str | None:
            return None if day is None else day.isoformat()

        return {
            "today": self.today.isoformat(),
            "events_before": iso(self.default_cutoff),
            "streams_before": {k: v.isoformat() for k, v in self.stream_cutoffs.items()},
            "failed_before": iso(self.failed_cutoff),
            "results_before": iso(self.results_cutoff),
        }


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What enforcing retention removes (``dry_run``) or removed."""

    policy: Policy
    files: tuple[FileChange, ...] = ()
    dry_run: bool = True

    def removed(self, kind: str) -> int:
        return sum(f.removed for f in self.files if f.kind == kind)

    def summary(self) -> dict[str, Any]:
        """The numbers (no row's content): for the audit log and ``--format json``."""
        return {
            "dry_run": self.dry_run,
            "cutoffs": self.policy.as_dict(),
            "event_rows": self.removed(EVENTS),
            "ledger_rows": self.removed(MESSAGES),
            "failed_rows": self.removed(FAILED),
            "declined_rows": self.removed(DECLINED),
            "result_rows": self.removed(RESULTS),
            "files_rewritten": sum(1 for f in self.files if 0 < f.removed < f.rows),
            "files_deleted": sum(1 for f in self.files if f.removed and f.removed == f.rows),
        }


# -- the lake ------------------------------------------------------------------------------------


def selection(lake: Lake, policy: Policy) -> Selection:
    """What ``policy`` removes from the lake's files (see the module docstring): only files of
    partitions old enough are looked at, and a partition older than every cutoff that applies
    to it goes whole."""
    conditions: dict[str, str] = {}
    files: dict[str, list[str]] = {}
    whole: set[str] = set()
    ledger = policy.event_condition("day")
    events = policy.event_condition("CAST(timezone('UTC', client_ts) AS DATE)")
    if ledger is not None:
        conditions[MESSAGES] = ledger  # any partition: a late event's row is in a later one
    failed = policy.failed_cutoff
    if failed is not None:
        for kind in (FAILED, DECLINED):
            conditions[kind] = f"received_ts < TIMESTAMPTZ '{failed.isoformat()} 00:00:00+00'"
            old = [p for d, ps in lake.partitions(kind).items() if d < failed for p in ps]
            files[kind] = old
            whole.update(old)
    if events is not None:
        conditions[EVENTS] = events
        cuts = list(policy.stream_cutoffs.values())
        default = policy.default_cutoff
        latest = max([*cuts, *([default] if default else [])])
        # every row of a partition goes when it is older than every stream's cutoff and the
        # default one (streams without their own retention follow the default)
        earliest = min([*cuts, default]) if default is not None else None
        files[EVENTS] = []
        for day, paths in lake.partitions(EVENTS).items():
            if day < latest:
                files[EVENTS] += paths
                if earliest is not None and day < earliest:
                    whole.update(paths)
    return Selection(conditions, files, frozenset(whole))


def plan(lake: Lake, policy: Policy) -> RetentionReport:
    """What enforcing ``policy`` would remove; nothing is written."""

    def attempt() -> RetentionReport:
        con = connect(lake)
        try:
            found = changes(con, lake, selection(lake, policy))
        finally:
            con.close()
        return RetentionReport(policy, tuple(found + _results(lake, policy, write=False)))

    return retry_io(attempt)


def enforce(
    lake: Lake, policy: Policy, con: duckdb.DuckDBPyConnection | None = None
) -> RetentionReport:
    """Remove what ``policy`` removes. The caller holds the loader's lock (``enforce_locked``
    takes it)."""
    own = con is None
    con = con or connect(lake)
    try:
        chosen = selection(lake, policy)
        done = apply(con, lake, chosen, changes(con, lake, chosen))
    finally:
        if own:
            con.close()
    done += _results(lake, policy, write=True)
    return RetentionReport(policy, tuple(done), dry_run=False)


def enforce_locked(
    lake: Lake, policy: Policy, data: Path, *, wait: float = LOCK_WAIT_SECONDS
) -> RetentionReport:
    """``enforce`` holding the loader's lock of data directory ``data``; raises
    ``PurgeRefused`` while a loader (``tally serve``) holds it."""
    with loader_locked(data, wait, "retention"):
        return enforce(lake, policy)


# -- materialised metric results -------------------------------------------------------------------


def _results(lake: Lake, policy: Policy, *, write: bool) -> list[FileChange]:
    """Result rows of periods that ended before the results cutoff (removed when ``write``)."""
    from tallystick.metrics.materialize import METRICS, STATE
    from tallystick.metrics.periods import add_periods

    cutoff = policy.results_cutoff
    folder = lake.root / METRICS
    if cutoff is None or not folder.is_dir():
        return []
    found: list[FileChange] = []
    for path in sorted(folder.glob("*/grain=*/*.parquet")):
        if path.name.startswith("."):
            continue
        grain = path.parent.name.removeprefix("grain=")
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            continue
        if "period" not in table.column_names or grain not in ("day", "week", "month"):
            continue
        ends = [
            None if start is None else add_periods(start, cast("Grain", grain), 1) - _ONE_DAY
            for start in table["period"].to_pylist()
        ]
        doomed = pa.array([end is not None and end < cutoff for end in ends], pa.bool_())
        removed = int(pc.sum(doomed).as_py() or 0)
        if not removed:
            continue
        relative = str(path.relative_to(lake.root))
        found.append(FileChange(RESULTS, relative, table.num_rows, removed))
        if not write:
            continue
        kept = table.filter(pc.invert(doomed))
        if kept.num_rows:
            lake.storage.write_table(relative, kept)
        else:
            lake.storage.delete(relative)
        _expire_state(path.parent / STATE, cutoff, grain)
    return found


def _expire_state(path: Path, cutoff: dt.date, grain: str) -> None:
    """Forget the periods of ``path`` that ended before ``cutoff`` and say so
    (``expired_before``), so that materialising again does not compute them back."""
    from tallystick.metrics.periods import add_periods

    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(state, dict):
        return
    periods = state.get("periods")
    if isinstance(periods, dict):
        state["periods"] = {
            k: v
            for k, v in periods.items()
            if add_periods(dt.date.fromisoformat(k), cast("Grain", grain), 1) - _ONE_DAY >= cutoff
        }
    state["expired_before"] = cutoff.isoformat()
    text = json.dumps(state, indent=1, sort_keys=True) + "\n"
    replace_durably(path, lambda tmp: tmp.write_text(text))


# -- running it ------------------------------------------------------------------------------------


def policy_for(settings: Settings, store: ControlStore, today: dt.date | None = None) -> Policy:
    """The policy of the configuration in ``store``, with ``settings``' defaults."""
    return Policy.of(settings, store.streams(), today)


def audit(store: ControlStore, report: RetentionReport, actor: str) -> None:
    """Record a run that removed something in the audit log (kind ``retention``): the cutoffs
    and the numbers, no row's content."""
    if report.dry_run or not report.files:
        return
    import sqlalchemy as sa

    from tallystick.control import tables as t

    with store.engine.begin() as conn:
        version = conn.execute(
            sa.select(t.config_version.c.version).where(t.config_version.c.id == 1)
        ).scalar_one_or_none()
        store.audit(
            conn,
            at=dt.datetime.now(dt.UTC),
            actor=actor,
            action="enforce",
            kind=AUDIT_KIND,
            name="lake",
            after=report.summary(),
            version=int(version or 0),
        )
