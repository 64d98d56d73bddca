"""Personal data: which fields look personal (with the reason) and what redaction masks."""

from __future__ import annotations

import pytest

from tallystick.catalog.personal import MASK, looks_personal, mask, name_reason, redact

UUID = "3f2a1b4c-1111-2222-3333-444455556666"


@pytest.mark.parametrize(
    ("name", "examples", "reason"),
    [
        # names alone
        ("user.id", [], "name suggests a personal identifier (user id)"),
        ("user.anonymous_id", ["a-1"], "name suggests a personal identifier (anonymous id)"),
        ("data.customer_id", ["c-42"], "name suggests a personal identifier (customer id)"),
        ("data.userId", ["7"], "name suggests a personal identifier (user id)"),
        ("data.uid", ["7"], "name suggests a personal identifier (user id)"),
        ("data.device_id", [], "name suggests a personal identifier (device id)"),
        ("data.email", [], "name suggests an e-mail address"),
        ("data.userEmail", ["hidden"], "name suggests an e-mail address"),
        ("data.phone_number", [], "name suggests a phone number"),
        ("data.client_ip", [], "name suggests an IP address"),
        ("data.first_name", [], "name suggests a person's name"),
        ("data.zip", [], "name suggests a postal address"),
        ("data.birth_date", [], "name suggests a date of birth"),
        ("data.iban", [], "name suggests a financial identifier"),
        ("data.api_key", [], "name suggests a secret"),
        ("data.latitude", [], "name suggests a precise location"),
        # values are stronger evidence than names
        ("data.note", ["a@example.com", "b@example.org"], "values look like e-mail addresses"),
        ("data.contact", ["a@example.com", "n/a"], "values look like e-mail addresses"),
        ("data.comment", ["ok", "mail bob@example.com", "fine"], "values contain e-mail addresses"),
        ("data.origin", ["10.0.0.1", "2001:db8::1"], "values look like IP addresses"),
        ("data.card", ["4111 1111 1111 1111"], "values look like payment card numbers"),
        ("data.contact", ["+44 20 7946 0958", "(555) 123-4567"], "values look like phone numbers"),
        (
            "page.url",
            ["https://x.eu/?q=1", "https://x.eu/login?token=abc&email=a%40b.eu"],
            "values carry secret or personal URL parameters (email=, token=)",
        ),
        ("user.id", ["a@example.com"], "values look like e-mail addresses"),
        # nothing personal
        ("session.id", ["s-1"], None),
        ("event_id", [UUID], None),
        ("page.url", ["https://x.eu/pricing?utm_source=mail"], None),
        ("data.load_ms", ["412", "388"], None),
        ("data.card", ["4111 1111 1111 1112"], None),  # fails the Luhn check
        ("data.version", ["4.2.1"], None),
        ("data.day", ["2026-11-03"], None),
        ("name", ["user.login"], None),
        ("data.mailing_list", [], None),
        ("data.ip_ranges_count", ["3"], "name suggests an IP address"),
        ("data.status", [], None),
    ],
)
def test_looks_personal(name: str, examples: list[str], reason: str | None) -> None:
    assert looks_personal(name, examples) == reason


def test_a_name_reason_is_the_fallback() -> None:
    assert name_reason("user.id") == looks_personal("user.id", ["u-1", "u-2"])
    assert name_reason("data.plan") is None


@pytest.mark.parametrize(
    ("value", "redacted"),
    [
        ("mail me at bob.smith+x@example.co.uk please", "mail me at [email] please"),
        ("10.0.0.1", "[ip]"),
        ("from 192.168.1.20:8080", "from [ip]:8080"),
        ("http://10.0.0.1/admin", "http://[ip]/admin"),
        ("2001:db8::ff00:42:8329", "[ip]"),
        ("fe80::1", "[ip]"),
        ("call +44 20 7946 0958", "call [phone]"),
        ("(555) 123-4567", "[phone]"),
        ("555-123-4567", "[phone]"),
        ("order 1234567890123", "order [number]"),
        ("4111111111111111", "[number]"),
        (
            "https://x.eu/p?token=abc&q=shoes&email=a%40b.eu#top",
            "https://x.eu/p?token=[redacted]&q=shoes&email=[redacted]#top",
        ),
        ("https://x.eu/cb?code=xyz&state=1", "https://x.eu/cb?code=[redacted]&state=1"),
        (
            "https://x.eu/?api_key=k1&access_token=t",
            "https://x.eu/?api_key=[redacted]&access_token=[redacted]",
        ),
        ("https://x.eu/?user_id=42", "https://x.eu/?user_id=[redacted]"),
        ("https://x.eu/?ref=bob@x.io", "https://x.eu/?ref=[email]"),
        (f"https://x.eu/users/{UUID}/settings", "https://x.eu/users/[id]/settings"),
        ("/customers/12345/orders", "/customers/[id]/orders"),
        # kept
        (UUID, UUID),
        (
            "Mozilla/5.0 Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 Chrome/131.0.0.0 Safari/537.36",
        ),
        ("2026-11-03 09:47:48.918+00", "2026-11-03 09:47:48.918+00"),
        ("12:30:45", "12:30:45"),
        ("4.2.1", "4.2.1"),
        ("1.2.3.4.5", "1.2.3.4.5"),
        ("999.1.1.1", "999.1.1.1"),
        ("p-94855", "p-94855"),
        (
            "https://x.eu/pricing?utm_source=news&page=2",
            "https://x.eu/pricing?utm_source=news&page=2",
        ),
        ("", ""),
    ],
)
def test_redact(value: str, redacted: str) -> None:
    assert redact(value) == redacted


@pytest.mark.parametrize(
    ("field", "value", "redacted"),
    [
        ("user.id", UUID, "[id]"),
        ("data.customer_id", f" {UUID} ", "[id]"),
        ("data.user_ids", f"{UUID},{UUID}", "[id],[id]"),
        ("event_id", UUID, UUID),
        ("data.dataset_id", UUID, UUID),
        ("user.id", "u-42", "u-42"),  # not UUID-like: the caller masks personal fields whole
    ],
)
def test_redact_ids_in_known_id_fields(field: str, value: str, redacted: str) -> None:
    assert redact(value, field=field) == redacted


def test_mask_hides_everything() -> None:
    assert mask("bob@example.com") == MASK == "[redacted]"
    assert mask("") == ""
