"""The demo's flags ruleset and experiment definition: valid, and one source of truth — the rule
the generator assigns with is the rule starting the experiment writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tallystick.control import experiments as control_experiments
from tallystick.control import flags as control_flags
from tallystick.control.store import ControlStore
from tallystick.demo import catalog as demo_catalog
from tallystick.demo import experiment as demo_experiment
from tallystick.demo.generator import EXPERIMENT, VARIANTS, DemoSpec
from tallystick.experiments.definition import parse_experiment
from tallystick.flags.evaluate import compile_ruleset
from tallystick.metrics.catalog import load_catalog


def test_the_definition_is_valid_and_names_the_demo_catalogs_metrics(tmp_path: Path) -> None:
    e = parse_experiment(demo_experiment.experiment_document())
    assert (e.key, e.flag, e.environment, e.unit) == (
        EXPERIMENT,
        demo_experiment.FLAG,
        demo_experiment.FLAGS_ENVIRONMENT,
        "user.anonymous_id",
    )
    assert [v.key for v in e.variations] == list(VARIANTS)
    assert e.weights == (0.5, 0.5)
    assert e.owner == "ux-lead@research-portal.eu"
    assert e.hypothesis
    assert e.status == "draft"
    assert e.start is None
    roles = {m.role: m.metric for m in e.metrics}
    assert roles == {
        "primary": "bounce_rate",
        "secondary": "signin_completed",
        "guardrail": "signin_latency",
    }
    demo_catalog.install(tmp_path)
    catalog = load_catalog(tmp_path)
    for ref in e.metrics:
        assert ref.metric in catalog.names()
    bounce = catalog["bounce_rate"]
    assert bounce.type == "ratio"
    assert bounce.direction == "lower"
    assert catalog["signin_latency"].direction == "lower"
    assert catalog["signin_completed"].params["event"] == "signin.completed"


def test_the_ruleset_holds_the_experiments_own_rule() -> None:
    e = parse_experiment(demo_experiment.experiment_document())
    assert demo_experiment.experiment_rule() == e.flag_rule()
    assert e.hash_attribute() == "anonymous_id"
    flags = compile_ruleset(demo_experiment.ruleset_document(), "prod")
    assert flags is not demo_experiment.compiled()
    for i in range(200):
        anon = f"a-{i:040x}"
        got = flags.evaluate(demo_experiment.FLAG, {"anonymous_id": anon})
        assert got.exposure
        assert got.value == got.variation_key
        assert demo_experiment.compiled().evaluate(demo_experiment.FLAG, {"anonymous_id": anon})
    # in dev, no experiment: everyone previews b
    dev = demo_experiment.compiled("dev").evaluate(demo_experiment.FLAG, {"anonymous_id": "x"})
    assert (dev.value, dev.exposure) == ("b", False)


def test_starting_it_leaves_the_demo_ruleset_as_it_is(tmp_path: Path) -> None:
    """What `tally demo` does: the ruleset, the definition, then the start at the day the
    generated history starts serving b. The stored ruleset is still the demo's."""
    spec = DemoSpec(end=dt.date(2026, 6, 30))
    at = demo_experiment.started_at(spec.start, spec.experiment_start)
    assert at == dt.datetime(2026, 2, 4, tzinfo=dt.UTC)  # day 36 of 183 ending 30 June
    with ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}") as store:
        control_flags.put_ruleset(store, demo_experiment.ruleset_document(), actor="demo")
        control_experiments.put_experiment(
            store, demo_experiment.experiment_document(), actor="demo"
        )
        change = control_experiments.start_experiment(store, EXPERIMENT, actor="demo", at=at)
        assert change.stored is not None
        assert change.stored.experiment.status == "running"
        assert change.stored.experiment.start == at
        stored = control_flags.get_ruleset(store)
    stored.pop("version")
    wanted = control_flags.validate(demo_experiment.ruleset_document()).to_dict()
    assert control_flags.validate(stored).to_dict() == wanted
