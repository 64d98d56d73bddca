"""The control plane's tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create
them; a test checks that the two agree (``alembic check``).

Definitions are stored whole, as the JSON of ``definitions.*.as_dict()``: the database holds
exactly what ``tally config export`` prints, and a new optional setting needs no migration.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import sqlalchemy as sa


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A time stored in UTC and read back aware (SQLite would drop the offset)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("control-plane times must carry a time zone")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


NAMING: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)

config_version = sa.Table(
    "config_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("built_at", UTCDateTime),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("before", sa.JSON),
    sa.Column("after", sa.JSON),
    sa.Column("version", sa.Integer, nullable=False),
)

check_runs = sa.Table(
    "check_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ran_at", UTCDateTime, nullable=False, index=True),
    sa.Column("target_kind", sa.String(16), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("check_label", sa.String(200), nullable=False),
    sa.Column("check_spec", sa.JSON, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failing", sa.BigInteger, nullable=False),
    sa.Column("checked", sa.BigInteger, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("examples", sa.JSON),
)

metric_runs = sa.Table(
    "metric_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("metric", sa.String(200), nullable=False, index=True),
    sa.Column("ran_at", UTCDateTime, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
)

fields = sa.Table(
    "fields",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("stats", sa.JSON, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # user, session, ip (value is a CIDR range) or where (field = value)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.String(500), nullable=False),
    sa.Column("field", sa.String(300)),
    sa.Column("time_from", UTCDateTime),
    sa.Column("time_to", UTCDateTime),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("lifted_at", UTCDateTime),
    sa.Column("lifted_by", sa.String(200)),
    sa.Column("purged_at", UTCDateTime),
)
"""Data excluded from every analysis (``tally quarantine``); a lifted rule no longer applies."""

ip_blocks = sa.Table(
    "ip_blocks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("network", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("removed_at", UTCDateTime),
    sa.Column("removed_by", sa.String(200)),
)
"""IP ranges the collector answers with 403 (``tally block``)."""

alert_runs = sa.Table(
    "alert_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    # a stream's name, or ``experiment:KEY`` for an experiment's rules
    sa.Column("stream", sa.String(200), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("fired", sa.Boolean, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("expected", sa.Float),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("delivery", sa.JSON),
)
"""Every evaluation of an alert rule: what was measured, against what, and where it was sent."""

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # write (ingest only), read (queries, exports, dashboard) or admin (control plane)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # the key's first characters, shown to tell keys apart (never enough to use it)
    sa.Column("prefix", sa.String(32), nullable=False),
    # SHA-256 of the whole key, hex: the key itself is shown once and never stored
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("app", sa.String(200)),
    sa.Column("origins", sa.JSON, nullable=False),
    sa.Column("streams", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("revoked_by", sa.String(200)),
    sa.Column("last_used_at", UTCDateTime),
)
"""API keys (``tally keys``): write keys (per app, with allowed browser origins), read keys
(with the private streams granted to them) and admin keys."""

dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    # SHA-256 of the session cookie's value, hex
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.Integer, nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)
"""Dashboard sign-ins: a session cookie stands for the key it was opened with (revoking the key
ends its sessions)."""

user_deletions = sa.Table(
    "user_deletions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # keyed hash of the user id (never the id in clear): finds later events to suppress
    sa.Column("subject_hash", sa.String(64), nullable=False, index=True),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    # pending, done or failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("done_at", UTCDateTime),
    sa.Column("report", sa.JSON),
    sa.Column("message", sa.Text),
)
"""Users deleted (``tally users delete``): their events removed, later ones suppressed."""

dp_releases = sa.Table(
    "dp_releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(200), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("analysis", sa.String(64), nullable=False),
    sa.Column("epsilon", sa.Float, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
)
"""The privacy-budget ledger: every differentially private release and the epsilon it spent."""

flag_rulesets = sa.Table(
    "flag_rulesets",
    metadata,
    sa.Column("environment", sa.String(200), primary_key=True),
    # the ruleset restricted to this environment (``control.flags.environment_document``): a
    # ruleset in its own right, what SDKs fetch and compile
    sa.Column("document", sa.JSON, nullable=False),
    # the configuration version of the change that last wrote this environment's document
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
"""Feature flags (``tally flags``): one row per environment."""

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    # the normalised definition (``experiments.definition.Experiment.to_dict()``), its status,
    # start and stop included
    sa.Column("document", sa.JSON, nullable=False),
    # draft | running | stopped (also in the document; a column to list by status)
    sa.Column("status", sa.String(20), nullable=False),
    # the configuration version of the change that last wrote this experiment
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)
"""Experiments (``tally experiments``): one row per experiment definition."""
