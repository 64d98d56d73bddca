"""SQL building blocks shared by every analysis: one sqlglot tree, rendered per engine (pure).

Analyses build dialect-neutral trees from standard nodes plus the few functions defined here,
whose spelling differs between engines. ``render(tree, engine)`` prints the SQL for DuckDB or
ClickHouse. Every analysis starts from :func:`events_cte`, which applies the shared semantics:
read only the named events dated inside the read window, collapse copies of an event (same
``event_id`` and ``name``) to the first received one, then apply the filters.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal, TypeAlias

import sqlglot
from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.generator import Generator
from sqlglot.generators.clickhouse import ClickHouseGenerator
from sqlglot.generators.duckdb import DuckDBGenerator

from tallystick.metrics.params import EVENT_UNIT, Filter, Grain
from tallystick.schema import FIELDS_BY_PATH, column_for

EngineName: TypeAlias = Literal["duckdb", "clickhouse"]
ENGINES: Final[tuple[EngineName, ...]] = ("duckdb", "clickhouse")

# --------------------------------------------------------------------------------------------
# Engine-specific functions (neutral nodes; each dialect below says how to print them)


class PeriodStart(exp.Expression, exp.Func):
    """The first date (DATE) of the day, week (Monday) or month containing a UTC timestamp."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "grain": True}


class UtcDate(exp.Expression, exp.Func):
    """The UTC calendar date of a timestamp."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True}


class DateValue(exp.Expression, exp.Func):
    """A DATE literal."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True}


class TimestampValue(exp.Expression, exp.Func):
    """A UTC timestamp literal at midnight of a date (``this``: ``YYYY-MM-DD``)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True}


class InstantValue(exp.Expression, exp.Func):
    """A UTC timestamp literal (``this``: ``YYYY-MM-DD HH:MM:SS.ffffff``)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True}


class InNetwork(exp.Expression, exp.Func):
    """Whether ``this``, a network as the lake stores it in ``geo_network`` (``a.b.c.0/24``,
    ``h:h:h::/48``), lies inside the network from ``low`` to ``high`` (its first and last
    address, as text) of IP ``version`` 4 or 6; false for other text and NULL."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "low": True, "high": True, "version": True}


class KeyHash(exp.Expression, exp.Func):
    """A 64-bit hash of several values (to find repeated keys cheaply; may collide)."""

    arg_types: ClassVar[dict[str, Any]] = {"expressions": True}
    is_var_len_args = True


class JsonText(exp.Expression, exp.Func):
    """A top-level key of a JSON text rendered as text (strings as is, other values as JSON);
    NULL for missing keys, JSON null and the empty string."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True}


class JsonNumber(exp.Expression, exp.Func):
    """A top-level key of a JSON text as DOUBLE when it is a JSON number, else NULL."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True}


class AddMicros(exp.Expression, exp.Func):
    """``this`` (a timestamp) plus an integer number of microseconds."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "micros": True}


class SecondsBetween(exp.Expression, exp.Func):
    """``(this - start)`` in seconds, as a DOUBLE with microsecond precision."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "start": True}


class Quantile(exp.Expression, exp.AggFunc):
    """Exact quantile with linear interpolation (numpy's default), q in [0, 1]."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "q": True}


class PeriodIndex(exp.Expression, exp.Func):
    """How many whole periods ``this`` (a period start date) lies after ``start``."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "start": True, "grain": True}


def _q(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _grain(e: exp.Expr) -> str:
    return str(e.args["grain"].name)


def _duck_json_path(e: exp.Expr) -> str:
    key = str(e.args["key"].name)
    return _q('$."' + key.replace('"', '\\"') + '"')


# DuckDB's calendar functions on TIMESTAMPTZ go through ICU and cost ~30x integer arithmetic on
# the epoch, so days and weeks are computed from microseconds since 1970-01-01T00:00Z (exact in
# UTC; fdiv floors, so times before 1970 work too). 1970-01-05 was a Monday.
_US_PER_DAY: Final = 86_400_000_000
_US_PER_WEEK: Final = 7 * _US_PER_DAY
_MONDAY_OFFSET_US: Final = 4 * _US_PER_DAY


def _duck_utc_date(ts: str) -> str:
    return f"(DATE '1970-01-01' + CAST(fdiv(epoch_us({ts}), {_US_PER_DAY}) AS INTEGER))"


def _duck_period(self: Generator, e: exp.Expr) -> str:
    ts, grain = self.sql(e, "this"), _grain(e)
    if grain == "week":
        weeks = f"CAST(fdiv(epoch_us({ts}) - {_MONDAY_OFFSET_US}, {_US_PER_WEEK}) AS INTEGER)"
        return f"(DATE '1970-01-05' + 7 * {weeks})"
    day = _duck_utc_date(ts)
    return day if grain == "day" else f"CAST(date_trunc('month', {day}) AS DATE)"


def _duck_period_index(self: Generator, e: exp.Expr) -> str:
    this, start, grain = self.sql(e, "this"), self.sql(e, "start"), _grain(e)
    if grain == "month":
        return f"((year({this}) - year({start})) * 12 + month({this}) - month({start}))"
    days = f"date_diff('day', {start}, {this})"
    return days if grain == "day" else f"({days} // 7)"


def _duck_json_text(self: Generator, e: exp.Expr) -> str:
    return f"NULLIF(json_extract_string({self.sql(e, 'this')}, {_duck_json_path(e)}), '')"


def _duck_json_number(self: Generator, e: exp.Expr) -> str:
    this, path = self.sql(e, "this"), _duck_json_path(e)
    return (
        f"CASE WHEN json_type({this}, {path}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') "
        f"THEN CAST(json_extract({this}, {path}) AS DOUBLE) END"
    )


def _network_bounds(e: exp.Expr) -> tuple[int, str, str]:
    return int(e.args["version"].name), str(e.args["low"].name), str(e.args["high"].name)


def _duck_in_network(self: Generator, e: exp.Expr) -> str:
    # DuckDB has no IP functions without an extension, so the stored network's leading bits
    # are read from its text: the first three octets of a.b.c.0/24 (24 bits), the first three
    # groups of h:h:h::/48 (48 bits; a group left out by "::" is 0), compared with the range's.
    this = self.sql(e, "this")
    version, low, high = _network_bounds(e)
    if version == 4:
        parts = [f"TRY_CAST(split_part({this}, '.', {i}) AS BIGINT)" for i in (1, 2, 3)]
        key = f"({parts[0]} * 65536 + {parts[1]} * 256 + {parts[2]})"
        lo = int(ipaddress.IPv4Address(low)) >> 8
        hi = int(ipaddress.IPv4Address(high)) >> 8
        family = f"{this} LIKE '%.%.%.%'"
    else:
        head = f"split_part({this}, '::', 1)"
        groups = [
            f"TRY_CAST('0x' || coalesce(nullif(split_part({head}, ':', {i}), ''), '0') AS BIGINT)"
            for i in (1, 2, 3)
        ]
        key = f"({groups[0]} * 4294967296 + {groups[1]} * 65536 + {groups[2]})"
        lo = int(ipaddress.IPv6Address(low)) >> 80
        hi = int(ipaddress.IPv6Address(high)) >> 80
        family = f"{this} LIKE '%:%' AND NOT {this} LIKE '%.%'"
    return f"coalesce({family} AND {key} BETWEEN {lo} AND {hi}, FALSE)"


class TallyDuckDB(DuckDB):
    class Generator(DuckDBGenerator):
        TRANSFORMS: ClassVar[dict[type[exp.Expr], Any]] = {
            **DuckDBGenerator.TRANSFORMS,
            PeriodStart: _duck_period,
            UtcDate: lambda self, e: _duck_utc_date(self.sql(e, "this")),
            DateValue: lambda self, e: f"DATE {_q(e.this.name)}",
            TimestampValue: lambda self, e: f"TIMESTAMPTZ {_q(e.this.name + ' 00:00:00+00')}",
            InstantValue: lambda self, e: f"TIMESTAMPTZ {_q(e.this.name + '+00')}",
            InNetwork: _duck_in_network,
            KeyHash: lambda self, e: f"hash({self.expressions(e, flat=True)})",
            JsonText: _duck_json_text,
            JsonNumber: _duck_json_number,
            AddMicros: lambda self, e: (
                f"({self.sql(e, 'this')} + to_microseconds({self.sql(e, 'micros')}))"
            ),
            SecondsBetween: lambda self, e: (
                f"((epoch_us({self.sql(e, 'this')}) - epoch_us({self.sql(e, 'start')})) "
                "/ 1000000.0)"
            ),
            Quantile: lambda self, e: f"quantile_cont({self.sql(e, 'this')}, {self.sql(e, 'q')})",
            PeriodIndex: _duck_period_index,
        }


_CH_PERIOD: Final = {"day": "toDate", "week": "toMonday", "month": "toStartOfMonth"}


def _ch_json_text(self: Generator, e: exp.Expr) -> str:
    this, key = self.sql(e, "this"), _q(str(e.args["key"].name))
    kind = f"JSONType({this}, {key})"
    return (
        f"multiIf({kind} = 'String', nullIf(JSONExtractString({this}, {key}), ''), "
        f"{kind} = 'Null', NULL, nullIf(JSONExtractRaw({this}, {key}), ''))"
    )


def _ch_json_number(self: Generator, e: exp.Expr) -> str:
    this, key = self.sql(e, "this"), _q(str(e.args["key"].name))
    return (
        f"if(JSONType({this}, {key}) IN ('Int64', 'UInt64', 'Double'), "
        f"toNullable(JSONExtractFloat({this}, {key})), NULL)"
    )


def _ch_period_index(self: Generator, e: exp.Expr) -> str:
    this, start, grain = self.sql(e, "this"), self.sql(e, "start"), _grain(e)
    if grain == "month":
        return f"((toYear({this}) - toYear({start})) * 12 + toMonth({this}) - toMonth({start}))"
    days = f"dateDiff('day', {start}, {this})"
    return days if grain == "day" else f"intDiv({days}, 7)"


def _ch_in_network(self: Generator, e: exp.Expr) -> str:
    this = self.sql(e, "this")
    version, low, high = _network_bounds(e)
    address = f"splitByChar('/', ifNull({this}, ''))[1]"
    if version == 4:
        value = f"toIPv4OrNull({address})"
        bounds = f"toIPv4({_q(low)}) AND toIPv4({_q(high)})"
        family = f"position(ifNull({this}, ''), '.') > 0"
    else:
        value = f"toIPv6OrNull({address})"
        bounds = f"toIPv6({_q(low)}) AND toIPv6({_q(high)})"
        family = f"position(ifNull({this}, ''), '.') = 0"
    return f"ifNull({family} AND {value} BETWEEN {bounds}, false)"


class TallyClickHouse(ClickHouse):
    class Generator(ClickHouseGenerator):
        TRANSFORMS: ClassVar[dict[type[exp.Expr], Any]] = {
            **ClickHouseGenerator.TRANSFORMS,
            PeriodStart: lambda self, e: f"{_CH_PERIOD[_grain(e)]}({self.sql(e, 'this')})",
            UtcDate: lambda self, e: f"toDate({self.sql(e, 'this')})",
            DateValue: lambda self, e: f"toDate({_q(e.this.name)})",
            TimestampValue: lambda self, e: f"toDateTime64({_q(e.this.name)}, 6, 'UTC')",
            InstantValue: lambda self, e: f"toDateTime64({_q(e.this.name)}, 6, 'UTC')",
            InNetwork: _ch_in_network,
            KeyHash: lambda self, e: f"cityHash64({self.expressions(e, flat=True)})",
            JsonText: _ch_json_text,
            JsonNumber: _ch_json_number,
            AddMicros: lambda self, e: (
                f"addMicroseconds({self.sql(e, 'this')}, {self.sql(e, 'micros')})"
            ),
            SecondsBetween: lambda self, e: (
                f"((toUnixTimestamp64Micro({self.sql(e, 'this')}) - "
                f"toUnixTimestamp64Micro({self.sql(e, 'start')})) / 1000000.0)"
            ),
            Quantile: lambda self, e: (
                f"quantileExactInclusive({self.sql(e, 'q')})({self.sql(e, 'this')})"
            ),
            PeriodIndex: _ch_period_index,
        }


_DIALECTS: Final[dict[str, type[sqlglot.Dialect]]] = {
    "duckdb": TallyDuckDB,
    "clickhouse": TallyClickHouse,
}


def render(tree: exp.Expr, engine: EngineName, *, pretty: bool = False) -> str:
    """The SQL text of ``tree`` for ``engine``."""
    return tree.sql(dialect=_DIALECTS[engine], pretty=pretty)


# --------------------------------------------------------------------------------------------
# Small constructors


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def lit(value: str | int | float) -> exp.Expr:
    if isinstance(value, str):
        return exp.Literal.string(value)
    return exp.Literal.number(value)


def date(value: dt.date) -> exp.Expr:
    return DateValue(this=exp.Literal.string(value.isoformat()))


def timestamp(day: dt.date) -> exp.Expr:
    """Midnight UTC at the start of ``day``, as a timestamp literal."""
    return TimestampValue(this=exp.Literal.string(day.isoformat()))


def instant(at: dt.datetime) -> exp.Expr:
    """``at`` (an aware time) as a UTC timestamp literal, to the microsecond."""
    text = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return InstantValue(this=exp.Literal.string(text))


def in_network(value: exp.Expr, version: int, low: str, high: str) -> exp.Expr:
    """Whether the stored network ``value`` lies in the range ``low``..``high`` (see
    :class:`InNetwork`)."""
    return InNetwork(
        this=value,
        low=exp.Literal.string(low),
        high=exp.Literal.string(high),
        version=exp.Literal.number(version),
    )


def period(ts: exp.Expr, grain: Grain) -> exp.Expr:
    return PeriodStart(this=ts, grain=exp.var(grain))


def period_index(this: exp.Expr, start: exp.Expr, grain: Grain) -> exp.Expr:
    return PeriodIndex(this=this, start=start, grain=exp.var(grain))


def utc_date(ts: exp.Expr) -> exp.Expr:
    return UtcDate(this=ts)


def quantile(value: exp.Expr, q: float) -> exp.Expr:
    return Quantile(this=value, q=exp.Literal.number(repr(q)))


def seconds_between(end: exp.Expr, start: exp.Expr) -> exp.Expr:
    return SecondsBetween(this=end, start=start)


def add_micros(ts: exp.Expr, micros: int) -> exp.Expr:
    return AddMicros(this=ts, micros=exp.Literal.number(micros))


def is_in(value: exp.Expr, items: Sequence[str]) -> exp.Expr:
    if len(items) == 1:
        return exp.EQ(this=value, expression=lit(items[0]))
    return exp.In(this=value, expressions=[lit(i) for i in items])


def count_distinct(value: exp.Expr) -> exp.Expr:
    return exp.Count(this=exp.Distinct(expressions=[value]))


def when(cond: exp.Expr, value: exp.Expr) -> exp.Expr:
    return exp.Case(ifs=[exp.If(this=cond, true=value)])


def cte(query: exp.Select, *steps: tuple[str, exp.Expr]) -> exp.Select:
    """``query`` preceded by ``WITH name AS (step), ...``."""
    for name, step in steps:
        query = query.with_(name, as_=step, copy=False)
    return query


# --------------------------------------------------------------------------------------------
# Fields


def raw_columns(path: str) -> list[str]:
    """The lake columns needed to evaluate field ``path``."""
    column = column_for(path)
    return ["data"] if column.startswith("data.") else [column]


def field_text(path: str, table: str | None = None) -> exp.Expr:
    """Field ``path`` as text, NULL when missing or empty (the shared rendering rule)."""
    column = column_for(path)
    if column.startswith("data."):
        return JsonText(this=col("data", table), key=exp.var(column[5:]))
    kind = FIELDS_BY_PATH[path].kind
    value = col(column, table)
    if kind == "bool":
        return exp.Case(
            ifs=[
                exp.If(this=value.copy(), true=lit("true")),
                exp.If(this=exp.Not(this=value.copy()), true=lit("false")),
            ]
        )
    if kind == "int":
        return exp.cast(value, exp.DataType.build("text"))
    return exp.Nullif(this=value, expression=lit(""))


def json_number(path: str, table: str | None = None) -> exp.Expr:
    """``data.<key>`` as a DOUBLE when it is a JSON number (anything else is NULL)."""
    column = column_for(path)
    if not column.startswith("data."):
        kind = FIELDS_BY_PATH[path].kind
        if kind not in ("int", "float"):
            raise ValueError(f"{path} is not numeric")
        return exp.cast(col(column, table), exp.DataType.build("double"))
    return JsonNumber(this=col("data", table), key=exp.var(column[5:]))


def filter_condition(f: Filter, table: str | None = None) -> exp.Expr:
    """The SQL condition of ``f`` (null-safe: missing never matches = / in, always matches !=)."""
    value = field_text(f.field, table)
    if f.op == "=":
        return exp.EQ(this=value, expression=lit(f.values[0]))
    if f.op == "in":
        return exp.In(this=value, expressions=[lit(v) for v in f.values])
    return exp.Or(
        this=exp.Is(this=value.copy(), expression=exp.Null()),
        expression=exp.NEQ(this=value, expression=lit(f.values[0])),
    )


# --------------------------------------------------------------------------------------------
# The events every analysis starts from


def events_cte(
    source: exp.Expr,
    event_names: Sequence[str],
    *,
    day_from: dt.date | None,
    day_to: dt.date | None,
    unit: str,
    where: Sequence[Filter],
    breakdown: str | None,
    extra: dict[str, exp.Expr] | None = None,
    extra_paths: Sequence[str] = (),
) -> tuple[tuple[str, exp.Expr], ...]:
    """CTEs ``src``, ``rep``, ``dd`` and ``ev``: the analysis's events, one row per event.

    ``ev`` has ``event_id``, ``name``, ``ts`` (``client_ts``), ``day`` (its UTC date), ``unit``
    (text, NULL for anonymous events; the event id when ``unit`` is ``"event"``), ``bd`` (the
    breakdown value as text, or NULL) and the ``extra`` expressions (over the lake columns).
    Only events named in ``event_names`` dated in ``[day_from, day_to]`` are read; copies with
    the same ``event_id`` and ``name`` are collapsed to the first received one (then the
    earliest ``client_ts``), and then the ``where`` filters apply.
    """
    paths = [f.field for f in where] + list(extra_paths)
    if unit != EVENT_UNIT:
        paths.append(unit)
    if breakdown is not None:
        paths.append(breakdown)
    needed = ["event_id", "name", "client_ts", "received_ts"]
    for path in paths:
        needed += [c for c in raw_columns(path) if c not in needed]
    conditions: list[exp.Expr] = [is_in(col("name"), event_names)]
    if day_from is not None:
        conditions.append(exp.GTE(this=col("client_ts"), expression=timestamp(day_from)))
    if day_to is not None:
        end = timestamp(day_to + dt.timedelta(days=1))
        conditions.append(exp.LT(this=col("client_ts"), expression=end))
    # Copies are rare, so de-duplicate in two phases: keys whose hash occurs once are unique
    # and pass as they are; only rows with a repeated hash go through the exact window.
    key = exp.alias_(KeyHash(expressions=[col("event_id"), col("name")]), "h")
    src = exp.select(key, *needed).from_(source).where(exp.and_(*conditions))
    repeated = (
        exp.select(col("h"))
        .from_("src")
        .group_by(col("h"))
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=lit(1)))
    )
    in_repeated = exp.In(this=col("h"), query=exp.select("h").from_("rep").subquery())
    # Among copies received together (one per stream), prefer the one that has the most of
    # the columns this analysis reads: a stream's `keep` list may have narrowed another copy.
    missing: exp.Expr = lit(0)
    for c in needed:
        if c not in ("event_id", "name", "client_ts", "received_ts"):
            missing = exp.Add(
                this=missing,
                expression=exp.Case(
                    ifs=[exp.If(this=exp.Is(this=col(c), expression=exp.Null()), true=lit(1))],
                    default=lit(0),
                ),
            )
    first = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col("event_id"), col("name")],
        order=exp.Order(
            expressions=[
                exp.Ordered(this=col("received_ts")),
                exp.Ordered(this=col("client_ts")),
                exp.Ordered(this=missing),
            ]
        ),
    )
    unique_rows = exp.select("*").from_("src").where(exp.Not(this=in_repeated.copy()))
    copies = (
        exp.select("*")
        .from_("src")
        .where(in_repeated)
        .qualify(exp.EQ(this=first, expression=lit(1)))
    )
    dd = unique_rows.union(copies, distinct=False)
    unit_expr = col("event_id") if unit == EVENT_UNIT else field_text(unit)
    bd_expr = exp.Null() if breakdown is None else field_text(breakdown)
    columns: list[exp.Expr] = [
        col("event_id"),
        col("name"),
        exp.alias_(col("client_ts"), "ts"),
        exp.alias_(utc_date(col("client_ts")), "day"),
        exp.alias_(unit_expr, "unit"),
        exp.alias_(bd_expr, "bd"),
    ]
    columns += [exp.alias_(e, name) for name, e in (extra or {}).items()]
    ev = exp.select(*columns).from_("dd")
    if where:
        ev = ev.where(exp.and_(*(filter_condition(f) for f in where)))
    return (("src", src), ("rep", repeated), ("dd", dd), ("ev", ev))


def parse(sql: str) -> exp.Expr:
    """A fragment written in neutral SQL (DuckDB spelling of standard constructs)."""
    return sqlglot.parse_one(sql, read="duckdb")
