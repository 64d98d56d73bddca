"""API keys (``tally keys``) and dashboard sessions: created, listed, revoked, checked.

Three kinds of key, each good for one thing:

====== ====================== ===============================================================
kind   looks like             may
====== ====================== ===============================================================
write  ``tally_w_<32 chars>`` send events (``POST /v1/events``) for one app, from the browser
                              origins it lists; it reads nothing and changes nothing
read   ``tally_r_<32 chars>`` read: queries, metrics, the catalog, health, the dashboard; the
                              private streams granted to it (``*``: all of them)
admin  ``tally_a_<32 chars>`` all a read key may, on every stream, and change the configuration
                              (``/v1/admin/...``)
====== ====================== ===============================================================

A key is shown once, when it is made. The control plane keeps its SHA-256 (hex) and its first
characters (``prefix``, to tell keys apart), never the key: a key is 32 random base62
characters (190 bits), so an unsalted hash cannot be reversed by guessing. Creating and revoking
write an ``audit_log`` row (kind ``key``, without the key) and bump the configuration version in
the same transaction.

Every request's key is looked up in the database (``Verifier``): a key revoked by
``tally keys revoke`` in another process fails on the very next request. The lookup is one
indexed read (SQLite: no write lock). ``last_used_at`` is written at most once a minute per key,
in a background thread. Whether a kind needs a key at all (``Keyed``) is read until it does:
keys are revoked, never deleted, so once a kind has had a key it keeps needing one (revoking the
last read key does not open the server's data to everyone; create a new key instead).

A dashboard session (``sign_in``) stands for the key it was opened with: its cookie's value is
random, its SHA-256 is stored with the key's id and an expiry; revoking the key ends its sessions
at once. The server's static keys (``read_key``, ``admin_key``) open sessions too; their
``key_id`` is a negative fingerprint of the static key, so changing the setting ends them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import string
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

from tallystick.collect.cors import origin_of
from tallystick.control.definitions import DefinitionError
from tallystick.control.principal import ALL_STREAMS, Principal

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

KeyKind: TypeAlias = Literal["write", "read", "admin"]
KINDS: Final[tuple[KeyKind, ...]] = get_args(KeyKind)
PREFIXES: Final[dict[str, str]] = {"write": "tally_w_", "read": "tally_r_", "admin": "tally_a_"}
SECRET_CHARS: Final = 32
"""Random base62 characters after the prefix (≈190 bits)."""
SHOWN_CHARS: Final = 4
"""Characters of the secret kept in ``prefix`` besides the kind's ``tally_x_``."""
ALPHABET: Final = string.ascii_letters + string.digits
AUDIT_KIND: Final = "key"
NAME_MAX_CHARS: Final = 200
TOUCH_SECONDS: Final = 60.0
"""``last_used_at`` is written at most this often per key."""
STATIC_READ: Final = Principal(kind="read", name="http:read-key")
"""The server's ``read_key`` setting: reads every stream."""
STATIC_ADMIN: Final = Principal(kind="admin", name="http:admin-key")
"""The server's ``admin_key`` setting."""


class KeysUnavailable(RuntimeError):
    """The control plane's database could not be read to check a key: the request is not
    decided either way (503, retry)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One row of ``api_keys`` (never the key itself)."""

    id: int
    kind: KeyKind
    name: str
    prefix: str
    app: str | None = None
    origins: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    created_at: dt.datetime | None = None
    created_by: str = ""
    revoked_at: dt.datetime | None = None
    revoked_by: str | None = None
    last_used_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def principal(self) -> Principal:
        """Who a request with this key is."""
        name = f"key:{self.id}:{self.name}"
        if self.kind == "read":
            return Principal("read", name, self.id, frozenset(self.streams))
        if self.kind == "write":
            return Principal("write", name, self.id, frozenset(), self.app)
        return Principal("admin", name, self.id)

    def as_dict(self) -> dict[str, Any]:
        def at(value: dt.datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "prefix": self.prefix,
            "app": self.app,
            "origins": list(self.origins),
            "streams": list(self.streams),
            "created_at": at(self.created_at),
            "created_by": self.created_by,
            "revoked_at": at(self.revoked_at),
            "revoked_by": self.revoked_by,
            "last_used_at": at(self.last_used_at),
            "status": "active" if self.active else "revoked",
        }


def new_secret(kind: KeyKind) -> str:
    """A fresh key of ``kind``: its prefix and 32 random base62 characters."""
    return PREFIXES[kind] + "".join(secrets.choice(ALPHABET) for _ in range(SECRET_CHARS))


def digest(key: str | bytes) -> str:
    """The SHA-256 of a key (or session token), hex: what the control plane stores."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def shown_prefix(key: str) -> str:
    """What ``tally keys list`` shows of a key."""
    kind_prefix = key[: len("tally_x_")]
    return kind_prefix + key[len(kind_prefix) : len(kind_prefix) + SHOWN_CHARS]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _row(row: Any) -> ApiKey:
    return ApiKey(
        int(row.id),
        row.kind,
        row.name,
        row.prefix,
        row.app,
        tuple(row.origins or ()),
        tuple(row.streams or ()),
        _aware(row.created_at),
        row.created_by,
        _aware(row.revoked_at),
        row.revoked_by,
        _aware(row.last_used_at),
    )


# -- checking what a key is made with ------------------------------------------------------------


def _text(value: str | None, path: str, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise DefinitionError(path, f"give the key {what}")
    if len(text) > NAME_MAX_CHARS:
        raise DefinitionError(path, f"{what} is longer than {NAME_MAX_CHARS} characters")
    if any(not c.isprintable() for c in text):
        raise DefinitionError(path, f"{what} has control characters")
    return text


def check_key(
    kind: str,
    name: str,
    *,
    app: str | None = None,
    origins: tuple[str, ...] | list[str] = (),
    streams: tuple[str, ...] | list[str] = (),
) -> tuple[KeyKind, str, str | None, tuple[str, ...], tuple[str, ...]]:
    """What a key would be made with (kind, name, app, origins, streams), checked; raises
    ``DefinitionError`` saying what to fix."""
    if kind not in KINDS:
        raise DefinitionError("kind", f"{kind!r} is not a kind of key: write, read or admin")
    clean_name = _text(name, "name", "a name (who or what uses it)")
    if kind != "write" and (app or origins):
        raise DefinitionError("app", "only write keys have an app and browser origins")
    if kind != "read" and streams:
        raise DefinitionError(
            "streams",
            "only read keys are granted private streams (write keys read nothing; admin keys "
            "see every stream)",
        )
    clean_app = _text(app, "app", "an app name") if kind == "write" else None
    seen: dict[str, None] = {}
    for origin in origins:
        try:
            seen[origin_of(origin)] = None
        except ValueError as exc:
            raise DefinitionError("origins", str(exc)) from None
    granted: dict[str, None] = {}
    for stream in streams:
        granted[_text(stream, "streams", "a stream name")] = None
    kind_: KeyKind = kind  # checked against KINDS above
    return kind_, clean_name, clean_app, tuple(seen), tuple(granted)


# -- the store -----------------------------------------------------------------------------------


def _audit(
    conn: sa.Connection,
    store: ControlStore,
    *,
    at: dt.datetime,
    actor: str,
    action: str,
    key: ApiKey,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    store.audit(
        conn,
        at=at,
        actor=actor,
        action=action,
        kind=AUDIT_KIND,
        name=f"{key.id}:{key.name}",
        before=before,
        after=after,
    )


def create_key(
    store: ControlStore,
    kind: str,
    name: str,
    *,
    actor: str,
    app: str | None = None,
    origins: tuple[str, ...] | list[str] = (),
    streams: tuple[str, ...] | list[str] = (),
) -> tuple[ApiKey, str]:
    """Make a key; returns its row and the key itself, which is shown once and never stored.
    Raises ``DefinitionError`` for a bad key."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    kind_, name_, app_, origins_, streams_ = check_key(
        kind, name, app=app, origins=origins, streams=streams
    )
    secret = new_secret(kind_)
    at = _now()
    c = t.api_keys.c
    with store.engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(t.api_keys)
            .values(
                kind=kind_,
                name=name_,
                prefix=shown_prefix(secret),
                hash=digest(secret),
                app=app_,
                origins=list(origins_),
                streams=list(streams_),
                created_at=at,
                created_by=actor,
            )
            .returning(c.id)
        ).scalar_one()
        key = ApiKey(
            int(new_id),
            kind_,
            name_,
            shown_prefix(secret),
            app_,
            origins_,
            streams_,
            at,
            actor,
        )
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="create",
            key=key,
            before=None,
            after=key.as_dict(),
        )
    return key, secret


def get_key(store: ControlStore, key_id: int) -> ApiKey:
    """One key by id; raises ``NotFound``."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import NotFound

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
    if row is None:
        raise NotFound(f"no key {key_id}; `tally keys list` shows the keys")
    return _row(row)


def list_keys(store: ControlStore, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first (never the keys themselves)."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    query = sa.select(t.api_keys).order_by(t.api_keys.c.id)
    if not include_revoked:
        query = query.where(t.api_keys.c.revoked_at.is_(None))
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def revoke_key(store: ControlStore, key_id: int, actor: str) -> ApiKey:
    """Revoke a key, at once for every process, and end its dashboard sessions. Raises
    ``NotFound``, and ``Conflict`` when it is revoked already."""
    import sqlalchemy as sa

    from tallystick.control import tables as t
    from tallystick.control.store import Conflict, NotFound

    at = _now()
    c = t.api_keys.c
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(t.api_keys).where(c.id == key_id)).first()
        if row is None:
            raise NotFound(f"no key {key_id}; `tally keys list` shows the keys")
        before = _row(row)
        if not before.active:
            raise Conflict(f"key {key_id} ({before.name}) was revoked already")
        conn.execute(
            sa.update(t.api_keys).where(c.id == key_id).values(revoked_at=at, revoked_by=actor)
        )
        conn.execute(sa.delete(t.dashboard_sessions).where(t.dashboard_sessions.c.key_id == key_id))
        after = ApiKey(
            before.id,
            before.kind,
            before.name,
            before.prefix,
            before.app,
            before.origins,
            before.streams,
            before.created_at,
            before.created_by,
            at,
            actor,
            before.last_used_at,
        )
        _audit(
            conn,
            store,
            at=at,
            actor=actor,
            action="revoke",
            key=after,
            before=before.as_dict(),
            after=after.as_dict(),
        )
    return after


def verify(store: ControlStore, token: str | bytes) -> Principal | None:
    """Who a key is, or ``None`` for an unknown or revoked key (one lookup in the database)."""
    found = _lookup(store.engine, token.encode() if isinstance(token, str) else token)
    return found.principal if found is not None and found.active else None


def _lookup(engine: sa.Engine, token: bytes) -> ApiKey | None:
    import sqlalchemy as sa

    from tallystick.control import tables as t

    with engine.connect() as conn:
        row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.hash == digest(token))).first()
    return None if row is None else _row(row)


# -- per process: the request path ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Keyed:
    """Which kinds of request need a key: ``write`` (ingestion), ``read`` (reads: a read or
    admin key, from the database or the settings), ``admin`` (``/v1/admin/``)."""

    write: bool = False
    read: bool = False
    admin: bool = False

    @property
    def open_kinds(self) -> list[str]:
        """What anyone may do, in words (empty when every kind is keyed)."""
        return [
            what
            for what, keyed in (
                ("ingestion (no write key)", self.write),
                ("reads (no read or admin key)", self.read),
                ("configuration changes from this machine (no admin key)", self.admin),
            )
            if not keyed
        ]


@dataclass(frozen=True, slots=True)
class Found:
    """A key looked up: who it is (``None``: revoked), and the row (``None``: a static key)."""

    principal: Principal | None
    key: ApiKey | None = None


@dataclass(slots=True)
class _Touches:
    at: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def static_fingerprint(kind: str, key: str) -> int:
    """The ``dashboard_sessions.key_id`` of a session opened with a static key: negative, from
    the key's hash (31 bits: fits every database's integer)."""
    value = int(hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:7], 16)
    return -(value + 1)


class Verifier:
    """Checks keys and dashboard sessions for one process: every lookup reads the database
    (a revoked key fails at once); ``keyed()`` is cached once a kind is keyed (keys are never
    deleted). Thread-safe."""

    def __init__(self, store: ControlStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._reader = _read_engine(store.engine)
        self._fast = _Lookups(store.engine)
        self._keyed = Keyed()
        self._touches = _Touches()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tallystick-keys")
        statics = ((settings.read_key, STATIC_READ), (settings.admin_key, STATIC_ADMIN))
        self._statics = [(key.encode(), principal) for key, principal in statics if key]

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._fast.close()
        self._reader.dispose()

    # -- keys --

    def lookup(self, token: bytes) -> Found | None:
        """Who a key is: a static key, an active key (``Found.principal``), a revoked one
        (``Found.principal is None``), or ``None`` when no key is like it."""
        for static, principal in self._statics:
            if hmac.compare_digest(token, static):
                return Found(principal)
        with _unavailable():
            key = self._fast.lookup(digest(token))
        if key is None:
            return None
        if not key.active:
            return Found(None, key)
        self._touch(key)
        return Found(key.principal, key)

    def keyed(self) -> Keyed:
        """Which kinds need a key (read from the database until all do)."""
        current = self._keyed
        if current.write and current.read and current.admin:
            return current
        with _unavailable():
            kinds = self._fast.kinds()
        statics = {p.kind for _, p in self._statics}
        kinds |= statics
        found = Keyed(
            write="write" in kinds,
            read=bool(kinds & {"read", "admin"}),
            admin="admin" in kinds,
        )
        self._keyed = found
        return found

    def origins(self) -> frozenset[str]:
        """Every browser origin some active write key allows (for preflights)."""
        import sqlalchemy as sa

        from tallystick.control import tables as t

        c = t.api_keys.c
        with _unavailable(), self._reader.connect() as conn:
            rows = conn.execute(
                sa.select(c.origins).where(c.kind == "write", c.revoked_at.is_(None))
            ).scalars()
            return frozenset(o for origins in rows for o in (origins or ()))

    def _touch(self, key: ApiKey) -> None:
        now = _now()
        if (
            key.last_used_at is not None
            and (now - key.last_used_at).total_seconds() < TOUCH_SECONDS
        ):
            return
        mono = _monotonic()
        with self._touches.lock:
            last = self._touches.at.get(key.id)
            if last is not None and mono - last < TOUCH_SECONDS:
                return
            self._touches.at[key.id] = mono
        self._writer.submit(_write_touch, self.store, key.id, now)

    # -- dashboard sessions --

    def sign_in(self, token: bytes) -> tuple[str, Principal] | None:
        """Open a dashboard session with a read or admin key: the cookie's value and who it
        stands for, or ``None`` when the key is not one (write keys do not sign in)."""
        import sqlalchemy as sa

        from tallystick.control import tables as t

        found = self.lookup(token)
        if found is None or found.principal is None or found.principal.kind == "write":
            return None
        if found.key is not None:
            key_id = found.key.id
        else:
            key_id = static_fingerprint(found.principal.kind, token.decode("latin-1"))
        session = secrets.token_urlsafe(32)
        now = _now()
        hours = self.settings.dashboard_session_hours
        s = t.dashboard_sessions
        with self.store.engine.begin() as conn:
            conn.execute(sa.delete(s).where(s.c.expires_at < now))
            conn.execute(
                sa.insert(s).values(
                    token_hash=digest(session),
                    key_id=key_id,
                    created_at=now,
                    expires_at=now + dt.timedelta(hours=hours),
                )
            )
        return session, _reader_of(found.principal)

    def session(self, cookie: bytes) -> Principal | None:
        """Who a session cookie stands for, or ``None`` (unknown, expired, its key revoked)."""
        with _unavailable():
            return self._session(cookie)

    def _session(self, cookie: bytes) -> Principal | None:
        import sqlalchemy as sa

        from tallystick.control import tables as t

        s = t.dashboard_sessions
        with self._reader.connect() as conn:
            row = conn.execute(
                sa.select(s.c.key_id, s.c.expires_at).where(s.c.token_hash == digest(cookie))
            ).first()
            if row is None or _aware(row.expires_at) <= _now():  # type: ignore[operator]
                return None
            key_id = int(row.key_id)
            if key_id < 0:
                for static, principal in self._statics:
                    fingerprint = static_fingerprint(principal.kind, static.decode("latin-1"))
                    if fingerprint == key_id:
                        return _reader_of(principal)
                return None
            key_row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        if key_row is None:
            return None
        key = _row(key_row)
        if not key.active or key.kind == "write":
            return None
        return _reader_of(key.principal)

    def sign_out(self, cookie: bytes) -> None:
        import sqlalchemy as sa

        from tallystick.control import tables as t

        s = t.dashboard_sessions
        with self.store.engine.begin() as conn:
            conn.execute(sa.delete(s).where(s.c.token_hash == digest(cookie)))


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Database errors while checking a key become ``KeysUnavailable``."""
    import sqlite3

    import sqlalchemy as sa

    try:
        yield
    except (sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KeysUnavailable(
            f"cannot check keys: the control plane's database failed ({type(exc).__name__}: "
            f"{first})"
        ) from exc


def _reader_of(principal: Principal) -> Principal:
    """What a dashboard session may do: read (an admin key's session reads every stream; the
    cookie never changes the configuration)."""
    if principal.kind == "read":
        return principal
    return Principal("read", principal.name, principal.key_id, frozenset({ALL_STREAMS}))


def _monotonic() -> float:
    import time

    return time.monotonic()


def _write_touch(store: ControlStore, key_id: int, at: dt.datetime) -> None:
    import logging

    import sqlalchemy as sa

    from tallystick.control import tables as t

    try:
        with store.engine.begin() as conn:
            conn.execute(
                sa.update(t.api_keys).where(t.api_keys.c.id == key_id).values(last_used_at=at)
            )
    except Exception:  # pragma: no cover - a busy database only delays the next write
        logging.getLogger("tallystick.keys").warning("could not record key %d's last use", key_id)


_COLUMNS: Final = (
    "id, kind, name, prefix, app, origins, streams, created_at, created_by, revoked_at, "
    "revoked_by, last_used_at"
)
_BY_HASH: Final = f"SELECT {_COLUMNS} FROM api_keys WHERE hash = "
PARSED_ROWS: Final = 1000
_KINDS: Final = "SELECT DISTINCT kind FROM api_keys"


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _listed(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        import msgspec

        value = msgspec.json.decode(value)
    return tuple(value or ())


class _Lookups:
    """The per-request lookup of a key by its hash, as cheap as the database allows: SQLite
    through the standard library (a connection per thread, autocommit: no write lock), other
    databases through one prepared statement. A fraction of a millisecond less per event
    request than going through the SQLAlchemy expression language."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.path: str | None = None
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self.path = engine.url.database
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()
        self._parsed: dict[tuple[Any, ...], ApiKey] = {}

    def _sqlite(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            from tallystick.control import db

            conn = sqlite3.connect(
                self.path or "", timeout=db.BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def kinds(self) -> set[str]:
        """The kinds of key there are (revoked ones too)."""
        if self.path is not None:
            return {r[0] for r in self._sqlite().execute(_KINDS).fetchall()}
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return set(conn.execute(sa.text(_KINDS)).scalars())

    def lookup(self, hashed: str) -> ApiKey | None:
        if self.path is not None:
            row = self._sqlite().execute(_BY_HASH + "?", (hashed,)).fetchone()
        else:
            import sqlalchemy as sa

            with self.engine.connect() as conn:
                row = conn.execute(sa.text(_BY_HASH + ":h"), {"h": hashed}).first()
        if row is None:
            return None
        row = tuple(tuple(v) if isinstance(v, list) else v for v in row)
        parsed = self._parsed.get(row)  # the row as read now: a revoked key's row differs
        if parsed is None:
            if len(self._parsed) > PARSED_ROWS:
                self._parsed.clear()
            parsed = self._parsed[row] = self._parse(row)
        return parsed

    @staticmethod
    def _parse(row: tuple[Any, ...]) -> ApiKey:
        return ApiKey(
            int(row[0]),
            row[1],
            row[2],
            row[3],
            row[4],
            _listed(row[5]),
            _listed(row[6]),
            _time(row[7]),
            row[8],
            _time(row[9]),
            row[10],
            _time(row[11]),
        )

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def _read_engine(engine: sa.Engine) -> sa.Engine:
    """An engine for lookups: for SQLite, without ``control.db``'s ``BEGIN IMMEDIATE`` (a read
    takes no write lock, so a request never waits for a writer)."""
    import sqlalchemy as sa

    from tallystick.control import db

    url = engine.url.render_as_string(hide_password=False)
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": db.BUSY_TIMEOUT_MS / 1000})
    return engine
