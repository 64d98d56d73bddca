"""Issue 6's acceptance: the loss report is exact on a generated log with known dropped and
duplicated messages per session, sent through the real collector.

Sessions of three client library versions over two days (some across midnight) skip some
``session.seq`` values (loss), send some events again in later requests or twice in one
request (natural duplicates), reuse some event ids for another payload (synthetic duplicates)
and some seq values for two events (seq conflicts); two streams store copies (one keeps no
client or session). The requests go to ``tally serve`` on 127.0.0.1 over HTTP, the server's
loader writes the lake, compaction then drops the duplicates from the event files — and
``tally quality loss --grain day --format json`` and ``GET /v1/quality/loss`` still answer
exactly the generator's truth, from the delivery ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from quality.lossgen import generate_requests
from tallystick.cli import app as cli
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.quality.loss import total
from tallystick.store.lake import EVENTS, Lake
from tallystick.store.loader import Loader
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e

REQUESTS = 9
ROUNDS = 3
"""The requests go in three rounds, each loaded before the next: several files per partition."""
FAST = {
    "TALLYSTICK_SPOOL_ROTATE_SECONDS": "0.1",
    "TALLYSTICK_COMPACT_INTERVAL_SECONDS": "3600",  # the test compacts, not the server
    "TALLYSTICK_WARM_UP": "false",  # no dashboard here: keep the CPU for the test
}


def _post(base: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat()  # when the client sends: each retry anew
    body = json.dumps([{**e, "sent_ts": now} for e in events]).encode()
    request = urllib.request.Request(
        base + "/v1/events",
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "tallystick-python/0.2.0"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def _ledger_rows(lake: Lake) -> int:
    if not lake.files("messages"):
        return 0
    con = connect(lake)
    try:
        row = con.execute("SELECT count(*) FROM messages").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def _wait_for(lake: Lake, rows: int, server: ServerProcess) -> None:
    deadline = time.monotonic() + 30
    while (stored := _ledger_rows(lake)) < rows:
        assert time.monotonic() < deadline, f"{stored} of {rows} copies loaded: {server.output()}"
        time.sleep(0.05)
    assert stored == rows


def _streams(data: Path) -> None:
    """``full`` stores every event whole; ``narrow`` stores page views without client or
    session (a stream's ``keep``)."""
    runner = CliRunner()
    for args in (
        ["full", "--events", "page.*,project.*,other.*"],
        ["narrow", "--events", "page.*", "--keep", "app"],
    ):
        result = runner.invoke(cli, ["streams", "create", *args, "--data", str(data)])
        assert result.exit_code == 0, result.output


def test_loss_and_duplicates_are_exact_through_the_collector_and_compaction(
    tmp_path: Path,
) -> None:
    requests, log = generate_requests(
        random.Random(2026), sessions=45, unsequenced=12, requests=REQUESTS
    )
    truth = [r.as_row() for r in log.expected_report()]
    totals = total(log.expected_report())
    # the log has all it should, on both days
    assert {r["day"] for r in truth} == {"2026-03-01", "2026-03-02"}
    assert min(totals["lost"], totals["seq_conflicts"]) > 0
    assert min(totals["duplicates_natural"], totals["duplicates_synthetic"]) > 0
    twice = [r for r in requests if len({e["event_id"] for e in r}) < len(r)]
    assert twice, "no event is sent twice in one request"

    data = tmp_path / "data"
    _streams(data)
    lake = Lake(Settings(data=data).lake_dir)
    copies = 0
    with ServerProcess(data, extra_args=["--flush-interval-seconds", "0.05"], env=FAST) as server:
        per_round = REQUESTS // ROUNDS
        for start in range(0, REQUESTS, per_round):
            for events in requests[start : start + per_round]:
                assert _post(server.url, events) == {"accepted": len(events), "rejected": 0}
                copies += sum(2 if e["name"].startswith("page.") else 1 for e in events)
            _wait_for(lake, copies, server)

        # compaction keeps one copy per event, name and stream in the event files
        merged = Loader(Settings(data=data)).compact(min_files=2)
        assert merged >= 2 * len(lake.partitions(EVENTS))
        assert all(len(files) == 1 for files in lake.partitions(EVENTS).values())
        con = connect(lake)
        try:
            row = con.execute("SELECT count(*) FROM raw_events").fetchone()
        finally:
            con.close()
        assert row is not None
        assert row[0] < copies  # the retries are gone from the event files ...
        assert _ledger_rows(lake) == copies  # ... not from the ledger

        with urllib.request.urlopen(server.url + "/v1/quality/loss?grain=day", timeout=30) as r:
            answer = json.loads(r.read())
    assert server.proc is not None
    assert server.proc.returncode == 0

    command = [sys.executable, "-m", "tallystick", "quality", "loss"]
    command += ["--grain", "day", "--format", "json", "--data", str(data)]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == truth
    assert answer["rows"] == truth
    assert answer["totals"] == totals
