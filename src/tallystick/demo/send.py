"""Post events to a collector: gzip-compressed JSON batches over one kept-alive connection.

Standard library only (``http.client``) plus msgspec for encoding. Each request is
``POST {endpoint}/v1/events`` with ``{"events": [...]}``, at most ``batch_size`` (≤ 1000) events
and at most 1 MiB before compression; a batch that would be larger is split. Connection errors,
429 and 5xx are retried with a short exponential backoff (re-sending is safe: the collector never
counts an ``event_id`` twice); other 4xx are not retried. A request the collector finds too large
(413, or ``too_many_events``) is split in halves; a 4xx that reports events one by one (every
event was refused) is counted like a 207.
"""

from __future__ import annotations

import gzip
import http.client
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

MAX_REQUEST_BYTES: Final = 1024 * 1024
MAX_EVENTS_PER_REQUEST: Final = 1000
MAX_KEPT_ERRORS: Final = 100
MAX_BACKOFF_SECONDS: Final = 5.0
MAX_RETRY_AFTER_SECONDS: Final = 30.0

_PREFIX: Final = b'{"events":['
_SUFFIX: Final = b"]}"
_OVERHEAD: Final = len(_PREFIX) + len(_SUFFIX)
_TOO_LARGE: Final = ("request_too_large", "too_many_events")


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to the events: counts as the collector reported them."""

    sent: int
    """Events posted (each counted once, however often it was retried)."""
    accepted: int
    rejected: int
    requests: int
    """HTTP requests made, retries included."""
    seconds: float
    errors: tuple[dict[str, Any], ...] = ()
    """The first rejections (``index`` counts from the first event given to ``send``)."""


class SendError(Exception):
    """The collector refused a request for good (4xx), or retries ran out."""

    def __init__(
        self, message: str, *, status: int | None, code: str | None, result: SendResult
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.result = result


class _Connection:
    """One kept-alive HTTP connection that reconnects after a failure."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path.rstrip("/") + "/v1/events"
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes, str | None]:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Accept": "application/json",
        }
        try:
            self.conn.request("POST", self.path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, data, response.getheader("Retry-After")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _batches(events: Iterable[Any], batch_size: int, max_bytes: int) -> Iterator[list[bytes]]:
    """Encoded events grouped so each request body stays within both limits."""
    encode = msgspec.json.Encoder().encode
    batch: list[bytes] = []
    size = _OVERHEAD
    for event in events:
        raw = encode(event)
        if batch and (len(batch) >= batch_size or size + 1 + len(raw) > max_bytes):
            yield batch
            batch, size = [], _OVERHEAD
        size += len(raw) + (1 if batch else 0)
        batch.append(raw)
    if batch:
        yield batch


def _decode(body: bytes) -> dict[str, Any]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _per_event(reply: dict[str, Any]) -> bool:
    """Whether a reply reports events one by one (rather than refusing the whole request)."""
    return "error" not in reply and isinstance(reply.get("rejected"), int)


def _event_id(raw: bytes) -> str | None:
    value = _decode(raw).get("event_id")
    return value if isinstance(value, str) else None


class _Sender:
    def __init__(
        self,
        conn: _Connection,
        retries: int,
        backoff: float,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.conn = conn
        self.retries = retries
        self.backoff = backoff
        self.progress = progress
        self.started = time.monotonic()
        self.sent = self.accepted = self.rejected = self.requests = 0
        self.errors: list[dict[str, Any]] = []

    def result(self) -> SendResult:
        return SendResult(
            self.sent,
            self.accepted,
            self.rejected,
            self.requests,
            time.monotonic() - self.started,
            tuple(self.errors),
        )

    def fail(self, message: str, status: int | None, code: str | None) -> SendError:
        return SendError(message, status=status, code=code, result=self.result())

    def keep_errors(self, errors: Any, offset: int) -> None:
        if not isinstance(errors, list):
            return
        for error in errors:
            if len(self.errors) >= MAX_KEPT_ERRORS:
                return
            if isinstance(error, dict):
                entry = dict(error)
                if isinstance(entry.get("index"), int):
                    entry["index"] += offset
                self.errors.append(entry)

    def send(self, batch: list[bytes], offset: int) -> None:
        """Post one batch until the collector answers for good; ``offset`` of its first event."""
        body = gzip.compress(_PREFIX + b",".join(batch) + _SUFFIX, compresslevel=5, mtime=0)
        last = ""
        retry_after: str | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.delay(attempt, retry_after))
            self.requests += 1
            try:
                status, data, retry_after = self.conn.post(body)
            except (OSError, http.client.HTTPException) as exc:
                last, retry_after = f"{type(exc).__name__}: {exc}", None
                continue
            if status == 429 or status >= 500:
                last = f"HTTP {status}"
                continue
            reply = _decode(data)
            if 200 <= status < 300 or _per_event(reply):
                # 200/207, or a 400/413 whose events were all refused one by one: final.
                self.done(batch, offset, reply)
                return
            error = reply.get("error")
            error = error if isinstance(error, dict) else {}
            code = error.get("code")
            code = code if isinstance(code, str) else None
            if (status == 413 or code in _TOO_LARGE) and len(batch) > 1:
                half = len(batch) // 2  # the collector's limits are lower than ours: halve
                self.send(batch[:half], offset)
                self.send(batch[half:], offset + half)
                return
            message = error.get("message") or data[:200].decode("utf-8", "replace")
            if status == 413:  # one event alone is too large: count it as rejected
                self.done(
                    batch,
                    offset,
                    {
                        "accepted": 0,
                        "rejected": 1,
                        "errors": [
                            {
                                "index": 0,
                                "event_id": _event_id(batch[0]),
                                "code": code,
                                "message": message,
                            }
                        ],
                    },
                )
                return
            raise self.fail(
                f"the collector refused the request (HTTP {status}): {message}", status, code
            )
        raise self.fail(f"gave up after {self.retries + 1} attempts; last: {last}", None, None)

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff, or the server's ``Retry-After`` (seconds) if that is longer."""
        wait: float = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        if retry_after and retry_after.strip().isdigit():
            wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER_SECONDS))
        return wait

    def done(self, batch: list[bytes], offset: int, reply: dict[str, Any]) -> None:
        accepted = reply.get("accepted")
        rejected = reply.get("rejected")
        accepted = accepted if isinstance(accepted, int) else len(batch)
        rejected = rejected if isinstance(rejected, int) else len(batch) - accepted
        self.sent += len(batch)
        self.accepted += accepted
        self.rejected += rejected
        self.keep_errors(reply.get("errors"), offset)
        self.report(len(batch))

    def report(self, count: int) -> None:
        if self.progress is not None:
            self.progress(count)


def send(
    events: Iterable[dict[str, Any]],
    endpoint: str,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    retries: int = 5,
    backoff: float = 0.2,
    timeout: float = 30.0,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> SendResult:
    """Post ``events`` to ``POST {endpoint}/v1/events``; return what the collector reported.

    ``progress`` is called after each batch with the number of events it carried (an
    increment). Raises ``SendError`` (with the partial ``result``) when the collector refuses a
    request with a 4xx other than 413, or when ``retries`` retries of one request all failed.
    """
    if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"batch_size must be 1…{MAX_EVENTS_PER_REQUEST}, got {batch_size}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    conn = _Connection(endpoint, timeout)
    sender = _Sender(conn, retries, backoff, progress)
    offset = 0
    try:
        for batch in _batches(events, batch_size, max_request_bytes):
            sender.send(batch, offset)
            offset += len(batch)
    finally:
        conn.close()
    return sender.result()
