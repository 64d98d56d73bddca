"""The metrics engine: analyses over the lake, rendered per engine (DuckDB, ClickHouse)."""
