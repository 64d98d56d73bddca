"""Engines that run analysis SQL: DuckDB over the lake (default), ClickHouse in-process (chDB)
or a ClickHouse server (clickhouse-connect). Each turns a tree into its dialect and returns Arrow.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import sqlglot
from sqlglot import exp

from tallystick.metrics.params import MetricError
from tallystick.metrics.sql import EngineName, render
from tallystick.schema import FIELDS
from tallystick.store.lake import EVENT_SCHEMA, Lake

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule

CLICKHOUSE_SETTINGS: Final = {
    "session_timezone": "UTC",
    "join_use_nulls": 1,
    "aggregate_functions_null_for_empty": 1,
}
_SETTINGS_SQL: Final = " SETTINGS " + ", ".join(
    f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in CLICKHOUSE_SETTINGS.items()
)

_SQL_TYPES: Final[dict[str, dict[pa.DataType, str]]] = {
    "duckdb": {
        pa.string(): "VARCHAR",
        pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
        pa.bool_(): "BOOLEAN",
        pa.int64(): "BIGINT",
        pa.int16(): "SMALLINT",
        pa.float64(): "DOUBLE",
    },
    "clickhouse": {
        pa.string(): "Nullable(String)",
        pa.timestamp("us", tz="UTC"): "Nullable(DateTime64(6, 'UTC'))",
        pa.bool_(): "Nullable(Bool)",
        pa.int64(): "Nullable(Int64)",
        pa.int16(): "Nullable(Int16)",
        pa.float64(): "Nullable(Float64)",
    },
}
_LATE_COLUMNS: Final = frozenset([f.column for f in FIELDS if f.origin == "server"] + ["stream"])
"""Columns added to the lake after its first version (the stream of a copy; what the collector
and the loader derive): files written before lack them, and engines read them as NULL there."""


def _clickhouse_type(field: pa.Field) -> str:
    """The type chDB reads a lake column as (what it infers from a file that has it)."""
    if pa.types.is_map(field.type):
        return "Map(String, Nullable(String))"
    nullable = _SQL_TYPES["clickhouse"][field.type]
    return nullable if field.nullable else nullable.removeprefix("Nullable(")[:-1]


_CLICKHOUSE_STRUCTURE: Final = ", ".join(f"{f.name} {_clickhouse_type(f)}" for f in EVENT_SCHEMA)
"""The structure chDB reads the lake's files with: every column, those a file lacks as NULL."""


def _with_late_columns(scan: exp.Expr) -> exp.Expr:
    """DuckDB: ``scan``, plus the late columns as NULL when none of its files has them (with
    ``union_by_name`` a column that some file has is NULL in the others already; the empty
    side costs nothing: DuckDB drops it and pushes projections and filters into the scan)."""
    types = _SQL_TYPES["duckdb"]
    cols = ", ".join(
        f"CAST(NULL AS {types[f.type]}) AS {f.name}"
        for f in EVENT_SCHEMA
        if f.name in _LATE_COLUMNS
    )
    empty = sqlglot.parse_one(f"SELECT {cols} WHERE 1 = 0", read="duckdb")
    assert isinstance(empty, exp.Select)
    union = exp.Union(
        this=exp.select("*").from_(scan), expression=empty, distinct=False, by_name=True
    )
    return exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("lake")))


def _empty_source(engine: EngineName) -> exp.Expr:
    """A relation with the lake's flat columns and no rows (for an empty lake or range), typed
    as the engine reads them from Parquet."""
    types = _SQL_TYPES[engine]
    cols = ", ".join(
        f"CAST(NULL AS {types[f.type]}) AS {f.name}" for f in EVENT_SCHEMA if f.type in types
    )
    query = sqlglot.parse_one(f"SELECT {cols} WHERE 1 = 0", read=engine)
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("lake")))


class Quarantine(Protocol):
    """Where an engine finds the quarantine rules in force (``control.quarantine.ActiveRules``)."""

    def rules(self) -> tuple[Rule, ...]: ...


class Engine(Protocol):
    """Where analyses run. ``source`` is the lake's events dated in a range (None: unbounded),
    every column present (NULL where an older file lacks it); ``quarantine`` says what is
    quarantined (None: nothing)."""

    name: EngineName
    quarantine: Quarantine | None

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr: ...

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        """Run ``tree``; return the rows and the SQL text that ran."""
        ...


def _files(
    lake: Lake, day_from: dt.date | None, day_to: dt.date | None
) -> dict[dt.date, list[str]]:
    return {
        day: paths
        for day, paths in sorted(lake.partitions().items())
        if (day_from is None or day >= day_from) and (day_to is None or day <= day_to)
    }


class DuckDBEngine:
    """DuckDB in-process, reading the lake's Parquet files of the dates an analysis needs."""

    name: EngineName = "duckdb"

    def __init__(
        self, lake: Lake, *, threads: int | None = None, quarantine: Quarantine | None = None
    ) -> None:
        self.lake = lake
        self.threads = threads
        self.quarantine = quarantine

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr:
        files = [p for paths in _files(self.lake, day_from, day_to).values() for p in paths]
        if not files:
            return _empty_source("duckdb")
        listed = exp.Array(expressions=[exp.Literal.string(p) for p in self.lake.absolute(files)])
        options = [
            exp.EQ(this=exp.column(key), expression=exp.Boolean(this=value))
            for key, value in (("union_by_name", True), ("hive_partitioning", False))
        ]
        scan = exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[listed, *options]))
        return _with_late_columns(scan)

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        """Run ``tree``. A file replaced by compaction mid-read raises ``duckdb.IOException``;
        ``metrics.api.run`` then builds the analysis again over the files listed anew."""
        sql = render(tree, "duckdb")
        con = _duckdb_cursor() if not self.threads else _duckdb_connection()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")  # no bar on a command's stderr
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            return con.sql(sql).arrow().read_all(), sql
        finally:
            con.close()


_DUCKDB: list[Any] = []
_DUCKDB_LOCK = threading.Lock()


def _duckdb_connection() -> Any:
    import duckdb

    return duckdb.connect(":memory:")


def warm_up() -> None:
    """Open the process's DuckDB (and import it) before the first query needs it."""
    _duckdb_cursor().close()


def _duckdb_cursor() -> Any:
    """A cursor on one in-memory DuckDB shared by the process (opening a database costs ~40 ms,
    a cursor almost nothing; each query gets its own cursor, so threads do not share one)."""
    with _DUCKDB_LOCK:
        if not _DUCKDB:
            _DUCKDB.append(_duckdb_connection())
        return _DUCKDB[0].cursor()


_CHDB_LOCK = threading.Lock()


class ChDBEngine:
    """ClickHouse in-process (chDB), reading the same Parquet files as DuckDB."""

    name: EngineName = "clickhouse"

    def __init__(self, lake: Lake, *, quarantine: Quarantine | None = None) -> None:
        self.lake = lake
        self.quarantine = quarantine

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr:
        days = _files(self.lake, day_from, day_to)
        if not days:
            return _empty_source("clickhouse")
        root = str(self.lake.root / "events")
        names = [f"date={d.isoformat()}" for d in days]
        folder = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
        pattern = f"{root}/{folder}/*.parquet"
        structure = exp.Literal.string(_CLICKHOUSE_STRUCTURE)
        return exp.Table(
            this=exp.Anonymous(
                this="file",
                expressions=[exp.Literal.string(pattern), exp.var("Parquet"), structure],
            )
        )

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        try:
            import chdb
        except ImportError:  # pragma: no cover - depends on the install
            raise MetricError(
                "the clickhouse engine needs chDB: pip install 'tallystick[clickhouse]'"
            ) from None
        sql = render(tree, "clickhouse") + _SETTINGS_SQL
        with _CHDB_LOCK:  # one chDB engine per process; it is not safe to enter concurrently
            result = chdb.query(sql, "ArrowStream")  # type: ignore[no-untyped-call]
        data = result.bytes()
        if not data:
            return pa.table({}), sql
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all(), sql


class ClickHouseServerEngine:
    """A ClickHouse server through clickhouse-connect.

    ``url`` is ``clickhouse://user:password@host:8123/database?table=events``; the table must
    hold the lake's columns (load it with ``INSERT INTO events SELECT * FROM s3(...)`` or
    ``clickhouse-client`` from the Parquet files), ``agent_is_bot`` and ``geo_network``
    included: analyses leave out bots and quarantined data there too.
    """

    name: EngineName = "clickhouse"

    def __init__(self, url: str, *, quarantine: Quarantine | None = None) -> None:
        self.quarantine = quarantine
        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "clickhouses", "http", "https"):
            raise MetricError(
                f"engine URL {url!r} is not a ClickHouse URL: "
                "write clickhouse://user:password@host:8123/database?table=events"
            )
        self.url = url
        self.table = parse_qs(parts.query).get("table", ["events"])[0]
        self._client: Any = None

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr:
        return exp.to_table(self.table)

    def _connect(self) -> Any:
        if self._client is None:
            try:
                import clickhouse_connect
            except ImportError:  # pragma: no cover - depends on the install
                raise MetricError(
                    "the clickhouse engine needs clickhouse-connect: "
                    "pip install 'tallystick[clickhouse]'"
                ) from None
            parts = urlsplit(self.url)
            secure = parts.scheme in ("clickhouses", "https")
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=parts.port or (8443 if secure else 8123),
                username=parts.username or "default",
                password=parts.password or "",
                database=parts.path.strip("/") or "default",
                secure=secure,
                settings=CLICKHOUSE_SETTINGS,
            )
        return self._client

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        sql = render(tree, "clickhouse") + _SETTINGS_SQL
        table = self._connect().query_arrow(sql)
        return table, sql


def make_engine(
    lake: Lake,
    engine: str = "duckdb",
    url: str | None = None,
    *,
    quarantine: Quarantine | None = None,
) -> Engine:
    """The engine named ``engine`` (``duckdb`` or ``clickhouse``; with ``url``, a server),
    leaving out what ``quarantine`` says is quarantined."""
    if engine == "duckdb":
        if url:
            raise MetricError("--engine-url is for --engine clickhouse; DuckDB reads the lake")
        return DuckDBEngine(lake, quarantine=quarantine)
    if engine == "clickhouse":
        if url:
            return ClickHouseServerEngine(url, quarantine=quarantine)
        return ChDBEngine(lake, quarantine=quarantine)
    raise MetricError(f"unknown engine {engine!r}: use duckdb or clickhouse")
