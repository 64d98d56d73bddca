"""The edge's settings checks and its memory of recent origins (a replaced GeoIP file is not
answered from memory)."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path
from typing import Any

import pytest

from tallystick.collect.edge import Edge, check_settings
from tallystick.config import ConfigError, Settings

DATA = Path(__file__).resolve().parents[1] / "data" / "maxmind"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"trusted_proxies": "proxy.local"}, "trusted_proxies: 'proxy.local' is not an IP"),
        ({"rate_limit_per_ip": -1.0}, "rate_limit_per_ip is -1.0"),
        ({"rate_limit_per_key": 5.0, "rate_limit_burst": 0}, "rate_limit_burst is 0"),
        ({"geoip_database": Path("/nowhere/geo.mmdb")}, "/nowhere/geo.mmdb does not exist"),
    ],
)
def test_settings_the_collector_cannot_start_with(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_settings(Settings(**changes))
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"rate_limit_burst": 0},  # no limit on: the burst does not matter
        {"geoip_database": Path("/nowhere/geo.mmdb"), "enrich_geo": False},  # not opened
        {"geoip_database": DATA / "GeoIP2-City-Test.mmdb", "trusted_proxies": "10.0.0.0/8"},
    ],
)
def test_settings_the_collector_starts_with(changes: dict[str, Any]) -> None:
    check_settings(Settings(**changes))


def test_a_replaced_database_is_not_answered_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "geo.mmdb"
    shutil.copy(DATA / "GeoIP2-Country-Test.mmdb", path)
    edge = Edge(Settings(geoip_database=path))
    edge.open()
    try:
        address = ipaddress.ip_address("81.2.69.160")
        before = edge.context(address, b"ua")
        assert (before.country, before.region, before.network) == ("GB", None, "81.2.69.0/24")
        assert edge.context(address, None) == before.__class__(country="GB", network="81.2.69.0/24")
        replacement = tmp_path / "new.mmdb"
        shutil.copy(DATA / "GeoIP2-City-Test.mmdb", replacement)
        replacement.rename(path)
        assert edge.geo is not None
        assert edge.geo.refresh()
        assert edge.context(address, None).region == "GB-ENG"
    finally:
        edge.close()
