"""Making file-system changes durable: ``fsync`` a file or a directory (after a rename), and
replacing a file atomically and durably."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

TMP_SUFFIX: Final = ".tmp"


def fsync_path(path: Path) -> None:
    """``fsync`` a file's data, or a directory's entries (so a create or rename survives)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(target: Path, write: Callable[[Path], object]) -> None:
    """Make ``target`` hold what ``write`` writes, atomically and durably: ``write`` fills a
    temporary file beside it, which is fsync'd, renamed over ``target``, and the directory
    fsync'd. Readers see the old file or the new one, never half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(target.parent)
