"""Alert rules of running experiments (``quality.experiment_alerts``) on a real lake and control
database: a skewed split fires ``experiment_srm`` and a balanced one does not; a guardrail made
worse in the treatment fires ``experiment_guardrail`` (lower-is-better aware) and a neutral one
does not; each change is announced once; a stopped experiment is not evaluated (a firing rule
resolves once); a readout that fails is logged and keeps the rules' state; the server's loop
delivers to a webhook on 127.0.0.1; ``tally quality check --experiment`` and ``tally quality
alerts --experiment``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from experiments.readout_lake import CATALOG_YAML, KEY, NOW, catalog, experiment_doc, lake_rows
from metrics.lakerows import write_rows
from quality import alertgen as g
from tallystick.cli import app as cli
from tallystick.collect.server import AlertLoop
from tallystick.config import Settings
from tallystick.control.experiments import (
    get_experiment,
    put_experiment,
    stop_experiment,
)
from tallystick.control.store import ControlStore
from tallystick.experiments.definition import ExperimentAlert
from tallystick.experiments.readout import readout
from tallystick.metrics.engines import DuckDBEngine
from tallystick.quality import experiment_alerts as xa
from tallystick.quality.alerts import AlertRun, check, current, history, record
from tallystick.store.lake import Lake

UNITS = 400
SUBJECT = f"experiment:{KEY}"
LINK = f"/experiments?key={KEY}"
LATENCY = "experiment_guardrail(signin_latency, b)"
PAGES = "experiment_guardrail(pages, b)"
GUARDRAILS = {"primary": ["bounce_rate"], "guardrails": ["signin_latency", "pages"]}
runner = CliRunner(env={"COLUMNS": "250", "TALLYSTICK_ALERT_WEBHOOK_URL": None})

Rows = list[dict[str, Any]]


def slow_b(rows: Rows, share_a: float = 0.5) -> Rows:
    """Sign-ins in b take 900 ms longer: the latency guardrail (lower is better) gets worse."""
    out = []
    for r in rows:
        b = int(r["user_anonymous_id"][1:]) >= UNITS * share_a
        if r["name"] == "signin.completed" and b:
            r = {**r, "data": {"duration_ms": r["data"]["duration_ms"] + 900}}
        out.append(r)
    return out


def prepare(root: Path, rows: Rows, **changes: Any) -> Settings:
    """A data directory with ``rows`` in its lake, the experiments' catalog, and experiment
    ``signin-dialog`` stored running (started 2026-03-10), no stream rules."""
    settings = Settings(data=root)
    write_rows(settings.lake_dir, rows)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "experiments.yaml").write_text(CATALOG_YAML)
    with g.control_store(root / "control.db", {"streams": []}) as store:
        put_experiment(store, experiment_doc(**changes), "test")
    return settings


def evaluate(settings: Settings, *, at: dt.datetime = NOW, **options: Any) -> list[AlertRun]:
    with ControlStore.for_settings(settings) as store:
        return check(store, Lake(settings.lake_dir), at=at, catalog=catalog(), **options)


def by_label(runs: list[AlertRun]) -> dict[str, AlertRun]:
    assert all(r.stream == SUBJECT for r in runs)
    return {r.label: r for r in runs}


def the_readout(settings: Settings) -> dict[str, Any]:
    with ControlStore.for_settings(settings) as store:
        stored = get_experiment(store, KEY)
    # what the rules read: the readout with always-valid (sequential) intervals
    return readout(
        xa.always_valid(stored), catalog(), DuckDBEngine(Lake(settings.lake_dir)), now=NOW
    )


# -- sample ratio mismatch -------------------------------------------------------------------------


@pytest.fixture
def skewed(tmp_path: Path) -> Settings:
    return prepare(tmp_path / "skewed", lake_rows(UNITS, share_a=0.7))


def test_a_skewed_split_fires_srm_naming_the_split_and_p(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7))
    runs = by_label(evaluate(settings))
    srm = runs["experiment_srm"]
    doc = the_readout(settings)["srm"]
    assert doc["flagged"]
    assert srm.fired
    assert srm.rule == "experiment_srm"
    assert srm.experiment == KEY
    assert srm.value is not None
    assert srm.value == pytest.approx(doc["p_value"])
    assert srm.value < 0.001
    assert srm.expected == 0.001
    a, b = doc["observed"]["a"], doc["observed"]["b"]
    assert a > 270
    assert b < 130
    assert srm.message.startswith(
        f"sample ratio mismatch in experiment {KEY}: units per variation a {a}, b {b}; "
        f"expected a {(a + b) / 2:,.1f}, b {(a + b) / 2:,.1f} (p = {doc['p_value']:.2g} < 0.001)"
    )
    assert srm.message.endswith(LINK)
    assert srm.spec == {"rule": "experiment_srm", "min_units": 100, "experiment": KEY}
    assert srm.notice == "fired"
    assert srm.id is not None
    # the same condition at the next evaluation announces nothing
    again = by_label(evaluate(settings, at=NOW + dt.timedelta(minutes=5)))["experiment_srm"]
    assert again.fired
    assert again.notice is None
    with ControlStore.for_settings(settings) as store:
        assert [r.label for r in history(store, notices=True)] == ["experiment_srm"]


def test_a_balanced_split_does_not_fire(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS))
    runs = by_label(evaluate(settings))
    srm = runs["experiment_srm"]
    assert not srm.fired
    assert srm.notice is None
    assert srm.value is not None
    assert srm.value > 0.001
    assert "as planned (p = " in srm.message
    assert not runs[LATENCY].fired  # b signs in faster: better, not worse


def test_too_few_units_stay_quiet(tmp_path: Path) -> None:
    settings = prepare(
        tmp_path / "d",
        lake_rows(UNITS, share_a=0.7),
        alerts=[{"rule": "experiment_srm", "min_units": 1000}],
    )
    (srm,) = evaluate(settings)
    exposed = sum(the_readout(settings)["srm"]["observed"].values())
    assert not srm.fired
    assert srm.message == f"only {exposed} units exposed: too few to judge (min_units 1,000)"
    assert srm.value is not None
    assert srm.value < 0.001


# -- guardrails ------------------------------------------------------------------------------------


def test_a_guardrail_made_worse_fires_and_a_neutral_one_does_not(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", slow_b(lake_rows(UNITS)), metrics=GUARDRAILS)
    runs = by_label(evaluate(settings))
    assert set(runs) == {"experiment_srm", LATENCY, PAGES}
    latency, pages = runs[LATENCY], runs[PAGES]
    doc = the_readout(settings)
    row = next(m for m in doc["metrics"] if m["metric"] == "signin_latency")["variations"][1]
    assert row["verdict"] == "worse"
    assert row["effect"] > 0
    assert latency.fired
    assert latency.notice == "fired"
    assert latency.value == pytest.approx(row["effect"])
    assert latency.spec == {
        "rule": "experiment_guardrail",
        "min_units": 100,
        "experiment": KEY,
        "metric": "signin_latency",
        "variation": "b",
    }
    low, high = row["ci"]
    assert latency.message.startswith(
        "guardrail signin_latency (Sign-in latency; lower is better) is worse in b against the "
        f"control a in experiment {KEY}: {row['effect'] * 100:+.3g} % "
        f"[{low * 100:+.3g} %, {high * 100:+.3g} %] relative, always-valid "
        f"(p = {row['p_value']:.2g}"
    )
    assert f"alpha 0.05; {row['n']:,} vs " in latency.message
    assert latency.message.endswith(LINK)
    assert not pages.fired
    assert pages.notice is None
    assert pages.message.endswith(": inconclusive")
    assert not runs["experiment_srm"].fired


def test_the_rules_read_always_valid_intervals(tmp_path: Path) -> None:
    """Evaluated again and again, the rules must not peek: a fixed-horizon experiment is read
    with sequential intervals (wider than its own), a sequential one as it is."""
    settings = prepare(tmp_path / "d", slow_b(lake_rows(UNITS)), metrics=GUARDRAILS)
    with ControlStore.for_settings(settings) as store:
        stored = get_experiment(store, KEY)
    assert not stored.experiment.sequential
    read = xa.always_valid(stored)
    assert read.experiment.sequential
    assert read.version == stored.version
    assert xa.always_valid(read) is read
    own = readout(stored, catalog(), DuckDBEngine(Lake(settings.lake_dir)), now=NOW)
    rules = the_readout(settings)
    assert rules["sequential"]
    for fixed, valid in zip(own["metrics"], rules["metrics"], strict=True):
        a, b = fixed["variations"][1]["ci"], valid["variations"][1]["ci"]
        assert b[0] < a[0] < a[1] < b[1]


def test_the_guardrail_verdict_is_direction_aware(tmp_path: Path) -> None:
    """b signs in faster: better for latency (lower is better); declared higher-is-better
    (``inverse: false``), the same effect is worse and fires."""
    metrics = {"primary": ["bounce_rate"], "guardrails": [{"metric": "signin_latency"}]}
    settings = prepare(tmp_path / "lower", lake_rows(UNITS), metrics=metrics)
    quiet = by_label(evaluate(settings))[LATENCY]
    assert not quiet.fired
    assert quiet.message.endswith(": better")
    assert quiet.value is not None
    assert quiet.value < 0
    metrics["guardrails"] = [{"metric": "signin_latency", "inverse": False}]
    settings = prepare(tmp_path / "higher", lake_rows(UNITS), metrics=metrics)
    fired = by_label(evaluate(settings))[LATENCY]
    assert fired.fired
    assert fired.value == pytest.approx(quiet.value)
    assert "guardrail signin_latency (Sign-in latency) is worse in b" in fired.message


def test_alerts_follow_the_definition(tmp_path: Path) -> None:
    settings = prepare(
        tmp_path / "off", lake_rows(UNITS, share_a=0.7), metrics=GUARDRAILS, alerts=[]
    )
    assert evaluate(settings) == []
    settings = prepare(
        tmp_path / "guard", slow_b(lake_rows(UNITS)), metrics=GUARDRAILS,
        alerts=["experiment_guardrail"],
    )  # fmt: skip
    assert sorted(r.label for r in evaluate(settings)) == [PAGES, LATENCY]


# -- what is evaluated, and when it stops ----------------------------------------------------------


def test_a_stopped_experiment_is_not_evaluated_and_its_firing_rule_resolves_once(
    tmp_path: Path,
) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7))
    assert by_label(evaluate(settings))["experiment_srm"].fired
    with ControlStore.for_settings(settings) as store:
        stop_experiment(store, KEY, "test")
    (resolved,) = evaluate(settings, at=NOW + dt.timedelta(minutes=5))
    assert resolved.label == "experiment_srm"
    assert not resolved.fired
    assert resolved.notice == "resolved"
    assert resolved.message == "not evaluated: the experiment is stopped"
    assert evaluate(settings, at=NOW + dt.timedelta(minutes=10)) == []  # nothing more, ever
    with ControlStore.for_settings(settings) as store:
        assert [r.notice for r in history(store, notices=True)] == ["resolved", "fired"]
        assert not current(store)[(SUBJECT, "experiment_srm")].fired


def test_a_stopped_experiment_never_fires(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7), status="stopped")
    assert evaluate(settings) == []
    draft = prepare(tmp_path / "draft", lake_rows(UNITS, share_a=0.7), status="draft")
    assert evaluate(draft) == []


def test_filters_choose_the_experiment_or_the_streams(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7))
    with ControlStore.for_settings(settings) as store:
        store.apply(_one_stream(), "test")
    runs = evaluate(settings, deliver=False)
    assert {r.stream for r in runs} == {SUBJECT, "product"}
    assert {r.stream for r in evaluate(settings, deliver=False, stream="product")} == {"product"}
    assert {r.stream for r in evaluate(settings, deliver=False, experiment=KEY)} == {SUBJECT}
    with pytest.raises(KeyError):
        evaluate(settings, deliver=False, experiment="nope")
    with ControlStore.for_settings(settings) as store:  # without a catalog: streams only
        plain = check(store, Lake(settings.lake_dir), at=NOW, deliver=False)
    assert {r.stream for r in plain} == {"product"}


def _one_stream() -> Any:
    from tallystick.control.definitions import parse_configuration

    rule = {"rule": "failed_rate"}
    return parse_configuration(
        {"streams": [{"name": "product", "events": ["*"], "alerts": [rule]}]}
    )


# -- failures --------------------------------------------------------------------------------------


def _break_lake(settings: Settings) -> None:
    for path in sorted(settings.lake_dir.rglob("*.parquet")):
        path.write_bytes(b"not parquet at all")


def test_a_failed_readout_is_logged_and_keeps_the_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "tallystick.alerts")
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7))
    assert by_label(evaluate(settings))["experiment_srm"].fired
    _break_lake(settings)
    run = by_label(evaluate(settings, at=NOW + dt.timedelta(minutes=5)))["experiment_srm"]
    assert run.fired
    assert run.notice is None
    assert run.message.startswith("not evaluated: the readout failed (QueryFailed: ")
    (record,) = [r for r in caplog.records if "readout failed" in r.getMessage()]
    assert record.getMessage().startswith(f"experiment {KEY}: the readout failed (QueryFailed: ")
    assert record.getMessage().endswith("its alert rules keep their state")


def test_a_failed_readout_of_a_new_rule_is_quiet(tmp_path: Path) -> None:
    settings = prepare(tmp_path / "d", lake_rows(UNITS, share_a=0.7))
    _break_lake(settings)
    run = by_label(evaluate(settings))["experiment_srm"]
    assert not run.fired
    assert run.notice is None
    assert run.message.startswith("not evaluated: the readout failed")


# -- the server's loop, a webhook, the command line -----------------------------------------------


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


@pytest.fixture
def hook() -> Iterator[g.Receiver]:
    with g.Receiver() as receiver:
        yield receiver


def test_the_loop_delivers_srm_and_guardrail_notices_to_a_webhook_once(
    tmp_path: Path, hook: g.Receiver
) -> None:
    rows = slow_b(lake_rows(UNITS, share_a=0.7), share_a=0.7)
    data = prepare(tmp_path / "d", rows, metrics=GUARDRAILS).data
    settings = Settings(data=data, alert_interval_seconds=0.05, alert_webhook_url=hook.url)
    loop = AlertLoop(settings).start()
    try:
        _wait(lambda: loop.evaluations >= 4, 60)
    finally:
        loop.close()
    assert loop.failures == 0
    bodies = {b["label"]: b for b in hook.bodies}
    assert len(hook.bodies) == 2 == len(bodies)  # one notice each, however many evaluations
    srm, latency = bodies["experiment_srm"], bodies[LATENCY]
    for body in (srm, latency):
        assert body["notice"] == "fired"
        assert body["fired"] is True
        assert body["stream"] == SUBJECT
        assert body["experiment"] == KEY
        assert body["link"] == LINK
        assert body["text"].startswith(f"[tallystick] FIRING {SUBJECT} {body['label']}: ")
        assert LINK in body["text"]
    assert srm["value"] < 0.001
    assert srm["expected"] == 0.001
    assert srm["rule"] == "experiment_srm"
    assert latency["rule"] == "experiment_guardrail"
    assert latency["spec"]["metric"] == "signin_latency"
    assert latency["spec"]["variation"] == "b"
    assert latency["value"] > 0
    with ControlStore.for_settings(settings) as store:
        notices = history(store, notices=True)
    assert sorted(r.label for r in notices) == [LATENCY, "experiment_srm"]
    assert all(r.delivered for r in notices)


def tally(data: Path, *args: str) -> Result:
    return runner.invoke(cli, ["quality", *args, "--data", str(data)])


def test_check_and_alerts_on_the_command_line(skewed: Settings) -> None:
    at = "2026-03-20T00:00:00Z"
    dry = tally(skewed.data, "check", "--experiment", KEY, "--at", at, "--no-deliver")
    assert dry.exit_code == 1, dry.output
    assert "experiment_srm" in dry.stdout
    assert SUBJECT in dry.stdout
    # and the guardrail: b signs in faster, better
    assert "2 rules: 1 firing, 1 quiet; 1 change not sent (--no-deliver)" in dry.stderr
    result = tally(skewed.data, "check", "--at", at, "--format", "json")
    assert result.exit_code == 1, result.output
    assert f"alert fired: experiment {KEY}, experiment_srm: sample ratio mismatch" in (
        result.stderr
    )
    shown = tally(skewed.data, "alerts", "--experiment", KEY)
    assert shown.exit_code == 0, shown.output
    assert "experiment_srm" in shown.stdout
    assert "FIRING" in shown.stdout
    assert "p " in shown.stdout  # the p-value, not a percentage
    none = tally(skewed.data, "alerts", "--experiment", "other")
    assert "No alert evaluations recorded yet" in none.stderr
    unknown = tally(skewed.data, "check", "--experiment", "nope")
    assert unknown.exit_code == 2
    assert "no experiment 'nope'" in unknown.stderr


# -- the verdicts on their own ---------------------------------------------------------------------


def _doc(**srm: Any) -> dict[str, Any]:
    return {
        "experiment": {"key": "k"},
        "alpha": 0.05,
        "correction": "holm",
        "srm": {
            "p_value": 0.5,
            "flagged": False,
            "threshold": 0.001,
            "observed": {"a": 60, "b": 40},
            "expected": {"a": 50.0, "b": 50.0},
            **srm,
        },
        "metrics": [
            {"metric": "m", "title": None, "inverse": False, "error": "no metric 'm'",
             "variations": []},
        ],
    }  # fmt: skip


def test_min_units_is_inclusive_and_counts_all_variations() -> None:
    watch = xa.Watch(ExperimentAlert("experiment_srm", 100))
    assert xa.judge(watch, _doc(flagged=True, p_value=1e-5)).fired
    watch = xa.Watch(ExperimentAlert("experiment_srm", 101))
    verdict = xa.judge(watch, _doc(flagged=True, p_value=1e-5))
    assert not verdict.fired
    assert verdict.message == "only 100 units exposed: too few to judge (min_units 101)"


def test_a_guardrail_left_out_of_the_readout_is_quiet_saying_why() -> None:
    watch = xa.Watch(ExperimentAlert("experiment_guardrail", 0), "m", "b")
    verdict = xa.judge(watch, _doc())
    assert not verdict.fired
    assert verdict.message == "not evaluated: metric m is left out: no metric 'm'"


def test_subjects_and_links() -> None:
    assert xa.subject("a/b") == "experiment:a/b"
    assert xa.experiment_of("experiment:a/b") == "a/b"
    assert xa.experiment_of("product") is None
    assert xa.link("a/b:c") == "/experiments?key=a%2Fb%3Ac"


def test_a_reader_who_may_not_see_every_stream_sees_no_experiment_rules(skewed: Settings) -> None:
    with ControlStore.for_settings(skewed) as store:
        record(
            store,
            [AlertRun(NOW, "product", "keys", "keys(user.id)", {}, False, 0.0, 0.05, "quiet")],
        )
        evaluate(skewed)
        everyone = {r.stream for r in history(store)}
        restricted = {r.stream for r in history(store, hidden=frozenset({"private"}))}
    assert everyone == {SUBJECT, "product"}
    assert restricted == {"product"}


def test_check_reads_the_catalog_of_config_dir(skewed: Settings, tmp_path: Path) -> None:
    """Without the guardrail's metric in the catalog, the rule is quiet and says why."""
    (tmp_path / "metrics").mkdir()
    at = "2026-03-20T00:00:00Z"
    result = tally(
        skewed.data, "check", "--at", at, "--no-deliver", "--format", "json",
        "--config-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    runs = {r["label"]: r for r in json.loads(result.stdout)}
    assert runs["experiment_srm"]["fired"]
    latency = runs["experiment_guardrail(signin_latency, b)"]
    assert not latency["fired"]
    assert latency["message"].startswith("not evaluated: metric signin_latency is left out: ")
