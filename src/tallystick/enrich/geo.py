"""Country and region of a client's IP address, from a MaxMind-format database (``.mmdb``).

The database (GeoLite2 or GeoIP2 Country or City, or any MaxMind-format file with the same
record layout) is never shipped: ``geoip_database`` names it. Each collector worker opens it once
at start-up (``maxminddb``, ``MODE_AUTO``: the C extension's memory map; decoding a City record
into Python takes 20-60 µs, which is why the collector remembers recent answers) and closes it
on shutdown; a file that is missing, unreadable or holds no locations stops the
collector at start-up with a message that says so, instead of silently storing no geography.

What is kept of a request's address: ``country`` (ISO 3166-1 alpha-2, from the record's
``country``, not ``registered_country``, which is where the network's owner is registered),
``region`` (ISO 3166-2, the most general of a City database's ``subdivisions``, e.g. ``GB-ENG``)
and ``network`` (the address cut to /24 or /48). The address itself is dropped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tallystick.config import ConfigError

log = logging.getLogger("tallystick.geo")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48
_NOT_LOCATIONS: Final = re.compile(
    r"ASN|ISP|Connection-Type|Domain|Anonymous|IP-Risk|Static-IP-Score|User-Count|"
    r"DensityIncome|Residential-Proxy",
    re.IGNORECASE,
)
"""MaxMind products whose records carry no location: configuring one is a mistake to report."""
_CODE: Final = re.compile(r"^[A-Z0-9]{1,3}$")


class GeoError(ConfigError):
    """The GeoIP database cannot be used (missing, unreadable, not a location database)."""


@dataclass(frozen=True, slots=True)
class Location:
    country: str | None = None
    region: str | None = None


NOWHERE: Final = Location()


def network(address: Address) -> str:
    """The address cut to its /24 (IPv4) or /48 (IPv6) network: ``81.2.69.0/24``. (By hand:
    ``ipaddress.ip_network((address, 24), strict=False)`` costs twenty times as much.)"""
    if address.version == 4:
        a, b, c, _ = address.packed
        return f"{a}.{b}.{c}.0/{IPV4_PREFIX}"
    cut = int(address) >> (128 - IPV6_PREFIX) << (128 - IPV6_PREFIX)
    return f"{ipaddress.IPv6Address(cut)}/{IPV6_PREFIX}"


def location(record: Any) -> Location:
    """Country and region of a database record (a GeoIP2/GeoLite2 Country or City record)."""
    if not isinstance(record, dict):
        return NOWHERE
    country_part = record.get("country")
    country = country_part.get("iso_code") if isinstance(country_part, dict) else None
    if not isinstance(country, str) or not _CODE.match(country):
        return NOWHERE
    region = None
    subdivisions = record.get("subdivisions")
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], dict):
        code = subdivisions[0].get("iso_code")
        if isinstance(code, str) and _CODE.match(code):
            region = f"{country}-{code}"
    return Location(country, region)


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class GeoDatabase:
    """One open database. ``lookup`` runs on the event loop; ``refresh`` (the control-plane
    watcher's thread) swaps in a replaced file without a restart.

    The file is read through a memory map: replace it by renaming a new file over it (as
    ``geoipupdate`` does), never by writing into it while a collector runs, which the running
    readers would see half-written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._reader, self.database_type, self._identity = self._open(self.path)
        self.generation = 0
        """Counts reloads: whoever remembers answers forgets them when it moves."""
        self._complaint: str | None = None

    @staticmethod
    def _open(path: Path) -> tuple[Any, str, tuple[int, int, int]]:
        import maxminddb

        hint = (
            "set geoip_database (TALLYSTICK_GEOIP_DATABASE) to a GeoLite2/GeoIP2 Country or City "
            "database, or unset it"
        )
        try:
            identity = _identity(path)
            if not path.is_file():
                raise GeoError(f"the GeoIP database {path} is not a file: {hint}")
            if not os.access(path, os.R_OK):
                raise GeoError(f"the GeoIP database {path} is not readable by this user: {hint}")
            reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        except FileNotFoundError:
            raise GeoError(f"the GeoIP database {path} does not exist: {hint}") from None
        except maxminddb.InvalidDatabaseError as exc:
            raise GeoError(
                f"the GeoIP database {path} is not a MaxMind DB file ({exc}): {hint}"
            ) from None
        except OSError as exc:
            raise GeoError(
                f"the GeoIP database {path} cannot be read ({exc.strerror or exc}): {hint}"
            ) from None
        kind = str(reader.metadata().database_type)
        if _NOT_LOCATIONS.search(kind):
            reader.close()
            raise GeoError(
                f"the GeoIP database {path} is a {kind} database, which has no countries: {hint}"
            )
        return reader, kind, identity

    def lookup(self, address: Address) -> Location:
        """Country and region of ``address``; ``NOWHERE`` when the database does not know it
        (private ranges, unallocated space)."""
        if not address.is_global:
            return NOWHERE
        try:
            return location(self._reader.get(address))
        except ValueError:  # an IPv6 address in an IPv4-only database
            return NOWHERE
        except RuntimeError as exc:  # InvalidDatabaseError: a corrupt part of the file
            log.warning("GeoIP lookup failed, no location stored: %s", exc)
            return NOWHERE

    def refresh(self) -> bool:
        """Open the file again if it was replaced since; True when it was. A replacement that
        cannot be used is logged (once) and the database in use is kept."""
        try:
            if _identity(self.path) == self._identity:
                return False
            reader, kind, identity = self._open(self.path)
        except (OSError, GeoError) as exc:
            complaint = str(exc)
            if complaint != self._complaint:
                log.warning("keeping the GeoIP database in use: %s", complaint)
                self._complaint = complaint
            return False
        # the old reader is not closed here: a lookup on the event loop may be using it; it is
        # closed when the last reference goes
        self._reader, self.database_type, self._identity = reader, kind, identity
        self.generation += 1
        self._complaint = None
        log.info("GeoIP database %s reloaded (%s)", self.path, kind)
        return True

    def close(self) -> None:
        self._reader.close()
