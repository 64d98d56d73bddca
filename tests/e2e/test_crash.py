"""Crash safety: SIGKILL the collector again and again during a load from a retrying client;
after a restart every acknowledged event is present exactly once."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import pytest

from support import make_event
from tallystick.collect.server import ServerProcess
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e

TOTAL = 20_000
BATCH = 100
THREADS = 4
KILLS = 6


class RetryingClient(threading.Thread):
    """Posts its batches in order, retrying each until the collector acknowledges it."""

    def __init__(
        self,
        port: int,
        batches: list[list[dict[str, object]]],
        acked: set[str],
        lock: threading.Lock,
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.batches = batches
        self.acked = acked
        self.lock = lock
        self.retries = 0

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        for batch in self.batches:
            body = json.dumps({"events": batch}).encode()
            while True:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        with self.lock:
                            self.acked.update(str(e["event_id"]) for e in batch)
                        break
                    assert response.status >= 500, response.status
                except (OSError, http.client.HTTPException):
                    if conn is not None:
                        conn.close()
                    conn = None
                self.retries += 1
                time.sleep(0.02)
        if conn is not None:
            conn.close()


def test_sigkill_during_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    events = [make_event() for _ in range(TOTAL)]
    sent = {str(e["event_id"]) for e in events}
    batches = [events[i : i + BATCH] for i in range(0, TOTAL, BATCH)]
    acked: set[str] = set()
    lock = threading.Lock()
    clients = [
        RetryingClient(server.port, batches[i::THREADS], acked, lock) for i in range(THREADS)
    ]
    for c in clients:
        c.start()
    kills = 0
    try:
        thresholds = [TOTAL * (k + 1) // (KILLS + 2) for k in range(KILLS)]
        for k, threshold in enumerate(thresholds):
            if k % 2:
                time.sleep(1.5)  # let the loader work, so some kills land in the middle of it
            while True:
                with lock:
                    if len(acked) >= threshold:
                        break
                time.sleep(0.005)
            server.kill()
            kills += 1
            server.start()
        for c in clients:
            c.join(timeout=240)
            assert not c.is_alive(), "the client did not finish"
    finally:
        server.stop()
    assert kills >= 5
    assert acked == sent
    con = connect(Lake(data / "lake"))
    rows = con.execute("SELECT event_id, count(*) FROM events GROUP BY ALL").fetchall()
    stored = {r[0] for r in rows}
    assert all(r[1] == 1 for r in rows)
    assert acked <= stored, f"{len(acked - stored)} acknowledged events were lost"
    assert stored <= sent
    total = con.execute("SELECT count(*) FROM events").fetchone()
    assert total is not None
    assert total[0] == TOTAL
    assert sum(c.retries for c in clients) > 0, "the kills should have forced retries"
