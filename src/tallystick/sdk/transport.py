"""``POST {endpoint}/v1/events`` over one kept-alive ``http.client`` connection.

Only the standard library is used. The connection is reused between batches; after any error it
is closed and the next request opens a new one. A request that fails on a *reused* connection
before any answer arrived (the collector closed an idle keep-alive connection) is repeated once
at once on a fresh connection, since nothing reached the collector.
"""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

#: Bodies larger than this are sent gzip-compressed.
GZIP_MIN_BYTES: Final = 1024
EVENTS_PATH: Final = "/v1/events"

#: Errors that mean "no answer from the collector": worth retrying.
NETWORK_ERRORS: Final = (OSError, http.client.HTTPException)
_STALE: Final = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True, slots=True)
class Reply:
    """The collector's answer: status, headers (lower-case names) and the body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def events_url(endpoint: str) -> tuple[str, str, int | None, str]:
    """Split the collector base URL into (scheme, host, port, path of the events endpoint)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"endpoint {endpoint!r} is not an http(s) URL such as http://127.0.0.1:8000"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"endpoint {endpoint!r} must not have a query or fragment")
    return parts.scheme, parts.hostname, parts.port, parts.path.rstrip("/") + EVENTS_PATH


class Transport:
    """Sends request bodies to the collector. Not thread-safe: one worker thread uses it."""

    def __init__(self, endpoint: str, *, write_key: str | None, user_agent: str) -> None:
        self.scheme, self.host, self.port, self.path = events_url(endpoint)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        if write_key:
            self._headers["Authorization"] = f"Bearer {write_key}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._conn = conn
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        return conn

    def post(self, body: bytes, timeout: float) -> Reply:
        """Send one body; raise one of ``NETWORK_ERRORS`` when no answer came back."""
        headers = dict(self._headers)
        if len(body) > GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(body))
        for first_try in (True, False):
            conn = self._connection(timeout)
            reused = conn.sock is not None
            response: http.client.HTTPResponse | None = None
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE:
                self._discard(response)
                if first_try and reused and response is None:
                    continue
                raise
            except BaseException:
                self._discard(response)
                raise
            return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self, response: http.client.HTTPResponse | None) -> None:
        if response is not None:
            response.close()
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
