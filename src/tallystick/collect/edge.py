"""The collector's edge: who sent a request, whether to take it, and what to keep of its origin.

For each ``POST /v1/events``, before its body is read:

1. the client's address (``enrich.client_ip``: ``X-Forwarded-For`` only from
   ``trusted_proxies``);
2. a blocked range (``control.blocks``, from the configuration snapshot) → 403 ``ip_blocked``;
3. the rate limits per IP and per write key (``collect.limits``) → 429 ``rate_limited`` with
   ``Retry-After``.

Refusals are counted (``collect.refusals``). For an accepted request the address becomes a
``RequestContext``: country and region (``enrich.geo``, when a database is configured and
``enrich_geo`` is on) and the /24 or /48 network (when ``enrich_geo`` is on); the User-Agent
header, cut to ``USER_AGENT_MAX_CHARS``. The address itself is then forgotten: it is in no spool
frame, no log line, no file.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from tallystick.collect.limits import RateLimits
from tallystick.config import ConfigError, Settings
from tallystick.enrich.client_ip import Address, ClientAddress
from tallystick.enrich.geo import GeoDatabase, network
from tallystick.store.spool import RequestContext

ORIGIN_CACHE_SIZE: Final = 16_384
USER_AGENT_MAX_CHARS: Final = 2048
"""The longest User-Agent header kept (the schema's cap on ``agent.user_agent``)."""


def check_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` for edge settings the collector could not start with (``tally
    serve`` checks before it starts any worker)."""
    _check_limits(settings)
    from tallystick.privacy.ingest import check_settings as check_privacy

    check_privacy(settings)  # pii_action, ip_policy, a pseudonym key when one is needed
    geo = open_geo(settings)
    if geo is not None:
        geo.close()


def _check_limits(settings: Settings) -> None:
    ClientAddress.from_setting(settings.trusted_proxies)
    for key in ("rate_limit_per_ip", "rate_limit_per_key"):
        value = getattr(settings, key)
        if value < 0:
            raise ConfigError(f"{key} is {value}: give requests per second, or 0 for no limit")
    if (
        settings.rate_limit_per_ip or settings.rate_limit_per_key
    ) and settings.rate_limit_burst < 1:
        raise ConfigError(
            f"rate_limit_burst is {settings.rate_limit_burst}: it must be at least 1 (a client "
            "may always send one request)"
        )


def open_geo(settings: Settings) -> GeoDatabase | None:
    """The GeoIP database when one is configured and ``enrich_geo`` is on; ``GeoError`` (a
    ``ConfigError``) when it cannot be used."""
    if not settings.enrich_geo or settings.geoip_database is None:
        return None
    return GeoDatabase(settings.geoip_database)


class Edge:
    """One worker's edge state: the address resolver, the GeoIP reader and the rate limiters."""

    def __init__(self, settings: Settings) -> None:
        _check_limits(settings)
        self.client_address = ClientAddress.from_setting(settings.trusted_proxies)
        self.limits = RateLimits(
            settings.rate_limit_per_ip, settings.rate_limit_per_key, settings.rate_limit_burst
        )
        self.networks = settings.enrich_geo
        self.geo: GeoDatabase | None = None
        self._settings = settings
        self._origin = lru_cache(maxsize=ORIGIN_CACHE_SIZE)(self._origin_of)
        """Country, region and network of recent addresses (memory only): decoding a City
        record costs 20-60 µs, a remembered answer about one; clients send many requests."""
        self._generation = 0

    def open(self) -> None:
        """Open the GeoIP database (at start-up; raises ``GeoError`` when it cannot)."""
        if self.geo is None:
            self.geo = open_geo(self._settings)

    def close(self) -> None:
        if self.geo is not None:
            self.geo.close()
            self.geo = None

    def context(self, address: Address | None, user_agent: bytes | None) -> RequestContext:
        """What is kept of a request's origin, for every stream frame of the request."""
        agent = None
        if user_agent:
            agent = user_agent.decode("utf-8", "replace")[:USER_AGENT_MAX_CHARS]
        if address is None or not self.networks:
            return RequestContext(user_agent=agent)
        if self.geo is not None and self.geo.generation != self._generation:
            self._origin.cache_clear()  # a new database file: forget the old answers
            self._generation = self.geo.generation
        country, region, net = self._origin(address)
        return RequestContext(user_agent=agent, country=country, region=region, network=net)

    def _origin_of(self, address: Address) -> tuple[str | None, str | None, str]:
        if self.geo is None:
            return None, None, network(address)
        where = self.geo.lookup(address)
        return where.country, where.region, network(address)
