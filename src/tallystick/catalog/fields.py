"""The field catalog: every field ever seen in the lake, with its volume, growth and examples.

A field is a monoschema column that holds values (as its dotted path: ``page.url``) or a key of
``data`` (``data.load_ms``). For each one: its type (for data keys, the JSON types seen), when it
was first and last seen (``client_ts``), how many events carry it per day (the mean over the last
7 complete days), its counts in the last 4 complete weeks (Monday to Sunday) with a trend, the
event names and streams that carry it, about how many distinct values it takes and up to three
example values with personal data redacted (fully masked for fields that look personal).

``compute`` reads the lake with DuckDB in a few scans; ``refresh_fields`` stores the result in
the control store, which keeps fields the lake no longer holds (aged out: trend ``gone``) and the
earliest first sighting, so the catalog stays "every field ever seen"; ``read_fields`` reads it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from tallystick.catalog.personal import looks_personal, mask, redact
from tallystick.schema import FIELDS

if TYPE_CHECKING:
    import duckdb

    from tallystick.config import Settings
    from tallystick.control.store import ControlStore
    from tallystick.store.lake import Lake

__all__ = [
    "TRENDS",
    "FieldInfo",
    "Refresh",
    "compute",
    "merge",
    "read_fields",
    "refresh_fields",
    "trend",
    "window",
]

TRENDS: Final = ("growing", "stable", "shrinking", "new", "gone")
STABLE_PERCENT: Final = 10.0
"""A change first → last week within ± this many percent is ``stable``."""
EXAMPLES: Final = 3
_CANDIDATES: Final = 20
"""How many frequent values each field's personal-data check looks at."""
_SAMPLE: Final = 20_000
"""Columns' example values come from a sample of this many stored rows (data keys' from all)."""

_JSON_TYPES: Final = {
    "VARCHAR": "string",
    "BIGINT": "integer",
    "UBIGINT": "integer",
    "HUGEINT": "integer",
    "DOUBLE": "number",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}
_SKIPPED: Final = frozenset({"data"})
"""Columns that are not fields themselves (``data`` is its keys)."""


@dataclass(frozen=True, slots=True)
class Window:
    """The days the volume and the trend are measured over, for a reference ``today``."""

    today: dt.date
    days: tuple[dt.date, dt.date]
    """The last 7 complete days (first, last)."""
    weeks: tuple[dt.date, ...]
    """The Mondays of the last 4 complete weeks, oldest first."""

    @property
    def current_week(self) -> dt.date:
        return self.weeks[-1] + dt.timedelta(days=7)


def window(today: dt.date) -> Window:
    """The last 7 complete days before ``today`` and the last 4 complete Monday-to-Sunday
    weeks before the week of ``today``."""
    monday = today - dt.timedelta(days=today.weekday())
    weeks = tuple(monday - dt.timedelta(days=7 * k) for k in (4, 3, 2, 1))
    return Window(today, (today - dt.timedelta(days=7), today - dt.timedelta(days=1)), weeks)


def trend(weekly: Sequence[int], last_seen: dt.datetime, current_week: dt.date) -> str:
    """``growing`` / ``stable`` / ``shrinking`` by the change from the first to the last of the
    weekly counts (± ``STABLE_PERCENT`` is stable); ``new`` when the first week has none but
    the last has some (or only the current, incomplete week has any); ``gone`` when the last
    week has none (or no week has any and it was not seen this week either)."""
    first, last = weekly[0], weekly[-1]
    if not any(weekly):
        return "new" if last_seen.date() >= current_week else "gone"
    if last == 0:
        return "gone"
    if first == 0:
        return "new"
    change = change_percent(weekly)
    assert change is not None
    if change > STABLE_PERCENT:
        return "growing"
    if change < -STABLE_PERCENT:
        return "shrinking"
    return "stable"


def change_percent(weekly: Sequence[int]) -> float | None:
    """The change from the first to the last weekly count in percent (None: the first is 0)."""
    if not weekly or weekly[0] == 0:
        return None
    return round((weekly[-1] - weekly[0]) * 100.0 / weekly[0], 1)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One field of the catalog."""

    name: str
    """``page.url`` for a column, ``data.<key>`` for a data key."""
    kind: str
    """``column`` or ``data``."""
    types: tuple[str, ...]
    """The column's kind (``string``, ``timestamp``, ...) or the JSON types seen (data keys)."""
    first_seen: dt.datetime
    last_seen: dt.datetime
    events: int = 0
    """Events in the lake that carry it (each event once, however many streams stored it)."""
    per_day: float = 0.0
    """Mean events per day over the last 7 complete days."""
    weeks: tuple[dt.date, ...] = ()
    weekly: tuple[int, ...] = ()
    """Events in each of the last 4 complete weeks (the Mondays in ``weeks``), oldest first."""
    change_pct: float | None = None
    trend: str = "gone"
    event_names: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    distinct: int = 0
    """About how many distinct values (HyperLogLog)."""
    examples: tuple[str, ...] = ()
    """Up to three values, redacted (fully masked when ``personal``)."""
    personal: str | None = None
    """Why the field looks personal, or None."""
    in_lake: bool = True
    """False once the lake no longer holds it (aged out): only the store remembers it."""
    as_of: dt.date | None = None
    refreshed_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def type(self) -> str:
        """The types as one text (``integer|string``), ``mixed`` when too long to store."""
        joined = "|".join(self.types) or "null"
        return joined if len(joined) <= 32 else "mixed"

    def stats(self) -> dict[str, Any]:
        """What the control store keeps beside name, type and first/last seen (JSON)."""
        return {
            "kind": self.kind,
            "types": list(self.types),
            "events": self.events,
            "per_day": self.per_day,
            "weeks": [w.isoformat() for w in self.weeks],
            "weekly": list(self.weekly),
            "change_pct": self.change_pct,
            "trend": self.trend,
            "event_names": list(self.event_names),
            "streams": list(self.streams),
            "distinct": self.distinct,
            "examples": list(self.examples),
            "personal": self.personal,
            "in_lake": self.in_lake,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
        }

    def row(self) -> dict[str, Any]:
        """The row ``ControlStore.upsert_fields`` takes."""
        return {
            "name": self.name,
            "type": self.type,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "stats": self.stats(),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FieldInfo:
        """A field as ``ControlStore.fields()`` returns it."""
        stats: dict[str, Any] = dict(row.get("stats") or {})
        as_of = stats.get("as_of")
        return cls(
            name=str(row["name"]),
            kind=str(
                stats.get("kind") or ("data" if row["name"].startswith("data.") else "column")
            ),
            types=tuple(stats.get("types") or [row["type"]]),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            events=int(stats.get("events") or 0),
            per_day=float(stats.get("per_day") or 0.0),
            weeks=tuple(dt.date.fromisoformat(w) for w in stats.get("weeks") or ()),
            weekly=tuple(int(n) for n in stats.get("weekly") or ()),
            change_pct=stats.get("change_pct"),
            trend=str(stats.get("trend") or "gone"),
            event_names=tuple(stats.get("event_names") or ()),
            streams=tuple(stats.get("streams") or ()),
            distinct=int(stats.get("distinct") or 0),
            examples=tuple(stats.get("examples") or ()),
            personal=stats.get("personal"),
            in_lake=bool(stats.get("in_lake", True)),
            as_of=None if not as_of else dt.date.fromisoformat(as_of),
            refreshed_at=row.get("updated_at"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The field as ``tally catalog fields --json`` and the HTTP API show it."""
        return {
            "name": self.name,
            "kind": self.kind,
            "type": "|".join(self.types),
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "events": self.events,
            "per_day": self.per_day,
            "weekly": [
                {"week": w.isoformat(), "events": n}
                for w, n in zip(self.weeks, self.weekly, strict=False)
            ],
            "change_pct": self.change_pct,
            "trend": self.trend,
            "event_names": list(self.event_names),
            "streams": list(self.streams),
            "distinct": self.distinct,
            "examples": list(self.examples),
            "personal": self.personal,
            "in_lake": self.in_lake,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "refreshed_at": None if self.refreshed_at is None else _iso(self.refreshed_at),
        }

    def gone(self, win: Window) -> FieldInfo:
        """This field once the lake no longer holds it: what was learnt stays, the volume is 0."""
        return replace(
            self,
            events=0,
            per_day=0.0,
            weeks=win.weeks,
            weekly=(0,) * len(win.weeks),
            change_pct=None,
            trend="gone",
            in_lake=False,
            as_of=win.today,
        )


# -- computing from the lake ---------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class _Column:
    path: str
    column: str
    kind: str

    @property
    def present(self) -> str:
        """SQL: this row holds a value in the column."""
        col = _quote(self.column)
        if self.kind == "map":
            return f"({col} IS NOT NULL AND cardinality({col}) > 0)"
        return f"{col} IS NOT NULL"

    @property
    def count(self) -> str:
        """SQL: how many rows hold a value in the column."""
        if self.kind == "map":
            return f"count(*) FILTER (WHERE {self.present})"
        return f"count({_quote(self.column)})"


def _columns(con: duckdb.DuckDBPyConnection) -> tuple[list[_Column], set[str]]:
    """The monoschema columns the lake's files have, and every column name."""
    names = {str(r[0]) for r in con.execute("DESCRIBE raw_events").fetchall()}
    columns = [
        _Column(f.path, f.column, f.kind)
        for f in FIELDS
        if f.column in names and f.column not in _SKIPPED
    ]
    return columns, names


def _build_base(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    columns: list[_Column],
    names: set[str],
    hidden: frozenset[str] = frozenset(),
) -> None:
    """``base``: every stored copy with its day and whether it is the event's first copy (the
    one the de-duplicated ``events`` view keeps: earliest ``received_ts``, then ``client_ts``),
    holding only the columns needed.

    Duplicates (re-sent events, copies in several streams) are found by a hash aggregate and
    only they are ranked, which costs far less than a window over every row. The copies of
    ``hidden`` streams (private streams the reader may not see) are left out first.
    """
    from tallystick.store.lake import EVENTS

    glob = _literal(lake.glob(EVENTS))
    visible = ""
    if hidden and "stream" in names:
        listed = ", ".join(_literal(h) for h in sorted(hidden))
        visible = f" WHERE stream IS NULL OR stream NOT IN ({listed})"
    con.execute(
        "CREATE TEMP VIEW located AS SELECT * FROM read_parquet("
        f"{glob}, union_by_name = true, filename = true, file_row_number = true){visible}"
    )
    con.execute(
        "CREATE TEMP TABLE copies AS WITH repeated AS (SELECT event_id AS copy_event, "
        "name AS copy_name FROM located GROUP BY ALL HAVING count(*) > 1) "
        "SELECT copy_event, copy_name, arg_min(filename || ':' || file_row_number, "
        "(epoch_us(received_ts)::HUGEINT << 64) + epoch_us(client_ts)) AS first "
        "FROM located JOIN repeated ON event_id = copy_event AND name = copy_name GROUP BY ALL"
    )
    wanted = [c.column for c in columns if c.column not in {"client_ts", "name"}]
    stream = "r.stream" if "stream" in names else "CAST(NULL AS VARCHAR) AS stream"
    data = "r.data" if "data" in names else "CAST(NULL AS VARCHAR) AS data"
    con.execute(
        "CREATE TEMP TABLE base AS SELECT r.name, r.client_ts, "
        f"CAST(r.client_ts AS DATE) AS day, {stream}, {data}, "
        + "".join(f"r.{_quote(c)}, " for c in wanted)
        + "c.copy_event IS NULL "
        "OR c.first = r.filename || ':' || r.file_row_number AS first_copy "
        "FROM located AS r LEFT JOIN copies AS c "
        "ON r.event_id = c.copy_event AND r.name = c.copy_name"
    )


def _build_long(con: duckdb.DuckDBPyConnection, columns: list[_Column]) -> None:
    """``long``: per field, day, event name, stream and first-copy flag, how many rows carry
    the field and their first and last ``client_ts``; data keys in ``kv`` (one row per key)."""
    measures = ", ".join(
        f"{c.count} AS {_quote('n:' + c.path)}, "
        f"min(client_ts) FILTER (WHERE {c.present}) AS {_quote('f:' + c.path)}, "
        f"max(client_ts) FILTER (WHERE {c.present}) AS {_quote('l:' + c.path)}"
        for c in columns
    )
    con.execute(
        f"CREATE TEMP TABLE grouped AS SELECT day, name, stream, first_copy, {measures} "
        "FROM base GROUP BY ALL"
    )
    con.execute(
        "CREATE TEMP TABLE kv AS SELECT day, name, stream, first_copy, client_ts, "
        "'data.' || unnest(json_keys(data)) AS field FROM base WHERE data IS NOT NULL"
    )
    # The values and their JSON types of each event once (its first copy): parsing is the cost.
    con.execute(
        "CREATE TEMP TABLE kv_values AS SELECT 'data.' || key AS field, "
        "json_type(data, '$.\"' || key || '\"') AS jtype, "
        "json_extract_string(data, '$.\"' || key || '\"') AS value "
        "FROM (SELECT data, unnest(json_keys(data)) AS key FROM base "
        "WHERE data IS NOT NULL AND first_copy)"
    )
    parts = [
        f"SELECT {_literal(c.path)} AS field, day, name, stream, first_copy, "
        f"{_quote('n:' + c.path)} AS n, {_quote('f:' + c.path)} AS f, "
        f"{_quote('l:' + c.path)} AS l FROM grouped WHERE {_quote('n:' + c.path)} > 0"
        for c in columns
    ]
    parts.append(
        "SELECT field, day, name, stream, first_copy, count(*) AS n, min(client_ts) AS f, "
        "max(client_ts) AS l FROM kv GROUP BY ALL"
    )
    con.execute("CREATE TEMP TABLE long AS " + " UNION ALL ".join(parts))


def _volumes(con: duckdb.DuckDBPyConnection, win: Window) -> list[tuple[Any, ...]]:
    week_sums = ", ".join(
        f"coalesce(sum(n) FILTER (WHERE first_copy AND day BETWEEN DATE '{w}' "
        f"AND DATE '{w + dt.timedelta(days=6)}'), 0) AS w{i}"
        for i, w in enumerate(win.weeks)
    )
    return con.execute(
        "SELECT field, min(f), max(l), coalesce(sum(n) FILTER (WHERE first_copy), 0), "
        f"coalesce(sum(n) FILTER (WHERE first_copy AND day BETWEEN DATE '{win.days[0]}' "
        f"AND DATE '{win.days[1]}'), 0), "
        f"{week_sums}, "
        "list(DISTINCT name ORDER BY name), "
        "list(DISTINCT stream ORDER BY stream) FILTER (WHERE stream IS NOT NULL) "
        "FROM long GROUP BY field ORDER BY field"
    ).fetchall()


def _values(
    con: duckdb.DuckDBPyConnection, columns: list[_Column]
) -> dict[str, tuple[int, list[str], list[str]]]:
    """Per field: approximate distinct values, the most frequent values (as text) and the JSON
    types seen (data keys)."""
    out: dict[str, tuple[int, list[str], list[str]]] = {}
    if columns:
        counts = ", ".join(f"approx_count_distinct({_quote(c.column)})" for c in columns)
        tops = ", ".join(
            f"approx_top_k(CAST({_quote(c.column)} AS VARCHAR), {_CANDIDATES}) "
            f"FILTER (WHERE {c.present})"
            for c in columns
        )
        distinct = con.execute(f"SELECT {counts} FROM base").fetchone()
        top = con.execute(
            f"SELECT {tops} FROM (SELECT * FROM base "
            f"USING SAMPLE reservoir({_SAMPLE} ROWS) REPEATABLE (7))"
        ).fetchone()
        assert distinct is not None
        assert top is not None
        for i, c in enumerate(columns):
            out[c.path] = (int(distinct[i] or 0), list(top[i] or []), [c.kind])
    for name, distinct, top, types in con.execute(
        f"SELECT field, approx_count_distinct(value), approx_top_k(value, {_CANDIDATES}) "
        "FILTER (WHERE value IS NOT NULL), list(DISTINCT jtype) FROM kv_values GROUP BY field"
    ).fetchall():
        kinds = sorted({_JSON_TYPES.get(str(t), str(t).lower()) for t in types or ()})
        out[str(name)] = (int(distinct or 0), list(top or []), kinds)
    return out


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def examples_for(name: str, values: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """Whether ``name`` looks personal (from its name and ``values``) and up to three examples:
    fully masked when it does, redacted otherwise."""
    texts = [str(v) for v in values]
    personal = looks_personal(name, texts)
    shown = texts[:EXAMPLES]
    if personal is not None:
        return personal, tuple(dict.fromkeys(mask(v) for v in shown))
    return None, tuple(dict.fromkeys(redact(v, field=name) for v in shown))


def compute(
    lake: Lake, today: dt.date | None = None, hidden: frozenset[str] = frozenset()
) -> list[FieldInfo]:
    """Every field the lake holds now, measured relative to ``today`` (default: today in UTC),
    without the copies of ``hidden`` streams."""
    from tallystick.store.lake import EVENTS
    from tallystick.store.reader import with_retry

    win = window(today or dt.datetime.now(dt.UTC).date())

    def work(con: duckdb.DuckDBPyConnection) -> list[FieldInfo]:
        columns, names = _columns(con)
        if not lake.files(EVENTS):
            return []
        _build_base(con, lake, columns, names, hidden)
        _build_long(con, columns)
        values = _values(con, columns)
        out: list[FieldInfo] = []
        for row in _volumes(con, win):
            name, first, last, events, last7 = row[:5]
            weekly = tuple(int(n) for n in row[5 : 5 + len(win.weeks)])
            event_names, streams = row[5 + len(win.weeks) :]
            distinct, top, types = values.get(name, (0, [], []))
            personal, shown = examples_for(name, top)
            last_seen = _aware(last)
            out.append(
                FieldInfo(
                    name=name,
                    kind="data" if name.startswith("data.") else "column",
                    types=tuple(types),
                    first_seen=_aware(first),
                    last_seen=last_seen,
                    events=int(events),
                    per_day=round(int(last7) / 7, 2),
                    weeks=win.weeks,
                    weekly=weekly,
                    change_pct=change_percent(weekly),
                    trend=trend(weekly, last_seen, win.current_week),
                    event_names=tuple(event_names or ()),
                    streams=tuple(streams or ()),
                    distinct=distinct,
                    examples=shown,
                    personal=personal,
                    as_of=win.today,
                )
            )
        return out

    return with_retry(lake, work)


# -- keeping them ------------------------------------------------------------------------------


def merge(
    stored: Iterable[FieldInfo], current: Iterable[FieldInfo], today: dt.date
) -> list[FieldInfo]:
    """The catalog after a refresh: the lake's fields as measured now (first seen no later
    than ever stored), and every stored field the lake no longer holds as ``gone``."""
    win = window(today)
    now = {f.name: f for f in current}
    out: dict[str, FieldInfo] = {}
    for old in stored:
        fresh = now.pop(old.name, None)
        if fresh is None:
            out[old.name] = old.gone(win)
        else:
            out[old.name] = replace(
                fresh,
                first_seen=min(fresh.first_seen, old.first_seen),
                last_seen=max(fresh.last_seen, old.last_seen),
            )
    out.update(now)
    return [out[name] for name in sorted(out)]


def read_fields(store: ControlStore) -> list[FieldInfo]:
    """The catalog as last refreshed (``refresh_fields``), by name."""
    return [FieldInfo.from_row(row) for row in store.fields()]


@dataclass(frozen=True, slots=True)
class Refresh:
    fields: list[FieldInfo]
    seconds: float
    """How long reading the lake took."""


def refresh(lake: Lake, store: ControlStore, today: dt.date | None = None) -> Refresh:
    """Measure the lake's fields and store them merged with what the store remembers."""
    day = today or dt.datetime.now(dt.UTC).date()
    started = time.perf_counter()
    current = compute(lake, day)
    seconds = time.perf_counter() - started
    merged = merge(read_fields(store), current, day)
    store.upsert_fields([f.row() for f in merged])
    return Refresh(read_fields(store), seconds)


def refresh_fields(
    settings: Settings, store: ControlStore, today: dt.date | None = None
) -> list[FieldInfo]:
    """Refresh the field catalog of ``settings``' lake in ``store``; every field ever seen."""
    from tallystick.store.lake import Lake

    return refresh(Lake(settings.lake_dir), store, today).fields
