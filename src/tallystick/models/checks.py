"""Running data-quality checks on models and naming every failure precisely.

A check runs on its model's relation: a view model's rows as the lake holds them now (incoming
data), a table model's last snapshot (modelled data; build it first). Each result is a
``CheckRun``: passed or not, ``failing`` of ``checked`` rows (for freshness and row-count
change, ``failing`` is 1 when the measure is over its limit and ``checked`` the rows measured;
see ``models.sql.check_query``), a message that names the check, the column, the counts, a few
offending values and, for freshness and row-count change, the measured age or change against
the limit; and the examples as data.
``run_checks`` stores every result in the control plane (``ControlStore.latest_checks`` reads
the newest of each check back).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import duckdb
import pyarrow.parquet as pq

from tallystick.config import Settings
from tallystick.control.definitions import Check, Model
from tallystick.control.store import CheckRun, ControlStore
from tallystick.models import sql
from tallystick.models.build import data_types, lake_glob, select_models, snapshot_file
from tallystick.models.sql import ModelError
from tallystick.store.reader import retry_io

TARGET_KIND: Final = "model"
_MEASURES: Final = ("freshness", "row_count_change")
_SHOWN: Final = 3
"""How many examples a message names (the run keeps up to ``sql.EXAMPLES``)."""


def labels(checks: Sequence[Check]) -> list[str]:
    """Each check's label, unique within its model (a repeated one gets `` #2``, `` #3``...)."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for check in checks:
        seen[check.label] = seen.get(check.label, 0) + 1
        n = seen[check.label]
        out.append(check.label if n == 1 else f"{check.label} #{n}")
    return out


def plain(value: Any) -> Any:
    """``value`` as JSON data: times as ISO 8601 (UTC, ``Z``), decimals and odd floats as
    numbers or text, mappings and lists element by element."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# -- messages ------------------------------------------------------------------------------


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def _value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dt.datetime):
        return str(plain(value.replace(microsecond=0)))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(plain(value))


def _groups(examples: Sequence[Mapping[str, Any]]) -> str:
    shown = ", ".join(f"{_value(e['value'])} ({_rows(int(e['rows']))})" for e in examples[:_SHOWN])
    more = len(examples) > _SHOWN
    return shown + (", ..." if more else "")


def _number(x: float) -> str:
    return f"{x:g}"


def _bounds(params: Mapping[str, Any]) -> str:
    low, high = params.get("min"), params.get("max")
    if low is not None and high is not None:
        return f"between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"of at least {_number(low)}"
    return f"of at most {_number(params['max'])}"


def _span(hours: float) -> str:
    return f"{_number(hours)} hour" if hours == 1 else f"{_number(hours)} hours"


def _hours(h: float) -> str:
    return f"{h:.1f} hours" if abs(h) < 100 else f"{h:,.0f} hours"


def describe(
    check: Check,
    failing: int,
    checked: int,
    examples: Sequence[Any],
    *,
    now: dt.datetime,
    since: dt.datetime | None = None,
) -> str:
    """The sentence that says what ``check`` found (``examples`` as returned by its query)."""
    field = check.field
    scope = "" if since is None else f" (events since {_value(since)})"
    if check.type == "not_null":
        if failing == 0:
            return f"{field}: none of {_rows(checked)} is NULL{scope}"
        shown = "; ".join(_value(e) for e in examples[:_SHOWN])
        rows = f" — e.g. {shown}" if shown else ""
        share = _share(failing, checked)
        return f"{field}: {failing:,} of {_rows(checked)} ({share}) are NULL{scope}{rows}"
    if check.type == "accepted_values":
        accepted = ", ".join(_value(v) for v in check.params["values"])
        if failing == 0:
            return (
                f"{field}: all {_rows(checked)} with a value have an accepted one "
                f"({accepted}){scope}"
            )
        return (
            f"{field}: {failing:,} of {_rows(checked)} with a value ({_share(failing, checked)}) "
            f"have one outside {accepted}{scope}: {_groups(examples)}"
        )
    if check.type == "range":
        bounds = _bounds(check.params)
        if failing == 0:
            return f"{field}: all {_rows(checked)} with a value hold numbers {bounds}{scope}"
        return (
            f"{field}: {failing:,} of {_rows(checked)} with a value ({_share(failing, checked)}) "
            f"hold no number {bounds}{scope}: {_groups(examples)}"
        )
    if check.type == "unique":
        if failing == 0:
            return f"{field}: all {_rows(checked)} with a value have one of their own{scope}"
        return (
            f"{field}: {failing:,} of {_rows(checked)} with a value ({_share(failing, checked)}) "
            f"share it with another row{scope}: {_groups(examples)}"
        )
    if check.type == "freshness":
        limit = float(check.params["max_age_hours"])
        what = field or "received_ts"
        found = examples[0] if examples else {}
        newest = found.get("newest")
        if newest is None:
            if checked == 0:
                return f"no rows at all: nothing has arrived (the limit is {_span(limit)})"
            return (
                f"none of {_rows(checked)} has a {what} that reads as a time "
                f"(the limit is {_span(limit)})"
            )
        age = (now - newest).total_seconds() / 3600
        verdict = "over" if failing else "within"
        return (
            f"the newest {what} is {_value(newest)}, {_hours(age)} old: "
            f"{verdict} the {_number(limit)}-hour limit"
        )
    if check.type == "row_count_change":
        allowed = f"±{_number(100 * float(check.params['max_change']))} % allowed"
        last, before = examples[0], examples[1]
        a, b = int(last["rows"]), int(before["rows"])
        days = (
            f"{_rows(a)} on {last['day']} (the last complete UTC day) against "
            f"{b:,} on {before['day']} (the day before)"
        )
        if b == 0:
            if a == 0:
                return f"no rows on {last['day']} (the last complete UTC day) nor the day before"
            return f"{days}: a change beyond any limit ({allowed})"
        change = 100 * (a - b) / b
        verdict = "beyond" if failing else "within"
        return f"{days}: {change:+.1f} %, {verdict} the {allowed}"
    raise ModelError(f"unknown check {check.type!r}")


# -- running -------------------------------------------------------------------------------


def _spec(check: Check, since_days: int | None) -> dict[str, Any]:
    spec = check.as_dict()
    if since_days is not None and check.type in sql.ROW_CHECKS:
        spec["since_days"] = since_days
    return spec


def _not_run(model: Model, message: str, since_days: int | None, at: dt.datetime) -> list[CheckRun]:
    return [
        CheckRun(
            TARGET_KIND, model.name, label, _spec(c, since_days), False, 0, 0, message, None, at
        )
        for c, label in zip(model.checks, labels(model.checks), strict=True)
    ]


def _relation(
    con: duckdb.DuckDBPyConnection, settings: Settings, model: Model
) -> tuple[Any, str | None]:
    """The relation the model's checks read, or why there is none."""
    if model.materialize == "table":
        path = snapshot_file(settings, model.name)
        if not path.exists():
            return None, (
                f"the table has not been built: run `tally models build {model.name}` first"
            )
        have = set(pq.read_schema(path).names)
        missing = [n for n in (*(f.name for f in model.fields), *sql.HIDDEN) if n not in have]
        if missing:
            return None, (
                f"the table was built before the model changed (no column "
                f"{', '.join(missing)}): run `tally models build {model.name}` again"
            )
        return sql.parquet(str(path.resolve())), None
    glob = lake_glob(settings)
    types = retry_io(lambda: data_types(con, model, glob))
    return sql.model_relation(model, glob, types, hidden=True), None


def _fetch(con: duckdb.DuckDBPyConnection, query: str) -> Callable[[], tuple[Any, ...]]:
    def fetch() -> tuple[Any, ...]:
        return tuple(con.execute(query).fetchall()[0])

    return fetch


def check_model(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    model: Model,
    *,
    now: dt.datetime,
    since_days: int | None = None,
) -> list[CheckRun]:
    """Run every check of ``model`` (not stored)."""
    if not model.checks:
        return []
    relation, why = _relation(con, settings, model)
    if why is not None:
        return _not_run(model, why, since_days, now)
    since = None if since_days is None else now - dt.timedelta(days=since_days)
    columns = [f.name for f in model.fields]
    runs: list[CheckRun] = []
    for check, label in zip(model.checks, labels(model.checks), strict=True):
        query = sql.render(sql.check_query(check, relation, columns, now=now, since=since))
        scope = since if check.type in sql.ROW_CHECKS else None
        try:
            failing, checked, found = retry_io(_fetch(con, query))
        except duckdb.Error as exc:
            message = f"the check could not run: {str(exc).splitlines()[0]}"
            runs.append(
                CheckRun(
                    TARGET_KIND,
                    model.name,
                    label,
                    _spec(check, since_days),
                    False,
                    0,
                    0,
                    message,
                    None,
                    now,
                )
            )
            continue
        examples = list(found or [])
        runs.append(
            CheckRun(
                target_kind=TARGET_KIND,
                target=model.name,
                label=label,
                spec=_spec(check, since_days),
                passed=int(failing) == 0,
                failing=int(failing),
                checked=int(checked),
                message=describe(check, int(failing), int(checked), examples, now=now, since=scope),
                examples=plain(examples) if int(failing) or check.type in _MEASURES else None,
                ran_at=now,
            )
        )
    return runs


def run_checks(
    settings: Settings,
    store: ControlStore,
    names: Sequence[str] | None = None,
    since_days: int | None = None,
    *,
    now: dt.datetime | None = None,
) -> list[CheckRun]:
    """Run the checks of the models named (every model when ``names`` is None), store the
    results in the control plane and return them.

    ``since_days`` limits the row checks (not_null, accepted_values, range, unique) to events
    that happened in the last that many days (by ``client_ts``). Raises ``NotFound`` for an
    unknown model and ``ModelError`` for a ``since_days`` below 1.
    """
    if since_days is not None and since_days < 1:
        raise ModelError(f"--since must be 1 day or more, got {since_days}")
    models = select_models(store, names)
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # no bar on a command's stderr
        runs = [
            run
            for model in models
            for run in check_model(con, settings, model, now=at, since_days=since_days)
        ]
    finally:
        con.close()
    store.record_checks(runs)
    return runs
