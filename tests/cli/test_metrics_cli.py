"""``tally metrics ...``, ``tally funnel`` and ``tally retention`` on a small fixture lake."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from query.sample import PARAMS, RANGE, make_lake
from tallystick.cli import app as cli
from tallystick.metrics import api

#: analysis -> the command line giving it PARAMS[analysis]
COMMANDS: dict[str, list[str]] = {
    "core": ["metrics", "core", "--action", "create,login", "--active", "login"],
    "active": ["metrics", "active", "--active", "login", "--active", "create"],
    "stickiness": ["metrics", "active", "--active", "login", "--stickiness"],
    "count": ["metrics", "count", "--event", "create"],
    "ratio": ["metrics", "ratio", "--numerator", "create", "--denominator", "login"],
    "percentile": [
        *("metrics", "percentile", "--event", "create", "--field", "data.ms", "--p", "50,90"),
    ],
    "funnel": ["funnel", "--steps", "signup,login", "--steps", "create", "--window", "1h"],
    "retention": [
        *("retention", "--cohort-event", "signup", "--return-event", "login", "--periods", "2"),
    ],
}
DATES = ["--from", RANGE["from"], "--to", RANGE["to"]]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "data"
    make_lake(root / "lake")
    return root


def tally(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _json(rows: list[dict[str, Any]]) -> Any:
    """``rows`` as the CLI's JSON gives them (dates as ISO strings)."""

    def iso(value: object) -> str:
        assert isinstance(value, dt.date)
        return value.isoformat()

    return json.loads(json.dumps(rows, default=iso))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_json_is_the_python_apis_rows_on_both_engines(data: Path, name: str) -> None:
    expected = _json(api.query(name, data=data, **RANGE, **PARAMS[name]).rows)
    assert expected
    for engine in ("duckdb", "clickhouse"):
        result = tally(
            *COMMANDS[name], *DATES, "--data", str(data), "--format", "json", "--engine", engine
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == expected, engine
        assert result.stderr == ""


def test_table_shows_a_title_and_the_columns(data: Path) -> None:
    result = tally(*COMMANDS["core"], *DATES, "--grain", "month", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert "core: 2026-01-01 to 2026-01-31 by month" in result.stdout
    for column in ("period", "action", "users", "active_users", "share", "2026-01-01"):
        assert column in result.stdout


def test_csv_writes_lists_as_json(data: Path) -> None:
    result = tally(*COMMANDS["retention"], *DATES, "--data", str(data), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["cohort", "size", "retained", "rates"]
    first = rows[1]  # the week of 2026-01-05
    assert first["cohort"] == "2026-01-05"
    assert json.loads(first["retained"]) == [2, 1, 1]
    assert json.loads(first["rates"]) == [1.0, 0.5, 0.5]


def test_show_sql_prints_the_sql_to_stderr(data: Path) -> None:
    result = tally(
        *COMMANDS["count"], *DATES, "--data", str(data), "--format", "json", "--show-sql"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("WITH src AS (SELECT")
    assert "read_parquet" in result.stderr.lower()
    assert "SELECT" not in result.stdout
    assert json.loads(result.stdout)
    house = tally(
        *COMMANDS["count"], *DATES, "--data", str(data), "--format", "csv", "--show-sql",
        "--engine", "clickhouse",
    )  # fmt: skip
    assert "SETTINGS session_timezone = 'UTC'" in house.stderr


def test_repeated_where_filters_all_hold(data: Path) -> None:
    def events(*where: str) -> int:
        args = [a for w in where for a in ("--where", w)]
        result = tally(
            *COMMANDS["count"][:3], "login", *DATES, "--grain", "month", *args,
            "--data", str(data), "--format", "json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)[0]["events"])

    assert events() == 4
    assert events("app.environment!=test") == 3
    assert events("app.environment!=test", "user.id=u2") == 2
    assert events("app.environment!=test", "user.id in u1,u3") == 1
    assert events("data.plan in free,pro", "user.id=u1") == 1


def test_ratio_counts_events_with_unit_event(data: Path) -> None:
    result = tally(
        *COMMANDS["ratio"], *DATES, "--grain", "month", "--unit", "event", "--data", str(data),
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"period": "2026-01-01", "numerator": 3, "denominator": 4, "ratio": 0.75}
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "nonsense"], "cannot read filter 'nonsense': write FIELD=VALUE"),
        (["--where", "user.nope=1"], "filter field 'user.nope'"),
        (["--where", "client_ts=1"], "cannot be grouped or compared"),
        (["--grain", "year"], "unknown grain 'year': use day, week or month"),
        (["--from", "2026-13-01"], "--from '2026-13-01' is not a date: write YYYY-MM-DD"),
        (["--from", "2026-02-01", "--to", "2026-01-01"], "is before --from"),
        (["--unit", "event"], "unit"),
        (["--breakdown", "data.bad key"], "not a valid data key"),
        (["--engine-url", "clickhouse://h:8123/db"], "--engine-url is for --engine clickhouse"),
        (["--engine", "clickhouse", "--engine-url", "mysql://h"], "is not a ClickHouse URL"),
    ],
)
def test_mistakes_are_one_line_messages_and_exit_2(
    data: Path, args: list[str], message: str
) -> None:
    result = tally(*COMMANDS["count"], *args, "--data", str(data))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_a_missing_data_directory_is_named(tmp_path: Path) -> None:
    result = tally(*COMMANDS["count"], "--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert f"no data directory at {tmp_path / 'nowhere'}" in result.stderr


def test_an_unreachable_clickhouse_server_is_one_line(data: Path) -> None:
    from tallystick.collect.server import free_port

    url = f"clickhouse://default@127.0.0.1:{free_port()}/default"
    result = tally(
        *COMMANDS["count"], "--engine", "clickhouse", "--engine-url", url, "--data", str(data)
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: clickhouse could not run the count analysis: ")
    assert result.stderr.count("\n") == 1


def test_required_options_and_choices_are_checked_by_the_parser(data: Path) -> None:
    missing = tally("metrics", "count", "--data", str(data))
    assert missing.exit_code == 2
    assert "--event" in missing.output
    engine = tally(*COMMANDS["count"], "--engine", "sqlite", "--data", str(data))
    assert engine.exit_code == 2
    assert "sqlite" in engine.output
