"""Experiments in the control plane: their definitions, stored and audited, and their flag rules.

An experiment's definition (:mod:`tallystick.experiments.definition`, ``docs/experiments.md``) is
stored whole, normalised, one row per key. Its lifecycle is ``draft`` → ``running`` →
``stopped``:

- :func:`put_experiment` creates or replaces a definition (``tally experiments apply``,
  ``PUT /v1/admin/experiments/{key}``). An existing experiment keeps its stored status (and its
  start and stop unless the document gives them): ``start``/``stop`` change it. A new document
  whose status is ``running`` is created and started at once;
- :func:`start_experiment` writes the experiment's flag rule (:meth:`Experiment.flag_rule`) into
  the flags ruleset of its environment — creating the flag when there is none (its type from the
  variations' values, its default the control's value), replacing a rule with the same id — and
  sets ``start`` to now unless the definition has one. SDKs see the rule within seconds (the
  ruleset's version changes);
- :func:`stop_experiment` removes the rule (the flag stays: it serves its default, the
  control's value when the flag was made for the experiment) and sets ``stop`` to now. A stopped
  experiment cannot be restarted: its units were exposed and its analysis window is closed; copy
  its definition under a new key;
- :func:`delete_experiment` removes a definition (and the rule of a running one).

Every change is one transaction: the experiment's row, its audit entry (kind ``experiments``,
name the key) and the flags ruleset's environments it changes (audited as kind ``flags``), all
under one new configuration version — both or neither. A document the flags ruleset cannot take
(a variation value of the wrong type for an existing flag, an environment the ruleset does not
have, a rule that no unit could reach) is refused as a ``Conflict`` saying why; an invalid
definition as a ``DefinitionError`` naming the field.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from tallystick.control.definitions import DefinitionError
from tallystick.control.store import Conflict, NotFound
from tallystick.experiments.definition import (
    METRIC_SECTIONS,
    Experiment,
    ExperimentError,
    format_time,
    parse_experiment,
    rule_id,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.control.store import ControlStore

KIND: Final = "experiments"
"""The audit log's kind for experiment changes (the name is the experiment's key)."""

Action = Literal["create", "update", "start", "stop", "delete", "unchanged"]

#: fields whose change alters who is assigned what: worth a warning on a running experiment
_ASSIGNMENT: Final = (
    "flag", "environment", "unit", "variations", "weights", "coverage", "targeting", "namespace",
)  # fmt: skip


class UnknownExperiment(NotFound, KeyError):
    """No experiment of that key (a ``KeyError`` and the store's ``NotFound``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class StoredExperiment:
    """An experiment as stored: its definition, the configuration version that last wrote it,
    when and by whom."""

    experiment: Experiment
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str

    @property
    def key(self) -> str:
        return self.experiment.key

    def as_dict(self) -> dict[str, Any]:
        """``GET /v1/experiments/{key}``: the definition and its version."""
        return {
            "experiment": self.experiment.to_dict(),
            "version": self.version,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "updated_by": self.updated_by,
        }

    def summary(self) -> dict[str, Any]:
        """One line of ``GET /v1/experiments`` and ``tally experiments list``."""
        e = self.experiment
        return {
            "key": e.key,
            "name": e.name,
            "status": e.status,
            "owner": e.owner,
            "unit": e.unit,
            "variations": [
                {"key": v.key, "name": v.name, "weight": w}
                for v, w in zip(e.variations, e.weights, strict=True)
            ],
            "start": None if e.start is None else format_time(e.start),
            "stop": None if e.stop is None else format_time(e.stop),
            "flag": e.flag,
            "environment": e.environment,
            "metrics": {section: e.metric_names(role) for section, role in METRIC_SECTIONS.items()},
            "version": self.version,
            "updated_at": format_time(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Change:
    """What a write did to one experiment: its ``action`` (``unchanged``: nothing, no new
    version), what changed (one line each), the flags environments written, the configuration
    version, and notes worth telling (a status kept, a killed flag)."""

    key: str
    action: Action
    stored: StoredExperiment | None
    changes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    version: int | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "changes": list(self.changes),
            "flags_environments": list(self.flags),
            "version": self.version,
            "notes": list(self.notes),
            "experiment": None if self.stored is None else self.stored.as_dict(),
        }


# -- reading -------------------------------------------------------------------------------------


def _stored(row: Any) -> StoredExperiment:
    return StoredExperiment(
        parse_experiment(row.document),
        int(row.version),
        row.created_at,
        row.updated_at,
        row.updated_by,
    )


def list_experiments(store: ControlStore) -> list[StoredExperiment]:
    """Every experiment, in key order."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.experiments).order_by(t.experiments.c.key))
        return [_stored(r) for r in rows]


def _unknown(key: str, keys: Sequence[str]) -> UnknownExperiment:
    if not keys:
        return UnknownExperiment(
            f"no experiment {key!r}: there are none yet (`tally experiments apply FILE`)"
        )
    import difflib

    close = difflib.get_close_matches(key, keys, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UnknownExperiment(
        f"no experiment {key!r}{hint} (`tally experiments list` shows the experiments)"
    )


def _row(conn: sa.Connection, key: str) -> Any:
    import sqlalchemy as sa

    from tallystick.control import tables as t

    return conn.execute(sa.select(t.experiments).where(t.experiments.c.key == key)).one_or_none()


def _keys(conn: sa.Connection) -> list[str]:
    import sqlalchemy as sa

    from tallystick.control import tables as t

    return list(conn.execute(sa.select(t.experiments.c.key)).scalars())


def get_experiment(store: ControlStore, key: str) -> StoredExperiment:
    """One experiment; raises :class:`UnknownExperiment` (a ``KeyError``) naming a close key."""
    with store.engine.connect() as conn:
        row = _row(conn, key)
        if row is None:
            raise _unknown(key, _keys(conn))
        return _stored(row)


# -- what a change does --------------------------------------------------------------------------


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(before: Experiment | None, after: Experiment) -> list[str]:
    """What replacing ``before`` with ``after`` changes, one line per field (``~ field: a → b``);
    a new experiment is one ``+`` line."""
    if before is None:
        return [f"+ experiment {after.key} ({after.status})"]
    old, new = before.to_dict(), after.to_dict()
    return [
        f"~ {name}: {_short(old[name])} → {_short(new[name])}"
        for name in new
        if old[name] != new[name]
    ]


# -- the flag rule -------------------------------------------------------------------------------


def _environments(ruleset: Mapping[str, Any]) -> list[str]:
    return [str(e) for e in ruleset.get("environments", [])]


def _catch_all(rule: Mapping[str, Any]) -> bool:
    """A rule that serves every unit (no condition, no rollout, no experiment): rules after it
    are never reached."""
    return (
        rule.get("enabled", True) is not False
        and rule.get("condition") is None
        and "experiment" not in rule
        and "rollout" not in rule
    )


def _with_rule(ruleset: dict[str, Any], e: Experiment, notes: list[str]) -> None:
    """Put ``e``'s flag rule into ``ruleset`` (in place): see the module's documentation."""
    envs = _environments(ruleset)
    if e.environment not in envs:
        raise Conflict(
            f"experiment {e.key!r} runs in environment {e.environment!r}, which the flags "
            f"ruleset does not have (it has {', '.join(envs)}): add it to the ruleset "
            "(`tally flags apply`) or set the experiment's environment"
        )
    flags = ruleset.setdefault("flags", {})
    rule = e.flag_rule()
    flag = flags.get(e.flag)
    if flag is None:
        flags[e.flag] = {
            "type": e.flag_type(),
            "default": e.variations[0].value,
            "description": f"experiment {e.key}: {e.name}",
            "environments": {e.environment: {"enabled": True, "rules": [rule]}},
        }
        notes.append(
            f"created flag {e.flag!r} ({e.flag_type()}, default {_short(e.variations[0].value)}: "
            "the control's value)"
        )
        return
    env = flag.setdefault("environments", {}).setdefault(
        e.environment, {"enabled": True, "rules": []}
    )
    rules: list[dict[str, Any]] = env.setdefault("rules", [])
    for i, r in enumerate(rules):
        if r.get("id") == rule["id"]:
            rules[i] = rule
            break
    else:
        blocking = next((r for r in rules if _catch_all(r)), None)
        if blocking is not None:
            raise Conflict(
                f"flag {e.flag!r} in {e.environment} has a rule {blocking.get('id')!r} serving "
                "every unit, so an experiment rule after it would assign no one: give that rule "
                "a condition or remove it (`tally flags apply`), or use another flag"
            )
        rules.append(rule)
    if flag.get("killed"):
        notes.append(f"flag {e.flag!r} is killed: no unit is assigned until its kill switch is off")
    elif env.get("enabled", True) is False:
        notes.append(
            f"flag {e.flag!r} is disabled in {e.environment}: no unit is assigned until it is "
            "enabled"
        )


def _without_rule(ruleset: dict[str, Any], e: Experiment, notes: list[str]) -> None:
    """Remove ``e``'s flag rule from ``ruleset`` (in place), if it is there."""
    flag = ruleset.get("flags", {}).get(e.flag)
    env = None if flag is None else flag.get("environments", {}).get(e.environment)
    rules = [] if env is None else env.get("rules", [])
    kept = [r for r in rules if r.get("id") != rule_id(e.key)]
    if len(kept) == len(rules):
        notes.append(
            f"flag {e.flag!r} had no rule {rule_id(e.key)!r} in {e.environment} (removed by "
            "hand?): nothing to remove"
        )
        return
    assert env is not None
    env["rules"] = kept


def _checked(ruleset: dict[str, Any], e: Experiment) -> Any:
    """The ruleset, validated: the flags engine must take the experiment's rule."""
    from tallystick.control.flags import validate

    try:
        return validate(ruleset)
    except DefinitionError as exc:
        raise Conflict(
            f"flag {e.flag!r} cannot serve experiment {e.key!r}: {exc} (an existing flag keeps "
            "its type: give the variations values of that type, or use another flag)"
        ) from None


# -- writing -------------------------------------------------------------------------------------


def _parse(doc: Any) -> Experiment:
    try:
        return parse_experiment(doc)
    except ExperimentError as exc:
        raise DefinitionError(exc.path, exc.message) from None


def _now(at: dt.datetime | None) -> dt.datetime:
    """``at`` (aware), or now, in UTC to the second (a start or stop people read)."""
    if at is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    if at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    return at.astimezone(dt.UTC)


def _write(
    store: ControlStore,
    conn: sa.Connection,
    *,
    key: str,
    row: Any,
    before: Experiment | None,
    after: Experiment | None,
    action: Action,
    actor: str,
    at: dt.datetime,
    version: int | None,
    notes: list[str],
    changes: list[str],
) -> Change:
    """Write ``after`` (``None``: delete) with its flag rule (in or out by its status, and out
    of ``before``'s place), audited; ``unchanged`` when nothing would change."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.flags import current_ruleset, write_ruleset

    ruleset = copy.deepcopy(current_ruleset(conn))
    original = copy.deepcopy(ruleset)
    if before is not None and before.status == "running":
        moved = after is None or (after.flag, after.environment) != (
            before.flag,
            before.environment,
        )
        if moved or after is None or after.status != "running":
            _without_rule(ruleset, before, notes)
    if after is not None and after.status == "running":
        _with_rule(ruleset, after, notes)
    subject = after if after is not None else before
    assert subject is not None
    parsed = None if ruleset == original else _checked(ruleset, subject)
    if parsed is not None and parsed.to_dict() == {
        k: v for k, v in original.items() if k != "version"
    }:
        parsed = None  # the same rule again (stored in its canonical form)
    new_doc = None if after is None else after.to_dict()
    old_doc = None if before is None else before.to_dict()
    if new_doc == old_doc and parsed is None:
        stored = None if row is None else _stored(row)
        return Change(key, "unchanged", stored, notes=tuple(notes))
    version = store.audit(
        conn,
        at=at,
        actor=actor,
        action=action,
        kind=KIND,
        name=key,
        before=old_doc,
        after=new_doc,
        version=version,
    )
    environments: tuple[str, ...] = ()
    if parsed is not None:
        changed, removed, _ = write_ruleset(store, conn, parsed, actor, at=at, version=version)
        environments = changed + removed
        what = "removed from" if after is None or after.status != "running" else "written to"
        changes.append(f"flag {subject.flag}: rule {rule_id(key)} {what} {', '.join(environments)}")
    c = t.experiments.c
    if after is None:
        conn.execute(sa.delete(t.experiments).where(c.key == key))
        return Change(key, action, None, tuple(changes), environments, version, tuple(notes))
    values = {
        "document": new_doc,
        "status": after.status,
        "version": version,
        "updated_at": at,
        "updated_by": actor,
    }
    if row is None:
        conn.execute(sa.insert(t.experiments).values(key=key, created_at=at, **values))
        created = at
    else:
        conn.execute(sa.update(t.experiments).where(c.key == key).values(values))
        created = row.created_at
    stored = StoredExperiment(after, version, created, at, actor)
    return Change(key, action, stored, tuple(changes), environments, version, tuple(notes))


def _put(
    store: ControlStore,
    conn: sa.Connection,
    wanted: Experiment,
    raw: Any,
    actor: str,
    at: dt.datetime,
    version: int | None,
) -> Change:
    row = _row(conn, wanted.key)
    notes: list[str] = []
    before = None if row is None else parse_experiment(row.document)
    after = wanted
    if before is None:
        if after.status == "running" and after.start is None:
            after = dataclasses.replace(after, start=at)
        elif after.status == "stopped" and after.stop is None:
            after = dataclasses.replace(after, stop=max(at, after.start or at))
        action: Action = "create"
    else:
        asked = raw.get("status") if isinstance(raw, dict) else None
        if asked is not None and asked != before.status:
            verb = {"running": "start", "stopped": "stop"}.get(str(asked), "start/stop")
            notes.append(
                f"status stays {before.status}: apply does not change it "
                f"(`tally experiments {verb} {before.key}`)"
            )
        after = dataclasses.replace(
            after,
            status=before.status,
            start=after.start or before.start,
            stop=after.stop or before.stop,
        )
        if after.start is not None and after.stop is not None and after.stop < after.start:
            raise DefinitionError(
                "stop",
                f"stop ({format_time(after.stop)}) is before start ({format_time(after.start)})",
            )
        if before.status == "running" and any(
            getattr(before, f) != getattr(after, f) for f in _ASSIGNMENT
        ):
            notes.append(
                "the experiment is running: its flag rule now assigns by the new definition "
                "(changing the assignment mid-experiment mixes units; a new key starts clean)"
            )
        action = "update"
    changes = describe(before, after)
    return _write(
        store,
        conn,
        key=wanted.key,
        row=row,
        before=before,
        after=after,
        action=action,
        actor=actor,
        at=at,
        version=version,
        notes=notes,
        changes=changes,
    )


def put_experiments(store: ControlStore, docs: Iterable[Any], actor: str) -> list[Change]:
    """Create or replace experiments, all in one transaction under one configuration version:
    every document is validated first (``DefinitionError`` naming the document and the field),
    and a refusal (``Conflict``) writes none of them."""
    documents = list(docs)
    wanted: list[Experiment] = []
    for i, doc in enumerate(documents):
        try:
            wanted.append(parse_experiment(doc))
        except ExperimentError as exc:
            where = exc.path if len(documents) == 1 else f"[{i}].{exc.path}".rstrip(".")
            raise DefinitionError(where, exc.message) from None
    keys = [e.key for e in wanted]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise DefinitionError("key", f"experiment {twice[0]!r} is given twice")
    at = _now(None)
    version: int | None = None
    out: list[Change] = []
    with store.engine.begin() as conn:
        for e, raw in zip(wanted, documents, strict=True):
            change = _put(store, conn, e, raw, actor, at, version)
            version = change.version or version
            out.append(change)
    return out


def put_experiment(store: ControlStore, doc: Any, actor: str) -> Change:
    """Create or replace one experiment (see the module's documentation)."""
    return put_experiments(store, [doc], actor)[0]


def _existing(conn: sa.Connection, key: str) -> tuple[Any, Experiment]:
    row = _row(conn, key)
    if row is None:
        raise _unknown(key, _keys(conn))
    return row, parse_experiment(row.document)


def start_experiment(
    store: ControlStore, key: str, actor: str, at: dt.datetime | None = None
) -> Change:
    """Start a draft: write its flag rule, set its start (now, or ``at``, unless it has one).
    Starting a running experiment writes its rule again if it is missing; a stopped one is
    refused (``Conflict``)."""
    now = _now(at)
    with store.engine.begin() as conn:
        row, before = _existing(conn, key)
        if before.status == "stopped":
            stopped = "" if before.stop is None else f" at {format_time(before.stop)}"
            raise Conflict(
                f"experiment {key!r} was stopped{stopped} and cannot be restarted (its units "
                "were exposed and its analysis window is closed): copy its definition under a "
                f"new key (`tally experiments show {key} --format yaml`, change the key, "
                "`tally experiments apply`) and start that"
            )
        start = before.start or now
        stop = None if before.stop is not None and before.stop <= start else before.stop
        after = dataclasses.replace(before, status="running", start=start, stop=stop)
        return _write(
            store,
            conn,
            key=key,
            row=row,
            before=before,
            after=after,
            action="start",
            actor=actor,
            at=now,
            version=None,
            notes=[],
            changes=[] if before.status == "running" else [f"~ status: {before.status} → running"],
        )


def stop_experiment(
    store: ControlStore, key: str, actor: str, at: dt.datetime | None = None
) -> Change:
    """Stop a running experiment: remove its flag rule, set its stop to now (or ``at``).
    Stopping a stopped one changes nothing; a draft is refused (``Conflict``: delete it)."""
    now = _now(at)
    with store.engine.begin() as conn:
        row, before = _existing(conn, key)
        if before.status == "stopped":
            return Change(key, "unchanged", _stored(row), notes=(f"{key!r} is stopped already",))
        if before.status == "draft":
            raise Conflict(
                f"experiment {key!r} is a draft, not running: there is nothing to stop "
                f"(`tally experiments delete {key}` removes it)"
            )
        start = before.start or now
        after = dataclasses.replace(before, status="stopped", stop=max(now, start))
        return _write(
            store,
            conn,
            key=key,
            row=row,
            before=before,
            after=after,
            action="stop",
            actor=actor,
            at=now,
            version=None,
            notes=[],
            changes=["~ status: running → stopped"],
        )


def delete_experiment(store: ControlStore, key: str, actor: str) -> Change:
    """Remove an experiment's definition (and the flag rule of a running one), audited."""
    now = _now(None)
    with store.engine.begin() as conn:
        row, before = _existing(conn, key)
        return _write(
            store,
            conn,
            key=key,
            row=row,
            before=before,
            after=None,
            action="delete",
            actor=actor,
            at=now,
            version=None,
            notes=[],
            changes=[f"- experiment {key} ({before.status})"],
        )
