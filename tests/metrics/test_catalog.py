"""The metric catalog: valid multi-file catalogs load; every invalid definition is reported with
its file, its line and how to fix it."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from tallystick.metrics.catalog import (
    Catalog,
    CatalogError,
    MetricDef,
    Problem,
    catalog_files,
    load_catalog,
    parse_text,
    read_catalog,
)
from tallystick.metrics.params import MetricError

KPIS = """\
# The two numbers leadership asks about.
- name: weekly_active_users
  title: Weekly active users
  description: |
    Distinct signed-in users who did a core action in the week.
  type: active
  params:
    active: [user.login, project.commit]
    unit: user.id
    where: [app.environment=production]
  owner: ana@example.org
  teams: [growth, leadership]
  tags: [kpi, adoption]
  importance: kpi
  standard: industry
  status: active
  sources: [research-portal, user.login, project.commit]

- name: weekly_active_sites
  title: Weekly active sites
  type: active
  params: {active: user.login, unit: app.instance}
  grain: month
  importance: kpi
"""

FUNNEL = """\
name: signin_funnel
title: Sign-in dialog
type: funnel
params:
  steps: [signin.open, signin.email_entered, signin.completed]
  window: 1h
  unit: user.anonymous_id
  breakdown: data.variant
"""


def write(root: Path, files: dict[str, str]) -> Path:
    directory = root / "config" / "metrics"
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


def test_valid_multi_file_catalog(tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "kpis.yaml": KPIS,
            "ux/funnel.yml": FUNNEL,
            "notes.txt": "not a catalog file",
            ".hidden.yaml": "name: [",
        },
    )
    catalog = load_catalog(directory)
    assert isinstance(catalog, Catalog)
    assert catalog.names() == ["weekly_active_users", "weekly_active_sites", "signin_funnel"]
    wau = catalog["weekly_active_users"]
    assert wau.type == "active"
    assert dict(wau.params) == {
        "active": ("user.login", "project.commit"),
        "unit": "user.id",
        "where": ("app.environment=production",),
    }
    assert wau.description == "Distinct signed-in users who did a core action in the week."
    assert wau.teams == ("growth", "leadership")
    assert wau.tags == ("kpi", "adoption")
    assert wau.sources == ("research-portal", "user.login", "project.commit")
    assert (wau.grain, wau.importance, wau.standard, wau.status) == (
        "week",
        "kpi",
        "industry",
        "active",
    )
    assert (wau.file, wau.line) == ("metrics/kpis.yaml", 2)
    sites = catalog["weekly_active_sites"]
    assert sites.grain == "month"
    assert (sites.importance, sites.standard, sites.status) == ("kpi", "custom", "active")
    assert sites.owner is None
    assert sites.teams == ()
    assert sites.description == ""
    funnel = catalog.find("signin_funnel")
    assert funnel.file == "metrics/ux/funnel.yml"
    assert funnel.analysis == "funnel"
    assert "signin_funnel" in catalog
    assert "nope" not in catalog
    assert len(catalog) == 3


def test_definitions_are_frozen_and_build_their_analysis(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, {"kpis.yaml": KPIS}))
    wau = catalog["weekly_active_users"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        wau.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        wau.params["unit"] = "app.instance"  # type: ignore[index]
    analysis = wau.build(grain="month", date_from="2026-01-01", date_to="2026-03-31")
    assert analysis.name == "active"
    assert (analysis.scope.date_from.isoformat(), analysis.scope.date_to.isoformat()) == (
        "2026-01-01",
        "2026-03-31",
    )
    assert wau.parameters(grain="day")["grain"] == "day"
    assert wau.parameters()["active"] == ["user.login", "project.commit"]


def test_definition_hash_follows_type_and_params_only() -> None:
    base = MetricDef(name="a", title="A", type="count", params={"event": "x"})
    assert base.definition_hash() == dataclasses.replace(base, title="B").definition_hash()
    assert base.definition_hash() == dataclasses.replace(base, grain="month").definition_hash()
    assert (
        base.definition_hash() != dataclasses.replace(base, params={"event": "y"}).definition_hash()
    )


def test_direction_and_numerator_where() -> None:
    text = (
        "name: bounce_rate\ntitle: Bounce rate\ntype: ratio\ndirection: lower\nparams:\n"
        "  numerator: session.end\n  denominator: session.end\n  unit: event\n"
        "  numerator_where: [data.pageviews=1]\n"
    )
    (metric,), problems = parse_text(text, "m.yaml")
    assert problems == []
    assert metric.direction == "lower"
    assert metric.to_dict()["direction"] == "lower"
    assert metric.params["numerator_where"] == ("data.pageviews=1",)
    analysis = metric.build()
    assert [str(f) for f in analysis.numerator_where] == ["data.pageviews=1"]  # type: ignore[attr-defined]
    (plain,), _ = parse_text(OK, "m.yaml")
    assert plain.direction == "higher"  # the default: existing catalogs stay valid


def test_stickiness_is_active_with_a_flag() -> None:
    metrics, problems = parse_text(
        "name: stick\ntitle: DAU/MAU\ntype: active\nparams: {active: [a], stickiness: true}\n",
        "metrics/s.yaml",
    )
    assert problems == []
    assert metrics[0].analysis == "stickiness"


def test_missing_directory_is_an_empty_catalog(tmp_path: Path) -> None:
    assert len(load_catalog(tmp_path / "nowhere")) == 0
    assert catalog_files(tmp_path / "nowhere") == []


def test_empty_file_holds_nothing() -> None:
    assert parse_text("# nothing yet\n", "metrics/empty.yaml") == ([], [])


def test_find_suggests_a_close_name(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, {"kpis.yaml": KPIS}))
    with pytest.raises(MetricError, match="did you mean 'weekly_active_users'"):
        catalog.find("weekly_active_user")


OK = "name: m\ntitle: M\ntype: count\nparams: {event: x}\n"

# (yaml text, line, [substrings of the message: what is wrong and how to fix it])
INVALID: list[tuple[str, str, int, list[str]]] = [
    (
        "misspelt key",
        OK + "grian: week\n",
        5,
        ["unknown key 'grian'", "did you mean 'grain'?"],
    ),
    (
        "unknown key, nothing close",
        OK + "colour: blue\n",
        5,
        ["unknown key 'colour'", "use one of name, title"],
    ),
    (
        "missing name",
        "title: M\ntype: count\nparams: {event: x}\n",
        1,
        ["missing required key 'name'", "add `name: "],
    ),
    (
        "missing type",
        "name: m\ntitle: M\n",
        1,
        ["missing required key 'type'", "add `type: "],
    ),
    (
        "repeated key",
        OK + "title: N\n",
        5,
        ["key 'title' appears twice (first on line 2)", "keep one"],
    ),
    (
        "name not an identifier",
        "name: Weekly Users\ntitle: M\ntype: count\nparams: {event: x}\n",
        1,
        ["'Weekly Users' is not an identifier", "e.g. 'weekly_users'"],
    ),
    (
        "title is a number",
        "name: m\ntitle: 2024\ntype: count\nparams: {event: x}\n",
        2,
        ["title must be text", 'put it in quotes: `title: "2024"`'],
    ),
    (
        "title is a list",
        "name: m\ntitle: [a]\ntype: count\nparams: {event: x}\n",
        2,
        ["title must be a single value", "e.g. `title: "],
    ),
    (
        "unknown type",
        "name: m\ntitle: M\ntype: cuont\nparams: {event: x}\n",
        3,
        ["unknown type 'cuont'", "did you mean 'count'?"],
    ),
    (
        "stickiness as a type",
        "name: m\ntitle: M\ntype: stickiness\n",
        3,
        ["type 'stickiness' does not exist", "`type: active`", "`stickiness: true`"],
    ),
    (
        "bad grain",
        OK + "grain: weekly\n",
        5,
        ["grain 'weekly' is not allowed", "did you mean 'week'?"],
    ),
    (
        "bad importance",
        OK + "importance: critical\n",
        5,
        ["importance 'critical' is not allowed", "kpi, high, normal, low"],
    ),
    (
        "bad direction",
        OK + "direction: down\n",
        5,
        ["direction 'down' is not allowed", "higher, lower"],
    ),
    (
        "bad numerator filter",
        "name: m\ntitle: M\ntype: ratio\nparams:\n  numerator: a\n  denominator: b\n"
        "  numerator_where: [data.pages]\n",
        7,
        ["cannot read filter 'data.pages'", "write FIELD=VALUE"],
    ),
    (
        "numerator filter outside ratio",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  numerator_where: [a=b]\n",
        6,
        ["type count does not take the parameter 'numerator_where'"],
    ),
    (
        "bad standard",
        OK + "standard: standard\n",
        5,
        ["standard 'standard' is not allowed", "industry, custom"],
    ),
    (
        "bad status",
        OK + "status: ongoing\n",
        5,
        ["status 'ongoing' is not allowed", "draft, active, deprecated"],
    ),
    (
        "teams not a list",
        OK + "teams: growth\n",
        5,
        ["teams must be a list", "`teams: [growth]`"],
    ),
    (
        "tag not text",
        OK + "tags:\n  - kpi\n  - {a: b}\n",
        7,
        ["every entry of tags must be a non-empty name", "`tags: [a, b]`"],
    ),
    (
        "params not a mapping",
        "name: m\ntitle: M\ntype: count\nparams: [event]\n",
        4,
        ["params must be a mapping", "count takes event, unit, where, breakdown"],
    ),
    (
        "missing required parameter",
        "name: m\ntitle: M\ntype: ratio\nparams:\n  numerator: error.shown\n",
        4,
        ["type ratio needs the parameter 'denominator'", "`denominator: page.view`"],
    ),
    (
        "misspelt parameter",
        "name: m\ntitle: M\ntype: funnel\nparams:\n  steps: [a, b]\n  windw: 1h\n",
        6,
        ["unknown parameter 'windw'", "did you mean 'window'?"],
    ),
    (
        "parameter of another type",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  steps: [a, b]\n",
        6,
        ["type count does not take the parameter 'steps'", "it takes event, unit"],
    ),
    (
        "dates in the definition",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  from: 2026-01-01\n",
        6,
        ["'from' is chosen when the metric runs", "remove it"],
    ),
    (
        "grain as a parameter",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  grain: week\n",
        6,
        ["grain is a field of the definition", "`grain: week`"],
    ),
    (
        "unknown field",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  unit: user.idd\n",
        6,
        ["unit 'user.idd' is not a field", "did you mean 'user.id'?"],
    ),
    (
        "field that cannot be grouped",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  breakdown: client_ts\n",
        6,
        ["breakdown 'client_ts' holds timestamp values", "use a text, boolean or integer field"],
    ),
    (
        "bad filter, on its own line",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: x\n  where:\n"
        "    - app.id=web\n    - app.id\n",
        8,
        ["cannot read filter 'app.id'", "write FIELD=VALUE"],
    ),
    (
        "bad window",
        "name: m\ntitle: M\ntype: funnel\nparams:\n  steps: [a, b]\n  window: soon\n",
        6,
        ["cannot read window 'soon'", "e.g. 90s, 30m, 1h"],
    ),
    (
        "percentile out of range",
        "name: m\ntitle: M\ntype: percentile\nparams:\n  event: page.view\n"
        "  field: data.load_ms\n  p: [50, 900]\n",
        7,
        ["percentile 900 is outside 0..100", "`p: [50, 90, 99]`"],
    ),
    (
        "event name empty",
        "name: m\ntitle: M\ntype: count\nparams:\n  event: ''\n",
        5,
        ["event must be one event name", "`event: error.shown`"],
    ),
    (
        "parameter without a value",
        "name: m\ntitle: M\ntype: count\nparams:\n  event:\n",
        5,
        ["event has no value", "`event: error.shown`"],
    ),
    (
        "nested list",
        "name: m\ntitle: M\ntype: core\nparams:\n  actions: [[a]]\n  active: [b]\n",
        5,
        ["actions takes a value or a list of values"],
    ),
    (
        "negative periods",
        "name: m\ntitle: M\ntype: retention\nparams:\n  cohort_event: s\n"
        "  return_events: [l]\n  periods: -1\n",
        7,
        ["periods must not be negative", "`periods: 8`"],
    ),
    (
        "unit event outside ratio",
        "name: m\ntitle: M\ntype: active\nparams:\n  active: [a]\n  unit: event\n",
        6,
        ["active counts units", "user.id"],
    ),
    (
        "stickiness not a boolean",
        "name: m\ntitle: M\ntype: active\nparams:\n  active: [a]\n  stickiness: maybe\n",
        6,
        ["stickiness must be true or false", "`stickiness: true`"],
    ),
    (
        "scalar file",
        "just text\n",
        1,
        ["a catalog file holds a metric definition", "`name: ...`"],
    ),
    (
        "list item not a mapping",
        "- " + OK.replace("\n", "\n  ").rstrip() + "\n- wau\n",
        5,
        ["a metric definition must be a mapping", "`name: ...`"],
    ),
    (
        "bad YAML",
        "name: m\ntitle: [M\ntype: count\n",
        3,
        ["not valid YAML", "fix the syntax"],
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "parts"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_definition_names_file_line_and_fix(
    tmp_path: Path, text: str, line: int, parts: list[str]
) -> None:
    directory = write(tmp_path, {"m.yaml": text})
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    message = str(problems[0])
    assert message.startswith(f"metrics/m.yaml:{line}: "), message
    assert " — " in message or "write " in message or "use " in message, message
    for part in parts:
        assert part in message, message


def test_every_problem_of_every_file_is_reported(tmp_path: Path) -> None:
    directory = write(
        tmp_path,
        {
            "a.yaml": "name: wau\ntitle: W\ntype: actve\ngrian: week\n",
            "b.yaml": "- name: ok\n  title: OK\n  type: count\n  params: {event: x}\n"
            "- name: bad\n  title: B\n  type: count\n  params: {event: x, unit: nope}\n",
            "c.yaml": "name: ok\ntitle: again\ntype: count\nparams: {event: y}\n",
        },
    )
    catalog, problems = read_catalog(directory)
    assert [str(p).split(" — ")[0] for p in problems] == [
        "metrics/a.yaml:3: unknown type 'actve'",
        "metrics/a.yaml:4: unknown key 'grian'",
        "metrics/b.yaml:8: unit 'nope' is not a field",
        "metrics/c.yaml:1: metric name 'ok' is already defined at metrics/b.yaml:1",
    ]
    assert catalog.names() == ["ok"]
    with pytest.raises(CatalogError) as caught:
        load_catalog(directory)
    assert len(caught.value.problems) == 4
    assert str(caught.value).count("\n") == 3


def test_duplicate_names_point_at_the_first_definition(tmp_path: Path) -> None:
    directory = write(
        tmp_path, {"a.yaml": OK, "b.yaml": "# again\n" + OK.replace("count", "count\n")}
    )
    _, problems = read_catalog(directory)
    assert problems == [
        Problem(
            "metrics/b.yaml",
            2,
            "metric name 'm' is already defined at metrics/a.yaml:1 — rename one of them",
        )
    ]


def test_not_utf8_is_a_problem(tmp_path: Path) -> None:
    directory = write(tmp_path, {})
    directory.mkdir(parents=True)
    (directory / "x.yaml").write_bytes(b"name: \xff\n")
    _, problems = read_catalog(directory)
    assert [str(p) for p in problems] == [
        "metrics/x.yaml:1: not UTF-8 text — save the file as UTF-8"
    ]


def test_config_dir_setting() -> None:
    from tallystick.config import Settings, from_env

    default = from_env({}, data=Path("d"))
    assert default.config_dir is None
    assert default.catalog_dir == Path("d/config/metrics")
    chosen = from_env({"TALLYSTICK_CONFIG_DIR": "/etc/tally"}, data=Path("d"))
    assert chosen.catalog_dir == Path("/etc/tally/metrics")
    assert from_env(chosen.to_env()) == chosen
    assert "TALLYSTICK_CONFIG_DIR" not in default.to_env()
    assert from_env(default.to_env()) == default
    assert Settings(config_dir=Path("c")).config_path == Path("c")
