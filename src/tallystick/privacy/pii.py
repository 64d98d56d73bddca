"""Personal data in event values: detectors and what to do with what they find (pure: no I/O).

Four detectors (``DETECTORS``), each a regular expression for candidates and a check that
weeds out look-alikes:

- ``email``: ``local@domain.tld`` (Unicode letters allowed; a top-level domain of 2+ letters).
- ``phone``: international numbers (``+`` then 9-15 digits, spaces, dots, dashes and one
  parenthesised area code allowed); North American ``555-123-4567``, ``(555) 123-4567``,
  ``555.123.4567``; national numbers with a trunk zero ``030 1234567``, ``06 12 34 56 78``,
  ``0171-1234567`` (9-12 digits, or up to 15 after ``00``), separators consistent. Bare digit
  runs (ids, epoch timestamps), dates, times, versions and decimals are not phone numbers.
- ``ip``: IPv4 dotted quads (not part of a longer dotted run such as a version ``1.2.3.4.5``)
  and IPv6 addresses (eight groups, or compressed with ``::``; at least one digit; must parse).
- ``card``: 13-19 digits starting with 2-6 (the card networks' ranges), spaces or dashes
  allowed in consistent groups of 3-6, Luhn-valid.

Actions (``ACTIONS``): ``redact`` replaces a finding with ``[email]``, ``[phone]``, ``[ip]`` or
``[card]``; ``hash`` with ``[email:<16 hex>]``, an HMAC-SHA-256 of the normalised finding under
a secret (the same address always gives the same token, so distinct counts still work, and
without the secret no dictionary of addresses can be hashed to find it); ``reject`` refuses the
event (the caller's job: ``find`` says what was found); ``off`` leaves everything as sent.

Where they run (``scrub_event``): every string of ``data`` (and list items; numbers of 13+
digits for ``card``), and the URL fields ``page.url`` and ``page.referrer``: their query strings
and fragments (percent-decoded first) with every detector, their paths for emails, and any
``user:password@`` before the host is removed. ``data`` keys are not scanned: the schema limits
them to ``snake_case`` (no ``@``, no dots). See docs/privacy.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, unquote_plus

DETECTORS: Final = ("email", "phone", "ip", "card")
ACTIONS: Final = ("redact", "hash", "reject", "off")
URL_FIELDS: Final = ("url", "referrer")
"""The fields of ``page`` that hold URLs."""
HASH_HEX: Final = 16
_PASSES: Final = 4

_EMAIL: Final = r"(?<![\w.%+'-])[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}"
_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4: Final = rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)"
_IPV6: Final = (
    r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    rf"(?:(?<=:){_OCTET}(?:\.{_OCTET}){{3}})?(?![\w:]|\.\d)"
)
_BEFORE: Final = r"(?<![\w.\-+/])"
_AFTER: Final = r"(?![\w]|[.\-/]\d)"
# possessive quantifiers (``++``, ``*+``): digit groups are never split again, so a candidate
# that fails costs one pass, not a search over every way of cutting it
_PHONE_INTL: Final = r"(?<![\w+])\+\d++(?:[ .\-]?\(\d{1,5}\))?+(?:[ .\-]\d++)*+" + _AFTER
_PHONE_NANP: Final = _BEFORE + r"(?:\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}([ .\-])\d{3}\1\d{4})" + _AFTER
_PHONE_TRUNK: Final = _BEFORE + r"0\d{1,4}+([ .\-/])\d{2,8}+(?:\2\d{2,8}+){0,4}+" + _AFTER
_CARD: Final = r"(?<![\w.\-+])[2-6]\d(?:[ \-]?\d){11,17}" + _AFTER

_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    "email": re.compile(_EMAIL),
    "phone": re.compile(f"{_PHONE_INTL}|{_PHONE_NANP}|{_PHONE_TRUNK}"),
    "ip": re.compile(f"{_IPV4}|{_IPV6}"),
    "card": re.compile(_CARD),
}
_IP_PATTERNS: Final = {
    (True, True): _PATTERNS["ip"],
    (True, False): re.compile(_IPV4),
    (False, True): re.compile(_IPV6),
}
"""The address patterns worth running, by (digits seen, IPv6-like colons seen)."""


_NUMBERS: Final = re.compile(r"\d[\d .()/+\-]{5,}\d|\d\.\d{1,3}\.\d{1,3}\.\d")
"""Where a phone, card or IPv4 address may be: 7+ digits and separators, or a dotted quad."""


_HEX_COLONS: Final = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]")
"""Three colons in a run of hex groups: an IPv6 address written out (``h:h:h:h:h:h:h:h``)."""


def _gates(text: str) -> tuple[bool, bool, bool]:
    """(an ``@``, digits that may be a number or address, an IPv6-like colon run): C-speed
    checks that spare the detectors' patterns almost every text."""
    return (
        "@" in text,
        _NUMBERS.search(text) is not None,
        "::" in text or (":" in text and _HEX_COLONS.search(text) is not None),
    )


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data in a text: its kind, where it is, and the text itself."""

    kind: str
    start: int
    end: int
    value: str


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _phone_ok(text: str) -> bool:
    n = len(_digits(text))
    if text.startswith("+"):
        return 9 <= n <= 15 and text.count("(") <= 1
    if text.startswith("00"):
        return 11 <= n <= 15
    if text.startswith("0"):
        return 9 <= n <= 12
    return n == 10  # North American


def _issuer_ok(digits: str) -> bool:
    """Whether a number starts like a card of the big networks: Mastercard 2221-2720 and
    51-55, Amex 34/37, Diners 30/36/38/39, JCB 35, Visa 4, Maestro 50/56-58, Discover,
    UnionPay and others 6 (so compact dates such as 20261122183639 are not cards)."""
    first = digits[0]
    if first == "2":
        return 2221 <= int(digits[:4]) <= 2720 and len(digits) == 16
    if first == "3":
        return digits[1] in "0456789"
    return first in "456"


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    if not 13 <= len(digits) <= 19 or not _issuer_ok(digits):
        return False
    separators = {c for c in text if not c.isdigit()}
    if len(separators) > 1:
        return False
    if separators:
        groups = re.split(r"[ \-]", text)
        if any(not 3 <= len(g) <= 6 for g in groups):
            return False
    return _luhn(digits)


def _ip_ok(text: str) -> bool:
    if ":" not in text:
        return True  # the IPv4 pattern only matches valid quads
    if "::" not in text and text.count(":") != 7:
        return False
    if not any(c.isdigit() for c in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


_CHECKS: Final[dict[str, Callable[[str], bool]]] = {
    "email": lambda _text: True,
    "phone": _phone_ok,
    "ip": _ip_ok,
    "card": _card_ok,
}


def maybe(text: str) -> bool:
    """Whether ``text`` may hold personal data (a ``False`` is final; a ``True`` needs
    ``find``)."""
    at, numbers, colons = _gates(text)
    return at or numbers or colons


def find(text: str, detect: Collection[str] = DETECTORS) -> list[Finding]:
    """The personal data in ``text`` found by the detectors in ``detect``, in order, without
    overlaps (where two overlap, the one starting first wins; then the longer)."""
    found: list[Finding] = []
    at, numbers, colons = _gates(text)
    runs = {"email": at, "phone": numbers, "ip": numbers or colons, "card": numbers}
    for kind in DETECTORS:
        if kind not in detect or not runs[kind]:
            continue
        check = _CHECKS[kind]
        pattern = _IP_PATTERNS[numbers, colons] if kind == "ip" else _PATTERNS[kind]
        for m in pattern.finditer(text):
            if check(m.group()):
                found.append(Finding(kind, m.start(), m.end(), m.group()))
    if len(found) < 2:
        return found
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    kept: list[Finding] = []
    for f in found:
        if not kept or f.start >= kept[-1].end:
            kept.append(f)
    return kept


def normalised(finding: Finding) -> str:
    """The form a finding is hashed in: the same address or number written differently gives
    the same token."""
    if finding.kind == "email":
        return finding.value.lower()
    if finding.kind == "ip":
        return str(ipaddress.ip_address(finding.value))
    if finding.kind == "phone":
        return ("+" if finding.value.startswith("+") else "") + _digits(finding.value)
    return _digits(finding.value)


@dataclass(frozen=True, slots=True)
class Replacer:
    """How findings are written over: ``[kind]`` (redact) or ``[kind:hash]`` (hash)."""

    action: str = "redact"
    secret: bytes | None = None

    def __post_init__(self) -> None:
        if self.action not in ("redact", "hash"):
            raise ValueError(f"a replacer redacts or hashes, not {self.action!r}")
        if self.action == "hash" and not self.secret:
            raise ValueError("hashing personal data needs a secret")

    def __call__(self, finding: Finding) -> str:
        if self.action == "redact" or self.secret is None:
            return f"[{finding.kind}]"
        digest = hmac.digest(self.secret, normalised(finding).encode(), hashlib.sha256)
        return f"[{finding.kind}:{digest.hex()[:HASH_HEX]}]"


REDACT: Final = Replacer()


def replace(
    text: str, findings: Iterable[Finding], replacer: Callable[[Finding], str] = REDACT
) -> str:
    """``text`` with each finding (from ``find(text)``) written over by ``replacer``."""
    out: list[str] = []
    at = 0
    for f in findings:
        out.append(text[at : f.start])
        out.append(replacer(f))
        at = f.end
    out.append(text[at:])
    return "".join(out)


def scrub_text(
    text: str, detect: Collection[str] = DETECTORS, replacer: Replacer = REDACT
) -> tuple[str, set[str]]:
    """``text`` with its personal data replaced, and the kinds found."""
    kinds: set[str] = set()
    for _ in range(_PASSES):  # a replacement may bring two fragments together: look again
        found = find(text, detect)  # its gates make a clean text cheap
        if not found:
            break
        kinds.update(f.kind for f in found)
        text = replace(text, found, replacer)
    return text, kinds


# -- URLs ---------------------------------------------------------------------------------------


def _url_parts(url: str) -> tuple[str, str, str, str, str]:
    """(scheme and ``//``, authority, path, ``?query`` body, ``#fragment`` body) of a URL; the
    query and fragment are ``""`` when absent, with their marks kept in a flag of their own."""
    rest, hash_mark, fragment = url.partition("#")
    rest, query_mark, query = rest.partition("?")
    head = ""
    authority = ""
    path = rest
    scheme_end = rest.find("://")
    if scheme_end != -1 and "/" not in rest[:scheme_end]:
        head = rest[: scheme_end + 3]
        after = rest[scheme_end + 3 :]
        slash = after.find("/")
        authority, path = (after, "") if slash == -1 else (after[:slash], after[slash:])
    return head, authority, path, query_mark + query, hash_mark + fragment


def url_text(url: str) -> str:
    """What ``maybe`` looks at in a URL or any text: the text and its percent-decoded form."""
    if "%" in url or "+" in url:
        return url + "\x00" + unquote_plus(url)
    return url


def _scrub_component(
    raw: str, detect: Collection[str], replacer: Replacer, plus: bool, found: set[str]
) -> str:
    if "%" not in raw and not (plus and "+" in raw):
        decoded = raw
    else:
        decoded = unquote_plus(raw) if plus else unquote(raw)
    findings = find(decoded, detect)
    if not findings:
        return raw
    found.update(f.kind for f in findings)
    clean = replace(decoded, findings, replacer)
    safe = "[]:/"
    return quote_plus(clean, safe=safe) if plus else quote(clean, safe=safe + "@=&?")


def scrub_url(
    url: str, detect: Collection[str] = DETECTORS, replacer: Replacer = REDACT
) -> tuple[str, set[str]]:
    """``url`` with personal data replaced in its query string and fragment (every detector),
    its path (emails) and without any ``user:password@``; and the kinds found."""
    found: set[str] = set()
    head, authority, path, query, fragment = _url_parts(url)
    if "@" in authority:
        authority = authority.rpartition("@")[2]
        found.add("email")
    if path and "email" in detect and ("@" in path or "%" in path):
        path = _scrub_component(path, ("email",), replacer, False, found)
    if len(query) > 1 and maybe(url_text(query)):
        items = query[1:].split("&")
        for i, item in enumerate(items):
            key, eq, value = item.partition("=")
            key = _scrub_component(key, detect, replacer, True, found)
            if eq:
                value = _scrub_component(value, detect, replacer, True, found)
            items[i] = key + eq + value
        query = "?" + "&".join(items)
    if len(fragment) > 1 and maybe(url_text(fragment)):
        fragment = "#" + _scrub_component(fragment[1:], detect, replacer, False, found)
    if not found:
        return url, found
    return head + authority + path + query + fragment, found


# -- events -------------------------------------------------------------------------------------


def _value_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if type(value) is int and (value >= 10**12 or value <= -(10**12)):
        return str(value)
    return None


_LONG: Final = 10**12


def request_text(events: Iterable[Any]) -> str:
    """What ``maybe`` looks at for a whole request (``schema.Event`` objects): every ``data``
    string, long integer and page URL, and their percent-decoded form when it differs. Plain
    attribute access and exact type checks: this runs for every request."""
    parts: list[str] = []
    add = parts.append
    for event in events:
        data = event.data
        if data:
            for value in data.values():
                kind = type(value)
                if kind is str:
                    add(value)
                elif kind is list:
                    for item in value:
                        if type(item) is str:
                            add(item)
                        elif type(item) is int and (item >= _LONG or item <= -_LONG):
                            add(str(item))
                elif kind is int and (value >= _LONG or value <= -_LONG):
                    add(str(value))
        page = event.page
        if page is not None:
            if page.url:
                add(page.url)
            if page.referrer:
                add(page.referrer)
    text = "\x00".join(parts)
    if "%" in text or "+" in text:
        text += "\x00" + unquote_plus(text)
    return text


def _scrub_value(value: Any, detect: Collection[str], replacer: Replacer, found: set[str]) -> Any:
    if isinstance(value, list):
        return [_scrub_value(v, detect, replacer, found) for v in value]
    text = _value_text(value)
    if text is None:
        return value
    if not isinstance(value, str):  # a long integer: only a card number can hide in it
        if "card" in detect and _card_ok(text):
            found.add("card")
            return replacer(Finding("card", 0, len(text), text))
        return value
    return _scrub_string(text, detect, replacer, found)


def _scrub_string(text: str, detect: Collection[str], replacer: Replacer, found: set[str]) -> str:
    """A free text, and what it says once percent-decoded (a URL in a ``data`` value)."""
    clean, kinds = scrub_text(text, detect, replacer)
    found.update(kinds)
    if "%" in clean:
        decoded = unquote_plus(clean)
        if decoded != clean:
            again, kinds = scrub_text(decoded, detect, replacer)
            if kinds:
                found.update(kinds)
                return again
    return clean


def scrub_event(
    event: Mapping[str, Any], detect: Collection[str] = DETECTORS, replacer: Replacer = REDACT
) -> tuple[dict[str, Any] | None, set[str]]:
    """A copy of ``event`` (its JSON as a mapping) with the personal data of its ``data`` values
    and page URLs replaced, and the kinds found; ``None`` when nothing was found (``event`` is
    never changed: its nested mappings may be shared with other copies)."""
    found: set[str] = set()
    data = event.get("data")
    new_data: dict[str, Any] | None = None
    if isinstance(data, dict) and data:
        before = len(found)
        cleaned = {k: _scrub_value(v, detect, replacer, found) for k, v in data.items()}
        if len(found) > before or any(cleaned[k] is not data[k] for k in data):
            new_data = cleaned
    page = event.get("page")
    new_page: dict[str, Any] | None = None
    if isinstance(page, dict):
        for name in URL_FIELDS:
            url = page.get(name)
            if isinstance(url, str):
                clean, kinds = scrub_url(url, detect, replacer)
                if kinds:
                    found.update(kinds)
                    if new_page is None:
                        new_page = dict(page)
                    new_page[name] = clean
    if new_data is None and new_page is None:
        return None, found
    copy = dict(event)
    if new_data is not None:
        copy["data"] = new_data
    if new_page is not None:
        copy["page"] = new_page
    return copy, found


def scrub_json(value: Any, detect: Collection[str] = DETECTORS, replacer: Replacer = REDACT) -> Any:
    """Any JSON value with personal data replaced in every string, keys included (for records
    of refused events, where nothing can be assumed about where it is)."""
    if isinstance(value, str):
        return _scrub_string(value, detect, replacer, set())
    if isinstance(value, list):
        return [scrub_json(v, detect, replacer) for v in value]
    if isinstance(value, dict):
        return {
            _scrub_string(k, detect, replacer, set()): scrub_json(v, detect, replacer)
            for k, v in value.items()
        }
    if type(value) is int and "card" in detect:
        text = str(abs(value))
        if len(text) >= 13 and _card_ok(text):
            return replacer(Finding("card", 0, len(text), text))
    return value
