"""The Tracker against a small scripted HTTP collector on loopback.

The fake collector (stdlib ``ThreadingHTTPServer``) records every request it gets (gzip undone)
and answers from a script: 200, 207 with per-event errors, 400, 413, 429, 503, or it closes the
connection without answering.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from support import refusals
from tallystick.schema import Event
from tallystick.sdk import Tracker
from tallystick.sdk import backoff as backoff_module

# -- the fake collector -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    close_after: bool = False  # answer, then close the connection without saying so


Script = Answer | Callable[[list[dict[str, Any]]], Answer]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    events: list[dict[str, Any]]
    answer: Answer

    @property
    def ids(self) -> list[str]:
        return [e["event_id"] for e in self.events]

    @property
    def delivered_ids(self) -> list[str]:
        """Ids the answer says were stored."""
        if self.answer.drop or not 200 <= self.answer.status < 300:
            return []
        refused = {e["index"] for e in (self.answer.body or {}).get("errors", [])}
        return [e["event_id"] for i, e in enumerate(self.events) if i not in refused]


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    collector: FakeCollector

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client went away: not interesting here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.collector.connections.add(self.connection)

    def finish(self) -> None:
        self.server.collector.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events: list[dict[str, Any]] = json.loads(body)["events"]
        collector = self.server.collector
        answer = collector.next_answer(events)
        headers = {k.lower(): v for k, v in self.headers.items()}
        collector.record(Received(headers, body, events, answer))
        if answer.drop:
            self.close_connection = True
            return
        payload = json.dumps(
            answer.body if answer.body is not None else {"accepted": len(events), "rejected": 0}
        ).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        if answer.close_after:
            self.close_connection = True


class FakeCollector:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: collections.deque[Script] = collections.deque()
        self.default: Script = Answer(200)
        self.connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FakeCollector:
        server = _Server(("127.0.0.1", port), _Handler)
        server.collector = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def next_answer(self, events: list[dict[str, Any]]) -> Answer:
        with self._lock:
            script = self.script.popleft() if self.script else self.default
        return script(events) if callable(script) else script

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    @property
    def delivered_ids(self) -> list[str]:
        return [i for r in self.requests for i in r.delivered_ids]

    @property
    def delivered_events(self) -> list[dict[str, Any]]:
        return [e for r in self.requests for e in r.events if e["event_id"] in set(r.delivered_ids)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def collectors() -> Iterator[Callable[..., FakeCollector]]:
    started: list[FakeCollector] = []

    def start(port: int = 0) -> FakeCollector:
        collector = FakeCollector().start(port)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()


@pytest.fixture
def collector(collectors: Callable[..., FakeCollector]) -> FakeCollector:
    return collectors()


@pytest.fixture
def make(
    tmp_path: Path, collectors: Callable[..., FakeCollector]
) -> Iterator[Callable[..., Tracker]]:
    """Make trackers with fast test settings; all are closed before the collectors stop."""
    made: list[Tracker] = []

    def make_tracker(endpoint: str, **options: Any) -> Tracker:
        options.setdefault("queue_dir", tmp_path / "queue")
        options.setdefault("flush_interval", 0.05)
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_max", 0.05)
        options.setdefault("close_timeout", 2.0)
        options.setdefault("timeout", 2.0)
        tracker = Tracker(endpoint, **options)
        made.append(tracker)
        return tracker

    yield make_tracker
    for tracker in made:
        tracker.close(timeout=0)


def batch_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("batch-*.json"))


def validate(event: dict[str, Any]) -> Event:
    return msgspec.json.decode(json.dumps(event).encode(), type=Event)


# -- the shape of events ----------------------------------------------------------------------


def test_events_match_the_monoschema(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    tracker = make(
        collector.url,
        write_key="wk-secret",
        app_id="research-portal",
        app_version="4.2.1",
        app_environment="test",
        app_instance="uni",
    )
    ts = dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC)
    full = tracker.track(
        "project.commit",
        user_id="u-1",
        session_id="s-1",
        data={"files": 3, "tags": ["a", "b"]},
        platform="web",
        locale="de-DE",
        page_url="https://app.example.org/p",
        page_referrer="https://example.org/",
        pageview_id="pv-1",
        user_agent="Mozilla/5.0",
        experiments={"signin-dialog": "b"},
        sample_unit="session",
        sample_rate=0.25,
        client_ts=ts,
        app_environment="staging",
    )
    anonymous = tracker.track("app.open", anonymous_id="a-1")
    bare = tracker.track("app.ping")
    assert tracker.flush(5)

    [request] = collector.requests
    assert request.headers["authorization"] == "Bearer wk-secret"
    assert request.headers["content-type"] == "application/json"
    assert list(json.loads(request.body)) == ["events"]
    by_id = {e["event_id"]: e for e in request.events}
    assert list(by_id) == [full, anonymous, bare]
    parsed = {k: validate(v) for k, v in by_id.items()}

    e = parsed[full]
    assert e.name == "project.commit"
    assert e.client_ts == ts
    assert e.sent_ts is not None
    assert abs(e.sent_ts - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=10)
    assert e.app is not None
    assert (e.app.id, e.app.version, e.app.environment, e.app.instance) == (
        "research-portal",
        "4.2.1",
        "staging",
        "uni",
    )
    assert e.client is not None
    assert (e.client.library, e.client.library_version, e.client.platform) == (
        "tallystick-python",
        metadata.version("tallystick"),
        "web",
    )
    assert e.user is not None
    assert (e.user.id, e.user.is_logged_in) == ("u-1", True)
    assert e.session is not None
    assert (e.session.id, e.session.seq) == ("s-1", 1)
    assert e.page is not None
    assert (e.page.pageview_id, e.page.url, e.page.referrer) == (
        "pv-1",
        "https://app.example.org/p",
        "https://example.org/",
    )
    assert e.agent is not None
    assert e.agent.user_agent == "Mozilla/5.0"
    assert e.locale == "de-DE"
    assert e.experiments == {"signin-dialog": "b"}
    assert e.sample is not None
    assert (e.sample.unit, e.sample.rate) == ("session", 0.25)
    assert e.data == {"files": 3, "tags": ["a", "b"]}

    a = parsed[anonymous]
    assert a.user is not None
    assert (a.user.anonymous_id, a.user.is_logged_in) == ("a-1", False)
    assert a.client is not None
    assert a.client.platform == "python"
    assert set(by_id[bare]) == {"event_id", "name", "client_ts", "sent_ts", "app", "client"}
    assert by_id[bare]["app"]["environment"] == "test"


def test_large_batches_are_gzipped(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url)
    tracker.track("doc.save", data={"text": "x" * 2000})
    assert tracker.flush(5)
    tracker.track("doc.open")
    assert tracker.flush(5)
    big, small = collector.requests
    assert big.headers["content-encoding"] == "gzip"
    assert int(big.headers["content-length"]) < 1000
    assert "authorization" not in big.headers
    assert "content-encoding" not in small.headers
    for request in (big, small):
        for event in request.events:
            validate(event)


def test_unknown_context_key_raises(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url)
    wrong: dict[str, Any] = {"pageurl": "https://x"}
    with pytest.raises(TypeError, match="page_url"):
        tracker.track("a.b", **cast(Any, wrong))
    with pytest.raises(TypeError, match="data must be a dict"):
        tracker.track("a.b", data=cast(Any, [1]))
    with pytest.raises(TypeError, match="session_id"):
        tracker.track("a.b", session_id=cast(Any, 7))
    assert tracker.stats.queued == 0


# -- session sequence numbers -----------------------------------------------------------------


def _seqs(events: list[dict[str, Any]]) -> dict[str | None, list[int]]:
    out: dict[str | None, list[int]] = collections.defaultdict(list)
    for e in events:
        session = e.get("session")
        if session is None:
            out[None].append(0)
        else:
            out[session["id"]].append(session["seq"])
    return dict(out)


def test_seq_counts_per_session(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url)
    for session in ["s1", "s1", "s2", None, "s1", "s2"]:
        tracker.track("a.b", session_id=session)
    assert tracker.flush(5)
    assert _seqs(collector.delivered_events) == {"s1": [1, 2, 3], "s2": [1, 2], None: [0]}


def test_seq_continues_in_a_new_tracker_with_the_same_queue_dir(
    collector: FakeCollector, make: Callable[..., Tracker], tmp_path: Path
) -> None:
    first = make(collector.url, queue_dir=tmp_path / "q")
    first.track("a.b", session_id="s1")
    first.track("a.b", session_id="s1")
    first.close()
    second = make(collector.url, queue_dir=tmp_path / "q")
    second.track("a.b", session_id="s1")
    second.track("a.b", session_id="s2")
    assert second.flush(5)
    assert _seqs(collector.delivered_events) == {"s1": [1, 2, 3], "s2": [1]}
    memory_only = make(collector.url, queue_dir=False)
    memory_only.track("a.c", session_id="s1")
    assert memory_only.flush(5)
    assert collector.delivered_events[-1]["session"] == {"id": "s1", "seq": 1}


# -- batching ---------------------------------------------------------------------------------


def test_batches_are_sent_when_full(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url, batch_size=5, flush_interval=60)
    ids = [tracker.track("a.b") for _ in range(12)]
    wait_until(lambda: tracker.stats.sent == 10)
    time.sleep(0.1)
    assert [len(r.events) for r in collector.requests] == [5, 5]
    assert tracker.stats.pending == 2
    assert tracker.flush(5)
    assert [len(r.events) for r in collector.requests] == [5, 5, 2]
    assert collector.delivered_ids == ids


def test_batches_are_sent_after_the_interval(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    tracker = make(collector.url, batch_size=100, flush_interval=0.3)
    start = time.monotonic()
    ids = [tracker.track("a.b") for _ in range(3)]
    wait_until(lambda: tracker.stats.sent == 3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 3
    assert collector.delivered_ids == ids
    assert len(collector.requests) == 1


# -- answers and retries ----------------------------------------------------------------------


def test_retries_on_503_and_429_then_delivers_once(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    collector.script.extend([Answer(503), Answer(429), Answer(200)])
    tracker = make(collector.url)
    ids = [tracker.track("a.b") for _ in range(4)]
    assert tracker.flush(5)
    requests = collector.requests
    assert [r.answer.status for r in requests] == [503, 429, 200]
    assert all(r.ids == ids for r in requests)
    assert collector.delivered_ids == ids
    stats = tracker.stats
    assert (stats.sent, stats.retries, stats.rejected, stats.pending) == (4, 2, 0, 0)


def test_retry_after_is_honoured(
    collector: FakeCollector, make: Callable[..., Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backoff_module, "backoff_delay", lambda *args, **kwargs: 60.0)
    collector.script.extend([Answer(429, headers={"Retry-After": "0.1"}), Answer(200)])
    tracker = make(collector.url)
    event_id = tracker.track("a.b")
    assert tracker.flush(5)
    assert collector.delivered_ids == [event_id]


def test_retries_until_the_collector_starts(
    collectors: Callable[..., FakeCollector], make: Callable[..., Tracker]
) -> None:
    port = free_port()
    tracker = make(f"http://127.0.0.1:{port}")
    ids = [tracker.track("a.b", session_id="s") for _ in range(5)]
    wait_until(lambda: tracker.stats.retries >= 3)
    collector = collectors(port)
    assert tracker.flush(5)
    assert collector.delivered_ids == ids
    assert collections.Counter(collector.delivered_ids).most_common(1)[0][1] == 1


def test_retries_when_the_connection_is_dropped(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    collector.script.extend([Answer(drop=True), Answer(drop=True)])
    tracker = make(collector.url)
    ids = [tracker.track("a.b") for _ in range(3)]
    assert tracker.flush(5)
    assert len(collector.requests) == 3
    assert collector.delivered_ids == ids
    assert tracker.stats.retries == 2


def test_a_stale_keep_alive_connection_is_replaced_without_a_retry(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    collector.script.append(Answer(200, close_after=True))
    tracker = make(collector.url)
    first = tracker.track("a.b")
    assert tracker.flush(5)
    wait_until(lambda: not collector.connections)  # the collector closed the connection
    second = tracker.track("a.b")
    assert tracker.flush(5)
    assert collector.delivered_ids == [first, second]
    assert tracker.stats.retries == 0


def test_400_rejects_the_batch_without_retry(
    collector: FakeCollector,
    make: Callable[..., Tracker],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector.script.append(
        Answer(
            400,
            {
                "accepted": 0,
                "rejected": 0,
                "error": {
                    "code": "malformed_json",
                    "message": "the request body is not valid JSON.",
                },
            },
        )
    )
    tracker = make(collector.url)
    with caplog.at_level(logging.WARNING, logger="tallystick.sdk"):
        for _ in range(3):
            tracker.track("a.b")
        assert tracker.flush(5)
    assert len(collector.requests) == 1
    stats = tracker.stats
    assert (stats.sent, stats.rejected, stats.retries) == (0, 3, 0)
    assert "malformed_json: the request body is not valid JSON." in caplog.text
    assert batch_files(tmp_path / "queue") == []
    time.sleep(0.1)
    assert len(collector.requests) == 1


def test_207_counts_refused_events_and_does_not_resend_them(
    collector: FakeCollector, make: Callable[..., Tracker], caplog: pytest.LogCaptureFixture
) -> None:
    def judge(events: list[dict[str, Any]]) -> Answer:
        errors = refusals(
            events,
            "invalid_field",
            "`name` is invalid",
            lambda e: bool(e.get("data", {}).get("bad")),
        )
        return Answer(
            207, {"accepted": len(events) - len(errors), "rejected": len(errors), "errors": errors}
        )

    collector.default = judge
    tracker = make(collector.url)
    good = [tracker.track("a.b", data={"bad": False}) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="tallystick.sdk"):
        tracker.track("a.b", data={"bad": True})
        tracker.track("a.b", data={"bad": True})
        assert tracker.flush(5)
    assert len(collector.requests) == 1
    assert collector.delivered_ids == good
    stats = tracker.stats
    assert (stats.sent, stats.rejected, stats.retries) == (2, 2, 0)
    assert "invalid_field" in caplog.text


def test_413_splits_the_batch_in_halves(
    collector: FakeCollector, make: Callable[..., Tracker], tmp_path: Path
) -> None:
    def limit(events: list[dict[str, Any]]) -> Answer:
        if len(events) > 2:
            return Answer(
                413,
                {
                    "accepted": 0,
                    "rejected": 0,
                    "error": {"code": "too_many_events", "message": "too many"},
                },
            )
        return Answer(200)

    collector.default = limit
    tracker = make(collector.url, batch_size=8, flush_interval=60)
    ids = [tracker.track("a.b") for _ in range(8)]
    assert tracker.flush(5)
    assert [len(r.events) for r in collector.requests] == [8, 4, 2, 2, 4, 2, 2]
    assert collector.delivered_ids == ids
    stats = tracker.stats
    assert (stats.sent, stats.rejected, stats.retries) == (8, 0, 0)
    assert batch_files(tmp_path / "queue") == []


def test_413_for_the_events_themselves_is_not_split(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    def too_large(events: list[dict[str, Any]]) -> Answer:
        errors = refusals(events, "event_too_large", "too large")
        return Answer(413, {"accepted": 0, "rejected": len(events), "errors": errors})

    collector.default = too_large
    tracker = make(collector.url)
    tracker.track("a.b")
    tracker.track("a.b")
    assert tracker.flush(5)
    assert len(collector.requests) == 1
    assert tracker.stats.rejected == 2
    single = make(collector.url, queue_dir=False)
    collector.default = Answer(413, {"error": {"code": "request_too_large", "message": "big"}})
    single.track("a.b")
    assert single.flush(5)
    assert len(collector.requests) == 2
    assert single.stats.rejected == 1


def test_max_retries_gives_up(
    collector: FakeCollector, make: Callable[..., Tracker], tmp_path: Path
) -> None:
    collector.default = Answer(503)
    memory = make(collector.url, max_retries=2, queue_dir=False)
    memory.track("a.b")
    memory.track("a.b")
    assert memory.flush(5)
    assert len(collector.requests) == 3
    stats = memory.stats
    assert (stats.lost, stats.retries, stats.sent, stats.pending) == (2, 2, 0, 0)

    disk = make(collector.url, max_retries=0, queue_dir=tmp_path / "kept")
    disk.track("a.b")
    assert disk.flush(5)
    assert disk.stats.persisted == 1
    assert len(batch_files(tmp_path / "kept")) == 1


# -- disk persistence -------------------------------------------------------------------------


def test_undelivered_batches_survive_on_disk(
    collectors: Callable[..., FakeCollector], make: Callable[..., Tracker], tmp_path: Path
) -> None:
    port = free_port()
    folder = tmp_path / "q"
    first = make(f"http://127.0.0.1:{port}", queue_dir=folder, batch_size=3)
    ids = [first.track("a.b") for _ in range(7)]
    first.close(timeout=0.2)
    stats = first.stats
    assert (stats.persisted, stats.lost, stats.sent, stats.pending) == (7, 0, 0, 0)
    files = batch_files(folder)
    assert files
    on_disk = [e["event_id"] for f in files for e in json.loads(f.read_text())["events"]]
    assert sorted(on_disk) == sorted(ids)

    collector = collectors(port)
    second = make(collector.url, queue_dir=folder)
    later = second.track("a.c")
    assert second.flush(5)
    assert sorted(collector.delivered_ids) == sorted([*ids, later])
    assert collector.delivered_ids[-1] == later  # the backlog goes first
    assert len(set(collector.delivered_ids)) == 8
    assert (second.stats.recovered, second.stats.sent) == (7, 8)
    assert batch_files(folder) == []


def test_without_persistence_undelivered_events_are_lost(make: Callable[..., Tracker]) -> None:
    tracker = make(f"http://127.0.0.1:{free_port()}", queue_dir=False)
    for _ in range(3):
        tracker.track("a.b")
    tracker.close(timeout=0.1)
    assert (tracker.stats.lost, tracker.stats.persisted) == (3, 0)


def test_a_second_live_tracker_does_not_send_the_first_ones_files(
    collectors: Callable[..., FakeCollector], make: Callable[..., Tracker], tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    down = f"http://127.0.0.1:{free_port()}"
    earlier = make(down, queue_dir=folder)
    old = [earlier.track("a.old") for _ in range(2)]
    earlier.close(timeout=0)
    assert len(batch_files(folder)) == 1

    owner = make(down, queue_dir=folder)  # owns the folder (and the old file) but cannot send
    assert owner.queue_dir == folder
    collector = collectors()
    guest = make(collector.url, queue_dir=folder)
    assert guest.queue_dir is not None
    assert guest.queue_dir.parent == folder
    mine = guest.track("a.guest")
    assert guest.flush(5)
    assert collector.delivered_ids == [mine]
    guest.close()
    assert not guest.queue_dir.exists()
    owner.close(timeout=0)

    heir = make(collector.url, queue_dir=folder)
    assert heir.flush(5)
    assert sorted(collector.delivered_ids) == sorted([mine, *old])


# -- queue bound, flush, close ----------------------------------------------------------------


def test_full_queue_drops_events(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url, batch_size=100, flush_interval=60, max_queue=3)
    ids = [tracker.track("a.b", session_id="s") for _ in range(5)]
    stats = tracker.stats
    assert (stats.queued, stats.dropped, stats.pending) == (3, 2, 3)
    assert tracker.flush(5)
    assert collector.delivered_ids == ids[:3]
    tracker.track("a.b", session_id="s")
    assert tracker.flush(5)
    # dropped events used up seq 4 and 5: the gap shows the loss
    assert _seqs(collector.delivered_events) == {"s": [1, 2, 3, 6]}


def test_flush_return_value(
    collectors: Callable[..., FakeCollector], make: Callable[..., Tracker]
) -> None:
    port = free_port()
    tracker = make(f"http://127.0.0.1:{port}")
    assert tracker.flush(1)  # nothing queued
    event_id = tracker.track("a.b")
    started = time.monotonic()
    assert not tracker.flush(0.2)
    assert time.monotonic() - started < 1.5
    collector = collectors(port)
    assert tracker.flush(5)
    assert collector.delivered_ids == [event_id]


def test_close_is_idempotent_and_later_events_are_dropped(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    with make(collector.url) as tracker:
        event_id = tracker.track("a.b")
    assert tracker.closed
    assert collector.delivered_ids == [event_id]
    tracker.close()
    late = tracker.track("a.c")
    assert isinstance(late, str)
    assert tracker.stats.dropped == 1
    assert tracker.flush(1)
    assert collector.delivered_ids == [event_id]


def test_exit_hook_closes_the_tracker(
    collector: FakeCollector, make: Callable[..., Tracker]
) -> None:
    tracker = make(collector.url, flush_interval=60)
    event_id = tracker.track("a.b")
    tracker._atexit_hook()
    assert tracker.closed
    assert collector.delivered_ids == [event_id]


def test_track_is_thread_safe(collector: FakeCollector, make: Callable[..., Tracker]) -> None:
    tracker = make(collector.url, batch_size=50)
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [tracker.track("a.b", session_id="shared") for _ in range(200)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.flush(10)
    assert sorted(collector.delivered_ids) == sorted(ids)
    assert sorted(_seqs(collector.delivered_events)["shared"]) == list(range(1, 801))


def test_default_queue_dir_is_in_the_cache(
    collector: FakeCollector, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with Tracker(collector.url, app_id="portal", flush_interval=0.05) as tracker:
        assert tracker.queue_dir is not None
        assert tracker.queue_dir.is_relative_to(tmp_path / "cache" / "tallystick" / "sdk")
        tracker.track("a.b")
    assert len(collector.delivered_ids) == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Tracker("http://127.0.0.1:1", batch_size=0, queue_dir=False)
    with pytest.raises(ValueError, match="http"):
        Tracker("ftp://example.org", queue_dir=False)
