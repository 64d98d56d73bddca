"""Feature flags in the control plane: the ruleset, stored one environment per row.

The whole ruleset (docs/flags.md) is what people write and read (``tally flags apply``,
``PUT /v1/admin/flags``); it is stored split by environment: each ``flag_rulesets`` row holds
the ruleset *restricted to that environment* (``environments: [env]``, every flag with only that
environment's rules), itself a valid ruleset — exactly what an SDK fetches
(``GET /v1/flags/ruleset?environment=prod``) and compiles. A row's ``version`` is the
configuration version of the change that last wrote it, so a change to ``dev`` leaves ``prod``'s
version (and its ETag) alone.

Writing validates the whole document with ``parse_ruleset`` (an invalid one is refused as a
``DefinitionError`` naming the place: ``flags.new-signin.environments.prod.rules[2].value``),
then, in one transaction, rewrites the environments whose document changed, deletes the
environments no longer listed, and records each in the audit log (kind ``flags``, name the
environment) under one new configuration version, so running collectors reload. Writing the
same ruleset again changes nothing.

SQLAlchemy is imported inside the functions: the collector's request path imports this module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tallystick.control.definitions import DefinitionError
from tallystick.flags.errors import RulesetError
from tallystick.flags.evaluate import DEFAULT_ENVIRONMENTS, Evaluation, Ruleset, parse_ruleset
from tallystick.flags.header import ACTIVE_HEADER as ACTIVE_HEADER
from tallystick.flags.header import active_header as active_header

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.control.store import ControlStore

KIND: Final = "flags"
"""The audit log's kind for flag changes (the name is the environment)."""


@dataclass(frozen=True, slots=True)
class StoredRuleset:
    """One environment's ruleset as stored: its document carries ``version``."""

    environment: str
    document: dict[str, Any]
    version: int
    updated_at: dt.datetime | None = None
    updated_by: str | None = None

    @property
    def etag(self) -> str:
        """The HTTP entity tag of this environment's document (quoted)."""
        return f'"flags-{self.environment}-{self.version}"'


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``put_ruleset`` did: the environments written and removed, under ``version``
    (``None``: nothing changed), and the whole ruleset now in force."""

    changed: tuple[str, ...]
    removed: tuple[str, ...]
    version: int | None
    ruleset: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": list(self.changed),
            "removed": list(self.removed),
            "version": self.version,
            "ruleset": self.ruleset,
        }


def validate(doc: Any) -> Ruleset:
    """``parse_ruleset(doc)`` (its ``version`` is the server's to assign and is ignored); an
    invalid document raises ``DefinitionError`` with the parser's place and message."""
    if isinstance(doc, dict) and "version" in doc:
        doc = {k: v for k, v in doc.items() if k != "version"}
    try:
        return parse_ruleset(doc)
    except RulesetError as exc:
        raise DefinitionError(exc.path, exc.message) from None


def environment_document(ruleset: Ruleset, environment: str) -> dict[str, Any]:
    """The ruleset restricted to one environment (without a version)."""
    flags = {
        key: dataclasses.replace(
            flag,
            environments=(
                {environment: flag.environments[environment]}
                if environment in flag.environments
                else {}
            ),
        )
        for key, flag in ruleset.flags.items()
    }
    return Ruleset(flags, ruleset.segments, (environment,)).to_dict()


def merge(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The whole ruleset from the environments' documents (environments in name order; the
    version is the newest environment's). No environment at all: an empty ruleset."""
    if not documents:
        return {"environments": list(DEFAULT_ENVIRONMENTS), "segments": {}, "flags": {}}
    envs = sorted(documents)
    flags: dict[str, dict[str, Any]] = {}
    segments: dict[str, Any] = {}
    versions: list[int] = []
    for env in envs:
        doc = documents[env]
        if isinstance(doc.get("version"), int):
            versions.append(doc["version"])
        segments.update(doc.get("segments", {}))
        for key, flag in doc.get("flags", {}).items():
            merged = flags.setdefault(key, {**flag, "environments": {}})
            merged["environments"].update(flag.get("environments", {}))
    head: dict[str, Any] = {"version": max(versions)} if versions else {}
    return {**head, "environments": envs, "segments": segments, "flags": flags}


def _stored(row: Any) -> StoredRuleset:
    return StoredRuleset(
        row.environment,
        {"version": int(row.version), **row.document},
        int(row.version),
        row.updated_at,
        row.updated_by,
    )


def list_rulesets(store: ControlStore) -> list[StoredRuleset]:
    """Every environment's stored ruleset, in name order."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.flag_rulesets).order_by(t.flag_rulesets.c.environment))
        return [_stored(r) for r in rows]


def get_ruleset(store: ControlStore) -> dict[str, Any]:
    """The whole ruleset in force (an empty one before any was applied)."""
    return merge({s.environment: s.document for s in list_rulesets(store)})


def get_environment(store: ControlStore, environment: str) -> StoredRuleset:
    """One environment's ruleset; raises ``NotFound`` naming the environments there are."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import NotFound

    c = t.flag_rulesets.c
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(t.flag_rulesets).where(c.environment == environment)
        ).one_or_none()
        if row is not None:
            return _stored(row)
        names = list(conn.execute(sa.select(c.environment).order_by(c.environment)).scalars())
    if not names and environment in DEFAULT_ENVIRONMENTS:
        # nothing applied yet: every flag is unknown (SDKs serve their defaults), version 0
        empty = {"environments": [environment], "segments": {}, "flags": {}}
        return StoredRuleset(environment, {"version": 0, **empty}, 0)
    if not names:
        raise NotFound(
            f"no flags ruleset for environment {environment!r}: none was applied yet "
            f"(`tally flags apply FILE`); until then only {' and '.join(DEFAULT_ENVIRONMENTS)} "
            "answer, with an empty ruleset"
        )
    raise NotFound(
        f"no flags ruleset for environment {environment!r}; the environments are {', '.join(names)}"
    )


def environment_version(store: ControlStore, environment: str) -> int | None:
    """The version of one environment's stored ruleset (``None``: none is stored): one cheap
    read, to tell whether a cached compiled ruleset is still current."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    c = t.flag_rulesets.c
    with store.engine.connect() as conn:
        version = conn.execute(
            sa.select(c.version).where(c.environment == environment)
        ).scalar_one_or_none()
    return None if version is None else int(version)


def put_ruleset(store: ControlStore, doc: Any, actor: str) -> Applied:
    """Replace the whole ruleset with ``doc`` (validated: ``DefinitionError`` names the place);
    see the module's documentation."""

    ruleset = validate(doc)
    with store.engine.begin() as conn:
        changed, removed, version = write_ruleset(store, conn, ruleset, actor)
    return Applied(changed, removed, version, get_ruleset(store))


def current_ruleset(conn: sa.Connection) -> dict[str, Any]:
    """The whole ruleset in force, read in ``conn``'s transaction (see :func:`get_ruleset`)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    rows = conn.execute(sa.select(t.flag_rulesets))
    return merge({r.environment: {"version": int(r.version), **r.document} for r in rows})


def write_ruleset(
    store: ControlStore,
    conn: sa.Connection,
    ruleset: Ruleset,
    actor: str,
    *,
    at: dt.datetime | None = None,
    version: int | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...], int | None]:
    """:func:`put_ruleset`'s writes, in ``conn``'s transaction (so a caller changing something
    else with the ruleset, like an experiment starting, changes both or neither): the
    environments changed and removed, and the version (``version``, or a new one; ``None``:
    nothing changed)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    wanted = {env: environment_document(ruleset, env) for env in ruleset.environments}
    at = at or dt.datetime.now(dt.UTC)
    c = t.flag_rulesets.c
    changed: list[str] = []
    removed: list[str] = []
    current = {r.environment: r for r in conn.execute(sa.select(t.flag_rulesets))}
    for env in sorted(set(wanted) | set(current)):
        row = current.get(env)
        before = None if row is None else row.document
        after = wanted.get(env)
        if before == after:
            continue
        version = store.audit(
            conn,
            at=at,
            actor=actor,
            action="delete" if after is None else "create" if before is None else "update",
            kind=KIND,
            name=env,
            before=before,
            after=after,
            version=version,
        )
        if after is None:
            conn.execute(sa.delete(t.flag_rulesets).where(c.environment == env))
            removed.append(env)
            continue
        values = {"document": after, "version": version, "updated_at": at, "updated_by": actor}
        if row is None:
            conn.execute(sa.insert(t.flag_rulesets).values(environment=env, **values))
        else:
            conn.execute(sa.update(t.flag_rulesets).where(c.environment == env).values(values))
        changed.append(env)
    return tuple(changed), tuple(removed), version if changed or removed else None


# -- serving -------------------------------------------------------------------------------------


def evaluation_dict(evaluation: Evaluation) -> dict[str, Any]:
    """An evaluation as JSON, without its flag key (the answer's key) and its empty fields."""
    out: dict[str, Any] = {"value": evaluation.value, "reason": evaluation.reason}
    for name in _OPTIONAL_FIELDS:
        value = getattr(evaluation, name)
        if value is not None:
            out[name] = value
    if evaluation.exposure:
        out["exposure"] = True
    return out


_OPTIONAL_FIELDS: Final = (
    "rule",
    "experiment",
    "variation",
    "variation_key",
    "hash_attribute",
    "unit",
    "bucket",
)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison; ``*`` matches)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/")
        if tag in ("*", etag):
            return True
    return False


# -- what a change does --------------------------------------------------------------------------


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What replacing ruleset ``before`` with ``after`` (both canonical: ``to_dict()`` or
    ``merge``) changes, one line each: ``+`` added, ``-`` removed, ``~`` changed (and how)."""
    lines: list[str] = []
    old_envs, new_envs = list(before.get("environments", [])), list(after.get("environments", []))
    lines += [f"+ environment {e}" for e in new_envs if e not in old_envs]
    lines += [f"- environment {e}" for e in old_envs if e not in new_envs]
    lines += _keyed_diff("segment", before.get("segments", {}), after.get("segments", {}))
    old_flags: Mapping[str, Any] = before.get("flags", {})
    new_flags: Mapping[str, Any] = after.get("flags", {})
    for key in sorted(set(old_flags) | set(new_flags)):
        old, new = old_flags.get(key), new_flags.get(key)
        if old is None:
            lines.append(f"+ flag {key} ({(new or {}).get('type')})")
        elif new is None:
            lines.append(f"- flag {key}")
        elif old != new:
            lines.append(f"~ flag {key}: {', '.join(_flag_changes(old, new))}")
    return lines


def _keyed_diff(what: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(f"+ {what} {key}")
        elif key not in new:
            out.append(f"- {what} {key}")
        elif old[key] != new[key]:
            out.append(f"~ {what} {key}")
    return out


def _flag_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    if old.get("killed") != new.get("killed"):
        changes.append("KILLED" if new.get("killed") else "kill switch off")
    for field in ("type", "default", "description"):
        if old.get(field) != new.get(field):
            changes.append(f"{field} {_short(old.get(field))} → {_short(new.get(field))}")
    old_envs, new_envs = old.get("environments", {}), new.get("environments", {})
    for env in sorted(set(old_envs) | set(new_envs)):
        was, now = old_envs.get(env), new_envs.get(env)
        if was == now:
            continue
        if was is None or now is None:
            changes.append(f"{env} {'added' if was is None else 'removed'}")
            continue
        if was.get("enabled", True) != now.get("enabled", True):
            changes.append(f"{env} {'enabled' if now.get('enabled', True) else 'disabled'}")
        if was.get("rules") != now.get("rules"):
            changes.append(
                f"{env} rules ({len(was.get('rules', []))} → {len(now.get('rules', []))})"
            )
    return changes or ["changed"]


def _short(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
