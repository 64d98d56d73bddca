"""Sending demo events: batching, gzip, keep-alive, retries and partial acceptance."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support import refusals
from tallystick.demo.generator import generate
from tallystick.demo.send import MAX_REQUEST_BYTES, SendError, send

Reply = tuple[int, dict[str, Any]]


@dataclass
class Recorded:
    """What the fake collector saw, and how it answers."""

    answer: Callable[[list[dict[str, Any]]], Reply]
    script: list[int] = field(default_factory=list)
    """Statuses to answer first (e.g. one 503), before ``answer`` takes over."""
    bodies: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    clients: set[tuple[str, int]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def accept_all(events: list[dict[str, Any]]) -> Reply:
    return 200, {"accepted": len(events), "rejected": 0}


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    recorded: Recorded


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        rec = self.server.recorded
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/base/v1/events"
        assert self.headers["Content-Encoding"] == "gzip"
        raw = gzip.decompress(body)
        events = json.loads(raw)["events"]
        with rec.lock:
            rec.clients.add(self.client_address)
            scripted = rec.script.pop(0) if rec.script else None
            if scripted is None:
                status, reply = rec.answer(events)
            else:
                status, reply = scripted, {"error": {"code": "not_ready", "message": "busy"}}
            if 200 <= status < 300:
                rec.bodies.append(len(raw))
                rec.events.extend(events)
        out = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def collector() -> Iterator[tuple[str, Recorded]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.recorded = Recorded(answer=accept_all)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/base/", server.recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def demo_events() -> list[dict[str, Any]]:
    return list(generate(users=30, days=20, end=dt.date(2026, 6, 30), seed=11))


def test_retries_a_503_then_delivers_everything(
    collector: tuple[str, Recorded], demo_events: list[dict[str, Any]]
) -> None:
    url, rec = collector
    rec.script = [503]
    progress: list[int] = []
    result = send(demo_events, url, batch_size=200, progress=progress.append, backoff=0.01)
    n = len(demo_events)
    batches = -(-n // 200)
    assert result.sent == result.accepted == n
    assert result.rejected == 0
    assert result.requests == batches + 1
    assert result.seconds > 0
    assert sum(progress) == n
    assert len(progress) == batches
    assert [e["event_id"] for e in rec.events] == [e["event_id"] for e in demo_events]
    assert rec.events == demo_events
    assert len(rec.clients) == 1  # one kept-alive connection, even across the 503


def test_partial_acceptance_207(collector: tuple[str, Recorded]) -> None:
    url, rec = collector

    def refuse_odd(events: list[dict[str, Any]]) -> Reply:
        errors = refusals(events, "invalid_field", "odd", lambda e: bool(e["data"]["n"] % 2))
        return 207, {
            "accepted": len(events) - len(errors),
            "rejected": len(errors),
            "errors": errors,
        }

    rec.answer = refuse_odd
    events = [_event(i) for i in range(250)]
    result = send(events, url, batch_size=100)
    assert (result.sent, result.accepted, result.rejected, result.requests) == (250, 125, 125, 3)
    assert [e["index"] for e in result.errors] == list(range(1, 201, 2))  # first 100 kept
    assert all(e["event_id"] == events[e["index"]]["event_id"] for e in result.errors)


def test_client_errors_are_not_retried(collector: tuple[str, Recorded]) -> None:
    url, rec = collector
    rec.answer = lambda events: (400, {"error": {"code": "wrong_shape", "message": "nope"}})
    with pytest.raises(SendError, match="nope") as caught:
        send([_event(i) for i in range(10)], url, backoff=0.01)
    assert caught.value.status == 400
    assert caught.value.code == "wrong_shape"
    assert caught.value.result.requests == 1
    assert caught.value.result.sent == 0


def test_every_event_refused_is_counted_not_raised(collector: tuple[str, Recorded]) -> None:
    url, rec = collector

    def refuse_all(events: list[dict[str, Any]]) -> Reply:
        errors = refusals(events, "client_ts_in_future", "future")
        return 400, {"accepted": 0, "rejected": len(events), "errors": errors}

    rec.answer = refuse_all
    result = send([_event(i) for i in range(30)], url, batch_size=20)
    assert (result.sent, result.accepted, result.rejected, result.requests) == (30, 0, 30, 2)
    assert [e["index"] for e in result.errors] == list(range(30))


def test_gives_up_after_the_retries(collector: tuple[str, Recorded]) -> None:
    url, rec = collector
    rec.script = [503, 429, 500]
    with pytest.raises(SendError, match="3 attempts") as caught:
        send([_event(1)], url, retries=2, backoff=0.001)
    assert caught.value.result.requests == 3
    assert rec.events == []


def test_large_events_split_under_one_mebibyte(collector: tuple[str, Recorded]) -> None:
    url, rec = collector
    events = [_event(i, pad=20_000) for i in range(160)]  # ~3.2 MB in all
    result = send(events, url, batch_size=1000)
    assert result.accepted == 160
    assert result.requests == len(rec.bodies) >= 4
    assert max(rec.bodies) <= MAX_REQUEST_BYTES
    assert [e["data"]["n"] for e in rec.events] == list(range(160))


def test_413_halves_the_batch(collector: tuple[str, Recorded]) -> None:
    url, rec = collector

    def small_limit(events: list[dict[str, Any]]) -> Reply:
        if len(events) > 40:
            return 413, {"error": {"code": "request_too_large", "message": "too big"}}
        return accept_all(events)

    rec.answer = small_limit
    result = send([_event(i) for i in range(100)], url, batch_size=100)
    assert result.accepted == result.sent == 100
    assert [e["data"]["n"] for e in rec.events] == list(range(100))


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SendError, match="ConnectionRefusedError") as caught:
        send([_event(1)], f"http://127.0.0.1:{port}", retries=1, backoff=0.001)
    assert caught.value.result.requests == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        send([], "http://127.0.0.1:1", batch_size=1001)
    with pytest.raises(ValueError, match="endpoint"):
        send([], "ftp://example.org")
    result = send([], "http://127.0.0.1:1")
    assert (result.sent, result.requests) == (0, 0)


def _event(n: int, pad: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {"n": n}
    if pad:
        data["pad"] = "x" * pad
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "name": "demo.test",
        "client_ts": "2026-06-01T12:00:00Z",
        "data": data,
    }
