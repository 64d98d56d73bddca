"""The Python API: every analysis as a function returning a DataFrame of the registry's rows."""

from __future__ import annotations

import datetime as dt
import inspect
import math
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from sqlglot import exp

from query.sample import PARAMS, RANGE, make_lake
from tallystick import metrics
from tallystick.metrics import api
from tallystick.metrics.analysis import Row
from tallystick.metrics.engines import DuckDBEngine
from tallystick.metrics.params import MetricError
from tallystick.metrics.registry import ANALYSES, COMMON, SPECIFIC, build
from tallystick.store.lake import Lake

NAMES = list(ANALYSES)
FROM, TO = dt.date(2026, 1, 1), dt.date(2026, 1, 31)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "data"
    make_lake(root / "lake")
    return root


def _kwargs(name: str) -> dict[str, Any]:
    """The Python API's keyword arguments for ``PARAMS[name]`` over ``RANGE``."""
    return {"date_from": RANGE["from"], "date_to": RANGE["to"], **PARAMS[name]}


def _records(df: pd.DataFrame) -> list[Row]:
    """The frame's rows with pandas' missing values (NaN) as ``None``."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    return [{str(k): plain(v) for k, v in r.items()} for r in df.to_dict("records")]


@pytest.mark.parametrize("name", NAMES)
def test_every_analysis_returns_the_registry_rows_as_a_frame(data: Path, name: str) -> None:
    df = getattr(metrics, name)(data=data, **_kwargs(name))
    expected = build(name, {**RANGE, **PARAMS[name]}).run(DuckDBEngine(Lake(data / "lake")))
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(expected.rows[0])
    assert _records(df) == expected.rows
    assert len(df) == len(expected.rows) > 0


@pytest.mark.parametrize("name", NAMES)
def test_function_parameters_are_the_registry_parameters(name: str) -> None:
    """Each function takes the registry's names (date_from/date_to for from/to) and no other."""
    signature = inspect.signature(getattr(api, name))
    params = set(signature.parameters) - {"data", "engine", "engine_url"}
    allowed = {"date_from", "date_to", *COMMON, *SPECIFIC[name]} - {"from", "to"}
    assert params <= allowed
    assert set(SPECIFIC[name]) <= params
    assert inspect.getdoc(getattr(api, name))


def test_periods_are_dates_and_lists_stay_lists(data: Path) -> None:
    df = metrics.retention(data=data, grain="week", **_kwargs("retention"))
    assert all(type(c) is dt.date for c in df["cohort"])
    assert all(isinstance(r, list) and len(r) == 3 for r in df["retained"])
    week = df[df["cohort"] == dt.date(2026, 1, 5)].iloc[0]
    assert week["size"] == 2
    assert week["retained"] == [2, 1, 1]


def test_core_numbers_and_clickhouse_agree(data: Path) -> None:
    duck = metrics.core("create", "login", data=data, grain="month", date_from=FROM, date_to=TO)
    house = metrics.core(
        "create", "login", data=data, grain="month", engine="clickhouse", date_from=FROM, date_to=TO
    )
    assert _records(duck) == _records(house)
    assert _records(duck) == [
        {
            "period": dt.date(2026, 1, 1),
            "action": "create",
            "users": 2,
            "active_users": 2,
            "share": 1.0,
        }
    ]


def test_where_as_strings_tuples_and_breakdown(data: Path) -> None:
    as_text = metrics.count(
        "login", where=["app.environment!=test"], data=data, date_from=FROM, date_to=TO
    )
    as_tuple = metrics.count(
        "login", where=[("app.environment", "!=", "test")], data=data, date_from=FROM, date_to=TO
    )
    assert _records(as_text) == _records(as_tuple)
    assert as_text["events"].sum() == 3
    split = metrics.count(
        "create", breakdown="data.plan", grain="month", data=data, date_from=FROM, date_to=TO
    )
    assert _records(split) == [
        {"period": dt.date(2026, 1, 1), "events": 1, "units": 1, "breakdown": "free"},
        {"period": dt.date(2026, 1, 1), "events": 1, "units": 1, "breakdown": "pro"},
        {"period": dt.date(2026, 1, 1), "events": 1, "units": 0, "breakdown": None},
    ]
    one_in = metrics.count(
        "create",
        where=[("data.plan", "in", ["free", "pro"])],
        grain="month",
        data=data,
        date_from=FROM,
        date_to=TO,
    )
    assert one_in["events"].tolist() == [2]


def test_query_returns_rows_sql_and_engine(data: Path) -> None:
    outcome = metrics.query("count", data=data, event="create", **RANGE)
    assert outcome.engine == "duckdb"
    assert "read_parquet" in outcome.sql.lower()
    assert sum(r["events"] for r in outcome.rows) == 3
    house = metrics.query("count", data=data, engine="clickhouse", event="create", **RANGE)
    assert house.rows == outcome.rows
    assert "Parquet" in house.sql


def test_data_defaults_to_the_configured_directory(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLYSTICK_DATA", str(data))
    assert _records(metrics.count("create", date_from=FROM, date_to=TO)) == _records(
        metrics.count("create", data=data, date_from=FROM, date_to=TO)
    )


def test_default_range_is_twelve_weeks(data: Path) -> None:
    outcome = api.query("count", data=data, event="create", today=dt.date(2026, 1, 28))
    assert outcome.rows[0]["period"] == dt.date(2025, 11, 10)
    assert len(outcome.rows) == 12


def test_mistakes_raise_metric_errors(data: Path, tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="no data directory"):
        metrics.count("create", data=tmp_path / "missing")
    with pytest.raises(MetricError, match="unknown grain"):
        metrics.count("create", grain="year", data=data)
    with pytest.raises(MetricError, match="cannot read filter"):
        metrics.count("create", where=["nonsense"], data=data)
    with pytest.raises(MetricError, match="not a date"):
        metrics.count("create", date_from="2026-02-30", data=data)
    with pytest.raises(MetricError, match="unknown engine"):
        metrics.count("create", data=data, engine="sqlite")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="does not take"):
        metrics.query("count", data=data, event="create", steps="a,b")


def test_empty_result_is_an_empty_frame(data: Path) -> None:
    df = metrics.count("nothing", breakdown="data.plan", data=data, date_from=FROM, date_to=TO)
    assert df.empty


class _Failing:
    """An engine whose query fails with ``error`` ``times`` times, then returns no rows."""

    name = "duckdb"

    def __init__(self, error: Exception, times: int = 99) -> None:
        self.error = error
        self.times = times
        self.calls = 0

    def source(self, day_from: dt.date | None, day_to: dt.date | None) -> exp.Expr:
        return exp.to_table("events")

    def run(self, tree: exp.Expr) -> tuple[pa.Table, str]:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return pa.table({}), "SELECT 1"


def test_engine_errors_become_one_line_query_failures() -> None:
    analysis = build("count", {"event": "create", **RANGE})
    engine = _Failing(duckdb.BinderException("Binder Error: column x not found\nLINE 1: ..."))
    with pytest.raises(api.QueryFailed) as info:
        api.run(analysis, engine)  # type: ignore[arg-type]
    assert str(info.value) == (
        "duckdb could not run the count analysis: Binder Error: column x not found"
    )
    chdb = _Failing(RuntimeError("Code: 47. DB::Exception: Unknown identifier x. (UNKNOWN)"))
    with pytest.raises(api.QueryFailed, match=r"analysis: Unknown identifier x\. \(UNKNOWN\)$"):
        api.run(analysis, chdb)  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError):  # not an engine's error: a bug, raised as is
        api.run(analysis, _Failing(ZeroDivisionError()))  # type: ignore[arg-type]


def test_a_file_replaced_during_a_read_is_read_again() -> None:
    analysis = build("count", {"event": "create", **RANGE})
    engine = _Failing(duckdb.IOException("No files found that match the pattern"), times=1)
    assert len(api.run(analysis, engine).rows) == 5  # type: ignore[arg-type]
    assert engine.calls == 2


def test_frame_keeps_values() -> None:
    rows: list[Row] = [
        {"cohort": dt.date(2026, 1, 5), "size": 2, "retained": [2, None], "rates": [1.0, None]}
    ]
    df = api.frame(rows)
    assert df.to_dict("records") == rows
    assert api.frame([]).empty
