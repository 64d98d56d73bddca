"""The file formats of ``tally import`` and ``tally export`` (light: the CLI imports it)."""

from __future__ import annotations

import enum


class InputFormat(enum.StrEnum):
    """File formats ``tally import`` reads."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class ExportFormat(enum.StrEnum):
    """File formats ``tally export`` writes."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
