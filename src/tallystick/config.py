"""Settings shared by every command: where the data lives and the collector's limits.

Each setting has a default, an environment variable (``TALLYSTICK_<NAME>``) and, for ``tally
serve``, a command-line option. Worker processes receive their settings through the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_DATA_DIR: Final = "./tally-data"
ENV_PREFIX: Final = "TALLYSTICK_"
KiB: Final = 1024
MiB: Final = 1024 * KiB


@dataclass(frozen=True, slots=True)
class Settings:
    """Run-time settings. Field names are the documented config keys."""

    data: Path = Path(DEFAULT_DATA_DIR)
    max_event_bytes: int = 32 * KiB
    max_request_bytes: int = 1 * MiB
    max_events_per_request: int = 1000
    max_future_seconds: float = 24 * 3600.0
    min_free_bytes: int = 256 * MiB
    spool_rotate_seconds: float = 1.0
    spool_rotate_bytes: int = 64 * MiB
    flush_interval_seconds: float = 1.0
    compact_min_files: int = 16
    compact_interval_seconds: float = 60.0
    failed_raw_max_bytes: int = 8 * KiB
    config_dir: Path | None = None
    """Project configuration (the metric catalog in ``metrics/``); ``None``: ``<data>/config``."""
    warm_up: bool = True
    """Whether each collector worker prepares the query API and dashboard in the background at
    start (faster first page; about 110 MB more per worker)."""
    control_url: str | None = dataclasses.field(default=None, repr=False)
    """The control-plane database (SQLAlchemy URL, e.g. ``postgresql+psycopg://…``); ``None``:
    SQLite at ``<data>/control.db``. Hidden from repr: it may hold a password."""
    control_poll_seconds: float = 2.0
    """How often collectors look for a new configuration version."""
    read_key: str | None = dataclasses.field(default=None, repr=False)
    """When set, the query API's reads need ``Authorization: Bearer <read_key>`` (never logged;
    a stand-in until hashed keys arrive)."""
    admin_key: str | None = dataclasses.field(default=None, repr=False)
    """When set, the control-plane API (``/v1/admin/...``) needs ``Authorization: Bearer
    <admin_key>``; when not, it takes changes from loopback clients only (never logged)."""
    geoip_database: Path | None = None
    """A MaxMind-format database (``.mmdb``: GeoLite2/GeoIP2 Country or City) for the country and
    region of each request's IP address; ``None``: no geo lookup. Never shipped: configure it."""
    enrich_user_agent: bool = True
    """Parse the user agent into browser, OS and device family."""
    enrich_bots: bool = True
    """Flag crawlers and automation (``agent.is_bot``): the crawler list, headless markers."""
    enrich_geo: bool = True
    """Look up country and region (needs ``geoip_database``)."""
    enrich_sessions: bool = True
    """Give events that arrive without ``session.id`` one (per user or anonymous id)."""
    enrich_clock: bool = True
    """Record clock skew and correct ``client_ts`` when it is beyond the threshold."""
    session_timeout_minutes: float = 30.0
    """Inactivity after which sessionization starts a new session."""
    clock_skew_threshold_seconds: float = 60.0
    """``client_ts`` is corrected when ``|received_ts − sent_ts|`` is larger than this."""
    trusted_proxies: str | None = None
    """Comma-separated addresses or CIDR ranges of reverse proxies whose ``X-Forwarded-For``
    header names the client; ``None``: the connecting address is the client."""
    rate_limit_per_ip: float = 0.0
    """Requests per second each client IP may send to ``/v1/events`` (0: no limit)."""
    rate_limit_per_key: float = 0.0
    """Requests per second each write key may send to ``/v1/events`` (0: no limit)."""
    rate_limit_burst: int = 20
    """Requests a client may send at once above its rate before it is told to wait."""
    alert_interval_seconds: float = 300.0
    """How often the server evaluates the alert rules (0: only ``tally quality check``)."""
    alert_webhook_url: str | None = dataclasses.field(default=None, repr=False)
    """Where fired alerts are POSTed as JSON (also logged); ``None``: the log only."""
    pii_action: str = "redact"
    """What the collector does with personal data (emails, phone numbers, IP addresses,
    card-number-like digits) found in ``data`` values and URL query strings of events no stream
    with its own ``privacy`` block stores: ``redact``, ``hash``, ``reject`` or ``off``."""
    ip_policy: str = "truncate"
    """What is kept of the client's address after the country lookup, for events no stream with
    its own ``privacy`` block stores: ``truncate`` (``geo.network``, the /24 or /48) or ``drop``."""
    pseudonymize_user_ids: bool = False
    """Replace ``user.id`` by a keyed HMAC of it (needs ``pseudonym_key``) before storage."""
    pseudonym_key: str | None = dataclasses.field(default=None, repr=False)
    """The secret of the pseudonymous user ids (never logged). Rotating it starts new ids."""
    pseudonym_previous_keys: str | None = dataclasses.field(default=None, repr=False)
    """Comma-separated earlier pseudonym keys: deletion finds users under them too."""
    retention_days: int = 0
    """How long events no stream with ``retention_days`` stores are kept (0: until deleted)."""
    failed_retention_days: int = 30
    """How long failed events and declined-event counts are kept (0: until deleted)."""
    results_retention_days: int = 90
    """How long materialised metric results are kept (0: until deleted)."""
    retention_interval_seconds: float = 86400.0
    """How often ``tally serve`` enforces retention (0: only ``tally retention enforce``).
    Pending user deletions are carried out within seconds whatever this is."""
    dp_budget_epsilon: float = 10.0
    """The total privacy budget (epsilon) each dataset may spend on differentially private
    releases; a release that would exceed it is refused."""
    dashboard_session_hours: float = 12.0
    """How long a dashboard sign-in (its session cookie) lasts."""
    flags_max_streams: int = 1000
    """How many flag streams (``GET /v1/flags/stream``) each collector worker holds open at once;
    one more is refused with 503 (its SDK polls instead). 0: streams are off."""

    @property
    def config_path(self) -> Path:
        """The configuration directory: ``config_dir``, or ``config`` in the data directory."""
        return self.config_dir if self.config_dir is not None else self.data / "config"

    @property
    def catalog_dir(self) -> Path:
        """Where the metric catalog's YAML files live."""
        return self.config_path / "metrics"

    @property
    def control_database(self) -> str:
        """The control plane's database URL."""
        if self.control_url:
            return self.control_url
        return f"sqlite:///{self.data.resolve() / 'control.db'}"

    @property
    def spool_dir(self) -> Path:
        return self.data / "spool"

    @property
    def lake_dir(self) -> Path:
        return self.data / "lake"

    def with_changes(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """Environment variables that recreate these settings in a worker process."""
        return {
            ENV_PREFIX + f.name.upper(): str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def config_keys() -> list[str]:
    """Every documented config key (used by the docs test)."""
    return [f.name for f in dataclasses.fields(Settings)]


class ConfigError(ValueError):
    """A setting could not be read."""


_KIND_NAMES: Final[dict[type, str]] = {
    bool: "boolean (true or false)",
    int: "whole number",
    float: "number",
    Path: "path",
    str: "text",
}
#: the type of each setting whose default is ``None``
_OPTIONAL_KINDS: Final[dict[str, type]] = {
    "config_dir": Path,
    "read_key": str,
    "admin_key": str,
    "control_url": str,
    "geoip_database": Path,
    "trusted_proxies": str,
    "alert_webhook_url": str,
    "pseudonym_key": str,
    "pseudonym_previous_keys": str,
}


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _parse(kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(raw)
    if kind is int:
        return int(float(raw))
    if kind is float:
        return float(raw)
    if kind is str:
        return raw
    return Path(raw)


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``TALLYSTICK_*`` variables, then explicit overrides (CLI options) on top."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is None or raw == "":
            continue
        default = getattr(Settings(), f.name)
        kind = _OPTIONAL_KINDS[f.name] if default is None else type(default)
        try:
            values[f.name] = _parse(kind, raw)
        except ValueError as exc:
            raise ConfigError(
                f"{env_name(f.name)}={raw!r} is not a valid {_KIND_NAMES[kind]}: "
                f"set it to a {_KIND_NAMES[kind]} or unset it"
            ) from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("data", "config_dir", "geoip_database"):
        if key in values:
            values[key] = Path(values[key])
    return Settings(**values)
