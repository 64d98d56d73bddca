"""Quarantine: data left out of every analysis, reversibly, with a reason and an audit trail.

A rule matches lake rows by one of four kinds, optionally only for events whose ``client_ts``
falls in ``[time_from, time_to)``:

======== ============================== =====================================================
kind     value                          matches rows where
======== ============================== =====================================================
user     a user id                      ``user.id`` equals it
session  a session id                   ``session.id`` equals it
ip       a network in CIDR notation     ``geo.network`` (the client's /24 or /48) lies in it
where    ``FIELD=VALUE``                the field, rendered as analyses filter it, equals it
======== ============================== =====================================================

The lake never stores a client's IP address, only the network it belongs to (``geo.network``:
the address cut to /24 for IPv4, /48 for IPv6). So an ``ip`` rule narrower than that (a single
address, a /28) cannot be matched: it is refused, and the message names the containing /24
(/48) to quarantine instead, knowing it may hold other clients too. Matching the containing
network silently would exclude more than was asked for.

Rules are rows of the control plane's ``quarantine`` table. Adding, lifting and purging write
an ``audit_log`` row (kind ``quarantine``) and bump the configuration version in the same
transaction. A lifted rule stays in the table (``lifted_at``) and stops applying at once; a
purged rule (``tally purge``) had its matching rows deleted from the lake: lifting it brings
nothing back, and while it stays active it keeps excluding rows that arrive later.

Analyses read the active rules each time they run (``ActiveRules``); how a rule becomes SQL is
``metrics.exclusion``'s business. SQLAlchemy is imported inside the functions that use it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

from tallystick.control.definitions import DefinitionError, format_time, parse_time

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

Kind: TypeAlias = Literal["user", "session", "ip", "where"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)
#: the field each kind compares (``where`` names its own)
FIELDS: Final[dict[str, str]] = {"user": "user.id", "session": "session.id", "ip": "geo.network"}
AUDIT_KIND: Final = "quarantine"
REASON_MAX_CHARS: Final = 500
VALUE_MAX_CHARS: Final = 500
#: the prefix lengths the lake stores networks at (``geo.network``)
STORED_PREFIX: Final = {4: 24, 6: 48}


class RulesUnavailable(RuntimeError):
    """The quarantine rules could not be read: analyses refuse to run rather than count data
    that may be quarantined."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One quarantine rule; active while ``lifted_at`` is None."""

    id: int
    kind: Kind
    value: str
    """The user id, session id, network (CIDR) or, for ``where``, the value compared."""
    field: str | None
    """For ``where``: the field compared (``app.version``, ``data.plan``)."""
    time_from: dt.datetime | None
    time_to: dt.datetime | None
    """Exclusive: the rule matches events with ``time_from <= client_ts < time_to``."""
    reason: str
    created_at: dt.datetime
    created_by: str
    lifted_at: dt.datetime | None = None
    lifted_by: str | None = None
    purged_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    @property
    def path(self) -> str:
        """The field the rule compares."""
        return self.field if self.kind == "where" and self.field else FIELDS[self.kind]

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """An ``ip`` rule's network."""
        return ipaddress.ip_network(self.value)

    def matches(self) -> str:
        """What the rule matches, in words: ``user.id = u1``, ``geo.network in 10.0.0.0/8``."""
        op = "in" if self.kind == "ip" else "="
        text = f"{self.path} {op} {self.value}"
        if self.time_from is not None and self.time_to is not None:
            text += f", client_ts from {_short(self.time_from)} to {_short(self.time_to)}"
        elif self.time_from is not None:
            text += f", client_ts from {_short(self.time_from)}"
        elif self.time_to is not None:
            text += f", client_ts before {_short(self.time_to)}"
        return text

    def key(self) -> Hashable:
        """What decides which rows the rule matches (for answer caches)."""
        return (self.id, self.kind, self.field, self.value, self.time_from, self.time_to)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "field": self.path,
            "value": self.value,
            "from": format_time(self.time_from),
            "to": format_time(self.time_to),
            "matches": self.matches(),
            "reason": self.reason,
            "active": self.active,
            "created_at": format_time(self.created_at),
            "created_by": self.created_by,
            "lifted_at": format_time(self.lifted_at),
            "lifted_by": self.lifted_by,
            "purged_at": format_time(self.purged_at),
        }


def _short(at: dt.datetime) -> str:
    """A time as briefly as it is exact: a date for midnight, else to the second (or finer)."""
    at = at.astimezone(dt.UTC)
    if at.time() == dt.time(0):
        return at.date().isoformat()
    return format_time(at) or ""


def rules_key(rules: Sequence[Rule]) -> Hashable:
    """What decides which rows ``rules`` exclude, as one hashable value."""
    return tuple(sorted((r.key() for r in rules), key=repr))


# -- checking a rule -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """A rule as asked for, checked and normalised (no id or history yet)."""

    kind: Kind
    value: str
    field: str | None
    time_from: dt.datetime | None
    time_to: dt.datetime | None
    reason: str


def check_rule(
    kind: str,
    value: str,
    *,
    time_from: str | dt.date | None = None,
    time_to: str | dt.date | None = None,
    reason: str | None,
) -> Spec:
    """``kind`` and ``value`` (for ``where``, ``FIELD=VALUE``) checked and normalised; raises
    ``DefinitionError`` naming what to fix.

    ``time_from`` and ``time_to`` are dates or times (ISO 8601; a time without an offset is
    UTC). A date in ``time_from`` means its midnight; a date in ``time_to`` means the end of
    that day (it is included, as ``--to`` is in analyses); a time in ``time_to`` is excluded.
    """
    if kind not in KINDS:
        raise DefinitionError("kind", f"unknown kind {kind!r}: use {', '.join(KINDS)}")
    field: str | None = None
    if kind == "ip":
        text = str(_network(value))
    elif kind == "where":
        field, text = _where(value)
    else:
        text = _text(value, FIELDS[kind], kind)
    start = parse_time(time_from, "from")
    end = _end(time_to)
    if start is not None and end is not None and end <= start:
        raise DefinitionError(
            "to", f"--to ({_short(end)}) must be after --from ({_short(start)}): nothing matches"
        )
    return Spec(kind, text, field, start, end, _reason(reason))


def _end(raw: str | dt.date | None) -> dt.datetime | None:
    """The exclusive end of ``raw``: the midnight after a date, a time as it is."""
    if raw is None:
        return None
    is_date = isinstance(raw, dt.date) and not isinstance(raw, dt.datetime)
    if isinstance(raw, str):
        try:
            dt.date.fromisoformat(raw.strip())
            is_date = True
        except ValueError:
            is_date = False
    end = parse_time(raw, "to")
    assert end is not None
    return end + dt.timedelta(days=1) if is_date else end


def _text(value: str, path: str, what: str) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise DefinitionError(what, f"give the {path} to quarantine")
    if len(cleaned) > VALUE_MAX_CHARS:
        raise DefinitionError(
            what, f"the {path} is {len(cleaned)} characters long; at most {VALUE_MAX_CHARS}"
        )
    return cleaned


def _reason(reason: str | None) -> str:
    cleaned = reason.strip() if isinstance(reason, str) else ""
    if not cleaned:
        raise DefinitionError(
            "reason", "say why the data is quarantined (--reason TEXT); it is kept with the rule"
        )
    if len(cleaned) > REASON_MAX_CHARS:
        raise DefinitionError(
            "reason", f"the reason is {len(cleaned)} characters long; keep it to {REASON_MAX_CHARS}"
        )
    return cleaned


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network the lake's ``geo.network`` can be matched against."""
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise DefinitionError("ip", "give a network in CIDR notation, such as 203.0.113.0/24")
    try:
        loose = ipaddress.ip_network(cleaned, strict=False)
    except ValueError:
        raise DefinitionError(
            "ip",
            f"{cleaned!r} is not an IP network: write it in CIDR notation, such as "
            "203.0.113.0/24 or 2001:db8::/32",
        ) from None
    stored = STORED_PREFIX[loose.version]
    if loose.prefixlen > stored:
        containing = loose.supernet(new_prefix=stored)
        raise DefinitionError(
            "ip",
            f"{cleaned} is narrower than what the lake keeps: it stores each client's network "
            f"cut to /{stored} (geo.network), never the address. Quarantine {containing} to "
            "exclude that whole network (it may hold other clients too)",
        )
    try:
        ipaddress.ip_network(cleaned, strict=True)
    except ValueError:
        raise DefinitionError(
            "ip", f"{cleaned} has host bits set: the network is {loose}; quarantine {loose}"
        ) from None
    return loose


def _where(value: str) -> tuple[str, str]:
    """``FIELD=VALUE``: the field (checked as analyses' filters check it) and the value in the
    text form analyses compare (``true``/``false``, whole numbers without leading zeros)."""
    from tallystick.metrics.params import MetricError, check_field
    from tallystick.schema import FIELDS_BY_PATH

    text = value.strip() if isinstance(value, str) else ""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path or path.endswith(("!", "<", ">")):
        raise DefinitionError(
            "where", f"cannot read {value!r}: write FIELD=VALUE, such as app.version=1.4.2"
        )
    try:
        check_field(path, "field")
    except MetricError as exc:
        raise DefinitionError("where", str(exc)) from None
    wanted = raw.strip()
    if not wanted:
        raise DefinitionError(
            "where", f"{path}= has no value: an empty field never matches; give the value"
        )
    kind = None if path.startswith("data.") else FIELDS_BY_PATH[path].kind
    if kind == "bool":
        if wanted.lower() not in ("true", "false"):
            raise DefinitionError("where", f"{path} is true or false, not {wanted!r}")
        wanted = wanted.lower()
    elif kind == "int":
        try:
            wanted = str(int(wanted))
        except ValueError:
            raise DefinitionError("where", f"{path} holds whole numbers, not {wanted!r}") from None
    if len(wanted) > VALUE_MAX_CHARS:
        raise DefinitionError("where", f"the value is longer than {VALUE_MAX_CHARS} characters")
    return path, wanted


# -- the store -----------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rule(row: Any) -> Rule:
    return Rule(
        int(row.id),
        row.kind,
        row.value,
        row.field,
        row.time_from,
        row.time_to,
        row.reason,
        row.created_at,
        row.created_by,
        row.lifted_at,
        row.lifted_by,
        row.purged_at,
    )


def _audit(
    conn: sa.Connection,
    store: ControlStore,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    name: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    store.audit(
        conn,
        at=at,
        actor=actor,
        action=action,
        kind=AUDIT_KIND,
        name=name,
        before=before,
        after=after,
    )


def add_rule(
    store: ControlStore,
    kind: str,
    value: str,
    *,
    reason: str | None,
    actor: str,
    time_from: str | dt.date | None = None,
    time_to: str | dt.date | None = None,
) -> Rule:
    """Quarantine what ``kind``/``value`` match (see ``check_rule``). Raises ``DefinitionError``
    for a bad rule and ``Conflict`` when the same rule is active already."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import Conflict

    spec = check_rule(kind, value, time_from=time_from, time_to=time_to, reason=reason)
    at = _now()
    c = t.quarantine.c
    with store.engine.begin() as conn:
        same = conn.execute(
            sa.select(c.id).where(
                c.kind == spec.kind,
                c.value == spec.value,
                c.field.is_(None) if spec.field is None else c.field == spec.field,
                c.time_from.is_(None) if spec.time_from is None else c.time_from == spec.time_from,
                c.time_to.is_(None) if spec.time_to is None else c.time_to == spec.time_to,
                c.lifted_at.is_(None),
            )
        ).scalar_one_or_none()
        if same is not None:
            raise Conflict(
                f"that data is quarantined already (rule {same}); `tally quarantine list` "
                "shows the rules"
            )
        new_id = conn.execute(
            sa.insert(t.quarantine)
            .values(
                kind=spec.kind,
                value=spec.value,
                field=spec.field,
                time_from=spec.time_from,
                time_to=spec.time_to,
                reason=spec.reason,
                created_at=at,
                created_by=actor,
            )
            .returning(c.id)
        ).scalar_one()
        rule = Rule(
            int(new_id),
            spec.kind,
            spec.value,
            spec.field,
            spec.time_from,
            spec.time_to,
            spec.reason,
            at,
            actor,
        )
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="add",
            name=rule.matches(),
            before=None,
            after=rule.as_dict(),
        )
    return rule


def get_rule(store: ControlStore, rule_id: int) -> Rule:
    """Rule ``rule_id``; ``NotFound`` when there is none."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import NotFound

    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(t.quarantine).where(t.quarantine.c.id == rule_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"no quarantine rule {rule_id}; `tally quarantine list` shows the rules")
    return _rule(row)


def lift_rule(store: ControlStore, rule_id: int, actor: str) -> Rule:
    """Stop applying rule ``rule_id`` (its row stays, marked lifted): what it excluded counts
    again, except what ``tally purge`` deleted. ``NotFound`` for an unknown id, ``Conflict`` for a
    rule lifted already."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import Conflict, NotFound

    at = _now()
    c = t.quarantine.c
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(t.quarantine).where(c.id == rule_id)).one_or_none()
        if row is None:
            raise NotFound(f"no quarantine rule {rule_id}; `tally quarantine list` shows the rules")
        before = _rule(row)
        if not before.active:
            raise Conflict(
                f"quarantine rule {rule_id} ({before.matches()}) was lifted already, at "
                f"{format_time(before.lifted_at)} by {before.lifted_by}"
            )
        conn.execute(
            sa.update(t.quarantine).where(c.id == rule_id).values(lifted_at=at, lifted_by=actor)
        )
        after = _rule(conn.execute(sa.select(t.quarantine).where(c.id == rule_id)).one())
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="lift",
            name=before.matches(),
            before=before.as_dict(),
            after=after.as_dict(),
        )
    return after


def list_rules(store: ControlStore, *, include_lifted: bool = False) -> list[Rule]:
    """The rules, oldest first; lifted ones too when asked."""
    with store.engine.connect() as conn:
        return read_rules(conn, include_lifted=include_lifted)


def read_rules(conn: sa.Connection, *, include_lifted: bool = False) -> list[Rule]:
    """``list_rules`` on a caller's connection."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    query = sa.select(t.quarantine).order_by(t.quarantine.c.id)
    if not include_lifted:
        query = query.where(t.quarantine.c.lifted_at.is_(None))
    return [_rule(r) for r in conn.execute(query)]


def mark_purged(
    store: ControlStore, rules: Sequence[Rule], actor: str, summary: dict[str, Any]
) -> list[Rule]:
    """Record that ``rules``' rows were deleted from the lake (``purged_at``), with one audit
    row (action ``purge``) holding ``summary`` (what was deleted)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    at = _now()
    ids = [r.id for r in rules]
    c = t.quarantine.c
    with store.engine.begin() as conn:
        if ids:
            conn.execute(sa.update(t.quarantine).where(c.id.in_(ids)).values(purged_at=at))
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="purge",
            name="purge",
            before=None,
            after={"rules": ids, **summary},
        )
        return [_rule(r) for r in conn.execute(sa.select(t.quarantine).where(c.id.in_(ids)))]


# -- the rules analyses apply --------------------------------------------------------------------


class ActiveRules:
    """The active rules of one data directory's control plane, read afresh for every analysis
    (one small query), so a change applies to the next answer.

    Reading never creates or migrates a database: a data directory without a control database,
    or one without the quarantine table yet, has no rules. Any other failure raises
    ``RulesUnavailable``: an analysis that cannot know what is quarantined does not run.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = settings.control_database
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()

    def _exists(self) -> bool:
        if not self.url.startswith("sqlite"):
            return True
        path = self.url.split("///", 1)[1] if "///" in self.url else ""
        if not path or path == ":memory:":
            return False
        from pathlib import Path

        return Path(path).is_file()

    def rules(self) -> tuple[Rule, ...]:
        import sqlalchemy as sa

        with self._lock:
            if self._engine is None:
                if not self._exists():
                    return ()
                try:
                    self._engine = _reader(self.url)
                except Exception as exc:
                    raise RulesUnavailable(_unavailable(exc)) from exc
            engine = self._engine
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("quarantine"):
                    return ()
                return tuple(read_rules(conn))
        except sa.exc.SQLAlchemyError as exc:
            raise RulesUnavailable(_unavailable(exc)) from exc

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def _reader(url: str) -> sa.Engine:
    """An engine that only reads: for SQLite, without ``control.db``'s ``BEGIN IMMEDIATE`` (a
    read needs no write lock, and may run where the database cannot be written)."""
    import sqlalchemy as sa

    from tallystick.control import db

    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": db.BUSY_TIMEOUT_MS / 1000})
    return db.engine_for(url)


def _unavailable(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot read the quarantine rules from the control plane ({type(exc).__name__}: "
        f"{first}); analyses do not run without them. Check --control-url / "
        "TALLYSTICK_CONTROL_URL"
    )
