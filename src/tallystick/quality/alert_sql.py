"""Measuring alert rules in DuckDB SQL, over the views of ``store.reader.connect``.

Every rule reads a trailing window ``[at − window_hours, at)`` of *received* time
(``received_ts``): alerts watch what arrives, and a late or re-imported event arrives when it
arrives. Within a window each event counts once (distinct ``event_id`` and ``name``: a retry
or a second copy is not a second event).

- ``volume``: the stream's events (``raw_events`` copies stored for the stream) in the window
  and in the same window 1..``weeks`` weeks earlier. An earlier window in which the stream
  stored no event at all is no baseline (``None``): the stream did not exist yet, or was down
  — either way that week says nothing about normal volume.
- ``keys``: the stream's events in the window lacking a key or holding a value of the wrong
  type. A ``data.<key>`` is looked up as written first (a key with dots), then as nested keys
  (``data.a.b`` → ``{"a": {"b": …}}``), as curation rules do; a JSON ``null`` counts as
  missing. A monoschema field (``user.id``) is missing when its column is NULL or an empty
  text; its type is the schema's, so it is never of the wrong type.
- ``failed_rate``: failed-event records received in the window whose event name the stream
  routes, against the stream's events plus those records. The name is read from the record's
  raw JSON: ``$.name`` of an event; of a whole refused request, the first event's (its other
  events are not counted); of a raw payload cut short or not JSON, the first ``"name": "…"``
  in the text. A stream routing ``*`` also counts the records in which no name is found.
- ``loss_rate``: the loss report of ``quality.loss_sql`` (same semantics: ``session.seq``
  gaps, every copy and stream of a message counted once) over every delivered message of the
  sessions that sent the stream at least one message in the window. ``session.seq`` counts all
  of a session's events whatever stream they go to, so the whole session is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import duckdb

from tallystick.control.definitions import LAKE_COLUMNS, Alert, Stream
from tallystick.control.routing import Router
from tallystick.quality.alert_rules import Counts, RateCounts, VolumeCounts, baseline_weeks
from tallystick.quality.loss_sql import report_sql
from tallystick.schema import FIELDS

#: DuckDB ``json_type`` names of each type a ``keys`` rule may require
JSON_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "string": ("VARCHAR",),
    "integer": ("BIGINT", "UBIGINT", "HUGEINT"),
    "number": ("BIGINT", "UBIGINT", "HUGEINT", "DOUBLE"),
    "boolean": ("BOOLEAN",),
    "object": ("OBJECT",),
    "array": ("ARRAY",),
}
_STRING_COLUMNS: Final = frozenset(f.column for f in FIELDS if f.kind == "string")
_WEEK: Final = dt.timedelta(days=7)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any) -> tuple[Any, ...]:
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def _bounds(alert: Alert, at: dt.datetime, weeks_back: int = 0) -> tuple[dt.datetime, dt.datetime]:
    hi = at - weeks_back * _WEEK
    return hi - alert.window, hi


EVENTS_TABLE: Final = "alert_events"
"""The temporary table ``prepare`` fills, which every rule reads instead of the lake."""


def prepare(con: duckdb.DuckDBPyConnection, streams: Sequence[Stream], at: dt.datetime) -> None:
    """Read, in one pass over the lake, the columns the rules of ``streams`` need of the events
    they can look at (their streams, from the earliest window start to ``at``) into
    ``EVENTS_TABLE``: one scan of the lake per evaluation, not one per rule."""
    alerts = [a for s in streams for a in s.alerts]
    if not alerts:
        return
    spans = [a.window + (a.weeks * _WEEK if a.rule == "volume" else dt.timedelta()) for a in alerts]
    lo = at - max(spans, default=dt.timedelta())
    columns = ["event_id", "name", "received_ts", "stream", "data"]
    columns += sorted(
        {LAKE_COLUMNS[f] for a in alerts for f, _ in a.keys if not f.startswith("data.")}
        - set(columns)
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {EVENTS_TABLE} AS SELECT {', '.join(columns)} "
        "FROM raw_events WHERE list_contains(?, stream) AND received_ts >= ? AND received_ts < ?",
        [[s.name for s in streams], lo, at],
    )


def volume(
    con: duckdb.DuckDBPyConnection, stream: str, alert: Alert, at: dt.datetime
) -> VolumeCounts:
    windows = [(0, *_bounds(alert, at))] + [
        (k, *_bounds(alert, at, k)) for k in baseline_weeks(alert)
    ]
    values = ", ".join(f"({k}, ?::TIMESTAMPTZ, ?::TIMESTAMPTZ)" for k, _, _ in windows)
    params: list[Any] = [v for _, lo, hi in windows for v in (lo, hi)]
    rows = con.execute(
        f"WITH w(k, lo, hi) AS (VALUES {values}), "
        f"s AS (SELECT event_id, name, received_ts FROM {EVENTS_TABLE} WHERE stream = ?) "
        "SELECT w.k, count(DISTINCT s.event_id || chr(31) || s.name) "
        "FROM w LEFT JOIN s ON s.received_ts >= w.lo AND s.received_ts < w.hi "
        "GROUP BY w.k",
        [*params, stream],
    ).fetchall()
    counts = {int(k): int(n) for k, n in rows}
    weeks = tuple(counts.get(k, 0) for k, _, _ in windows[1:])
    return VolumeCounts(current=counts.get(0, 0), weeks=tuple(n or None for n in weeks))


def _json_path(segments: Sequence[str]) -> str:
    return "$." + ".".join(f'"{s}"' for s in segments)


def _key_checks(field: str, kind: str) -> tuple[str, str]:
    """SQL conditions (missing, wrong type) of one key over a row of ``raw_events``.
    ``definitions.parse_alert`` vetted ``field``: its data segments need no escaping."""
    if field.startswith("data."):
        key = field[len("data.") :]
        found = f"json_type(data, '{_json_path([key])}')"
        if "." in key:
            found = f"coalesce({found}, json_type(data, '{_json_path(key.split('.'))}'))"
        t = f"(CASE WHEN json_valid(data) THEN {found} END)"
        missing = f"({t} IS NULL OR {t} = 'NULL')"
        if kind == "any":
            return missing, "false"
        allowed = ", ".join(f"'{name}'" for name in JSON_TYPES[kind])
        return missing, f"(NOT {missing} AND {t} NOT IN ({allowed}))"
    column = LAKE_COLUMNS[field]
    missing = f"({column} IS NULL" + (f" OR {column} = '')" if column in _STRING_COLUMNS else ")")
    return missing, "false"


def keys(con: duckdb.DuckDBPyConnection, stream: str, alert: Alert, at: dt.datetime) -> RateCounts:
    checks = [_key_checks(field, kind) for field, kind in alert.keys]
    columns = ", ".join(f"{m} AS m{i}, {w} AS w{i}" for i, (m, w) in enumerate(checks))
    any_bad = " OR ".join(f"m{i} OR w{i}" for i in range(len(checks)))
    tallies = ", ".join(
        f"count(*) FILTER (WHERE m{i}), count(*) FILTER (WHERE w{i})" for i in range(len(checks))
    )
    lo, hi = _bounds(alert, at)
    row = _one(
        con,
        f"SELECT count(*), count(*) FILTER (WHERE {any_bad}), {tallies} FROM ("
        f"  SELECT {columns} FROM {EVENTS_TABLE} "
        "  WHERE stream = ? AND received_ts >= ? AND received_ts < ? "
        "  QUALIFY row_number() OVER (PARTITION BY event_id, name ORDER BY received_ts) = 1)",
        [stream, lo, hi],
    )
    detail: list[tuple[str, int]] = []
    for i, (field, kind) in enumerate(alert.keys):
        detail.append((f"{field} missing", int(row[2 + 2 * i])))
        detail.append((f"{field} not {kind}", int(row[3 + 2 * i])))
    return RateCounts(int(row[1]), int(row[0]), tuple(detail))


def _stored(con: duckdb.DuckDBPyConnection, stream: str, lo: dt.datetime, hi: dt.datetime) -> int:
    (n,) = _one(
        con,
        f"SELECT count(DISTINCT event_id || chr(31) || name) FROM {EVENTS_TABLE} "
        "WHERE stream = ? AND received_ts >= ? AND received_ts < ?",
        [stream, lo, hi],
    )
    return int(n)


FAILED_NAMES_SQL: Final = r"""
SELECT name, count(*) FROM (
    SELECT nullif(CASE WHEN json_valid(raw)
                       THEN coalesce(json_extract_string(raw, '$.name'),
                                     json_extract_string(raw, '$[0].name'))
                       ELSE regexp_extract(raw, '"name"\s*:\s*"([^"]*)"', 1) END, '') AS name
    FROM failed_events WHERE received_ts >= ? AND received_ts < ?
) GROUP BY name
"""
"""Failed-event records received in a window, by the event name found in their raw JSON."""


def failed_names(
    con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime
) -> dict[str | None, int]:
    return {
        None if name is None else str(name): int(n)
        for name, n in con.execute(FAILED_NAMES_SQL, [lo, hi]).fetchall()
    }


def attributed(stream: Stream, names: dict[str | None, int]) -> int:
    """How many failed records of ``names`` (name → count) the stream's routes claim."""
    router = Router.build({stream.name: stream.events})
    every = "*" in stream.events
    return sum(n for name, n in names.items() if (every if name is None else router.declared(name)))


def failed_rate(
    con: duckdb.DuckDBPyConnection, stream: Stream, alert: Alert, at: dt.datetime
) -> RateCounts:
    lo, hi = _bounds(alert, at)
    failed = attributed(stream, failed_names(con, lo, hi))
    stored = _stored(con, stream.name, lo, hi)
    return RateCounts(failed, stored + failed, (("failed", failed), ("stored", stored)))


def loss_rate(
    con: duckdb.DuckDBPyConnection, stream: str, alert: Alert, at: dt.datetime
) -> RateCounts:
    lo, hi = _bounds(alert, at)
    # every delivered message of the sessions, read once (the report reads its source often)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE alert_messages AS SELECT * FROM messages "
        "WHERE session_id IN (SELECT session_id FROM messages WHERE stream = ? "
        "AND received_ts >= ? AND received_ts < ? AND session_id IS NOT NULL "
        "AND session_id <> '')",
        [stream, lo, hi],
    )
    expected, lost, sessions = _one(
        con,
        "SELECT coalesce(sum(expected), 0), coalesce(sum(lost), 0), coalesce(sum(sessions), 0) "
        f"FROM ({report_sql('alert_messages')})",
        [],
    )
    con.execute("DROP TABLE alert_messages")
    return RateCounts(int(lost), int(expected), (("sessions", int(sessions)),))


def measure(
    con: duckdb.DuckDBPyConnection, stream: Stream, alert: Alert, at: dt.datetime
) -> Counts:
    """What ``alert`` of ``stream`` measures at ``at``."""
    if alert.rule == "volume":
        return volume(con, stream.name, alert, at)
    if alert.rule == "keys":
        return keys(con, stream.name, alert, at)
    if alert.rule == "failed_rate":
        return failed_rate(con, stream, alert, at)
    if alert.rule == "loss_rate":
        return loss_rate(con, stream.name, alert, at)
    raise ValueError(f"unknown alert rule {alert.rule!r}")
