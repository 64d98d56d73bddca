"""The tracker's folder on disk: batch files waiting to be sent and per-session counters.

Layout of a queue folder::

    lock                      flock'd by the tracker that owns the folder
    sessions.json             {"version": 1, "seq": {"<session id>": <last seq>, ...}}
    batch-<uuid7>.json        {"events": [...]} — one batch, not yet answered by the collector
    tracker-<pid>-<hex>/      private folder of a second live tracker (same layout)

Every file is written atomically (temporary file, fsync, rename, fsync of the folder), so a crash
leaves either the old or the new content, never half a file. Batch file names are time-ordered
UUIDs (version 7), so sorting them by name sends the oldest batch first.

Ownership: the tracker that takes the ``flock`` on ``lock`` owns the folder: it sends the batch
files it finds there and keeps its session counters there. A second tracker started while the
first one is alive does not touch the owner's files; it works in a fresh private sub-folder
``tracker-<pid>-<hex>/`` instead (with its own session counters) and removes it on close when
nothing is left in it. When an owner starts, it adopts the batch files and session counters of
private sub-folders whose tracker is gone (their lock is free), so nothing is stranded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from tallystick.sdk.events import encode_event

log = logging.getLogger("tallystick.sdk")

LOCK_NAME: Final = "lock"
SESSIONS_NAME: Final = "sessions.json"
BATCH_PREFIX: Final = "batch-"
BATCH_SUFFIX: Final = ".json"
PRIVATE_PREFIX: Final = "tracker-"
TMP_SUFFIX: Final = ".tmp"
BAD_SUFFIX: Final = ".bad"

_uuid_lock = threading.Lock()
_last_us = 0


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 whose text sorts by creation time (strictly increasing in this process)."""
    global _last_us
    with _uuid_lock:
        now_us = max(time.time_ns() // 1000, _last_us + 1)
        _last_us = now_us
    millis, micros = divmod(now_us, 1000)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= micros << 64  # 12 bits of "rand_a": the microseconds within the millisecond
    value |= 0b10 << 62  # variant
    value |= secrets.randbits(62)
    return uuid.UUID(int=value)


def cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".cache"


def default_queue_dir(endpoint: str, app_id: str | None) -> Path:
    """``$XDG_CACHE_HOME/tallystick/sdk/<host>_<port>_<app>-<hash>`` (or ``~/.cache/...``)."""
    parts = urlsplit(endpoint)
    readable = f"{parts.hostname or 'collector'}_{parts.port or ''}_{app_id or 'default'}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("_.")[:60] or "collector"
    digest = hashlib.sha256(f"{endpoint}\0{app_id or ''}".encode()).hexdigest()[:12]
    return cache_home() / "tallystick" / "sdk" / f"{readable}-{digest}"


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` so that readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _try_lock(folder: Path) -> int | None:
    """Open and ``flock`` ``folder/lock``; the file descriptor, or ``None`` when it is taken."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def read_batch(path: Path) -> list[bytes] | None:
    """The encoded events of a batch file, or ``None`` when the file cannot be read as one."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        return None
    raws = []
    for event in events:
        if isinstance(event, dict) and event:
            event.pop("sent_ts", None)
            if event:
                raws.append(encode_event(event))
    return raws


def _batch_content(raws: list[bytes]) -> bytes:
    return b'{"events":[\n' + b",\n".join(raws) + b"\n]}\n"


def load_sessions(path: Path) -> dict[str, int]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable session counters %s: %s", path, exc)
        return {}
    seq = doc.get("seq") if isinstance(doc, dict) else None
    if not isinstance(seq, dict):
        return {}
    return {
        k: v
        for k, v in seq.items()
        if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


class QueueDir:
    """A queue folder owned (``flock``) by one tracker; see the module docstring.

    Construct it on any thread; afterwards only the tracker's worker thread uses it.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        fd = _try_lock(root)
        self.private = fd is None
        if fd is None:
            name = f"{PRIVATE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            # Lock it under a hidden name first so an owner never adopts it before it is locked.
            hidden = root / f".{name}"
            hidden.mkdir()
            fd = _try_lock(hidden)
            if fd is None:  # pragma: no cover - nobody else knows this fresh name
                raise OSError(f"cannot lock the fresh queue folder {hidden}")
            folder = root / name
            try:
                hidden.rename(folder)
            except BaseException:
                _unlock(fd)
                raise
            log.info("queue folder %s is in use by another tracker; using %s", root, folder)
        else:
            folder = root
        self.path = folder
        self._lock_fd: int | None = fd

    @property
    def sessions_path(self) -> Path:
        return self.path / SESSIONS_NAME

    def load_sessions(self) -> dict[str, int]:
        return load_sessions(self.sessions_path)

    def save_sessions(self, seq: Mapping[str, int]) -> None:
        doc: dict[str, Any] = {"version": 1, "seq": dict(seq)}
        write_atomic(self.sessions_path, json.dumps(doc, ensure_ascii=False).encode("utf-8"))

    def write_batch(self, raws: list[bytes]) -> Path:
        path = self.path / f"{BATCH_PREFIX}{time_ordered_uuid()}{BATCH_SUFFIX}"
        write_atomic(path, _batch_content(raws))
        return path

    def batch_files(self) -> list[Path]:
        """This folder's batch files, oldest first."""
        return sorted(
            p
            for p in self.path.iterdir()
            if p.name.startswith(BATCH_PREFIX) and p.name.endswith(BATCH_SUFFIX) and p.is_file()
        )

    @staticmethod
    def delete(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the sent batch file %s: %s", path, exc)

    @staticmethod
    def set_aside(path: Path) -> None:
        """Rename an unreadable batch file to ``*.bad`` so it is not tried again."""
        with contextlib.suppress(OSError):
            path.rename(path.with_name(path.name + BAD_SUFFIX))

    def prepare(self) -> dict[str, int]:
        """Tidy up after earlier runs; return session counters adopted from dead private folders.

        Removes stale temporary files and, when this tracker owns the root, moves the batch files
        of private folders whose tracker is gone into the root.
        """
        for tmp in self.path.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        adopted: dict[str, int] = {}
        if self.private:
            return adopted
        for folder in self._private_folders():
            fd = _try_lock(folder)
            if fd is None:
                continue  # its tracker is alive
            try:
                for path in sorted(folder.glob(f"{BATCH_PREFIX}*{BATCH_SUFFIX}")):
                    os.replace(path, self.path / path.name)
                for key, value in load_sessions(folder / SESSIONS_NAME).items():
                    adopted[key] = max(value, adopted.get(key, 0))
                _remove_folder(folder)
            except OSError as exc:
                log.warning("could not adopt the queue folder %s: %s", folder, exc)
            finally:
                _unlock(fd)
        return adopted

    def _private_folders(self) -> Iterator[Path]:
        for p in self.path.iterdir():
            if p.name.startswith(PRIVATE_PREFIX) and p.is_dir():
                yield p

    def close(self) -> None:
        """Release the lock; a private folder is removed when no batch file is left in it."""
        if self._lock_fd is None:
            return
        try:
            if self.private and not self.batch_files():
                _remove_folder(self.path)
        except OSError as exc:
            log.warning("could not remove the queue folder %s: %s", self.path, exc)
        finally:
            _unlock(self._lock_fd)
            self._lock_fd = None


def _remove_folder(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
