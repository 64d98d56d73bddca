"""The PII detectors and actions (privacy.pii): examples, look-alikes, and properties."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tallystick.privacy.pii import (
    Replacer,
    find,
    maybe,
    scrub_event,
    scrub_json,
    scrub_text,
    scrub_url,
)

FOUND = [
    ("bob@example.com", "email"),
    ("jörg.müller+tag@sub.example.de", "email"),
    ("O'Brien@example.ie", "email"),
    ("+1 555 123 4567", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("+49 (30) 1234567", "phone"),
    ("+15551234567", "phone"),
    ("555-123-4567", "phone"),
    ("(555) 123-4567", "phone"),
    ("555.123.4567", "phone"),
    ("030 1234567", "phone"),
    ("030/1234567", "phone"),
    ("06 12 34 56 78", "phone"),
    ("0171-1234567", "phone"),
    ("07700 900123", "phone"),
    ("0049 30 1234567", "phone"),
    ("192.168.1.20", "ip"),
    ("203.0.113.45", "ip"),
    ("2001:db8::1", "ip"),
    ("fe80::1ff:fe23:4567:890a", "ip"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip"),
    ("::ffff:192.0.2.1", "ip"),
    ("4111 1111 1111 1111", "card"),
    ("4111-1111-1111-1111", "card"),
    ("4111111111111111", "card"),
    ("5555555555554444", "card"),
    ("378282246310005", "card"),
    ("3782 822463 10005", "card"),
    ("6011111111111117", "card"),
]

NOT_FOUND = [
    "2026-11-22T18:36:39.123Z",
    "2026-11-22T18:36:39+01:00",
    "2026-11-22 18:36:39",
    "20261122183639",
    "18:36:39",
    "1.2.3",
    "v1.2.3.4",
    "1.2.3.4.5",
    "3.14159265358979",
    "price 1234.56",
    "1700000000",
    "1700000000123456",
    "1234567890",
    "order 12345678",
    "0b7e3f7c-5a9d-4c1e-9e0f-3a1b2c3d4e5f",
    "123e4567-e89b-12d3-a456-426614174000",
    "01.02.2026",
    "01/02/2026 12:30",
    "00:1a:2b:3c:4d:5e",
    "std::vector",
    "ab::cd",
    "4111111111111112",
    "1,234,567,890",
    "555-1234",
    "user@localhost",
    "s~0123456789abcdef",
]


@pytest.mark.parametrize(("text", "kind"), FOUND)
def test_each_detector_finds_its_kind(text: str, kind: str) -> None:
    (found,) = find(f"see {text}, thanks")
    assert (found.kind, found.value) == (kind, text)


@pytest.mark.parametrize("text", NOT_FOUND)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert find(text) == []


def test_only_the_chosen_detectors_run() -> None:
    text = "bob@example.com 203.0.113.45"
    assert [f.kind for f in find(text, ("ip",))] == ["ip"]
    assert scrub_text(text, ("email",))[0] == "[email] 203.0.113.45"


def test_hashing_gives_the_same_token_for_the_same_address_written_differently() -> None:
    hashing = Replacer("hash", b"s" * 32)
    one, _ = scrub_text("Bob@Example.com", replacer=hashing)
    two, _ = scrub_text("bob@example.com", replacer=hashing)
    other, _ = scrub_text("bob@example.com", replacer=Replacer("hash", b"t" * 32))
    assert one == two != other
    assert one.startswith("[email:")
    assert len(one) == len("[email:]") + 16
    with pytest.raises(ValueError, match="secret"):
        Replacer("hash")


def test_urls_are_cleaned_in_their_query_fragment_and_path() -> None:
    url = (
        "https://u:pw@app.example.org/users/bob%40example.com/x?email=bob%40example.com"
        "&ip=203.0.113.9&q=hello+world&tel=%2B1+555+123+4567#c=555-123-4567"
    )
    clean, kinds = scrub_url(url)
    assert clean == (
        "https://app.example.org/users/[email]/x?email=[email]&ip=[ip]&q=hello+world"
        "&tel=[phone]#c=[phone]"
    )
    assert kinds == {"email", "ip", "phone"}
    plain = "https://app.example.org/projects/42?tab=files&v=4.2.1"
    assert scrub_url(plain) == (plain, set())


def test_events_are_copied_never_changed() -> None:
    event = {
        "name": "x",
        "data": {"a": "bob@x.com", "n": 1, "l": ["x", "10.0.0.1"], "card": 4111111111111111},
        "page": {"url": "https://x.org/?e=a%40b.co", "referrer": "https://example.org/"},
    }
    copy, kinds = scrub_event(event)
    assert copy == {
        "name": "x",
        "data": {"a": "[email]", "n": 1, "l": ["x", "[ip]"], "card": "[card]"},
        "page": {"url": "https://x.org/?e=[email]", "referrer": "https://example.org/"},
    }
    assert kinds == {"email", "ip", "card"}
    assert event["data"]["a"] == "bob@x.com"  # type: ignore[index]
    assert scrub_event({"name": "x", "data": {"n": 1, "s": "fine"}}) == (None, set())


def test_refused_records_are_cleaned_everywhere_keys_included() -> None:
    value = {"bob@example.com": ["203.0.113.1", {"u": "https://x.org/?m=bob%40example.com"}]}
    assert scrub_json(value) == {"[email]": ["[ip]", {"u": "https://x.org/?m=[email]"}]}


# -- properties -------------------------------------------------------------------------------

_LOCAL = st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=20).filter(
    lambda s: s[0].isalnum()
)
_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum()
)
_TLD = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6)
emails = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    _LOCAL,
    st.lists(_LABEL, min_size=1, max_size=3),
    _TLD,
)


@st.composite
def phones(draw: st.DrawFn) -> str:
    country = draw(st.integers(1, 999))
    digits = draw(st.text("0123456789", min_size=9 - len(str(country)), max_size=12))
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=3)))
    groups = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    return f"+{country}{sep or ' '}{sep.join(groups)}"


def _luhn_complete(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["4", "51", "52", "53", "54", "55", "6011"]))
    body = prefix + draw(
        st.text("0123456789", min_size=15 - len(prefix), max_size=15 - len(prefix))
    )
    number = _luhn_complete(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


addresses = st.ip_addresses().map(str).filter(lambda s: any(c.isdigit() for c in s))
personal = st.one_of(
    emails.map(lambda v: ("email", v)),
    phones().map(lambda v: ("phone", v)),
    addresses.map(lambda v: ("ip", v)),
    cards().map(lambda v: ("card", v)),
)
words = st.text("abcdefghij klmnop,;!?()", max_size=30)


@settings(max_examples=300)
@given(personal, words, words)
@example(("ip", "::ffff:1.2.3.4"), "", "")
def test_personal_data_in_text_is_found(found: tuple[str, str], before: str, after: str) -> None:
    kind, value = found
    text = f"{before} {value} {after}"
    assert maybe(text)
    assert (kind, value) in [(f.kind, f.value) for f in find(text)]
    clean, kinds = scrub_text(text)
    assert kind in kinds
    assert value not in clean


@settings(max_examples=300)
@given(personal, st.sampled_from(["q", "email", "x"]))
def test_personal_data_in_a_query_string_is_found_encoded_or_not(
    found: tuple[str, str], key: str
) -> None:
    _kind, value = found
    for url in (
        f"https://a.example/p?{key}={quote_plus(value)}&z=1",
        f"https://a.example/#{value}",
    ):
        clean, kinds = scrub_url(url)
        assert kinds
        assert value not in unquote_plus(clean)


@settings(max_examples=500)
@given(st.text(max_size=200))
@example("a@b.cd@e.fg 1.2.3.4.5 +1 555 123 4567")
def test_after_redaction_no_detector_matches(text: str) -> None:
    clean, _ = scrub_text(text)
    assert find(clean) == []


@settings(max_examples=300)
@given(st.lists(personal.map(lambda f: f[1]) | words, max_size=6))
def test_after_redaction_of_mixed_text_no_detector_matches(parts: list[str]) -> None:
    clean, _ = scrub_text(" ".join(parts))
    assert find(clean) == []


@given(
    st.one_of(
        st.datetimes(timezones=st.just(dt.UTC)).map(dt.datetime.isoformat),
        st.uuids().map(str),
        st.builds(uuid.uuid4).map(lambda u: u.hex),
        st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 999)).map(
            lambda t: ".".join(map(str, t))
        ),
        st.integers(-(10**12) + 1, 10**12 - 1).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.times().map(str),
        st.dates().map(str),
    )
)
def test_timestamps_ids_versions_and_numbers_are_not_personal(text: str) -> None:
    assert find(text) == []
