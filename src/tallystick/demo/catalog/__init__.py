"""The demo product's metric catalog: YAML definitions shipped with Tallystick.

``tally demo`` copies them into the catalog folder (``<config>/metrics``) with ``install``, which
never overwrites a file that exists, so edits survive running the demo again.
"""

from __future__ import annotations

import os
import uuid
from importlib.resources import files
from pathlib import Path


def names() -> list[str]:
    """The shipped file names, sorted."""
    return sorted(e.name for e in files(__name__).iterdir() if e.name.endswith(".yaml"))


def install(directory: Path) -> list[Path]:
    """Write every shipped file missing from ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in names():
        target = directory / name
        if target.exists():
            continue
        tmp = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(files(__name__).joinpath(name).read_text(encoding="utf-8"), "utf-8")
        try:
            os.link(tmp, target)  # whole or not at all, and never over an existing file
        except FileExistsError:
            continue
        finally:
            tmp.unlink()
        written.append(target)
    return written
