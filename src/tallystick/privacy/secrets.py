"""The installation's secret: 32 random bytes in ``<data>/secrets/install.key`` (mode 0600).

It keys the hashes that must not be reversible by guessing (a hashed email, a deleted user's id
kept for suppression) and is created on first use. Keep it with the data directory: losing it
makes earlier hashes unmatchable (deleted users' later events would no longer be recognised).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Final

SECRET_BYTES: Final = 32
FILE: Final = Path("secrets") / "install.key"


def install_secret(data: Path) -> bytes:
    """The secret of the installation whose data directory is ``data`` (created when missing;
    two processes creating it at once agree on the first one written)."""
    path = data / FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails when another process got there first: theirs wins
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    value = path.read_bytes()
    if len(value) != SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(value)} bytes, not {SECRET_BYTES}: restore it from a backup, "
            "or delete it to start a new secret (earlier hashes will no longer match)"
        )
    return value


def keyed_hash(secret: bytes, value: str) -> str:
    """HMAC-SHA-256 of ``value`` under ``secret``, as 64 hex digits."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()
