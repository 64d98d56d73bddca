"""Several collector processes: every acknowledged event reaches the lake by the time
`tally serve` has stopped gracefully."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from support import make_event
from tallystick.collect.server import ServerProcess
from tallystick.store.lake import Lake
from tallystick.store.reader import count_events

pytestmark = pytest.mark.e2e


def test_two_workers_then_graceful_stop(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", workers=2).start()
    accepted = 0
    try:
        for _ in range(60):
            body = json.dumps([make_event() for _ in range(50)]).encode()
            request = urllib.request.Request(server.url + "/v1/events", data=body)
            with urllib.request.urlopen(request) as response:
                accepted += json.loads(response.read())["accepted"]
    finally:
        assert server.stop() == 0
    assert accepted == 3000
    assert count_events(Lake(tmp_path / "data" / "lake")) == 3000
    assert list((tmp_path / "data" / "spool").glob("*.*")) == []
