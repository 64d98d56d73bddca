"""Loss and duplicate accounting in DuckDB SQL: the same report as ``quality.loss``.

Two steps, each a plain SQL string a reader can run by hand:

- ``MESSAGES_SQL`` (``store.ledger``) projects stored events onto the columns of
  ``quality.loss.Message``: ``session_id``, ``seq``, ``event_id``, ``fingerprint``
  (``payload_fingerprint``), ``library``, ``version``, ``day`` (UTC date of ``client_ts``),
  ``received_ts`` and ``stream``. The lake keeps those rows as its delivery ledger, written with
  every event file and never compacted; the reader's ``messages`` view reads it (or, for a lake
  written before the ledger, this projection of ``raw_events``).
- ``report_sql(source)`` computes the report from any relation with those columns.

``lake_loss_report(con)`` runs the report over ``messages`` on a connection from
``store.reader.connect``. Every decision (sessions spanning midnight, unsequenced rows, seq
conflicts, stream copies, natural and synthetic duplicates, attribution to a day and library) is
documented in ``quality.loss``; the tests check that the two implementations agree row for row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Final

import duckdb

from tallystick.quality.loss import LossRow
from tallystick.store.ledger import MESSAGES_SQL

__all__ = ["MESSAGES_SQL", "lake_loss_report", "lake_report_sql", "report_sql", "run_report"]


_REPORT: Final = """
WITH m AS (
    SELECT session_id, seq, event_id, fingerprint, library, version, day, received_ts, stream
    FROM {source}
),
sequenced AS (
    SELECT * FROM m
    WHERE session_id IS NOT NULL AND session_id <> '' AND seq IS NOT NULL AND seq >= 1
),
session_first AS (
    SELECT session_id, library, version FROM sequenced
    QUALIFY row_number() OVER (
        PARTITION BY session_id
        ORDER BY library IS NULL, seq, received_ts NULLS LAST,
                 library NULLS LAST, version NULLS LAST
    ) = 1
),
session_seqs AS (
    SELECT session_id, seq, count(DISTINCT event_id) AS ids
    FROM sequenced GROUP BY session_id, seq
),
session_totals AS (
    SELECT session_id,
           max(seq) AS expected,
           count(*) AS received,
           count(*) FILTER (WHERE ids > 1) AS seq_conflicts
    FROM session_seqs GROUP BY session_id
),
session_days AS (
    SELECT session_id, min(day) AS day FROM sequenced GROUP BY session_id
),
by_session AS (
    SELECT d.day, f.library, f.version,
           count(*) AS sessions,
           sum(t.expected) AS expected,
           sum(t.received) AS received,
           sum(t.seq_conflicts) AS seq_conflicts,
           0 AS events, 0 AS natural_dups, 0 AS synthetic_dups
    FROM session_totals AS t
    JOIN session_days AS d USING (session_id)
    JOIN session_first AS f USING (session_id)
    GROUP BY d.day, f.library, f.version
),
event_first AS (
    SELECT event_id, day, library, version FROM m
    QUALIFY row_number() OVER (
        PARTITION BY event_id
        ORDER BY received_ts NULLS LAST, library NULLS LAST, version NULLS LAST,
                 day, fingerprint
    ) = 1
),
per_stream AS (
    SELECT event_id, fingerprint, received_ts, stream, count(*) AS n
    FROM m GROUP BY event_id, fingerprint, received_ts, stream
),
deliveries AS (
    SELECT event_id, fingerprint, received_ts, max(n) AS n
    FROM per_stream GROUP BY event_id, fingerprint, received_ts
),
payloads AS (
    SELECT event_id, fingerprint, sum(n) AS copies
    FROM deliveries GROUP BY event_id, fingerprint
),
event_totals AS (
    SELECT event_id, sum(copies - 1) AS natural_dups, count(*) - 1 AS synthetic_dups
    FROM payloads GROUP BY event_id
),
by_event AS (
    SELECT f.day, f.library, f.version,
           0 AS sessions, 0 AS expected, 0 AS received, 0 AS seq_conflicts,
           count(*) AS events,
           sum(t.natural_dups) AS natural_dups,
           sum(t.synthetic_dups) AS synthetic_dups
    FROM event_totals AS t JOIN event_first AS f USING (event_id)
    GROUP BY f.day, f.library, f.version
),
totals AS (
    SELECT day, library, version,
           sum(sessions)::BIGINT AS sessions,
           sum(expected)::BIGINT AS expected,
           sum(received)::BIGINT AS received,
           sum(seq_conflicts)::BIGINT AS seq_conflicts,
           sum(events)::BIGINT AS events,
           sum(natural_dups)::BIGINT AS duplicates_natural,
           sum(synthetic_dups)::BIGINT AS duplicates_synthetic
    FROM (SELECT * FROM by_session UNION ALL BY NAME SELECT * FROM by_event)
    GROUP BY day, library, version
)
SELECT day, library, version, sessions, expected, received,
       expected - received AS lost,
       (expected - received)::DOUBLE / nullif(expected, 0)::DOUBLE AS loss_rate,
       seq_conflicts, events, duplicates_natural, duplicates_synthetic
FROM totals
ORDER BY day, library NULLS LAST, version NULLS LAST
"""


def report_sql(source: str = "messages") -> str:
    """The report's SQL over ``source``, a relation (a table, a view or a parenthesised
    query) with the columns of ``quality.loss.Message``."""
    return _REPORT.format(source=source)


def lake_report_sql(
    *, date_from: bool = False, date_to: bool = False, library: bool = False
) -> str:
    """The report's SQL over the lake's ``messages`` view (the delivery ledger), keeping only
    the rows of days from ``?`` / to ``?`` and of one library ``?`` when asked (parameters in
    that order).

    The whole ledger is read whatever the range: a session counts on the day it started with
    its later messages, and an event on its first delivery, so the rows of a range are the
    rows of the whole report that fall in it — never the report of the messages in it."""
    conditions = [
        c
        for c, wanted in (
            ("day >= ?", date_from),
            ("day <= ?", date_to),
            ("library = ?", library),
        )
        if wanted
    ]
    if not conditions:
        return report_sql("messages")
    return (
        f"SELECT * FROM ({report_sql('messages')}) WHERE {' AND '.join(conditions)} "
        "ORDER BY day, library NULLS LAST, version NULLS LAST"
    )


def run_report(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()
) -> list[LossRow]:
    """Run a report query from this module (with its ``?`` parameters) and return its rows."""
    out = []
    for row in con.execute(sql, list(params)).fetchall():
        day, library, version, sessions, expected, received, lost, rate, conflicts = row[:9]
        events, natural_dups, synthetic_dups = row[9:]
        assert isinstance(day, dt.date)
        out.append(
            LossRow(
                day=day,
                library=library,
                version=version,
                sessions=int(sessions),
                expected=int(expected),
                received=int(received),
                lost=int(lost),
                loss_rate=None if rate is None else float(rate),
                seq_conflicts=int(conflicts),
                events=int(events),
                duplicates_natural=int(natural_dups),
                duplicates_synthetic=int(synthetic_dups),
            )
        )
    return out


def lake_loss_report(
    con: duckdb.DuckDBPyConnection,
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    library: str | None = None,
) -> list[LossRow]:
    """The loss and duplicate report of the lake behind ``con`` (``store.reader.connect``):
    its daily rows from ``date_from`` to ``date_to`` (inclusive; ``None``: unbounded), of one
    client ``library`` when given."""
    sql = lake_report_sql(
        date_from=date_from is not None, date_to=date_to is not None, library=library is not None
    )
    params = [p for p in (date_from, date_to, library) if p is not None]
    return run_report(con, sql, params)
