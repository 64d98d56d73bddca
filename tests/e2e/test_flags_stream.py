"""The flags stream through a real `tally serve`: an SDK listening with the write key gets a
`tally flags apply` change without polling, reconnects (Last-Event-ID) after the server restarts
and gets the next change; a server shutting down with streams open ends them cleanly and does not
wait for them; access and an unknown environment as for /v1/flags/ruleset; a server holding its
most streams answers 503 and the SDK polls; a server without the stream is polled.
"""

from __future__ import annotations

import copy
import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from tallystick import Tracker
from tallystick.cli import app as cli
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.sdk.flags import FlagClient

pytestmark = pytest.mark.e2e

RULESET: dict[str, Any] = {
    "environments": ["dev", "prod"],
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "pro",
                            "condition": {"attribute": "plan", "op": "equals", "value": "pro"},
                            "value": True,
                        }
                    ]
                }
            },
        },
    },
}
PRO = {"id": "user-1", "plan": "pro"}
FREE = {"id": "user-2", "plan": "free"}
HOUR = 3600.0  # a poll interval that never comes within a test: changes arrive by the stream


def with_default(default: bool) -> dict[str, Any]:
    doc = copy.deepcopy(RULESET)
    doc["flags"]["new-signin"]["default"] = default
    return doc


def apply(data: Path, doc: dict[str, Any], tmp_path: Path) -> None:
    """`tally flags apply FILE --yes` on the server's data directory."""
    file = tmp_path / f"flags-{time.monotonic_ns()}.json"
    file.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["flags", "apply", str(file), "--yes", "--data", str(data)])
    assert result.exit_code == 0, result.output


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def keyed_data(root: Path) -> tuple[Path, str, str]:
    data = root / "data"
    data.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        _, admin = create_key(store, "admin", "ops", actor="test")
        _, write = create_key(store, "write", "shop-web", actor="test", app="shop")
    return data, admin, write


def client(url: str, write: str, **options: Any) -> FlagClient:
    options = {"poll_seconds": HOUR, "stream": True, **options}
    return FlagClient(url, write_key=write, environment="prod", sink=lambda _e: None, **options)


class RawStream:
    """One stream request read on a thread of its own: its status, its body and how it ended."""

    def __init__(self, port: int, key: str | None, query: str = "environment=prod") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.conn.request("GET", f"/v1/flags/stream?{query}", headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.body = b""
        self.ended: str | None = None  # "clean" (the last chunk came) or the error
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Hang up (the reading thread then ends)."""
        sock = self.conn.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)

    def _read(self) -> None:
        try:
            while chunk := self.response.read1(65536):
                self.body += chunk
            self.ended = "clean"
        except Exception as exc:
            self.ended = repr(exc)
        finally:
            self.conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, str]]:
    data, admin, write = keyed_data(tmp_path_factory.mktemp("stream"))
    with ServerProcess(data) as running:
        yield running, admin, write


def test_a_change_reaches_the_sdk_by_the_stream(
    served: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    server, _, write = served
    apply(server.data, with_default(False), tmp_path)
    tracker = Tracker(
        server.url,
        write,
        app_id="shop",
        queue_dir=False,
        flags_environment="prod",
        flags_stream=True,
        flags_poll_seconds=HOUR,
    )
    try:
        flags = tracker._flags
        assert flags is not None
        wait_for(lambda: flags.streaming and tracker.flag("new-signin", None, PRO) is True, "ok")
        assert tracker.flag("new-signin", None, FREE) is False
        before = flags.version

        apply(server.data, with_default(True), tmp_path)
        wait_for(lambda: tracker.flag("new-signin", None, FREE) is True, "the change by stream")
        assert (before or 0) < (flags.version or 0)
        assert flags.stream_connections == 1
    finally:
        tracker.close()


def test_access_and_an_unknown_environment(served: tuple[ServerProcess, str, str]) -> None:
    server, admin, write = served
    streams = [RawStream(server.port, None), RawStream(server.port, "not-a-key")]
    assert [s.status for s in streams] == [401, 401]
    listening = [RawStream(server.port, write), RawStream(server.port, admin)]
    assert [s.status for s in listening] == [200, 200]
    for s in listening:
        assert s.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    wait_for(lambda: all(b"event: ruleset\n" in s.body for s in listening), "the first events")
    for s in listening:
        s.close()

    unknown = RawStream(server.port, write, "environment=staging")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(
        "GET", "/v1/flags/ruleset?environment=staging", headers={"Authorization": f"Bearer {write}"}
    )
    fetched = conn.getresponse()
    expected = fetched.read()
    conn.close()
    unknown.thread.join(10)
    assert (unknown.status, unknown.body) == (fetched.status, expected)
    assert unknown.status == 404


def test_restart_reconnects_and_shutdown_does_not_wait(tmp_path: Path) -> None:
    data, _, write = keyed_data(tmp_path)
    apply(data, with_default(False), tmp_path)
    first = ServerProcess(data, workers=2).start()  # each worker ends its own streams
    sdk = client(first.url, write)
    try:
        sdk.start()
        wait_for(lambda: sdk.streaming and sdk.version is not None, "the first stream")
        raw = [RawStream(first.port, write) for _ in range(3)]
        wait_for(lambda: all(b"event: ruleset\n" in s.body for s in raw), "the raw streams")

        started = time.monotonic()
        assert first.stop() == 0
        stopped_in = time.monotonic() - started
        for stream in raw:
            stream.thread.join(10)
            # the last chunk came: the server ended the stream (a response cancelled at the end
            # of uvicorn's graceful-shutdown timeout, 10 s, would be cut short instead)
            assert stream.ended == "clean"
        assert stopped_in < 10.0, stopped_in
        wait_for(lambda: not sdk.streaming, "the SDK sees the end")

        second = ServerProcess(data, port=first.port).start()
        try:
            wait_for(lambda: sdk.streaming and sdk.stream_connections >= 2, "reconnected", 60)
            apply(data, with_default(True), tmp_path)
            wait_for(lambda: sdk.evaluate("new-signin", None, FREE).value is True, "the change")
        finally:
            second.stop()
    finally:
        sdk.close()
        first.kill()


def test_a_server_holding_its_most_streams_is_polled(tmp_path: Path) -> None:
    data, _, write = keyed_data(tmp_path)
    apply(data, with_default(False), tmp_path)
    with ServerProcess(data, env={"TALLYSTICK_FLAGS_MAX_STREAMS": "1"}) as server:
        holder = client(server.url, write)
        holder.start()
        wait_for(lambda: holder.streaming, "the one stream")
        refused = RawStream(server.port, write)
        refused.thread.join(10)
        assert refused.status == 503
        assert refused.response.getheader("Retry-After") == "30"
        assert json.loads(refused.body)["error"]["code"] == "not_ready"

        poller = client(server.url, write, poll_seconds=0.2)
        try:
            poller.start()
            wait_for(lambda: poller.version is not None, "the ruleset by polling")
            apply(data, with_default(True), tmp_path)
            wait_for(lambda: poller.evaluate("new-signin", None, FREE).value is True, "polled")
            wait_for(lambda: holder.evaluate("new-signin", None, FREE).value is True, "streamed")
            assert not poller.streaming
            assert poller.stream_connections == 0
        finally:
            poller.close()
            holder.close()


class OlderServer(http.server.BaseHTTPRequestHandler):
    """A collector from before the stream: the ruleset, and 404 for everything else."""

    ruleset: ClassVar[dict[str, Any]] = {}
    asked: ClassVar[list[str]] = []  # the paths asked, for the test

    def do_GET(self) -> None:
        self.asked.append(self.path.split("?")[0])
        if self.path.startswith("/v1/flags/ruleset"):
            body, status = json.dumps(self.ruleset).encode(), 200
        else:
            body, status = b'{"error": {"code": "not_found", "message": "no such endpoint"}}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_server_without_the_stream_is_polled() -> None:
    OlderServer.ruleset = {**with_default(False), "version": 1}
    OlderServer.asked = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OlderServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    sdk = client(f"http://127.0.0.1:{httpd.server_address[1]}", "k", poll_seconds=0.2)
    try:
        sdk.start()
        wait_for(lambda: sdk.version == 1, "the ruleset by polling")
        OlderServer.ruleset = {**with_default(True), "version": 2}
        wait_for(lambda: sdk.evaluate("new-signin", None, FREE).value is True, "the change")
        assert OlderServer.asked.count("/v1/flags/stream") == 1
        assert sdk.stream_connections == 0
    finally:
        sdk.close()
        httpd.shutdown()
        httpd.server_close()
