"""End to end through the real server on loopback: 10,000 events from the SDK, some invalid.

Every valid event comes out of ``tally export`` exactly once; every invalid one is in the
failed-events store with its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tallystick import Tracker
from tallystick.collect.server import ServerProcess
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e

TOTAL = 10_000


def test_sdk_to_export(tmp_path: Path) -> None:
    data = tmp_path / "data"
    valid: set[str] = set()
    invalid: dict[str, str] = {}
    with ServerProcess(data) as server:
        tracker = Tracker(
            server.url,
            app_id="research-portal",
            queue_dir=tmp_path / "queue",
            batch_size=200,
            flush_interval=0.2,
        )
        for i in range(TOTAL):
            session = f"s-{i // 50}"
            if i % 97 == 0:
                invalid[
                    tracker.track("Project Commit", user_id=f"u-{i % 300}", session_id=session)
                ] = "invalid_field"
            elif i % 101 == 0:
                invalid[
                    tracker.track(
                        "project.commit",
                        user_id=f"u-{i % 300}",
                        session_id=session,
                        data={"fileCount": i},
                    )
                ] = "invalid_field"
            else:
                valid.add(
                    tracker.track(
                        "project.commit",
                        user_id=f"u-{i % 300}",
                        session_id=session,
                        data={"files": i % 7},
                    )
                )
        assert tracker.flush(timeout=120)
        tracker.close()
        stats = tracker.stats
        assert stats.sent == len(valid)
        assert stats.rejected == len(invalid)
        assert stats.dropped == 0
    # `tally serve` drained the spool on its way out: export what is in the lake.
    out = tmp_path / "events.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tallystick",
            "export",
            "--data",
            str(data),
            "--format",
            "jsonl",
            "--output",
            str(out),
        ],
        check=True,
    )
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [e["event_id"] for e in exported]
    assert len(ids) == len(set(ids)), "an event was exported twice"
    assert set(ids) == valid
    by_session: dict[str, list[int]] = {}
    for e in exported:
        by_session.setdefault(e["session"]["id"], []).append(e["session"]["seq"])
    # seq numbers are per session; the invalid events leave gaps, nothing else does
    assert all(len(set(seqs)) == len(seqs) for seqs in by_session.values())

    con = connect(Lake(data / "lake"))
    failed = con.execute("SELECT event_id, error_code, error_message FROM failed_events").fetchall()
    assert {row[0]: row[1] for row in failed} == invalid
    assert all(row[2] for row in failed)
    messages = {row[2] for row in failed}
    assert any("lowercase dotted action" in m for m in messages)
    assert any("snake_case" in m for m in messages)
