"""Write reference-style rows (see ``analyses/reference.py``) into a real lake of Parquet files."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from tallystick.store.lake import EVENT_SCHEMA, Lake

_RECEIVED = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """An EVENT_SCHEMA table of ``rows`` (missing columns are null; ``data`` may be a dict)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in EVENT_SCHEMA}
    for row in rows:
        for f in EVENT_SCHEMA:
            value = row.get(f.name)
            if f.name == "data" and isinstance(value, Mapping):
                value = json.dumps(value, separators=(",", ":"))
            elif f.name == "received_ts" and value is None:
                value = _RECEIVED
            elif f.name == "schema_version":
                value = 1
            elif isinstance(value, dt.datetime):
                value = value.astimezone(dt.UTC)
            cols[f.name].append(value)
    return pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)


def write_rows(root: Path, rows: Sequence[Mapping[str, Any]], *, files: int = 2) -> Lake:
    """A lake at ``root`` holding ``rows``, spread over ``files`` files per date partition."""
    lake = Lake(root)
    for i in range(files):
        part = [r for n, r in enumerate(rows) if n % files == i]
        if part:
            lake.write_events(to_table(part), f"fixture-{i}")
    return lake
