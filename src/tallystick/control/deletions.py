"""Requests to delete a user (``tally users delete``, ``POST /v1/admin/users/delete``).

The user id is never stored in clear. A request keeps the keyed hash (``privacy.secrets``: an
HMAC under the installation's secret) of each form the id may be stored under
(``privacy.pseudonym.stored_user_ids``: the id as sent, and its pseudonym under the current and
previous pseudonym keys): ``subject_hash`` is the hash of the id as sent, and the report column
holds every form's hash (``forms``) next to the outcome.

These hashes are all the worker needs, so the id never leaves the process that received it: the
worker (``store.deletion``) hashes the distinct user ids the lake holds and deletes the rows of
the ones that match. The same hashes suppress the user's later events: the collector drops an
event whose user id hashes to one of them (``Controls.suppressed``, reloaded with the
configuration version, which a request bumps) and the loader drops the events already in the
spool. Every request is written to the audit log (kind ``deletion``) with its number and
status, never the id.

SQLAlchemy is imported inside the functions: the collector imports this module for
``suppressed_hashes`` alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

PENDING: Final = "pending"
DONE: Final = "done"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, DONE, FAILED)
AUDIT_KIND: Final = "deletion"
USER_ID_MAX_CHARS: Final = 1000
DELETED_USER: Final = "deleted_user"
"""The declined-events reason of a deleted user's later events (collector and loader)."""


@dataclass(frozen=True, slots=True)
class DeletionRequest:
    """One request to delete a user, by the keyed hashes of the id's stored forms."""

    id: int
    subject_hash: str
    requested_at: dt.datetime
    requested_by: str
    status: str
    forms: tuple[str, ...]
    """Keyed hashes of every form the id may be stored under (``subject_hash`` first)."""
    done_at: dt.datetime | None = None
    outcome: dict[str, Any] | None = None
    """What the deletion removed (numbers only), once done."""
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject_hash": self.subject_hash,
            "status": self.status,
            "requested_at": _iso(self.requested_at),
            "requested_by": self.requested_by,
            "done_at": _iso(self.done_at),
            "report": self.outcome,
            "message": self.message,
        }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_user_id(user_id: str) -> str:
    """``user_id`` as given (exactly: ids are compared as stored), or ``ValueError``."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("a user id is needed: the user.id its events carry")
    if len(user_id) > USER_ID_MAX_CHARS:
        raise ValueError(f"a user id has at most {USER_ID_MAX_CHARS} characters")
    return user_id


def form_hashes(user_id: str, settings: Settings) -> list[str]:
    """The keyed hashes of every form ``user_id`` may be stored under, the id itself first."""
    from tallystick.privacy.pseudonym import stored_user_ids
    from tallystick.privacy.secrets import install_secret, keyed_hash

    secret = install_secret(settings.data)
    return [keyed_hash(secret, form) for form in stored_user_ids(user_id, settings)]


def _request(row: Any) -> DeletionRequest:
    report = dict(row.report) if isinstance(row.report, dict) else {}
    forms = tuple(str(f) for f in report.pop("forms", ()) or ())
    return DeletionRequest(
        int(row.id),
        row.subject_hash,
        row.requested_at,
        row.requested_by,
        row.status,
        forms or (row.subject_hash,),
        row.done_at,
        report.get("outcome"),
        row.message,
    )


def _audit(
    conn: sa.Connection,
    store: ControlStore,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    request: DeletionRequest,
    version: int | None = None,
) -> None:
    """One audit row for a request (the subject's hash, never the id); a new request bumps the
    configuration version (``version=None``), the worker's outcome is recorded under the
    version in force."""
    store.audit(
        conn,
        at=at,
        actor=actor,
        action=action,
        kind=AUDIT_KIND,
        name=f"deletion {request.id}",
        after={
            "id": request.id,
            "subject_hash": request.subject_hash,
            "status": request.status,
            **({"report": request.outcome} if request.outcome else {}),
            **({"message": request.message} if request.message else {}),
        },
        version=version,
    )


def request_deletion(
    store: ControlStore, settings: Settings, user_id: str, actor: str
) -> DeletionRequest:
    """Record a pending request to delete ``user_id`` (only keyed hashes are stored) and bump
    the configuration version, so collectors start suppressing the user's events. A pending
    request for the same user is returned as it is."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    forms = form_hashes(check_user_id(user_id), settings)
    c = t.user_deletions.c
    at = _now()
    with store.engine.begin() as conn:
        existing = conn.execute(
            sa.select(t.user_deletions)
            .where(c.subject_hash == forms[0], c.status == PENDING)
            .order_by(c.id)
        ).first()
        if existing is not None:
            return _request(existing)
        new_id = conn.execute(
            sa.insert(t.user_deletions)
            .values(
                subject_hash=forms[0],
                requested_at=at,
                requested_by=actor,
                status=PENDING,
                report={"forms": forms},
            )
            .returning(c.id)
        ).scalar_one()
        request = DeletionRequest(int(new_id), forms[0], at, actor, PENDING, tuple(forms))
        _audit(conn, store, at=at, actor=actor, action="request", request=request)
    return request


def get_deletion(store: ControlStore, request_id: int) -> DeletionRequest:
    """One request; ``NotFound`` for an unknown number."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import NotFound

    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(t.user_deletions).where(t.user_deletions.c.id == request_id)
        ).one_or_none()
    if row is None:
        raise NotFound(f"no deletion request {request_id}; `tally users deletions` lists them")
    return _request(row)


def list_deletions(
    store: ControlStore, *, status: str | None = None, limit: int | None = None
) -> list[DeletionRequest]:
    """The requests, newest first (only those with ``status`` when given)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    c = t.user_deletions.c
    query = sa.select(t.user_deletions).order_by(c.id.desc())
    if status is not None:
        query = query.where(c.status == status)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [_request(r) for r in conn.execute(query)]


def pending(store: ControlStore) -> list[DeletionRequest]:
    """The pending requests, oldest first."""
    return sorted(list_deletions(store, status=PENDING), key=lambda r: r.id)


def finish(
    store: ControlStore,
    request_ids: Sequence[int],
    *,
    status: str,
    outcome: dict[str, Any] | None,
    message: str | None,
    actor: str,
) -> list[DeletionRequest]:
    """Mark requests done (or failed) with what the deletion removed (numbers only); an audit
    row each. Requests no longer pending are left as they are."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    assert status in (DONE, FAILED)
    c = t.user_deletions.c
    at = _now()
    finished: list[DeletionRequest] = []
    with store.engine.begin() as conn:
        version = int(
            conn.execute(
                sa.select(t.config_version.c.version).where(t.config_version.c.id == 1)
            ).scalar_one_or_none()
            or 0
        )
        for request_id in request_ids:
            row = conn.execute(
                sa.select(t.user_deletions).where(c.id == request_id, c.status == PENDING)
            ).one_or_none()
            if row is None:
                continue
            before = _request(row)
            conn.execute(
                sa.update(t.user_deletions)
                .where(c.id == request_id)
                .values(
                    status=status,
                    done_at=at,
                    report={"forms": list(before.forms), "outcome": outcome},
                    message=message,
                )
            )
            after = DeletionRequest(
                before.id,
                before.subject_hash,
                before.requested_at,
                before.requested_by,
                status,
                before.forms,
                at,
                outcome,
                message,
            )
            _audit(conn, store, at=at, actor=actor, action=status, request=after, version=version)
            finished.append(after)
    return finished


def suppressed_hashes(conn: sa.Connection) -> frozenset[str]:
    """Every keyed hash of every deleted (or to be deleted) user: their events are not
    stored."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    rows = conn.execute(sa.select(t.user_deletions.c.subject_hash, t.user_deletions.c.report))
    return frozenset(_all_forms((r.subject_hash, r.report) for r in rows))


def _all_forms(rows: Iterable[tuple[str, Any]]) -> Iterable[str]:
    for subject, report in rows:
        yield subject
        if isinstance(report, dict):
            yield from (str(f) for f in report.get("forms") or ())


def suppressed_indexes(
    user_ids: Iterable[str | None], suppressed: frozenset[str], secret: bytes
) -> set[int]:
    """The places in ``user_ids`` of ids whose keyed hash is ``suppressed`` (each distinct id
    hashed once)."""
    from tallystick.privacy.secrets import keyed_hash

    if not suppressed:
        return set()
    verdict: dict[str, bool] = {}
    found: set[int] = set()
    for i, user_id in enumerate(user_ids):
        if not user_id:
            continue
        hit = verdict.get(user_id)
        if hit is None:
            hit = verdict[user_id] = keyed_hash(secret, user_id) in suppressed
        if hit:
            found.add(i)
    return found
