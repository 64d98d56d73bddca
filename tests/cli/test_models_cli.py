"""``tally models ...`` end to end: a temporary data directory, a real lake, a real control
database and the models' DuckDB database."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner, Result

from models.shoplake import add_streams, write_shop
from tallystick.cli import app as cli
from tallystick.config import Settings
from tallystick.control.store import ControlStore

runner = CliRunner(env={"COLUMNS": "250"})

MODELS = """\
# two models of the shop stream
- name: orders
  stream: shop
  description: Paid orders
  fields:
    - user.id
    - {field: data.amount, as: amount}
    - data.plan
  checks:
    - {type: not_null, field: user_id}
    - {type: accepted_values, field: plan, values: [free, pro]}
- name: order_qty
  stream: shop
  materialize: table
  fields: [event_id, data.qty]
  checks:
    - {type: unique, field: event_id}
    - {type: range, field: qty, min: 1, max: 5}
"""


def tally(data: Path, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(cli, [*args, "--data", str(data)], input=stdin)


def stored(data: Path) -> ControlStore:
    return ControlStore.for_settings(Settings(data=data))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "d"
    write_shop(Settings(data=data).lake_dir)
    with stored(data) as store:
        add_streams(store)
    return data


def test_add_build_check_results_and_delete(data: Path, tmp_path: Path) -> None:
    assert "No models yet" in tally(data, "models", "list").output
    file = tmp_path / "models.yaml"
    file.write_text(MODELS)
    result = tally(data, "models", "add", str(file))
    assert result.exit_code == 0, result.output
    assert "+ model orders (create)" in result.output
    assert "+ model order_qty (create)" in result.output
    with stored(data) as store:
        log = store.audit_log(kind="model")
    assert {e.actor for e in log} == {f"cli:{getpass.getuser()}"}

    listed = json.loads(tally(data, "models", "list", "--format", "json").stdout)
    assert [
        (m["name"], m["materialize"], m["fields"], m["checks"], m["built"]) for m in listed
    ] == [
        ("order_qty", "table", 2, 2, "never"),
        ("orders", "view", 3, 2, "never"),
    ]

    result = tally(data, "models", "build", "--format", "json")
    assert result.exit_code == 0, result.output
    built = {b["model"]: b for b in json.loads(result.stdout)}
    assert built["order_qty"]["rows"] == 5
    assert built["orders"]["rows"] is None
    assert [c["name"] for c in built["orders"]["columns"]] == ["user_id", "amount", "plan"]
    con = duckdb.connect(str(data / "models.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM orders").fetchall() == [(5,)]
    con.close()

    # orders: o3 has no user; o3's plan is gold. order_qty: every event once, qty 5 allowed
    result = tally(data, "models", "check")
    assert result.exit_code == 1, result.output
    assert "4 checks: 2 passed, 2 failed" in result.output
    assert "user_id: 1 of 5 rows (20.0 %) are NULL" in result.output
    assert "plan: 1 of 4 rows with a value (25.0 %) have one outside 'free', 'pro': 'gold'" in (
        result.output
    )
    result = tally(data, "models", "check", "order_qty", "--format", "json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [(r["check"], r["passed"], r["failing"], r["checked"]) for r in runs] == [
        ("unique(event_id)", True, 0, 5),
        ("range(qty)", True, 0, 5),
    ]
    # the last day only: the lake's events all happen in 2030, so every one is that recent
    result = tally(data, "models", "check", "orders", "--since", "1", "--format", "json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)
    assert [(r["failing"], r["checked"], r["spec"]["since_days"]) for r in runs] == [
        (1, 5, 1),
        (1, 4, 1),
    ]
    assert "(events since " in runs[0]["message"]

    result = tally(data, "models", "results", "--format", "json")
    latest = {(r["target"], r["check"]): r for r in json.loads(result.stdout)}
    assert latest[("orders", "not_null(user_id)")]["spec"]["since_days"] == 1
    assert latest[("order_qty", "unique(event_id)")]["passed"] is True
    result = tally(data, "models", "results", "orders")
    assert "Latest check results" in result.output
    assert "FAILED" in result.output
    assert "order_qty" not in result.output

    shown = tally(data, "models", "show", "order_qty").output
    assert "order_qty: table over stream shop" in shown
    assert f"snapshot: {data / 'lake' / 'models' / 'order_qty' / 'order_qty.parquet'}" in shown
    assert "passed unique(event_id)" in shown

    result = tally(data, "models", "delete", "order_qty", stdin="n\n")
    assert result.exit_code == 1
    assert "not deleted" in result.output
    result = tally(data, "models", "delete", "order_qty", "--yes")
    assert result.exit_code == 0, result.output
    assert "- model order_qty (delete)" in result.output
    assert "dropped the view order_qty and its snapshot" in result.output
    assert not (data / "lake" / "models" / "order_qty").exists()
    assert tally(data, "models", "show", "order_qty").exit_code == 1


def test_add_replaces_only_when_asked(data: Path, tmp_path: Path) -> None:
    file = tmp_path / "one.yaml"
    file.write_text("name: orders\nstream: shop\nfields: [user.id]\n")
    assert tally(data, "models", "add", str(file)).exit_code == 0
    file.write_text("name: orders\nstream: shop\nfields: [user.id, page.url]\n")
    result = tally(data, "models", "add", str(file))
    assert result.exit_code == 1
    assert f"{file}:1: model 'orders' exists already; add --replace to update it" in result.output
    result = tally(data, "models", "add", str(file), "--replace")
    assert result.exit_code == 0, result.output
    assert "~ model orders" in result.output
    with stored(data) as store:
        assert [f.name for f in store.model("orders").fields] == ["user_id", "page_url"]
    # a file holding a whole configuration's `models:` works too
    file.write_text("models:\n  - {name: visits, stream: web, fields: [page.url]}\n")
    assert tally(data, "models", "add", str(file)).exit_code == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- name: ok\n  stream: shop\n  fields: [user.id\n", ":4: not valid YAML"),
        (
            "- name: ok\n  stream: shop\n  fields: [user.id]\n  checks:\n    - type: unique\n"
            "      field: nope\n",
            ":6: [0].checks[0].field: the model has no column 'nope'; its columns are user_id",
        ),
        (
            "- name: a\n  stream: shop\n  fields: [user.id]\n"
            "- name: b\n  stream: shp\n  fields: [user.id]\n",
            ":5: no stream 'shp'; create it with `tally streams create` or pick one of shop, "
            "unrouted, web",
        ),
        (
            "- name: a\n  stream: shop\n  fields: [user.id]\n"
            "- name: a\n  stream: web\n  fields: [user.id]\n",
            ":4: model 'a' is defined twice (also at line 1)",
        ),
        ("42\n", "write one model (a mapping with name, stream, fields...)"),
        ("[]\n", "no models in it"),
    ],
    ids=["yaml", "definition", "stream", "twice", "not a model", "empty"],
)
def test_a_bad_file_is_refused_with_its_line_and_nothing_is_added(
    data: Path, tmp_path: Path, text: str, expected: str
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    result = tally(data, "models", "add", str(file))
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    with stored(data) as store:
        assert store.models() == ()


def test_unknown_models_and_a_missing_file(data: Path, tmp_path: Path) -> None:
    for args in (("show", "nope"), ("build", "nope"), ("check", "nope"), ("results", "nope")):
        result = tally(data, "models", *args)
        assert result.exit_code == 1, args
        assert "no model 'nope'; `tally models list` shows the models" in result.output
    result = tally(data, "models", "add", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in result.output
    assert tally(data, "models", "check", "--since", "0").exit_code == 2
    assert "No checks to run" in tally(data, "models", "check").output
    assert "No models to build" in tally(data, "models", "build").output
