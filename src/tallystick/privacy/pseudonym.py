"""Pseudonymous user ids: ``user.id`` replaced by a keyed HMAC of it before anything is stored.

With ``pseudonymize_user_ids`` on, the collector stores ``pseudonymize(user.id, pseudonym_key)``
instead of the id the client sent: the same user always gets the same pseudonym (so per-user
analyses, sessions and experiments work unchanged), and nobody without the key can tell which
user it is or test a guess. The pseudonym is ``PREFIX`` followed by ``DIGEST_HEX`` hex digits of
HMAC-SHA-256, so it is recognisable and always ``LENGTH`` characters long.

Rotation: setting a new ``pseudonym_key`` gives every user a new pseudonym from then on; events
stored earlier keep the old one, so analyses see a user as two users across the rotation. Keep
the old keys in ``pseudonym_previous_keys`` (comma-separated) so that deleting a user finds the
events stored under each of them (``stored_user_ids``). See docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from tallystick.config import ConfigError, Settings

PREFIX: Final = "psn_"
DIGEST_HEX: Final = 40
LENGTH: Final = len(PREFIX) + DIGEST_HEX


def pseudonymize(user_id: str, key: str) -> str:
    """The pseudonym of ``user_id`` under ``key``: ``psn_`` and 40 hex digits of HMAC-SHA-256."""
    if not key:
        raise ValueError("a pseudonym needs a non-empty key")
    digest = hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGEST_HEX]


def is_pseudonym(value: str) -> bool:
    """Whether ``value`` has the shape of a pseudonym (not whether it is one under some key)."""
    if len(value) != LENGTH or not value.startswith(PREFIX):
        return False
    return all(c in "0123456789abcdef" for c in value[len(PREFIX) :])


def previous_keys(settings: Settings) -> list[str]:
    """The earlier pseudonym keys, in the order configured (blank entries ignored)."""
    raw = settings.pseudonym_previous_keys or ""
    return [k.strip() for k in raw.split(",") if k.strip()]


def check(settings: Settings) -> None:
    """Refuse settings that ask for pseudonymous ids without the key to make them."""
    if settings.pseudonymize_user_ids and not (settings.pseudonym_key or "").strip():
        raise ConfigError(
            "pseudonymize_user_ids is on but pseudonym_key is not set: set "
            "TALLYSTICK_PSEUDONYM_KEY to a long random secret (e.g. `openssl rand -hex 32`), "
            "or turn pseudonymize_user_ids off"
        )


def current(settings: Settings) -> str | None:
    """The key new pseudonyms are made with, or ``None`` when user ids are stored as sent."""
    if not settings.pseudonymize_user_ids:
        return None
    check(settings)
    return (settings.pseudonym_key or "").strip()


def stored_user_ids(user_id: str, settings: Settings) -> list[str]:
    """Every form ``user_id`` may be stored under: the id itself, then its pseudonym under
    ``pseudonym_key`` and under each of ``pseudonym_previous_keys``.

    Pseudonyms are listed whenever the keys are configured, even with ``pseudonymize_user_ids``
    now off: events stored while it was on still carry them. No duplicates; the raw id first.
    """
    forms = [user_id]
    keys = [(settings.pseudonym_key or "").strip(), *previous_keys(settings)]
    for key in keys:
        if key:
            form = pseudonymize(user_id, key)
            if form not in forms:
                forms.append(form)
    return forms
