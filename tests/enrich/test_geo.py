"""GeoIP with MaxMind's own test databases (tests/data/maxmind): country and region, the
network cut, clear start-up errors, reloading a replaced file."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tallystick.config import ConfigError
from tallystick.enrich.geo import NOWHERE, GeoDatabase, GeoError, Location, location, network

DATA = Path(__file__).resolve().parents[1] / "data" / "maxmind"
CITY = DATA / "GeoIP2-City-Test.mmdb"
COUNTRY = DATA / "GeoIP2-Country-Test.mmdb"
ASN = DATA / "GeoLite2-ASN-Test.mmdb"
ip = ipaddress.ip_address


@pytest.fixture
def city() -> Iterator[GeoDatabase]:
    db = GeoDatabase(CITY)
    yield db
    db.close()


# Expected answers read off MaxMind's source JSON for the test databases
# (MaxMind-DB/source-data/GeoIP2-City-Test.json): country.iso_code, subdivisions[0].iso_code.
@pytest.mark.parametrize(
    ("address", "country", "region"),
    [
        ("81.2.69.160", "GB", "GB-ENG"),
        ("89.160.20.128", "SE", "SE-E"),
        ("216.160.83.56", "US", "US-WA"),  # registered in GB: the user's country wins
        ("175.16.199.0", "CN", "CN-22"),
        ("2001:218::1", "JP", None),  # no subdivision
        ("67.43.156.0", "BT", None),
        ("1.1.1.1", None, None),  # not in the test database
        ("10.0.0.1", None, None),  # private
        ("127.0.0.1", None, None),
        ("::1", None, None),
    ],
)
def test_city_database(city: GeoDatabase, address: str, country: str, region: str | None) -> None:
    assert city.lookup(ip(address)) == Location(country, region)
    assert city.database_type == "GeoIP2-City"


def test_country_database_has_no_regions() -> None:
    db = GeoDatabase(COUNTRY)
    try:
        assert db.lookup(ip("81.2.69.160")) == Location("GB", None)
        assert db.lookup(ip("2001:218::1")) == Location("JP", None)
    finally:
        db.close()


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, NOWHERE),
        ({}, NOWHERE),
        ({"registered_country": {"iso_code": "DE"}}, NOWHERE),
        ({"country": {"iso_code": "DE"}}, Location("DE", None)),
        ({"country": {"iso_code": "DE"}, "subdivisions": []}, Location("DE", None)),
        (
            {
                "country": {"iso_code": "DE"},
                "subdivisions": [{"iso_code": "BW"}, {"iso_code": "X"}],
            },
            Location("DE", "DE-BW"),
        ),
        ({"country": {"iso_code": "de"}}, NOWHERE),  # not an ISO code: not trusted
        ({"country": "DE"}, NOWHERE),
        (
            {"country": {"iso_code": "DE"}, "subdivisions": [{"iso_code": "bad code"}]},
            Location("DE"),
        ),
    ],
)
def test_location_of_a_record(record: object, expected: Location) -> None:
    assert location(record) == expected


@pytest.mark.parametrize(
    ("address", "cut"),
    [
        ("81.2.69.160", "81.2.69.0/24"),
        ("81.2.69.0", "81.2.69.0/24"),
        ("255.255.255.255", "255.255.255.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("::1", "::/48"),
    ],
)
def test_network(address: str, cut: str) -> None:
    assert network(ip(address)) == cut


def test_missing_unreadable_and_wrong_files_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a database" * 100)
    cases = [
        (tmp_path / "nope.mmdb", "does not exist"),
        (tmp_path, "is not a file"),
        (garbage, "is not a MaxMind DB file"),
        (ASN, "is a GeoLite2-ASN database, which has no countries"),
    ]
    for path, says in cases:
        with pytest.raises(GeoError) as caught:
            GeoDatabase(path)
        assert says in str(caught.value)
        assert str(path) in str(caught.value)
        assert "TALLYSTICK_GEOIP_DATABASE" in str(caught.value)
        assert isinstance(caught.value, ConfigError)  # `tally serve` exits 2 with the message


def test_a_replaced_file_is_reloaded_and_a_bad_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "geo.mmdb"
    shutil.copy(COUNTRY, path)
    db = GeoDatabase(path)
    try:
        assert db.lookup(ip("81.2.69.160")) == Location("GB", None)
        assert not db.refresh()
        replacement = tmp_path / "new.mmdb"
        shutil.copy(CITY, replacement)
        replacement.rename(path)  # as geoipupdate does
        assert db.refresh()
        assert db.database_type == "GeoIP2-City"
        assert db.lookup(ip("81.2.69.160")) == Location("GB", "GB-ENG")
        assert db.generation == 1  # (the collector forgets what it remembered)
        broken = tmp_path / "broken.mmdb"
        broken.write_bytes(b"half a download")
        broken.rename(path)
        assert not db.refresh()
        assert db.lookup(ip("89.160.20.128")) == Location("SE", "SE-E")
    finally:
        db.close()
