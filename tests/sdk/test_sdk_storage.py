"""The SDK's queue folder: atomic batch files, ordering, locking and adoption."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tallystick.sdk.events import Defaults, build_event, encode_event
from tallystick.sdk.storage import (
    QueueDir,
    default_queue_dir,
    read_batch,
    time_ordered_uuid,
    write_atomic,
)


def _raws(n: int) -> list[bytes]:
    return [encode_event(build_event("a.b", defaults=Defaults())) for _ in range(n)]


def test_time_ordered_uuids_sort_by_creation() -> None:
    ids = [time_ordered_uuid() for _ in range(2000)]
    assert [str(u) for u in ids] == sorted(str(u) for u in ids)
    assert len(set(ids)) == len(ids)
    assert {u.version for u in ids} == {7}


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["x.json"]


def test_batch_round_trip_drops_sent_ts(tmp_path: Path) -> None:
    queue = QueueDir(tmp_path)
    try:
        raws = _raws(3)
        first = queue.write_batch(raws)
        second = queue.write_batch(raws[:1])
        assert queue.batch_files() == [first, second]
        assert read_batch(first) == raws
        doc = json.loads(first.read_bytes())
        doc["events"][0]["sent_ts"] = "2026-11-02T14:03:12Z"
        first.write_text(json.dumps(doc))
        assert read_batch(first) == raws
    finally:
        queue.close()


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"events": 5}'])
def test_unreadable_batch(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "batch-x.json"
    path.write_bytes(content)
    assert read_batch(path) is None


def test_sessions_round_trip_and_garbage(tmp_path: Path) -> None:
    queue = QueueDir(tmp_path)
    try:
        assert queue.load_sessions() == {}
        queue.save_sessions({"s-1": 3, "s-2": 1})
        assert queue.load_sessions() == {"s-1": 3, "s-2": 1}
        queue.sessions_path.write_text('{"seq": {"a": "x", "b": 0, "c": true, "d": 2}}')
        assert queue.load_sessions() == {"d": 2}
        queue.sessions_path.write_text("not json")
        assert queue.load_sessions() == {}
    finally:
        queue.close()


def test_second_live_owner_gets_a_private_folder_removed_when_empty(tmp_path: Path) -> None:
    first = QueueDir(tmp_path)
    second = QueueDir(tmp_path)
    try:
        assert not first.private
        assert first.path == tmp_path
        assert second.private
        assert second.path.parent == tmp_path
        assert second.path.name.startswith("tracker-")
    finally:
        second.close()
        first.close()
    assert not second.path.exists()
    third = QueueDir(tmp_path)  # the lock is free again
    try:
        assert not third.private
    finally:
        third.close()


def test_owner_adopts_the_files_of_a_dead_private_folder(tmp_path: Path) -> None:
    owner = QueueDir(tmp_path)
    private = QueueDir(tmp_path)
    path = private.write_batch(_raws(2))
    private.save_sessions({"s-1": 4})
    private.close()  # the folder stays: it holds a batch
    owner.close()
    assert path.exists()
    alive = QueueDir(tmp_path / "elsewhere")  # unrelated
    alive.close()
    new_owner = QueueDir(tmp_path)
    try:
        assert new_owner.prepare() == {"s-1": 4}
        assert [p.name for p in new_owner.batch_files()] == [path.name]
        assert not path.parent.exists()
    finally:
        new_owner.close()


def test_owner_leaves_a_live_private_folder_alone(tmp_path: Path) -> None:
    owner = QueueDir(tmp_path)
    private = QueueDir(tmp_path)
    try:
        path = private.write_batch(_raws(1))
        owner.close()
        new_owner = QueueDir(tmp_path)
        try:
            assert new_owner.prepare() == {}
            assert new_owner.batch_files() == []
            assert path.exists()
        finally:
            new_owner.close()
    finally:
        private.close()


def test_default_queue_dir_uses_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = default_queue_dir("http://127.0.0.1:8000", "portal")
    b = default_queue_dir("http://127.0.0.1:8001", "portal")
    c = default_queue_dir("http://127.0.0.1:8000", None)
    assert a.parent == tmp_path / "tallystick" / "sdk"
    assert a.name.startswith("127.0.0.1_8000_portal-")
    assert len({a, b, c}) == 3
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_queue_dir("http://x", None).is_relative_to(tmp_path / "home" / ".cache")
