"""Backfill: import events from files into the lake and export them again.

* :mod:`tallystick.backfill.flat` turns one row of a file (monoschema or the flat shape most
  trackers export) into a monoschema event (pure, no I/O).
* :mod:`tallystick.backfill.importer` reads JSONL, CSV and Parquet files (optionally gzip'd),
  validates every event exactly like the HTTP collector, and writes new events to the lake.
* :mod:`tallystick.backfill.exporter` streams de-duplicated events out as JSONL, CSV or Parquet
  in a shape that ``tally import`` reads back unchanged.
"""
