"""Privacy at ingestion: what the collector removes from each stored copy of an event.

``Guard`` applies, per stream, the stream's ``privacy`` block (``control.definitions.Privacy``)
or else the settings (``pii_action``, ``ip_policy``): the PII detectors and their action on
``data`` values and page URLs (``privacy.pii``), whether the client's network is kept, and the
pseudonymous user ids (``privacy.pseudonym``) of every copy. Records of refused events are
always redacted (unless personal-data handling is off everywhere). See docs/privacy.md.

Speed: an accepted request is first looked at as one text (every ``data`` string and page URL
of its events) with one pass of every detector's candidate pattern; a request with nothing in
it (the common case) is stored as before, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from tallystick import messages
from tallystick.collect.validate import Checked, Rejected
from tallystick.config import ConfigError, Settings
from tallystick.control.controls import Controls
from tallystick.control.definitions import Stream
from tallystick.messages import Problem
from tallystick.privacy import pii, pseudonym
from tallystick.privacy.secrets import install_secret
from tallystick.schema import Event
from tallystick.store.failed import truncate_raw

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode
_MARGIN: Final = 1024
"""Bytes past a failed record's cut that are redacted with it (an address across the cut)."""
_ESCAPED: Final = re.compile(r"\\u00([0-9A-Fa-f]{2})|%([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class Policy:
    """What one stream does with personal data: ``action`` (``pii.ACTIONS``) with the
    detectors ``detect``, and ``ip`` (``truncate``: keep the network; ``drop``)."""

    action: str = "redact"
    detect: tuple[str, ...] = pii.DETECTORS
    ip: str = "truncate"

    @property
    def scrubs(self) -> bool:
        return self.action != "off" and bool(self.detect)


def policy_of(stream: Stream | None, settings: Settings) -> Policy:
    """A stream's policy: its ``privacy`` block, else the settings' defaults."""
    privacy = stream.privacy if stream is not None else None
    if privacy is not None:
        return Policy(privacy.pii, tuple(privacy.detect), privacy.ip)
    return Policy(settings.pii_action, pii.DETECTORS, settings.ip_policy)


def check_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` for privacy settings the collector cannot start with."""
    if settings.pii_action not in pii.ACTIONS:
        raise ConfigError(
            f"pii_action is {settings.pii_action!r}: use one of {', '.join(pii.ACTIONS)}"
        )
    if settings.ip_policy not in ("truncate", "drop"):
        raise ConfigError(f"ip_policy is {settings.ip_policy!r}: use truncate or drop")
    pseudonym.check(settings)


@dataclass(frozen=True, slots=True)
class Refused:
    """An event a stream's ``reject`` policy refuses: the kinds of personal data it holds."""

    stream: str
    kinds: frozenset[str]

    def message(self) -> str:
        kinds = ", ".join(k for k in pii.DETECTORS if k in self.kinds)
        who = f"stream {self.stream!r}" if self.stream else "this installation (pii_action)"
        return (
            f"the event holds personal data ({kinds} in `data` or a page URL) and {who} "
            "refuses events with personal data: remove it from the event (send an id instead) "
            "and send it again."
        )


def refuse(checked: Checked, refused: Mapping[int, Refused]) -> None:
    """Move the accepted events at the positions of ``refused`` to ``checked.rejected``, each
    with a ``personal_data`` problem and its position in the request."""
    taken = {r.index for r in checked.rejected}
    total = len(checked.events) + len(checked.rejected)
    positions = [i for i in range(total) if i not in taken]  # each accepted event's index
    events, raws = [], []
    for at, (event, raw) in enumerate(zip(checked.events, checked.accepted_raws(), strict=True)):
        why = refused.get(at)
        if why is None:
            events.append(event)
            raws.append(raw)
            continue
        problem = Problem(messages.PERSONAL_DATA, why.message())
        checked.rejected.append(Rejected(positions[at], str(event.event_id), problem, bytes(raw)))
    checked.events, checked.raws, checked.payload = events, raws, None
    checked.rejected.sort(key=lambda r: r.index)


class Guard:
    """One collector's privacy rules, for the configuration in force."""

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings
        self.pseudonym_key = pseudonym.current(settings)
        self._replacers: dict[str, pii.Replacer] = {"redact": pii.REDACT}
        self._policies: tuple[Controls | None, dict[str, Policy]] = (None, {})
        self._default = policy_of(None, settings)
        self._pseudonyms: dict[str, str] = {}
        self._scrubs: tuple[Controls | None, bool] = (None, False)

    # -- policies ---------------------------------------------------------------------------

    def policies(self, controls: Controls) -> dict[str, Policy]:
        """Each configured stream's policy (computed once per configuration version)."""
        known, policies = self._policies
        if known is not controls:
            policies = {name: policy_of(s, self.settings) for name, s in controls.streams.items()}
            self._policies = (controls, policies)
        return policies

    def policy(self, controls: Controls, stream: str) -> Policy:
        return self.policies(controls).get(stream, self._default)

    @property
    def default_policy(self) -> Policy:
        """The settings' policy: streams without a ``privacy`` block, imported events."""
        return self._default

    def scrubs_anything(self, controls: Controls | None) -> bool:
        """Whether any policy in force looks for personal data."""
        if self._default.scrubs:
            return True
        if controls is None:
            return False
        known, answer = self._scrubs
        if known is not controls:
            answer = any(p.scrubs for p in self.policies(controls).values())
            self._scrubs = (controls, answer)
        return answer

    def replacer(self, action: str) -> pii.Replacer:
        found = self._replacers.get(action)
        if found is None:
            found = pii.Replacer(action, install_secret(self.settings.data))
            self._replacers[action] = found
        return found

    # -- accepted events --------------------------------------------------------------------

    def suspects(self, events: Sequence[Event], controls: Controls) -> frozenset[int]:
        """Positions of the events that may hold personal data: none, after one pass over the
        request's text, when nothing can be there (or no policy looks), else all of them."""
        if not events or not self.scrubs_anything(controls):
            return frozenset()
        if not pii.maybe(pii.request_text(events)):
            return frozenset()
        # one event may hold something: each copy is searched (``clean``), field by field
        return frozenset(range(len(events)))

    def changes(self) -> bool:
        """Whether every copy changes (pseudonymous user ids)."""
        return self.pseudonym_key is not None

    def clean(
        self, event: Mapping[str, Any], policy: Policy, stream: str, suspect: bool
    ) -> dict[str, Any] | Refused | None:
        """One stream's copy of ``event`` (its JSON as a mapping): with personal data replaced
        and the user id pseudonymous, ``Refused`` when the stream rejects it, ``None`` when the
        copy is stored as it is."""
        out: dict[str, Any] | None = None
        if suspect and policy.scrubs:
            if policy.action == "reject":
                _, kinds = pii.scrub_event(event, policy.detect)
                if kinds:
                    return Refused(stream, frozenset(kinds))
            else:
                out, _ = pii.scrub_event(event, policy.detect, self.replacer(policy.action))
        if self.pseudonym_key is not None:
            source = out if out is not None else event
            user = source.get("user")
            if isinstance(user, dict):
                user_id = user.get("id")
                # an id already in a pseudonym's shape (an export imported again) stays as it
                # is: pseudonymizing it twice would hide it from deletion and suppression
                if isinstance(user_id, str) and user_id and not pseudonym.is_pseudonym(user_id):
                    out = dict(source)
                    out["user"] = {**user, "id": self.pseudonymize(user_id)}
        return out

    def pseudonymize(self, user_id: str) -> str:
        assert self.pseudonym_key is not None
        found = self._pseudonyms.get(user_id)
        if found is None:
            found = pseudonym.pseudonymize(user_id, self.pseudonym_key)
            if len(self._pseudonyms) >= 100_000:
                self._pseudonyms.clear()
            self._pseudonyms[user_id] = found
        return found

    # -- refused events ---------------------------------------------------------------------

    def redacts_failed(self, controls: Controls | None) -> bool:
        """Whether records of refused events are redacted: unless handling is off everywhere."""
        return self.scrubs_anything(controls) or self.pseudonym_key is not None

    def failed_text(self, text: str, controls: Controls | None) -> str:
        """A message or id kept with a refused event, redacted."""
        if not self.redacts_failed(controls):
            return text
        return pii.scrub_json(text)  # type: ignore[no-any-return]

    def failed_id(self, event_id: str | None, controls: Controls | None) -> str | None:
        """A refused event's ``event_id`` (anything the client sent there), redacted."""
        return None if event_id is None else self.failed_text(event_id, controls)

    def failed_raw(self, raw: bytes, controls: Controls | None, limit: int) -> tuple[str, bool]:
        """A refused event's (or request's) bytes as the failed-events store keeps them (cut
        to ``limit`` bytes, and whether they were; see ``store.failed.truncate_raw``), with
        personal data redacted before the cut (so that no half address is left)."""
        if len(raw) > limit:
            # what is beyond the cut is never stored: redact a little more than is kept
            return truncate_raw(self._failed_bytes(raw[: limit + _MARGIN], controls), limit)[
                0
            ], True
        return truncate_raw(self._failed_bytes(raw, controls), limit)

    def _failed_bytes(self, raw: bytes, controls: Controls | None) -> bytes:
        """Every string redacted (keys too) and user ids pseudonymous when the JSON can be
        read; else the text redacted, JSON and percent escapes of ``@``, ``.`` and ``:`` read
        first."""
        if not raw or not self.redacts_failed(controls):
            return raw
        text = raw.decode("utf-8", "surrogateescape")
        simple = "\\" not in text and "%" not in text
        if simple and not pii.maybe(text) and (self.pseudonym_key is None or '"id"' not in text):
            return raw
        try:
            value = _decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            value = None
            parsed = False
        else:
            parsed = True
        if parsed:
            cleaned = pii.scrub_json(value)
            if self.pseudonym_key is not None:
                cleaned = self._pseudonymize_json(cleaned)
            return _encode(cleaned)
        readable = _ESCAPED.sub(_unescape, text)
        clean, _ = pii.scrub_text(readable)
        return clean.encode("utf-8", "surrogateescape")

    def _pseudonymize_json(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._pseudonymize_json(v) for v in value]
        if isinstance(value, dict):
            if isinstance(value.get("events"), list):
                return {**value, "events": self._pseudonymize_json(value["events"])}
            user = value.get("user")
            if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"]:
                return {**value, "user": {**user, "id": self.pseudonymize(user["id"])}}
        return value


def _unescape(m: re.Match[str]) -> str:
    code = int(m.group(1) or m.group(2), 16)
    char = chr(code)
    return char if char in "@.:+-" or char.isalnum() else m.group()
