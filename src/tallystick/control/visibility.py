"""What a request may see of the data: private streams (see docs/access.md, "Private streams").

A stream marked ``private: true`` is read only by keys granted it (and by admin keys, the
server's static keys, open mode and the command line, which see every stream). For everyone
else it is *hidden*, and every read leaves it out:

- analyses, ``/v1/meta``, ``/v1/health`` and ``/v1/quality/*`` drop the rows stored for hidden
  streams before anything else (``metrics.exclusion``); an event also stored for a stream the
  reader sees still counts, once, through that copy;
- a hidden stream is absent from every listing of streams and a 404 when asked for by name;
  so are the data models that read it, the alert runs of its rules and the audit entries about
  it;
- a catalog metric that reads an event routed only to hidden streams is absent too (and a 404
  by name): answering it without those events would be a wrong answer, not a smaller one;
- a hidden stream is never named in an answer: the SQL an analysis shows says
  ``'(private stream)'`` where it names one.

A private stream whose definition was deleted keeps its stored copies in the lake under its
name: it stays private (``formerly_private``, from the audit log) until a stream of that name is
defined again, public or not.

``Visibility`` is one principal's view of one configuration (pure); ``Definitions`` reads the
configuration in force for an app, again whenever its version moves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from tallystick.control.definitions import Configuration
from tallystick.control.principal import Principal
from tallystick.control.routing import UNROUTED, Router

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tallystick.config import Settings

REDACTED: Final = "(private stream)"
"""What an answer says where it would name a hidden stream."""


class DefinitionsUnavailable(RuntimeError):
    """The stream definitions could not be read: nothing is answered to a reader who may not
    see every stream, since what is private is not known."""


@dataclass(frozen=True, slots=True)
class Visibility:
    """What one principal may see under one configuration."""

    hidden: frozenset[str] = frozenset()
    """The private streams this principal is not granted."""
    router: Router = field(default_factory=lambda: Router.build({}))
    """The configuration's routing, for the streams an event name goes to."""

    @property
    def everything(self) -> bool:
        """Whether nothing is hidden (every answer as if there were no private streams)."""
        return not self.hidden

    def stream(self, name: str | None) -> bool:
        """Whether stream ``name`` may be seen (``None``: rows without a stream, always)."""
        return name is None or name not in self.hidden

    def event(self, name: str) -> bool:
        """Whether event ``name`` is routed to some stream this principal sees (an event no
        stream lists goes to the unrouted stream, which is never private)."""
        if not self.hidden:
            return True
        return any(s not in self.hidden for s in self.router.streams(name))

    def events(self, names: Iterable[str]) -> bool:
        """Whether every one of ``names`` may be seen."""
        return all(self.event(n) for n in names)

    def redact(self, text: str) -> str:
        """``text`` (SQL, an engine's message) with each hidden stream's quoted name replaced
        by ``'(private stream)'``."""
        for name in sorted(self.hidden, key=len, reverse=True):
            quoted = "'" + name.replace("'", "''") + "'"
            text = text.replace(quoted, f"'{REDACTED}'")
        return text


EVERYTHING: Final = Visibility()


def formerly_private(conn: sa.Connection, configuration: Configuration) -> frozenset[str]:
    """Streams that were private once (the audit log says so) and are defined no more: their
    copies are still in the lake, and still private."""
    import sqlalchemy as sa

    from tallystick.control import tables as t

    c = t.audit_log.c
    defined = {s.name for s in configuration.streams}
    out = set()
    query = sa.select(c.name, c.before, c.after).where(c.kind == "stream")
    for name, before, after in conn.execute(query):
        if name in defined or name in out:
            continue
        if any(isinstance(d, dict) and d.get("private") is True for d in (before, after)):
            out.add(str(name))
    return frozenset(out)


def visibility(
    principal: Principal, configuration: Configuration, deleted: Iterable[str] = ()
) -> Visibility:
    """What ``principal`` may see under ``configuration`` (``deleted``: formerly private
    streams, see ``formerly_private``)."""
    private = [s.name for s in configuration.streams if s.private] + list(deleted)
    hidden = principal.hidden(private)
    if not hidden:
        return EVERYTHING
    router = Router.build(
        {s.name: s.events for s in configuration.streams}, configuration.unrouted_stream
    )
    return Visibility(hidden, router)


class Definitions:
    """The stream definitions in force for one app, read again whenever the configuration's
    version moves (one small query per read by a principal who may not see every stream;
    none for one who sees them all).

    Reading never creates or migrates a database: no control database, or one not migrated
    yet, has no streams (so none private). Any other failure raises
    ``DefinitionsUnavailable``.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = settings.control_database
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()
        self._kept: tuple[int, Configuration, frozenset[str]] | None = None

    def _exists(self) -> bool:
        if not self.url.startswith("sqlite"):
            return True
        path = self.url.split("///", 1)[1] if "///" in self.url else ""
        if not path or path == ":memory:":
            return False
        from pathlib import Path

        return Path(path).is_file()

    def configuration(self) -> tuple[Configuration, frozenset[str]]:
        """The configuration in force now, and the formerly private streams."""
        import sqlalchemy as sa

        from tallystick.control.quarantine import _reader
        from tallystick.control.store import ControlStore

        empty = (Configuration((), (), UNROUTED), frozenset[str]())
        with self._lock:
            if self._engine is None:
                if not self._exists():
                    return empty
                try:
                    self._engine = _reader(self.url)
                except Exception as exc:
                    raise DefinitionsUnavailable(_unavailable(exc)) from exc
            engine = self._engine
            kept = self._kept
        try:
            if kept is None:  # a database not migrated yet has no streams
                with engine.connect() as conn:
                    if not sa.inspect(conn).has_table("config_version"):
                        return empty
            store = ControlStore(engine)
            version = store.version()
            if kept is not None and kept[0] == version:
                return kept[1], kept[2]
            with engine.connect() as conn:
                version, config = ControlStore._configuration(conn)
                deleted = formerly_private(conn, config)
        except sa.exc.SQLAlchemyError as exc:
            raise DefinitionsUnavailable(_unavailable(exc)) from exc
        with self._lock:
            self._kept = (version, config, deleted)
        return config, deleted

    def visibility(self, principal: Principal) -> Visibility:
        """What ``principal`` may see now (``EVERYTHING`` without reading anything when it
        sees every stream)."""
        if principal.sees_everything:
            return EVERYTHING
        return visibility(principal, *self.configuration())

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


def _unavailable(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot read the stream definitions from the control plane ({type(exc).__name__}: "
        f"{first}), so which streams are private is not known: try again in a moment"
    )
