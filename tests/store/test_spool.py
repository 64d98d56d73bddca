"""The spool: frames survive intact or are cut off whole; group commit; dead writers' segments."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallystick.store import spool
from tallystick.store.spool import SpoolWriter, claimable_segments, read_segment


def test_frames_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "seg.ready"
    frames = [spool.frame(spool.EVENTS, 1, b"[1]"), spool.frame(spool.FAILED, 2, b"[]")]
    path.write_bytes(b"".join(frames))
    contents = read_segment(path)
    assert [(f.kind, f.received_us, f.payload) for f in contents.frames] == [
        (spool.EVENTS, 1, b"[1]"),
        (spool.FAILED, 2, b"[]"),
    ]
    assert contents.torn_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=8),
    cut=st.integers(min_value=0),
    flip=st.booleans(),
)
def test_a_torn_tail_never_yields_a_partial_frame(
    tmp_path_factory: object, payloads: list[bytes], cut: int, flip: bool
) -> None:
    blob = b"".join(spool.frame(spool.EVENTS, i, p) for i, p in enumerate(payloads))
    cut %= len(blob) + 1
    data = bytearray(blob[:cut])
    if flip and data:
        data[-1] ^= 0xFF  # corrupt the last byte that made it to disk
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.open"
        path.write_bytes(bytes(data))
        got = [f.payload for f in read_segment(path).frames]
    # whatever survives is a prefix of what was written, frame by frame
    assert got == payloads[: len(got)]
    complete = 0
    pos = 0
    for p in payloads:
        pos += spool.HEADER.size + len(p)
        if pos <= cut:
            complete += 1
    assert len(got) in (complete, complete - 1) if flip else len(got) == complete


def test_group_commit_acknowledges_after_fsync(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, rotate_seconds=60)
    writer.start()
    done = threading.Barrier(33)

    def client(i: int) -> None:
        done.wait()
        for j in range(20):
            writer.append_sync([spool.frame(spool.EVENTS, i, b"[%d]" % (i * 100 + j))])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    done.wait()
    for t in threads:
        t.join()
    commits = writer.commits
    writer.close()
    frames = [f for p in tmp_path.glob("*.ready") for f in read_segment(p).frames]
    assert len(frames) == 32 * 20
    assert commits < 32 * 20, "concurrent appends should share fsyncs"


def test_live_segments_are_not_claimed_but_dead_ones_are(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, rotate_seconds=60)
    writer.start()
    writer.append_sync([spool.frame(spool.EVENTS, 1, b"[]")])
    assert list(claimable_segments(tmp_path)) == []  # the live writer holds its lock
    # A writer that died leaves an unlocked .open segment behind.
    dead = tmp_path / "999-dead-000001.open"
    dead.write_bytes(spool.frame(spool.EVENTS, 1, b"[1]") + b"TSP1\x01torn")
    claimed = list(claimable_segments(tmp_path))
    assert [p.name for p, _ in claimed] == [dead.name]
    for _, fd in claimed:
        assert fd is not None
        import os

        os.close(fd)
    contents = read_segment(dead)
    assert [f.payload for f in contents.frames] == [b"[1]"]
    assert contents.torn_bytes == len(b"TSP1\x01torn")
    writer.seal()
    assert any(p.suffix == ".ready" for p, _ in claimable_segments(tmp_path))
    writer.close()


def test_refuses_writes_below_free_space_threshold(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, min_free_bytes=1 << 62)
    writer.start()
    try:
        with pytest.raises(spool.SpoolUnavailable, match="min_free_bytes"):
            writer.append_sync([spool.frame(spool.EVENTS, 1, b"[]")])
        assert writer.problem() is not None
    finally:
        writer.close()
    assert list(tmp_path.iterdir()) == []
