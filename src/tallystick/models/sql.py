"""The SQL of data models and their quality checks (pure: builds sqlglot trees, runs nothing).

A model's rows are its stream's stored copies, one per event::

    lake         every event file, plus a typed empty relation so that a column missing from
                 old files (``stream``) or from an empty lake still exists
    stream rows  WHERE stream = '<model.stream>', then the first received copy of each
                 event_id + name (as the ``events`` view does, but within the stream)
    model        SELECT <field> AS <column>, ... (plus the hidden columns below for checks)

Copies stored before streams existed have no stream (NULL) and belong to no model, not even
one of the unrouted stream: a model reads what its stream stored.

A ``data.<key>`` field reads the event's ``data`` JSON: typed after the JSON values of the key
seen so far (:func:`column_type`: whole numbers BIGINT, numbers DOUBLE, true/false BOOLEAN,
anything else or a mixture text, as written in the JSON).

Each check is one query over the model's relation returning one row: ``failing``, ``checked``
and ``examples`` (at most :data:`EXAMPLES`). Row checks (not_null, accepted_values, range,
unique) count rows and may be limited to recent ``client_ts``; freshness and row_count_change
measure the whole relation and report ``failing`` 1 (over the limit) or 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa
import sqlglot
from sqlglot import exp

from tallystick.control.definitions import Check, Model, ModelField, source_column
from tallystick.metrics.sql import render as render_sql
from tallystick.store.lake import EVENT_SCHEMA

CLIENT_TS: Final = "_tally_client_ts"
"""Hidden column of a check's relation and of a table snapshot: when the event happened."""
RECEIVED_TS: Final = "_tally_received_ts"
"""Hidden column of a check's relation and of a table snapshot: when the event arrived."""
HIDDEN: Final = (CLIENT_TS, RECEIVED_TS)
EXAMPLES: Final = 5
"""How many examples a failing check reports at most."""
ROW_CHECKS: Final = ("not_null", "accepted_values", "range", "unique")
"""Checks that count rows (``--since`` limits them to recent events)."""

_DUCK_TYPES: Final[dict[pa.DataType, str]] = {
    pa.string(): "VARCHAR",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.bool_(): "BOOLEAN",
    pa.int64(): "BIGINT",
    pa.int16(): "SMALLINT",
    pa.float64(): "DOUBLE",
    pa.map_(pa.string(), pa.string()): "MAP(VARCHAR, VARCHAR)",
}
_INTEGERS: Final = frozenset({"BIGINT", "UBIGINT"})
_NUMBERS: Final = _INTEGERS | {"DOUBLE"}
_SLOT: Final = "p__"


class ModelError(ValueError):
    """A model cannot be built or checked; the message says why and what to do."""


class EngineBusy(ModelError):
    """The models' database is open in another process; trying again later may work."""


def render(tree: exp.Expr, *, pretty: bool = False) -> str:
    """The DuckDB SQL text of ``tree``."""
    return render_sql(tree, "duckdb", pretty=pretty)


def _parse(template: str, **values: Any) -> exp.Expr:
    """``template`` (DuckDB SQL) with each ``p__<name>`` column or table replaced by
    ``values[name]``: an expression as it is, a Python value as a literal."""
    tree = sqlglot.parse_one(template, read="duckdb")

    def put(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column | exp.Table) and node.name.startswith(_SLOT):
            value = values[node.name.removeprefix(_SLOT)]
            return value.copy() if isinstance(value, exp.Expr) else exp.convert(value)
        return node

    return tree.transform(put)


def _select(template: str, **values: Any) -> exp.Select:
    tree = _parse(template, **values)
    assert isinstance(tree, exp.Select)
    return tree


def ident(name: str) -> exp.Column:
    """A quoted column name (model columns may be SQL keywords such as ``user``)."""
    return exp.column(name, quoted=True)


def _sub(query: exp.Expr, alias: str) -> exp.Expr:
    return exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _timestamp(at: dt.datetime) -> exp.Expr:
    text = at.astimezone(dt.UTC).isoformat()
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ", dialect="duckdb"))


# -- the model's rows ------------------------------------------------------------------------


def lake_source(glob: str) -> exp.Expr:
    """Every event file matching ``glob`` (none is fine), with every lake column."""
    options = [
        exp.EQ(this=exp.column(key), expression=exp.Boolean(this=value))
        for key, value in (
            ("union_by_name", True),
            ("hive_partitioning", False),
            ("allow_empty", True),
        )
    ]
    read = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(glob), *options])
    typed = [
        exp.alias_(
            exp.cast(exp.Null(), exp.DataType.build(_DUCK_TYPES[f.type], dialect="duckdb")),
            exp.to_identifier(f.name),
        )
        for f in EVENT_SCHEMA
    ]
    return exp.Union(
        this=exp.select("*").from_(exp.Table(this=read)),
        expression=exp.select(*typed).where(exp.false()),
        distinct=False,
        by_name=True,
    )


def parquet(path: str) -> exp.Expr:
    """A relation reading one Parquet file (a table model's snapshot)."""
    return exp.Table(
        this=exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(path)])
    )


def stream_rows(source: exp.Expr, stream: str) -> exp.Select:
    """The copies stored for ``stream``, one per event_id + name: the first received."""
    return _select(
        "SELECT * FROM p__source WHERE stream = p__stream QUALIFY row_number() OVER "
        "(PARTITION BY event_id, name ORDER BY received_ts, client_ts) = 1",
        source=_sub(source, "lake"),
        stream=stream,
    )


def data_keys(model: Model) -> list[str]:
    """The ``data`` keys the model reads, in field order."""
    return list(
        dict.fromkeys(
            f.source.removeprefix("data.") for f in model.fields if source_column(f.source) is None
        )
    )


def _path(key: str) -> exp.Expr:
    return exp.Literal.string(f"$.{key}")


def type_probe(model: Model, source: exp.Expr) -> exp.Select | None:
    """One row: for each ``data`` key the model reads, the list of JSON types its values have
    in the stream (None when the model reads no ``data`` key)."""
    keys = data_keys(model)
    if not keys:
        return None
    lists = [
        exp.alias_(
            _parse("list(DISTINCT json_type(data, p__path))", path=_path(key)),
            exp.to_identifier(key, quoted=True),
        )
        for key in keys
    ]
    return (
        exp.select(*lists)
        .from_(_sub(source, "lake"))
        .where(_parse("stream = p__stream", stream=model.stream))
    )


def column_type(json_types: Iterable[str | None]) -> str:
    """The SQL type of a ``data`` key whose values have ``json_types`` (DuckDB's ``json_type``
    names; JSON null and missing keys are left out): BIGINT when every value is a whole number,
    DOUBLE when every one is a number, BOOLEAN when every one is true or false, else VARCHAR
    (strings as they are; objects and arrays as JSON text)."""
    kinds = {t for t in json_types if t is not None and t != "NULL"}
    if kinds and kinds <= _INTEGERS:
        return "BIGINT"
    if kinds and kinds <= _NUMBERS:
        return "DOUBLE"
    if kinds == {"BOOLEAN"}:
        return "BOOLEAN"
    return "VARCHAR"


def field_value(field: ModelField, data_types: Mapping[str, str]) -> exp.Expr:
    """The value of one model field over the lake's columns."""
    column = source_column(field.source)
    if column is not None:
        return ident(column)
    key = field.source.removeprefix("data.")
    kind = data_types.get(key, "VARCHAR")
    if kind == "VARCHAR":
        return exp.Anonymous(this="json_extract_string", expressions=[ident("data"), _path(key)])
    return _parse(f"TRY_CAST(json_extract(data, p__path) AS {kind})", path=_path(key))


def model_select(
    model: Model,
    rows: exp.Expr,
    data_types: Mapping[str, str] | None = None,
    *,
    hidden: bool = False,
) -> exp.Select:
    """The model's columns over ``rows`` (:func:`stream_rows`); with ``hidden``, also
    :data:`CLIENT_TS` and :data:`RECEIVED_TS`."""
    types = data_types or {}
    columns: list[exp.Expr] = [
        exp.alias_(field_value(f, types), exp.to_identifier(f.name, quoted=True))
        for f in model.fields
    ]
    if hidden:
        columns += [
            exp.alias_(ident("client_ts"), exp.to_identifier(CLIENT_TS)),
            exp.alias_(ident("received_ts"), exp.to_identifier(RECEIVED_TS)),
        ]
    return exp.select(*columns).from_(_sub(rows, "e"))


def model_relation(
    model: Model, glob: str, data_types: Mapping[str, str] | None = None, *, hidden: bool = False
) -> exp.Select:
    """The model over the live lake (the files matching ``glob``)."""
    return model_select(
        model, stream_rows(lake_source(glob), model.stream), data_types, hidden=hidden
    )


def create_view(name: str, query: exp.Expr) -> exp.Expr:
    """``CREATE OR REPLACE VIEW "name" AS query``."""
    return exp.Create(
        this=exp.Table(this=exp.to_identifier(name, quoted=True)),
        kind="VIEW",
        replace=True,
        expression=query,
    )


def snapshot_view(model: Model, path: str) -> exp.Select:
    """The model's columns (not the hidden ones) read from its table snapshot at ``path``."""
    return exp.select(*(ident(f.name) for f in model.fields)).from_(parquet(path))


# -- checks ----------------------------------------------------------------------------------


def accepted_condition(value: exp.Expr, accepted: Sequence[Any]) -> exp.Expr:
    """Whether ``value`` (not NULL) is one of ``accepted``: compared as numbers when every
    accepted value is a number (so 1 accepts 1, 1.0 and "1"), else as text (true/false for
    booleans, numbers as written)."""
    numbers = [v for v in accepted if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(accepted):
        listed = [exp.Literal.number(repr(float(v))) for v in numbers]
        test = exp.In(this=_parse("TRY_CAST(p__v AS DOUBLE)", v=value), expressions=listed)
    else:
        texts = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in accepted]
        test = exp.In(
            this=_parse("CAST(p__v AS VARCHAR)", v=value),
            expressions=[exp.Literal.string(t) for t in texts],
        )
    return exp.func("coalesce", test, exp.false())


def range_condition(value: exp.Expr, low: float | None, high: float | None) -> exp.Expr:
    """Whether ``value`` (not NULL) is a number within ``[low, high]`` (either may be open)."""
    number = _parse("TRY_CAST(p__v AS DOUBLE)", v=value)
    parts: list[exp.Expr] = [exp.Not(this=exp.Is(this=number.copy(), expression=exp.Null()))]
    if low is not None:
        parts.append(exp.GTE(this=number.copy(), expression=exp.Literal.number(repr(low))))
    if high is not None:
        parts.append(exp.LTE(this=number.copy(), expression=exp.Literal.number(repr(high))))
    return exp.func("coalesce", exp.and_(*parts), exp.false())


_RELATION: Final = "WITH r AS (SELECT * FROM p__rel WHERE p__recent), "
"""Every check query starts with ``r``: the relation (limited to recent events when asked)."""


def _value_check(bad: exp.Expr, *, repeated: bool = False) -> str:
    """failing = the rows in the groups of ``bad`` values; examples = the biggest groups."""
    return (
        _RELATION + "bad AS (SELECT p__c AS v, count(*) AS n FROM r "
        "WHERE p__c IS NOT NULL AND p__bad GROUP BY ALL"
        + (" HAVING count(*) > 1" if repeated else "")
        + "), top AS (SELECT v, n FROM bad ORDER BY n DESC, CAST(v AS VARCHAR) LIMIT p__k) "
        "SELECT (SELECT coalesce(sum(n), 0) FROM bad) AS failing, "
        "(SELECT count(p__c) FROM r) AS checked, "
        "(SELECT list({'value': v, 'rows': n} ORDER BY n DESC, CAST(v AS VARCHAR)) FROM top) "
        "AS examples"
    )


_NOT_NULL: Final = (
    _RELATION + f"ex AS (SELECT p__row AS x, {CLIENT_TS} AS t0, {RECEIVED_TS} AS t1 FROM r "
    "WHERE p__c IS NULL ORDER BY t0, t1 LIMIT p__k) "
    "SELECT (SELECT count(*) FROM r WHERE p__c IS NULL) AS failing, "
    "(SELECT count(*) FROM r) AS checked, "
    "(SELECT list(x ORDER BY t0, t1) FROM ex WHERE x IS NOT NULL) AS examples"
)
_FRESHNESS: Final = (
    _RELATION + "t AS (SELECT max(p__when) AS newest, count(p__when) AS stamped, "
    "count(*) AS n FROM r) "
    "SELECT CASE WHEN newest IS NULL OR newest < p__oldest THEN 1 ELSE 0 END AS failing, "
    "n AS checked, [{'newest': newest, 'rows_with_time': stamped}] AS examples FROM t"
)
_ROW_COUNT_CHANGE: Final = (
    _RELATION + "t AS (SELECT "
    "count(*) FILTER (WHERE p__ts >= p__middle AND p__ts < p__end) AS a, "
    "count(*) FILTER (WHERE p__ts >= p__start AND p__ts < p__middle) AS b FROM r) "
    "SELECT CASE WHEN b = 0 THEN (CASE WHEN a = 0 THEN 0 ELSE 1 END) "
    "WHEN abs(a - b) > p__limit * b THEN 1 ELSE 0 END AS failing, a + b AS checked, "
    "[{'day': p__last, 'rows': a}, {'day': p__before, 'rows': b}] AS examples FROM t"
)


def check_query(
    check: Check,
    relation: exp.Expr,
    columns: Sequence[str],
    *,
    now: dt.datetime,
    since: dt.datetime | None = None,
) -> exp.Select:
    """The query of ``check`` over ``relation`` (the model's columns ``columns`` plus the
    hidden ones): one row of ``failing``, ``checked``, ``examples``.

    * not_null: rows whose column is NULL, of all rows; examples are such rows (their other
      columns, the earliest first).
    * accepted_values / range: rows with a value that is not accepted / not a number within
      the bounds (inclusive), of the rows with a value (NULLs are not checked); examples are
      ``{value, rows}``, the most frequent first.
    * unique: rows whose value another row has too, of the rows with a value; examples are
      the repeated values with their row counts.
    * freshness: 1 when the newest time (``received_ts``, or the check's column read as a
      timestamp) is older than ``max_age_hours`` before ``now``, or when there is none;
      checked is every row; the example is ``{newest, rows_with_time}``.
    * row_count_change: the rows whose event happened (``client_ts``) on the last complete
      UTC day before ``now`` against the day before that; 1 when the change is more than
      ``max_change`` (a fraction) either way, or when the day before had none and the last day
      some; examples are ``{day, rows}`` of both days.

    ``since`` limits the row checks to events that happened (``client_ts``) at or after it.
    """
    kind = check.type
    rel = _sub(relation, "m")
    recent: exp.Expr = exp.true()
    if kind in ROW_CHECKS:
        assert check.field is not None
        if since is not None:
            recent = exp.GTE(this=ident(CLIENT_TS), expression=_timestamp(since))
        c = ident(check.field)
        if kind == "not_null":
            others = [n for n in columns if n != check.field]
            row: exp.Expr = exp.Null()
            if others:
                row = exp.Struct(
                    expressions=[
                        exp.PropertyEQ(this=exp.to_identifier(n), expression=ident(n))
                        for n in others
                    ]
                )
            return _select(_NOT_NULL, rel=rel, recent=recent, row=row, c=c, k=EXAMPLES)
        if kind == "accepted_values":
            bad = exp.Not(this=accepted_condition(c, check.params["values"]))
            return _select(_value_check(bad), rel=rel, recent=recent, c=c, bad=bad, k=EXAMPLES)
        if kind == "range":
            low, high = check.params.get("min"), check.params.get("max")
            bad = exp.Not(this=range_condition(c, low, high))
            return _select(_value_check(bad), rel=rel, recent=recent, c=c, bad=bad, k=EXAMPLES)
        template = _value_check(exp.true(), repeated=True)
        return _select(template, rel=rel, recent=recent, c=c, bad=exp.true(), k=EXAMPLES)
    if kind == "freshness":
        oldest = now - dt.timedelta(hours=float(check.params["max_age_hours"]))
        when = (
            ident(RECEIVED_TS)
            if check.field is None
            else _parse("TRY_CAST(p__c AS TIMESTAMPTZ)", c=ident(check.field))
        )
        return _select(_FRESHNESS, rel=rel, recent=recent, when=when, oldest=_timestamp(oldest))
    if kind == "row_count_change":
        last = now.astimezone(dt.UTC).date() - dt.timedelta(days=1)
        before = last - dt.timedelta(days=1)
        start = dt.datetime.combine(before, dt.time(), dt.UTC)
        return _select(
            _ROW_COUNT_CHANGE,
            rel=rel,
            recent=recent,
            ts=ident(CLIENT_TS),
            start=_timestamp(start),
            middle=_timestamp(start + dt.timedelta(days=1)),
            end=_timestamp(start + dt.timedelta(days=2)),
            limit=exp.Literal.number(repr(float(check.params["max_change"]))),
            last=last.isoformat(),
            before=before.isoformat(),
        )
    raise ModelError(f"unknown check {kind!r}")
