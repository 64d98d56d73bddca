from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tallystick.privacy.secrets import FILE, install_secret, keyed_hash


def test_the_secret_is_created_once_private_and_kept(tmp_path: Path) -> None:
    first = install_secret(tmp_path)
    assert len(first) == 32
    assert install_secret(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / FILE).stat().st_mode)
    assert mode == 0o600
    assert install_secret(tmp_path / "other") != first


def test_a_damaged_secret_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / FILE).parent.mkdir(parents=True)
    (tmp_path / FILE).write_bytes(b"short")
    with pytest.raises(ValueError, match="restore it from a backup"):
        install_secret(tmp_path)


def test_keyed_hash_is_hmac_sha256() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k" * 32, b"a@b.c", hashlib.sha256).hexdigest()
    assert keyed_hash(b"k" * 32, "a@b.c") == expected
    assert keyed_hash(b"k" * 32, "x") != keyed_hash(b"j" * 32, "x")
