"""Reading server-sent events (the ``text/event-stream`` format of the HTML standard), pure.

:class:`EventParser` is fed the bytes of a response as they arrive, in pieces of any size, and
returns the events completed so far. Lines end with LF or CRLF; a blank line dispatches the event
gathered since the last one; ``data:`` lines are joined with LF; a line starting with ``:`` is a
comment (a keep-alive); ``id:`` sets the last event id, which stays for the events after it; an
event without data is not dispatched (as in a browser). Unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["EventParser", "ServerEvent"]

MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""A line longer than this is a broken stream, not an event (``ValueError``)."""


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One dispatched event: its type (``message`` by default), data and the last event id."""

    event: str
    data: str
    id: str | None = None


class EventParser:
    """Incremental parser of one event stream."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self.last_id: str | None = None
        """The last ``id:`` seen (what a reconnecting client sends as ``Last-Event-ID``)."""
        self.retry_ms: int | None = None
        """The last ``retry:`` the server asked for, in milliseconds."""

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        """The events completed by ``chunk``."""
        self._buffer += chunk
        events: list[ServerEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    raise ValueError(f"an event-stream line is longer than {MAX_LINE_BYTES} bytes")
                return events
            raw, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            event = self._line(raw.removesuffix(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)

    def _line(self, line: str) -> ServerEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerEvent(event, "\n".join(data), self.last_id)
