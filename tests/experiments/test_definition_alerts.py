"""The ``alerts`` of an experiment definition: both rules by default, ``[]`` for none, every
setting written out when normalised, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from tallystick.control.experiments import describe
from tallystick.experiments.definition import (
    DEFAULT_ALERTS,
    ExperimentAlert,
    ExperimentError,
    parse_experiment,
)

MINIMAL: dict[str, Any] = {
    "key": "signin-dialog",
    "hypothesis": "Pre-filling the e-mail lowers the bounce rate",
    "owner": "ux-lead@research-portal.eu",
    "variations": ["a", "b"],
    "metrics": {"primary": ["bounce_rate"], "guardrails": ["signin_latency"]},
}


def test_both_rules_watch_an_experiment_that_lists_none() -> None:
    e = parse_experiment(MINIMAL)
    assert e.alerts == DEFAULT_ALERTS
    assert e.to_dict()["alerts"] == [
        {"rule": "experiment_srm", "min_units": 100},
        {"rule": "experiment_guardrail", "min_units": 100},
    ]
    assert parse_experiment({**MINIMAL, "alerts": None}).alerts == DEFAULT_ALERTS


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([], ()),
        (["experiment_srm"], (ExperimentAlert("experiment_srm", 100),)),
        ("experiment_guardrail", (ExperimentAlert("experiment_guardrail", 100),)),
        (
            [{"rule": "experiment_guardrail", "min_units": 0}, {"rule": "experiment_srm"}],
            (ExperimentAlert("experiment_guardrail", 0), ExperimentAlert("experiment_srm", 100)),
        ),
        ({"rule": "experiment_srm", "min_units": 5000}, (ExperimentAlert("experiment_srm", 5000),)),
    ],
)
def test_alerts_are_chosen_and_tuned(alerts: Any, expected: tuple[ExperimentAlert, ...]) -> None:
    e = parse_experiment({**MINIMAL, "alerts": alerts})
    assert e.alerts == expected
    assert parse_experiment(e.to_dict()) == e


@pytest.mark.parametrize(
    ("alerts", "path", "words"),
    [
        (["srm"], "alerts[0].rule", "experiment_srm, experiment_guardrail"),
        ([{"rule": "experiment_srm", "min_units": -1}], "alerts[0].min_units", "≥ 0"),
        ([{"rule": "experiment_srm", "min_units": 1.5}], "alerts[0].min_units", "whole number"),
        ([{"rule": "experiment_srm", "min_units": True}], "alerts[0].min_units", "whole number"),
        ([{"rule": "experiment_srm", "p": 0.01}], "alerts[0]", "unknown key(s) ['p']"),
        (["experiment_srm", "experiment_srm"], "alerts[1]", "listed twice"),
        ([3], "alerts[0]", "an alert is {rule, min_units}"),
        (True, "alerts", "alerts is a list of rules"),
    ],
)
def test_bad_alerts_are_refused_naming_the_field(alerts: Any, path: str, words: str) -> None:
    with pytest.raises(ExperimentError) as info:
        parse_experiment({**MINIMAL, "alerts": alerts})
    assert info.value.path == path
    assert words in info.value.message


def test_a_stored_definition_without_alerts_is_unchanged_by_the_defaults() -> None:
    before = parse_experiment(MINIMAL)
    assert describe(before, parse_experiment(before.to_dict())) == []
    after = parse_experiment({**MINIMAL, "alerts": []})
    assert describe(before, after) == [
        '~ alerts: [{"rule": "experiment_srm", "min_units": 100}, {"rule": "... → []'
    ]
