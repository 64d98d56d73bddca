"""Personal data: which fields look personal, and redaction of example values.

Pure functions, no I/O. ``looks_personal`` gives a reason a person can read (or None) from a field's
name and a few example values; ``redact`` masks the personal parts of one value (e-mail and IP
addresses, phone numbers, long digit runs, user ids, secret or personal URL parameters) and keeps
the rest readable, so a catalog can show what a field holds without showing who.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Final

__all__ = ["MASK", "looks_personal", "mask", "name_reason", "redact", "value_reason"]

MASK: Final = "[redacted]"
"""What a fully masked value reads as (examples of fields that look personal)."""

_EMAIL: Final = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
_UUID: Final = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_IPV4: Final = r"(?:\d{1,3}\.){3}\d{1,3}"
_IPV6: Final = r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
_PHONE: Final = (
    r"\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{1,4}){1,4}"
    r"|\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}"
    r"|\d{3}[ .\-]\d{3}[ .\-]\d{4}"
)
_DIGITS: Final = r"\d{9,}"
_ID_PATH: Final = r"(?i:users?|customers?|accounts?|members?|profiles?|people|persons?)/"

# Query parameters whose value is secret or personal: exact names, and parts of names.
_SECRET_PARAMS: Final = frozenset(
    {
        "key",
        "code",
        "sig",
        "pwd",
        "pass",
        "uid",
        "user",
        "userid",
        "user_id",
        "mail",
        "tel",
        "ssn",
        "session",
        "sessionid",
        "session_id",
        "sid",
    }
)
_SECRET_PARAM_PARTS: Final = (
    "token",
    "secret",
    "passw",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "signature",
    "credential",
    "email",
    "e-mail",
    "phone",
)

# One scan, left to right: at any position the earliest alternative wins, so a whole URL
# parameter or a whole UUID is seen before the digits or address inside it.
_REDACT: Final = re.compile(
    rf"(?P<param>[?&;](?P<pname>[A-Za-z0-9_.\-\[\]]+)=)(?P<pvalue>[^&#;\s]*)"
    rf"|(?P<email>{_EMAIL})"
    rf"|(?P<idpath>(?<=/){_ID_PATH})(?P<idvalue>{_UUID}|\d+)(?![0-9A-Za-z\-])"
    rf"|(?<![0-9A-Za-z\-])(?P<uuid>{_UUID})(?![0-9A-Za-z\-])"
    rf"|(?<![0-9A-Za-z.:])(?P<ipv6>{_IPV6})(?![0-9A-Za-z:])"
    rf"|(?<![0-9A-Za-z.])(?<![A-Za-z]/)(?P<ipv4>{_IPV4})(?![0-9A-Za-z]|\.\d)"
    rf"|(?<![0-9A-Za-z+])(?P<phone>{_PHONE})(?![0-9A-Za-z])"
    rf"|(?<![0-9A-Za-z])(?P<digits>{_DIGITS})(?![0-9A-Za-z])"
)

_EMAIL_FULL: Final = re.compile(rf"\s*{_EMAIL}\s*")
_EMAIL_ANY: Final = re.compile(_EMAIL)
_UUID_FULL: Final = re.compile(rf"\s*{_UUID}\s*")
_PHONE_FULL: Final = re.compile(rf"\s*(?:{_PHONE})\s*")
_CARD: Final = re.compile(r"\s*(?:\d[ \-]?){12,18}\d\s*")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or any(part in lowered for part in _SECRET_PARAM_PARTS)


def _tokens(name: str) -> tuple[str, ...]:
    """``data.userEmail`` -> ("data", "user", "email"); ``user.id`` -> ("user", "id")."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return tuple(part for part in re.split(r"[^a-z0-9]+", spaced.lower()) if part)


_ID_OWNERS: Final = {
    "user": "user id",
    "customer": "customer id",
    "account": "account id",
    "member": "member id",
    "person": "person id",
    "anonymous": "anonymous id",
    "device": "device id",
    "visitor": "visitor id",
    "subscriber": "subscriber id",
    "patient": "patient id",
    "employee": "employee id",
}
_ID_WORDS: Final = {
    "userid": "user id",
    "uid": "user id",
    "customerid": "customer id",
    "accountid": "account id",
    "memberid": "member id",
    "anonymousid": "anonymous id",
    "anonid": "anonymous id",
    "deviceid": "device id",
    "visitorid": "visitor id",
    "idfa": "device id",
    "gaid": "device id",
}
# (words that must all appear among the name's tokens, reason)
_NAME_RULES: Final[tuple[tuple[frozenset[str], str], ...]] = (
    (frozenset({"email"}), "name suggests an e-mail address"),
    (frozenset({"e", "mail"}), "name suggests an e-mail address"),
    (frozenset({"mail"}), "name suggests an e-mail address"),
    (frozenset({"phone"}), "name suggests a phone number"),
    (frozenset({"telephone"}), "name suggests a phone number"),
    (frozenset({"mobile", "number"}), "name suggests a phone number"),
    (frozenset({"msisdn"}), "name suggests a phone number"),
    (frozenset({"ip"}), "name suggests an IP address"),
    (frozenset({"ipaddress"}), "name suggests an IP address"),
    (frozenset({"ipv4"}), "name suggests an IP address"),
    (frozenset({"ipv6"}), "name suggests an IP address"),
    (frozenset({"remote", "addr"}), "name suggests an IP address"),
    (frozenset({"first", "name"}), "name suggests a person's name"),
    (frozenset({"last", "name"}), "name suggests a person's name"),
    (frozenset({"full", "name"}), "name suggests a person's name"),
    (frozenset({"given", "name"}), "name suggests a person's name"),
    (frozenset({"family", "name"}), "name suggests a person's name"),
    (frozenset({"display", "name"}), "name suggests a person's name"),
    (frozenset({"user", "name"}), "name suggests a person's name"),
    (frozenset({"firstname"}), "name suggests a person's name"),
    (frozenset({"lastname"}), "name suggests a person's name"),
    (frozenset({"fullname"}), "name suggests a person's name"),
    (frozenset({"surname"}), "name suggests a person's name"),
    (frozenset({"username"}), "name suggests a person's name"),
    (frozenset({"street"}), "name suggests a postal address"),
    (frozenset({"postcode"}), "name suggests a postal address"),
    (frozenset({"zipcode"}), "name suggests a postal address"),
    (frozenset({"zip"}), "name suggests a postal address"),
    (frozenset({"postal"}), "name suggests a postal address"),
    (frozenset({"home", "address"}), "name suggests a postal address"),
    (frozenset({"billing", "address"}), "name suggests a postal address"),
    (frozenset({"shipping", "address"}), "name suggests a postal address"),
    (frozenset({"birthday"}), "name suggests a date of birth"),
    (frozenset({"birthdate"}), "name suggests a date of birth"),
    (frozenset({"birth"}), "name suggests a date of birth"),
    (frozenset({"dob"}), "name suggests a date of birth"),
    (frozenset({"ssn"}), "name suggests a government identifier"),
    (frozenset({"passport"}), "name suggests a government identifier"),
    (frozenset({"national", "id"}), "name suggests a government identifier"),
    (frozenset({"tax", "id"}), "name suggests a government identifier"),
    (frozenset({"iban"}), "name suggests a financial identifier"),
    (frozenset({"card", "number"}), "name suggests a financial identifier"),
    (frozenset({"credit", "card"}), "name suggests a financial identifier"),
    (frozenset({"password"}), "name suggests a secret"),
    (frozenset({"passwd"}), "name suggests a secret"),
    (frozenset({"secret"}), "name suggests a secret"),
    (frozenset({"token"}), "name suggests a secret"),
    (frozenset({"api", "key"}), "name suggests a secret"),
    (frozenset({"apikey"}), "name suggests a secret"),
    (frozenset({"latitude"}), "name suggests a precise location"),
    (frozenset({"longitude"}), "name suggests a precise location"),
    (frozenset({"lat", "lon"}), "name suggests a precise location"),
    (frozenset({"geolocation"}), "name suggests a precise location"),
)


def _identifier(tokens: tuple[str, ...]) -> str | None:
    """The kind of personal identifier a name's tokens spell (``user.id`` -> "user id")."""
    for token in tokens:
        if token in _ID_WORDS:
            return _ID_WORDS[token]
    for owner, following in pairwise(tokens):
        if owner in _ID_OWNERS and following in {"id", "ids", "uuid", "key", "number", "no"}:
            return _ID_OWNERS[owner]
    return None


def name_reason(name: str) -> str | None:
    """Why a field's name alone suggests personal data, or None."""
    tokens = _tokens(name)
    identifier = _identifier(tokens)
    if identifier is not None:
        return f"name suggests a personal identifier ({identifier})"
    present = set(tokens)
    for words, reason in _NAME_RULES:
        if words <= present:
            return reason
    return None


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(value: str) -> bool:
    if not _CARD.fullmatch(value):
        return False
    digits = re.sub(r"\D", "", value)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _personal_params(value: str) -> list[str]:
    return [
        match["pname"]
        for match in _REDACT.finditer(value)
        if match["param"] and match["pvalue"] and _is_secret_param(match["pname"])
    ]


# (test on one stripped example, reason when most examples pass it)
_VALUE_RULES: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (lambda text: _EMAIL_FULL.fullmatch(text) is not None, "values look like e-mail addresses"),
    (lambda text: _is_ip(text.strip()), "values look like IP addresses"),
    (_is_card, "values look like payment card numbers"),
    (lambda text: _PHONE_FULL.fullmatch(text) is not None, "values look like phone numbers"),
)


def value_reason(examples: Sequence[str]) -> str | None:
    """Why a field's example values suggest personal data, or None.

    A kind wins when at least half of the non-empty examples are wholly of it (e-mail, IP, payment
    card, phone); otherwise any e-mail address or secret/personal URL parameter inside any example
    is reason enough, since one such value is already personal data kept in the lake.
    """
    values = [text for text in (str(example) for example in examples) if text.strip()]
    if not values:
        return None
    for test, reason in _VALUE_RULES:
        if 2 * sum(1 for text in values if test(text)) >= len(values):
            return reason
    if any(_EMAIL_ANY.search(text) for text in values):
        return "values contain e-mail addresses"
    params = sorted({name for text in values for name in _personal_params(text)})
    if params:
        listed = ", ".join(f"{name}=" for name in params)
        return f"values carry secret or personal URL parameters ({listed})"
    return None


def looks_personal(name: str, examples: Sequence[str]) -> str | None:
    """A reason the field ``name`` looks like it holds personal data, or None.

    Example values are stronger evidence than a name, so they are checked first: ``data.note``
    holding e-mail addresses says "values look like e-mail addresses"; ``user.id`` says "name
    suggests a personal identifier (user id)" whatever its values.
    """
    return value_reason(examples) or name_reason(name)


def mask(value: str) -> str:
    """A fully masked value (for fields that look personal): nothing of it is shown."""
    return MASK if value else value


def _replace(match: re.Match[str], id_field: bool) -> str:
    if match["param"] is not None:
        if match["pvalue"] and _is_secret_param(match["pname"]):
            return f"{match['param']}{MASK}"
        inner = _REDACT.sub(lambda found: _replace(found, id_field), match["pvalue"])
        return f"{match['param']}{inner}"
    if match["email"] is not None:
        return "[email]"
    if match["idvalue"] is not None:
        return f"{match['idpath']}[id]"
    if match["uuid"] is not None:
        return "[id]" if id_field else match["uuid"]
    if match["ipv6"] is not None:
        text = match["ipv6"]
        hexdigit = any(char not in ":" for char in text)
        return "[ip]" if hexdigit and _is_ip(text) else text
    if match["ipv4"] is not None:
        text = match["ipv4"]
        return "[ip]" if _is_ip(text) else text
    if match["phone"] is not None:
        return "[phone]"
    return "[number]"


def redact(value: str, *, field: str | None = None) -> str:
    """``value`` with its personal parts masked, the rest kept readable.

    Masks e-mail addresses (``[email]``), IPv4 and IPv6 addresses (``[ip]``), phone numbers
    (``[phone]``), runs of 9 or more digits (``[number]``), ids after ``/users/``-like path parts
    (``[id]``), and the values of secret or personal URL parameters (``token=[redacted]``,
    ``email=[redacted]``...). A UUID is masked (``[id]``) when ``field`` names a personal
    identifier (``user.id``, ``data.customer_id``); elsewhere a UUID is an event or object id and
    is kept.
    """
    id_field = field is not None and name_reason(field) is not None
    if id_field and _UUID_FULL.fullmatch(value):
        return "[id]"
    return _REDACT.sub(lambda match: _replace(match, id_field), value)
