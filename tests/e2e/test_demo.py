"""`tally demo --no-serve` builds the demo product's data through the real collector, applies
the demo's streams and models, and leaves `tally audit` something to find in every section; it
starts the signin-dialog experiment, whose readout finds variant b lowers the bounce rate.

The build is the session's ``demo_build`` (the dashboard's tests use it too: one build serves
both), copied here since the test runs the command on it again."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections import Counter

import pytest

from demo_build import DemoBuild
from tallystick.catalog.audit import SECTION_KEYS
from tallystick.config import Settings
from tallystick.control.experiments import get_experiment
from tallystick.control.flags import get_ruleset, validate
from tallystick.control.store import ControlStore
from tallystick.demo import experiment as demo_experiment
from tallystick.demo.extras import INVALID_EVENTS, UNDECLARED_EVENT
from tallystick.demo.generator import EVENT_NAMES, EXPERIMENT, FUNNEL, DemoSpec
from tallystick.demo.streams import EXPIRES_IN_DAYS
from tallystick.store.lake import Lake
from tallystick.store.reader import connect

pytestmark = pytest.mark.e2e


def _tally(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tallystick", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _demo(demo: DemoBuild) -> subprocess.CompletedProcess[str]:
    size = ["--users", str(demo.users), "--days", str(demo.days), "--seed", str(demo.seed)]
    return _tally("demo", "--no-serve", "--data", str(demo.data), *size)


@pytest.fixture(scope="module")
def demo(demo_build: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """The session's demo build in a directory of the module's: its data, what `tally demo`
    printed, and how many events the demo generated just before it ran."""
    return demo_build.copy(tmp_path_factory.mktemp("demo") / "data")


def test_demo_sends_everything_through_the_collector(demo: DemoBuild) -> None:
    data = demo.data
    assert "accepted" in demo.printed
    marker = json.loads((data / "demo.json").read_text())
    expected = marker["events"]
    # the generator stops at the current time: later runs may see a few more events
    assert demo.generated_before <= expected <= demo.generated()
    con = connect(Lake(data / "lake"))
    row = con.execute(
        "SELECT count(*), count(DISTINCT app_instance), count(DISTINCT nullif(user_id, '')) "
        "FROM events"
    ).fetchone()
    assert row is not None
    events, sites, users = row
    assert events == expected
    assert sites > 1
    assert 0 < users <= demo.users
    names = {r[0] for r in con.execute("SELECT DISTINCT name FROM events").fetchall()}
    assert set(FUNNEL) | {UNDECLARED_EVENT} <= names <= {*EVENT_NAMES, UNDECLARED_EVENT}
    failed = con.execute("SELECT count(*), min(error_code) FROM failed_events").fetchone()
    assert failed == (INVALID_EVENTS, "invalid_field")
    with ControlStore.for_settings(Settings(data=data)) as store:
        config = store.configuration()
        assert store.audit_log()[-1].actor == "demo"
        assert len(store.metric_costs()) >= 10
    assert {s.name for s in config.streams} >= {"product", "signin_experiment"}
    expires = config.stream("signin_experiment")
    assert expires is not None
    assert expires.expires is not None
    today = dt.datetime.now(dt.UTC).date()
    assert expires.expires.date() == today + dt.timedelta(days=EXPIRES_IN_DAYS)

    # A second run with the same parameters sends nothing again.
    second = _demo(demo)
    assert "already" in second.stderr
    again = connect(Lake(data / "lake")).execute("SELECT count(*) FROM events").fetchone()
    assert again == (expected,)


def test_the_audit_of_the_demo_lists_something_in_every_section(demo: DemoBuild) -> None:
    report = json.loads(_tally("audit", "--data", str(demo.data), "--format", "json").stdout)
    sections = {s["key"]: s for s in report["sections"]}
    assert list(sections) == list(SECTION_KEYS)
    assert [k for k, s in sections.items() if not s["count"]] == []

    def column(key: str, name: str) -> list[str]:
        return [str(r[name]) for r in sections[key]["rows"]]

    assert "weekly_searches" in column("undefined_metrics", "metric")
    assert column("unseen_events", "metric") == ["dataset_downloads"]
    assert column("unread_streams", "stream") == ["session_study"]
    assert column("undeclared_events", "event") == [UNDECLARED_EVENT]
    assert column("expiring_streams", "status") == [f"expires in {EXPIRES_IN_DAYS} days"]
    assert {"product", "kpi_minimal", "unrouted"} <= set(column("long_retention", "stream"))
    assert len(column("expensive_metrics", "metric")) == 10
    assert column("unreliable_sources", "source") == ["research-portal / tallystick-python"]
    assert "user.id" in column("personal_fields", "field")


def _bounce_rates(demo: DemoBuild) -> dict[str, float]:
    """Per variation, plain Python over the lake's rows: session.end events with one page view
    over all session.end events, of the browsers exposed, from their first exposure on."""
    con = connect(Lake(demo.data / "lake"))
    rows = con.execute(
        "SELECT name, user_anonymous_id, client_ts, data FROM events "
        "WHERE name IN ('experiment.exposure', 'session.end')"
    ).fetchall()
    first: dict[str, tuple[dt.datetime, str]] = {}
    for name, anon, ts, data in rows:
        if name == "experiment.exposure" and (anon not in first or ts < first[anon][0]):
            first[anon] = (ts, json.loads(data)["variation"])
    ends: Counter[str] = Counter()
    bounces: Counter[str] = Counter()
    for name, anon, ts, data in rows:
        if name == "session.end" and anon in first and ts >= first[anon][0]:
            variation = first[anon][1]
            ends[variation] += 1
            bounces[variation] += json.loads(data)["pageviews"] == 1
    return {v: bounces[v] / ends[v] for v in ends}


def test_the_demo_experiment_runs_and_b_lowers_the_bounce_rate(demo: DemoBuild) -> None:
    with ControlStore.for_settings(Settings(data=demo.data)) as store:
        stored = get_experiment(store, EXPERIMENT)
        ruleset = get_ruleset(store)
    built = dt.datetime.fromisoformat(json.loads((demo.data / "demo.json").read_text())["built"])
    spec = DemoSpec(users=demo.users, days=demo.days, seed=demo.seed, end=built.date())
    assert stored.experiment.status == "running"
    assert stored.experiment.start == demo_experiment.started_at(spec.start, spec.experiment_start)
    assert stored.updated_by == "demo"
    # the demo's ruleset, as the generator used it (the start rewrote the same rule)
    wanted = validate(demo_experiment.ruleset_document()).to_dict()
    assert validate(ruleset).to_dict()["flags"] == wanted["flags"]

    con = connect(Lake(demo.data / "lake"))
    exposures = con.execute(
        "SELECT user_anonymous_id, data FROM events WHERE name = 'experiment.exposure'"
    ).fetchall()
    browsers = Counter(anon for anon, _ in exposures)
    assert browsers
    assert set(browsers.values()) == {1}  # one exposure per browser
    flags = demo_experiment.compiled()
    exposed: Counter[str] = Counter()
    for anon, data in exposures:
        variation = json.loads(data)["variation"]
        assert variation == flags.evaluate("signin-dialog", {"anonymous_id": anon}).variation_key
        exposed[variation] += 1

    report = json.loads(
        _tally(
            "experiments", "analyze", EXPERIMENT, "--data", str(demo.data), "--format", "json"
        ).stdout
    )
    assert {v["key"]: v["units"] for v in report["variations"]} == dict(exposed)
    srm = report["srm"]
    assert srm["flagged"] is False
    assert 0.001 < srm["p_value"] <= 1
    assert srm["observed"] == dict(exposed)
    metrics = {m["metric"]: m for m in report["metrics"]}
    assert [(m["metric"], m["role"]) for m in report["metrics"]] == [
        ("bounce_rate", "primary"),
        ("signin_completed", "secondary"),
        ("signin_latency", "guardrail"),
    ]
    bounce = metrics["bounce_rate"]
    assert bounce["inverse"] is True
    control, treatment = bounce["variations"]
    assert (control["variation"], treatment["variation"]) == ("a", "b")
    expected = _bounce_rates(demo)
    assert control["mean"] == pytest.approx(expected["a"], rel=1e-9)
    assert treatment["mean"] == pytest.approx(expected["b"], rel=1e-9)
    assert treatment["mean"] < control["mean"]
    assert treatment["effect"] < 0
    low, high = treatment["ci"]
    assert low < treatment["effect"] < high < 0
    assert treatment["p_value"] < 0.05
    assert treatment["chance_to_win"] > 0.95
    assert treatment["verdict"] == "better"
