"""The delivery ledger: one small row per stored copy of an event, as it arrived.

The lake's event files are de-duplicated by compaction (one copy per ``event_id``, ``name`` and
``stream``), which is right for analyses and wrong for accounting: retries and client bugs vanish.
So whenever events are written to the lake (``Lake.write_events``: the loader and the importer),
the same rows are also written, projected onto the columns the loss and duplicate report needs
(``quality.loss.Message``), under ``messages/`` — and never de-duplicated.

``MESSAGES_SQL`` is that projection over a relation named ``raw_events`` with the lake's columns.
The payload fingerprint uses the client's own clock reading (``client_ts_original`` when the
collector corrected ``client_ts`` for clock skew), so a retry of the same event has the same
fingerprint whatever its transit time.
"""

from __future__ import annotations

from typing import Final

import duckdb
import pyarrow as pa

MESSAGES_SQL: Final = """
SELECT
    session_id,
    session_seq AS seq,
    event_id,
    md5(name || chr(31) || epoch_us(coalesce(client_ts_original, client_ts))::VARCHAR
        || chr(31) || coalesce('j' || data, 'n')) AS fingerprint,
    client_library AS library,
    client_library_version AS version,
    CAST(timezone('UTC', client_ts) AS DATE) AS day,
    received_ts,
    stream
FROM raw_events
"""

MESSAGES_SCHEMA: Final = pa.schema(
    [
        pa.field("session_id", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("library", pa.string()),
        pa.field("version", pa.string()),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("received_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("stream", pa.string()),
    ]
)


def ledger_table(events: pa.Table) -> pa.Table:
    """The ledger rows of ``events`` (a table with the lake's event columns)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("raw_events", events)
        table = con.sql(MESSAGES_SQL).arrow().read_all()
    finally:
        con.close()
    return table.cast(MESSAGES_SCHEMA)
