"""``tally metrics list|show|run|materialize`` on a fixture lake and catalog."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner, Result

from metrics.lakerows import to_table, write_rows
from tallystick.cli import app as cli
from tallystick.metrics.catalog import load_catalog
from tallystick.metrics.engines import DuckDBEngine
from tallystick.store.lake import Lake

CATALOG = """\
- name: views
  title: Page views
  type: count
  params: {event: page.view}
  tags: [traffic]
  teams: [web]
- name: wau
  title: Weekly active users
  description: Users who logged in.
  type: active
  params:
    active: [login]
    where: [app.environment=prod]
  importance: kpi
  owner: ana@example.org
  teams: [growth, web]
  tags: [kpi, users]
  sources: [login]
- name: login_ratio
  title: Logins per view
  type: ratio
  params: {numerator: login, denominator: page.view, unit: event}
  grain: month
  status: draft
"""
_n = 0


def ev(name: str, day: str, user: str | None) -> dict[str, Any]:
    global _n
    _n += 1
    return {
        "event_id": f"c{_n:05d}",
        "name": name,
        "client_ts": dt.datetime.fromisoformat(f"{day}T10:00:00+00:00"),
        "user_id": user,
        "app_environment": "prod",
    }


ROWS = [
    ev(name, f"2026-03-{d:02d}", f"u{(d + i) % 5}")
    for d in range(2, 23)
    for i, name in enumerate(["login", "page.view", "page.view"][: 1 + d % 3])
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_rows(root / "lake", ROWS)
    (root / "config" / "metrics").mkdir(parents=True)
    (root / "config" / "metrics" / "all.yaml").write_text(CATALOG)
    return root


def tally(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def test_list_kpis_first_with_file_and_line(data: Path) -> None:
    result = tally("metrics", "list", "--data", str(data), "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["name"] for r in rows] == ["wau", "login_ratio", "views"]
    assert rows[0] == {
        "name": "wau",
        "title": "Weekly active users",
        "type": "active",
        "grain": "week",
        "importance": "kpi",
        "status": "active",
        "owner": "ana@example.org",
        "teams": "growth, web",
        "tags": "kpi, users",
        "file": "metrics/all.yaml:7",
    }


def test_list_json_has_every_field(data: Path) -> None:
    result = tally("metrics", "list", "--data", str(data), "--format", "json")
    assert result.exit_code == 0, result.output
    wau = json.loads(result.stdout)[0]
    assert wau["params"] == {"active": ["login"], "where": ["app.environment=prod"]}
    assert wau["sources"] == ["login"]
    assert wau["description"] == "Users who logged in."


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        (["--tag", "kpi"], ["wau"]),
        (["--team", "web"], ["wau", "views"]),
        (["--team", "web", "--tag", "traffic"], ["views"]),
        (["--tag", "kpi", "--tag", "traffic"], []),
        (["--team", "nobody"], []),
    ],
)
def test_list_filters_by_tag_and_team(data: Path, filters: list[str], names: list[str]) -> None:
    result = tally("metrics", "list", "--data", str(data), "--format", "json", *filters)
    assert result.exit_code == 0, result.output
    assert [m["name"] for m in json.loads(result.stdout)] == names


def test_list_table_and_empty_catalog(data: Path, tmp_path: Path) -> None:
    result = tally("metrics", "list", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert "Metric catalog" in result.stdout
    assert "wau" in result.stdout
    empty = tally("metrics", "list", "--data", str(data), "--config-dir", str(tmp_path / "none"))
    assert empty.exit_code == 0
    assert "no metric definitions in" in empty.stderr


def test_config_dir_option_and_environment(data: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "metrics").mkdir(parents=True)
    (other / "metrics" / "one.yml").write_text(
        "name: only\ntitle: Only\ntype: count\nparams: {event: login}\n"
    )
    by_option = tally("metrics", "list", "--data", str(data), "--config-dir", str(other))
    by_env = tally(
        "metrics", "list", "--data", str(data), env={"TALLYSTICK_CONFIG_DIR": str(other)}
    )
    for result in (by_option, by_env):
        assert result.exit_code == 0, result.output
        assert "only" in result.stdout
        assert "wau" not in result.stdout


def test_invalid_catalog_exits_2_with_every_problem(data: Path) -> None:
    (data / "config" / "metrics" / "bad.yaml").write_text(
        "name: broken\ntitle: B\ntype: count\nparams: {event: x, unit: user.idd}\ngrian: week\n"
    )
    for command in (["list"], ["show", "wau"], ["run", "wau"], ["materialize"]):
        result = tally("metrics", *command, "--data", str(data))
        assert result.exit_code == 2, (command, result.output)
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "metrics/bad.yaml:4: unit 'user.idd' is not a field — did you mean 'user.id'?",
            "metrics/bad.yaml:5: unknown key 'grian' — did you mean 'grain'?",
            f"error: 2 problems in the metric catalog at {data / 'config' / 'metrics'}: "
            "fix them and run again",
        ]


def test_show_everything_about_one_metric(data: Path) -> None:
    result = tally("metrics", "show", "wau", "--data", str(data), "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["params"] == {"active": ["login"], "where": ["app.environment=prod"]}
    assert (info["file"], info["line"]) == ("metrics/all.yaml", 7)
    assert info["path"] == str(data / "config" / "metrics" / "all.yaml")
    assert info["analysis"] == "active"
    assert set(info["materialized"]) == {"week", "month"}
    assert info["materialized"]["week"]["status"].startswith("not yet")
    table = tally("metrics", "show", "wau", "--data", str(data))
    assert table.exit_code == 0, table.output
    for text in ("params.active", "params.where", "app.environment=prod", "metrics/all.yaml:7"):
        assert text in table.stdout
    rows = tally("metrics", "show", "views", "--data", str(data), "--format", "csv")
    assert "params.event,page.view" in rows.stdout


def test_show_the_extended_entry_and_runs_per_week(data: Path) -> None:
    from tallystick.config import Settings
    from tallystick.control.store import ControlStore

    (data / "config" / "metrics" / "entry.yaml").write_text(
        "name: signups\ntitle: Sign-ups\ntype: count\nparams: {event: user.signup}\n"
        "calculation: count of user.signup\nimplemented: 2025-03-01\nprivacy: personal\n"
        "access: everyone\nretention_days: 90\nslo: fresh by 06:00 UTC\n"
        "dashboards: [growth-board]\ncode_refs: [reports/signups.sql]\n"
    )
    before = tally("metrics", "show", "signups", "--data", str(data), "--format", "json")
    assert before.exit_code == 0, before.output
    info = json.loads(before.stdout)
    assert info["runs_per_week"] is None  # no control database: nothing recorded
    assert not (data / "control.db").exists()  # and showing does not create one
    assert info["used_in"] == ["explore"]
    assert (info["implemented"], info["privacy"], info["access"]) == (
        "2025-03-01",
        "personal",
        ["everyone"],
    )
    with ControlStore.for_settings(Settings(data=data)) as store:
        for _ in range(6):
            store.record_metric_run("signups", 0.5, 3, "cli")
        store.record_metric_run("wau", 0.5, 3, "cli")
    after = tally("metrics", "show", "signups", "--data", str(data), "--format", "json")
    assert json.loads(after.stdout)["runs_per_week"] == 1.5  # 6 runs in the last 4 weeks
    table = tally("metrics", "show", "signups", "--data", str(data))
    for text in ("runs_per_week", "1.5", "fresh by 06:00 UTC", "growth-board", "personal"):
        assert text in table.stdout
    csv_rows = tally("metrics", "show", "views", "--data", str(data), "--format", "csv")
    assert "runs_per_week,0" in csv_rows.stdout


def test_show_unknown_name_suggests(data: Path) -> None:
    result = tally("metrics", "show", "wua", "--data", str(data))
    assert result.exit_code == 2
    assert "no metric named 'wua'" in result.stderr
    assert "did you mean 'wau'?" in result.stderr


def test_run_equals_the_analysis_and_options_override(data: Path) -> None:
    result = tally(
        "metrics",
        "run",
        "wau",
        "--data",
        str(data),
        "--format",
        "json",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
        "--grain",
        "month",
        "--show-sql",
    )
    assert result.exit_code == 0, result.output
    metric = load_catalog(data / "config" / "metrics")["wau"]
    analysis = metric.build(grain="month", date_from="2026-03-01", date_to="2026-03-31")
    expected = analysis.run(DuckDBEngine(Lake(data / "lake"))).rows
    assert json.loads(result.stdout) == [{**r, "period": r["period"].isoformat()} for r in expected]
    assert json.loads(result.stdout) == [{"period": "2026-03-01", "active_users": 5}]
    assert "read_parquet" in result.stderr.lower()


def test_run_uses_the_definitions_grain(data: Path) -> None:
    result = tally(
        "metrics", "run", "login_ratio", "--data", str(data), "--format", "json",
        "--from", "2026-03-01", "--to", "2026-04-30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["period"] for r in json.loads(result.stdout)] == ["2026-03-01", "2026-04-01"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wau", "--from", "March"], "--from 'March' is not a date"),
        (["wau", "--grain", "year"], "unknown grain 'year'"),
        (["nope"], "no metric named 'nope'"),
    ],
)
def test_run_mistakes_exit_2(data: Path, args: list[str], message: str) -> None:
    result = tally("metrics", "run", *args, "--data", str(data))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_materialize_then_nothing_to_do(data: Path) -> None:
    first = tally("metrics", "materialize", "--data", str(data))
    assert first.exit_code == 0, first.output
    assert "Recomputed" in first.stderr
    assert "views" in first.stdout
    assert "login_ratio" not in first.stdout  # a draft
    lake = data / "lake"
    relation = duckdb.sql(
        f"SELECT period, active_users FROM '{lake}/metrics/wau/grain=week/*.parquet' "
        "ORDER BY period"
    )
    assert relation is not None
    weeks = relation.fetchall()
    assert [w[0].isoformat() for w in weeks] == [
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
    ]
    assert (lake / "metrics" / "views" / "grain=month" / "views.parquet").exists()
    again = tally("metrics", "materialize", "--data", str(data))
    assert again.exit_code == 0, again.output
    assert "Up to date: 2 metrics" in again.stderr
    assert "nothing written" in again.stderr
    assert again.stdout == ""


def test_materialize_named_full_and_from(data: Path) -> None:
    named = tally("metrics", "materialize", "login_ratio", "--data", str(data))
    assert named.exit_code == 0, named.output
    assert (data / "lake" / "metrics" / "login_ratio" / "grain=week").is_dir()
    assert not (data / "lake" / "metrics" / "wau").exists()
    full = tally("metrics", "materialize", "login_ratio", "--full", "--data", str(data))
    assert full.exit_code == 0, full.output
    assert "Recomputed 4 periods" in full.stderr  # three weeks and a month
    recent = tally("metrics", "materialize", "views", "--from", "2026-03-20", "--data", str(data))
    assert recent.exit_code == 0, recent.output
    assert "Recomputed 2 periods" in recent.stderr  # the week of the 20th and its month
    # New events on one day: its week and month only.
    Lake(data / "lake").write_events(to_table([ev("page.view", "2026-03-10", None)]), "late")
    late = tally("metrics", "materialize", "views", "--data", str(data))
    # The two weeks before --from (new), and the month (a new file on the 10th).
    assert "Recomputed 3 periods" in late.stderr
    once_more = tally("metrics", "materialize", "views", "--data", str(data))
    assert "Up to date" in once_more.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wua"], "did you mean 'wau'?"),
        (["--from", "soon"], "--from 'soon' is not a date"),
    ],
)
def test_materialize_mistakes_exit_2(data: Path, args: list[str], message: str) -> None:
    result = tally("metrics", "materialize", *args, "--data", str(data))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_materialize_without_a_lake_exits_2(tmp_path: Path, data: Path) -> None:
    result = tally(
        "metrics",
        "materialize",
        "--data",
        str(tmp_path / "nothing"),
        "--config-dir",
        str(data / "config"),
    )
    assert result.exit_code == 2
    assert "no lake at" in result.stderr
