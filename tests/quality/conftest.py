"""Close the DuckDB connection the SQL-side tests share (an open one at exit makes nanobind
report leaks)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quality.lossgen import close_connection


@pytest.fixture(scope="session", autouse=True)
def _shared_duckdb() -> Iterator[None]:
    yield
    close_connection()
