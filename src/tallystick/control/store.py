"""The control-plane store: definitions, the audit log and run records in SQLite or Postgres.

Every change runs in one transaction that also writes its audit-log row (who, when, before →
after) and bumps ``config_version``; collectors poll that number and reload when it moves, so a
change reaches every worker within seconds and never half-applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tallystick.config import Settings
from tallystick.control import db
from tallystick.control import tables as t
from tallystick.control.blocks import read_blocks
from tallystick.control.controls import Controls
from tallystick.control.definitions import (
    Configuration,
    DefinitionError,
    Model,
    Stream,
    check_consistent,
    parse_model,
    parse_stream,
)
from tallystick.control.plan import Change, Plan, plan
from tallystick.control.routing import UNROUTED


class NotFound(LookupError):
    """No definition of that name."""


class Conflict(ValueError):
    """The change would leave the configuration inconsistent (e.g. a model without its stream)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    kind: str
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    version: int

    def as_dict(self) -> dict[str, Any]:
        change = Change(
            "stream" if self.kind == "stream" else "model" if self.kind == "model" else "setting",
            self.name,
            "update",
            self.before,
            self.after,
        )
        return {
            "id": self.id,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "changed": change.changed_keys,
            "before": self.before,
            "after": self.after,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class CheckRun:
    """The outcome of one data-quality check on a model or a stream."""

    target_kind: str
    target: str
    label: str
    spec: dict[str, Any]
    passed: bool
    failing: int
    checked: int
    message: str
    examples: list[Any] | None = None
    ran_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_kind": self.target_kind,
            "target": self.target,
            "check": self.label,
            "spec": self.spec,
            "passed": self.passed,
            "failing": self.failing,
            "checked": self.checked,
            "message": self.message,
            "examples": self.examples,
            "ran_at": None
            if self.ran_at is None
            else self.ran_at.isoformat().replace("+00:00", "Z"),
        }


@dataclass(frozen=True, slots=True)
class MetricCost:
    metric: str
    runs: int
    mean_seconds: float
    max_seconds: float
    last_run: dt.datetime


class ControlStore:
    """One database. Thread-safe (a connection pool); create one per process."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> ControlStore:
        engine = db.engine_for(url)
        if migrate:
            db.migrate(engine)
        return cls(engine)

    @classmethod
    def for_settings(cls, settings: Settings) -> ControlStore:
        return cls.open(settings.control_database)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ControlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(t.config_version.c.version).where(t.config_version.c.id == 1)
                ).scalar_one()
            )

    @staticmethod
    def _configuration(conn: sa.Connection) -> tuple[int, Configuration]:
        version = int(
            conn.execute(
                sa.select(t.config_version.c.version).where(t.config_version.c.id == 1)
            ).scalar_one()
        )
        unrouted = conn.execute(
            sa.select(t.settings.c.value).where(t.settings.c.key == "unrouted_stream")
        ).scalar_one_or_none()
        streams = [
            parse_stream(row.definition, f"stream {row.name}")
            for row in conn.execute(sa.select(t.streams).order_by(t.streams.c.name))
        ]
        models = [
            parse_model(row.definition, f"model {row.name}")
            for row in conn.execute(sa.select(t.models).order_by(t.models.c.name))
        ]
        return version, Configuration(tuple(streams), tuple(models), unrouted or UNROUTED)

    def configuration(self) -> Configuration:
        """Every definition, read in one transaction."""
        with self.engine.begin() as conn:
            return self._configuration(conn)[1]

    def controls(self) -> Controls:
        """The collector's snapshot: the version, the streams, the IP blocks and the deleted
        users it describes, read together."""
        from tallystick.control.deletions import suppressed_hashes

        with self.engine.begin() as conn:
            version, config = self._configuration(conn)
            blocks = read_blocks(conn)
            suppressed = suppressed_hashes(conn)
        return Controls.build(version, config.streams, config.unrouted_stream, blocks, suppressed)

    def streams(self) -> tuple[Stream, ...]:
        return self.configuration().streams

    def stream(self, name: str) -> Stream:
        found = self.configuration().stream(name)
        if found is None:
            raise NotFound(f"no stream {name!r}; `tally streams list` shows the streams")
        return found

    def models(self) -> tuple[Model, ...]:
        return self.configuration().models

    def model(self, name: str) -> Model:
        found = self.configuration().model(name)
        if found is None:
            raise NotFound(f"no model {name!r}; `tally models list` shows the models")
        return found

    def stream_times(self) -> dict[str, tuple[dt.datetime, dt.datetime]]:
        """Each stream's (created, last changed) time."""
        with self.engine.connect() as conn:
            return {
                r.name: (r.created_at, r.updated_at)
                for r in conn.execute(
                    sa.select(t.streams.c.name, t.streams.c.created_at, t.streams.c.updated_at)
                )
            }

    def model_built(self) -> dict[str, dt.datetime | None]:
        with self.engine.connect() as conn:
            return {
                r.name: r.built_at
                for r in conn.execute(sa.select(t.models.c.name, t.models.c.built_at))
            }

    # -- writing -------------------------------------------------------------------------------

    def _bump(self, conn: sa.Connection) -> int:
        conn.execute(
            sa.update(t.config_version)
            .where(t.config_version.c.id == 1)
            .values(version=t.config_version.c.version + 1)
        )
        return int(
            conn.execute(
                sa.select(t.config_version.c.version).where(t.config_version.c.id == 1)
            ).scalar_one()
        )

    def audit(
        self,
        conn: sa.Connection,
        *,
        at: dt.datetime,
        actor: str,
        action: str,
        kind: str,
        name: str,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        version: int | None = None,
    ) -> int:
        """Record a change in the audit log, in ``conn``'s transaction: under ``version``, or
        (``None``) a new configuration version, so collectors see the change; return it."""
        if version is None:
            version = self._bump(conn)
        conn.execute(
            sa.insert(t.audit_log).values(
                at=at,
                actor=actor,
                action=action,
                kind=kind,
                name=name[:200],
                before=before,
                after=after,
                version=version,
            )
        )
        return version

    def _write(
        self,
        conn: sa.Connection,
        change: Change,
        actor: str,
        action: str,
        at: dt.datetime,
        version: int,
    ) -> None:
        if change.kind == "setting":
            assert change.after is not None
            for key, value in change.after.items():
                conn.execute(sa.delete(t.settings).where(t.settings.c.key == key))
                conn.execute(sa.insert(t.settings).values(key=key, value=value))
        else:
            table = t.streams if change.kind == "stream" else t.models
            if change.action == "delete":
                conn.execute(sa.delete(table).where(table.c.name == change.name))
            elif change.action == "create":
                conn.execute(
                    sa.insert(table).values(
                        name=change.name, definition=change.after, created_at=at, updated_at=at
                    )
                )
            else:
                conn.execute(
                    sa.update(table)
                    .where(table.c.name == change.name)
                    .values(definition=change.after, updated_at=at)
                )
        self.audit(
            conn,
            at=at,
            actor=actor,
            action=action,
            kind=change.kind,
            name=change.name,
            before=change.before,
            after=change.after,
            version=version,
        )

    def _change(self, actor: str, action: str, make: Any) -> Plan:
        """Run ``make(current configuration) -> wanted configuration`` and write the difference,
        with its audit rows and one version bump, in one transaction."""
        at = now()
        with self.engine.begin() as conn:
            _, current = self._configuration(conn)
            wanted: Configuration = make(current)
            try:
                check_consistent(wanted.streams, wanted.models, wanted.unrouted_stream)
            except DefinitionError as exc:
                raise Conflict(exc.message) from None
            changes = plan(current, wanted)
            if changes:
                version = self._bump(conn)
                for change in changes:
                    self._write(conn, change, actor, action or change.action, at, version)
            return changes

    def apply(self, wanted: Configuration, actor: str) -> Plan:
        """Make the store equal ``wanted`` (one transaction, one version)."""
        return self._change(actor, "apply", lambda _current: wanted)

    def plan(self, wanted: Configuration) -> Plan:
        return plan(self.configuration(), wanted)

    def put_stream(self, stream: Stream, actor: str, *, create_only: bool = False) -> Plan:
        def make(current: Configuration) -> Configuration:
            if create_only and current.stream(stream.name) is not None:
                raise Conflict(f"stream {stream.name!r} exists already; update it instead")
            others = tuple(s for s in current.streams if s.name != stream.name)
            return Configuration((*others, stream), current.models, current.unrouted_stream)

        return self._change(actor, "", make)

    def delete_stream(self, name: str, actor: str) -> Plan:
        def make(current: Configuration) -> Configuration:
            if current.stream(name) is None:
                raise NotFound(f"no stream {name!r}; `tally streams list` shows the streams")
            readers = [m.name for m in current.models if m.stream == name]
            if readers:
                raise Conflict(
                    f"stream {name!r} is read by model(s) {', '.join(readers)}: delete or move "
                    "them first"
                )
            return Configuration(
                tuple(s for s in current.streams if s.name != name),
                current.models,
                current.unrouted_stream,
            )

        return self._change(actor, "", make)

    def update_stream(self, name: str, actor: str, action: str, **changes: Any) -> Plan:
        """Change some settings of a stream (``enabled``, ``expires``...), as plain data."""

        def make(current: Configuration) -> Configuration:
            stream = current.stream(name)
            if stream is None:
                raise NotFound(f"no stream {name!r}; `tally streams list` shows the streams")
            data = stream.as_dict() | changes
            updated = parse_stream({k: v for k, v in data.items() if v is not None})
            others = tuple(s for s in current.streams if s.name != name)
            return Configuration((*others, updated), current.models, current.unrouted_stream)

        return self._change(actor, action, make)

    def put_model(self, model: Model, actor: str, *, create_only: bool = False) -> Plan:
        def make(current: Configuration) -> Configuration:
            if create_only and current.model(model.name) is not None:
                raise Conflict(f"model {model.name!r} exists already; update it instead")
            others = tuple(m for m in current.models if m.name != model.name)
            return Configuration(current.streams, (*others, model), current.unrouted_stream)

        return self._change(actor, "", make)

    def delete_model(self, name: str, actor: str) -> Plan:
        def make(current: Configuration) -> Configuration:
            if current.model(name) is None:
                raise NotFound(f"no model {name!r}; `tally models list` shows the models")
            return Configuration(
                current.streams,
                tuple(m for m in current.models if m.name != name),
                current.unrouted_stream,
            )

        return self._change(actor, "", make)

    def mark_built(self, name: str, at: dt.datetime | None = None) -> None:
        """Record that a model was (re)built (not a configuration change: no version bump)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.models).where(t.models.c.name == name).values(built_at=at or now())
            )

    # -- the audit log -------------------------------------------------------------------------

    def audit_log(
        self, *, kind: str | None = None, name: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest changes first."""
        query = sa.select(t.audit_log).order_by(t.audit_log.c.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(t.audit_log.c.kind == kind)
        if name is not None:
            query = query.where(t.audit_log.c.name == name)
        with self.engine.connect() as conn:
            return [
                AuditEntry(
                    r.id, r.at, r.actor, r.action, r.kind, r.name, r.before, r.after, r.version
                )
                for r in conn.execute(query)
            ]

    # -- run records ---------------------------------------------------------------------------

    def record_checks(self, runs: Iterable[CheckRun]) -> None:
        at = now()
        rows = [
            {
                "ran_at": r.ran_at or at,
                "target_kind": r.target_kind,
                "target": r.target,
                "check_label": r.label,
                "check_spec": r.spec,
                "passed": r.passed,
                "failing": r.failing,
                "checked": r.checked,
                "message": r.message,
                "examples": r.examples,
            }
            for r in runs
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t.check_runs), rows)

    def latest_checks(self, target: str | None = None) -> list[CheckRun]:
        """The newest result of every check (of ``target``, or of everything)."""
        c = t.check_runs.c
        newest = (
            sa.select(sa.func.max(c.id).label("id"))
            .group_by(c.target_kind, c.target, c.check_label)
            .subquery()
        )
        query = sa.select(t.check_runs).join(newest, c.id == newest.c.id).order_by(c.target, c.id)
        if target is not None:
            query = query.where(c.target == target)
        with self.engine.connect() as conn:
            return [
                CheckRun(
                    r.target_kind,
                    r.target,
                    r.check_label,
                    r.check_spec,
                    r.passed,
                    r.failing,
                    r.checked,
                    r.message,
                    r.examples,
                    r.ran_at,
                )
                for r in conn.execute(query)
            ]

    def record_metric_run(
        self, metric: str, seconds: float, rows: int, source: str, at: dt.datetime | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.metric_runs).values(
                    metric=metric, ran_at=at or now(), seconds=seconds, rows=rows, source=source
                )
            )

    def metric_costs(self, since: dt.datetime | None = None) -> list[MetricCost]:
        """Run count and query times per metric, the most expensive (mean time) first."""
        c = t.metric_runs.c
        query = (
            sa.select(
                c.metric,
                sa.func.count().label("runs"),
                sa.func.avg(c.seconds).label("mean"),
                sa.func.max(c.seconds).label("max"),
                sa.func.max(c.ran_at).label("last"),
            )
            .group_by(c.metric)
            .order_by(sa.func.avg(c.seconds).desc())
        )
        if since is not None:
            query = query.where(c.ran_at >= since)
        with self.engine.connect() as conn:
            return [
                MetricCost(
                    r.metric,
                    int(r.runs),
                    float(r.mean),
                    float(r.max),
                    r.last if isinstance(r.last, dt.datetime) and r.last.tzinfo else _aware(r.last),
                )
                for r in conn.execute(query)
            ]

    # -- the field catalog ---------------------------------------------------------------------

    def upsert_fields(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store field statistics (``name``, ``type``, ``first_seen``, ``last_seen``, ``stats``);
        a field's first sighting is never moved later, its last never earlier."""
        at = now()
        with self.engine.begin() as conn:
            known = {
                r.name: (r.first_seen, r.last_seen)
                for r in conn.execute(
                    sa.select(t.fields.c.name, t.fields.c.first_seen, t.fields.c.last_seen)
                )
            }
            for row in rows:
                first, last = row["first_seen"], row["last_seen"]
                if row["name"] in known:
                    old_first, old_last = known[row["name"]]
                    conn.execute(
                        sa.update(t.fields)
                        .where(t.fields.c.name == row["name"])
                        .values(
                            type=row["type"],
                            first_seen=min(first, old_first),
                            last_seen=max(last, old_last),
                            updated_at=at,
                            stats=row["stats"],
                        )
                    )
                else:
                    conn.execute(
                        sa.insert(t.fields).values(
                            name=row["name"],
                            type=row["type"],
                            first_seen=first,
                            last_seen=last,
                            updated_at=at,
                            stats=row["stats"],
                        )
                    )

    def fields(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                {
                    "name": r.name,
                    "type": r.type,
                    "first_seen": r.first_seen,
                    "last_seen": r.last_seen,
                    "updated_at": r.updated_at,
                    "stats": r.stats,
                }
                for r in conn.execute(sa.select(t.fields).order_by(t.fields.c.name))
            ]


def _aware(value: Any) -> dt.datetime:
    """``max()`` of a time column comes back as text on SQLite."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)
