"""`tally demo`'s control-plane step for the experiment: it applies the demo's flags and starts
the signin-dialog experiment on the day its history starts serving b — and leaves a control
plane holding someone else's flags or experiments alone. (The whole command runs end to end in
tests/e2e/test_demo.py.)"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from rich.console import Console

from tallystick.cli.demo import DEMO_ACTOR, _apply_experiment
from tallystick.config import Settings
from tallystick.control import experiments as control_experiments
from tallystick.control import flags as control_flags
from tallystick.control.store import ControlStore
from tallystick.demo import experiment as demo_experiment
from tallystick.demo.generator import EXPERIMENT, DemoSpec


def _run(settings: Settings, **params: int) -> str:
    out = io.StringIO()
    _apply_experiment(Console(file=out, width=200), settings, params)
    return out.getvalue()


def _start(users: int, days: int, seed: int) -> dt.datetime:
    spec = DemoSpec(users=users, days=days, seed=seed, end=dt.datetime.now(dt.UTC).date())
    return demo_experiment.started_at(spec.start, spec.experiment_start)


def test_it_applies_the_flags_and_starts_the_experiment(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path)
    printed = _run(settings, users=300, days=120, seed=7)
    assert "started the signin-dialog experiment" in printed
    with ControlStore.for_settings(settings) as store:
        stored = control_experiments.get_experiment(store, EXPERIMENT)
        ruleset = control_flags.get_ruleset(store)
    assert stored.experiment.status == "running"
    assert stored.experiment.start == _start(300, 120, 7)
    assert stored.updated_by == DEMO_ACTOR
    wanted = control_flags.validate(demo_experiment.ruleset_document()).to_dict()
    assert control_flags.validate(ruleset).to_dict()["flags"] == wanted["flags"]

    # another build (other days): the demo's own experiment starts again from that window
    _run(settings, users=300, days=60, seed=7)
    with ControlStore.for_settings(settings) as store:
        again = control_experiments.get_experiment(store, EXPERIMENT).experiment
    assert again.status == "running"
    assert again.start == _start(300, 60, 7) != stored.experiment.start


def test_flags_of_someone_else_are_kept(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path)
    mine = {"flags": {"dark-mode": {"type": "boolean", "default": False}}}
    with ControlStore.for_settings(settings) as store:
        control_flags.put_ruleset(store, mine, actor="ada")
    printed = _run(settings, users=300, days=120, seed=7)
    assert "of your own (written by ada)" in printed
    with ControlStore.for_settings(settings) as store:
        assert control_experiments.list_experiments(store) == []
        assert set(control_flags.get_ruleset(store)["flags"]) == {"dark-mode"}


def test_experiments_of_someone_else_are_kept(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path)
    theirs = {**demo_experiment.experiment_document(), "key": "checkout-button"}
    with ControlStore.for_settings(settings) as store:
        control_experiments.put_experiment(store, theirs, actor="grace")
    printed = _run(settings, users=300, days=120, seed=7)
    assert "written by grace" in printed
    with ControlStore.for_settings(settings) as store:
        assert [e.key for e in control_experiments.list_experiments(store)] == ["checkout-button"]
        assert control_flags.get_ruleset(store)["flags"] == {}
