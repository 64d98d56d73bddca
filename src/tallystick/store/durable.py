"""Making file-system changes durable: ``fsync`` a file or a directory (after a rename)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """``fsync`` a file's data, or a directory's entries (so a create or rename survives)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
