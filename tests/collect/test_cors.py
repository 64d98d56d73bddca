"""collect.cors (pure): origins normalised, open mode's local origins, and the headers of an
answer — never a wildcard, never credentials."""

from __future__ import annotations

import pytest

from tallystick.collect import cors


@pytest.mark.parametrize(
    ("header", "origin"),
    [
        (b"https://Shop.Example.com", "https://shop.example.com"),
        (b"https://shop.example.com:443", "https://shop.example.com"),
        (b"http://shop.example.com:8080", "http://shop.example.com:8080"),
        (b"null", None),
        (b"", None),
        (None, None),
        (b"file://", None),
        (b"https://shop.example.com/path", None),
    ],
)
def test_a_request_origin_is_normalised(header: bytes | None, origin: str | None) -> None:
    assert cors.normalized(header) == origin


@pytest.mark.parametrize(
    ("origin", "local"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1:8080", True),
        ("http://[::1]:8080", True),
        ("https://localhost.example.com", False),
        ("http://10.0.0.1", False),
    ],
)
def test_open_mode_answers_local_pages_only(origin: str, local: bool) -> None:
    assert cors.is_local(origin) is local


def test_the_headers_grant_one_origin_and_nothing_else() -> None:
    origin = "https://shop.example.com"
    assert cors.allows(origin, {origin})
    assert not cors.allows("https://evil.example", {origin})
    assert not cors.allows(None, {origin})
    assert dict(cors.response_headers(origin)) == {
        b"access-control-allow-origin": origin.encode(),
        b"vary": b"Origin",
    }
    assert cors.response_headers(None) == ()
    granted = dict(cors.preflight_headers(origin))
    assert granted[b"access-control-allow-origin"] == origin.encode()
    assert granted[b"access-control-allow-methods"] == b"POST"
    assert dict(cors.preflight_headers(None)) == {b"vary": b"Origin"}
    for headers in (cors.preflight_headers(origin), cors.response_headers(origin)):
        names = {name for name, _ in headers}
        assert b"access-control-allow-credentials" not in names
        assert all(value != b"*" for _, value in headers)
