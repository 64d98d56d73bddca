"""The demo's feature flags and its A/B experiment, shipped as files (pure; reads them only).

* ``flags.json`` — the demo's flags ruleset. In ``prod`` the ``signin-dialog`` flag serves the
  ``signin-dialog`` experiment (variations ``a``/``b``, 50/50, hashed on the browser's
  ``anonymous_id``): the same rule that starting the experiment writes.
* ``experiments/signin-dialog.yaml`` — the experiment's definition (hypothesis, owner, unit,
  variations, metrics from the demo catalog: ``bounce_rate`` primary).

The generator assigns every browser with the flags engine on this ruleset (``compiled``) and logs
exposures with the SDK's own code; ``tally demo`` applies the ruleset and the definition to the
control plane and starts the experiment on the day the generated history starts serving it
(``DemoSpec.experiment_start``). One source of truth: what the generator served is what the
readout finds in the control plane.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from importlib.resources import files
from typing import Any, Final

import yaml

from tallystick.flags.evaluate import CompiledRuleset, compile_ruleset

__all__ = [
    "EXPERIMENT_FILE",
    "FLAG",
    "FLAGS_ENVIRONMENT",
    "FLAGS_FILE",
    "compiled",
    "experiment_document",
    "experiment_rule",
    "ruleset_document",
    "started_at",
]

FLAGS_FILE: Final = "flags.json"
EXPERIMENT_FILE: Final = "experiments/signin-dialog.yaml"
FLAG: Final = "signin-dialog"
"""The flag that serves the sign-in dialog's variant (its experiment has the same key)."""
FLAGS_ENVIRONMENT: Final = "prod"
"""The flags environment of the demo product (its events' ``app.environment`` is "production")."""


def _text(name: str) -> str:
    return files(__package__ or "tallystick.demo").joinpath(name).read_text(encoding="utf-8")


def ruleset_document() -> dict[str, Any]:
    """The demo's flags ruleset (a fresh copy: the caller may change it)."""
    doc: dict[str, Any] = json.loads(_text(FLAGS_FILE))
    return doc


def experiment_document() -> dict[str, Any]:
    """The ``signin-dialog`` experiment's definition, as data (a fresh copy)."""
    doc: dict[str, Any] = yaml.safe_load(_text(EXPERIMENT_FILE))
    return doc


def experiment_rule(doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``signin-dialog`` flag's experiment rule in ``prod`` of ``doc`` (default: the demo's)."""
    ruleset = ruleset_document() if doc is None else doc
    rules = ruleset["flags"][FLAG]["environments"][FLAGS_ENVIRONMENT]["rules"]
    for rule in rules:
        if "experiment" in rule:
            found: dict[str, Any] = rule
            return found
    raise LookupError(f"the demo ruleset's {FLAG!r} flag has no experiment rule")


@functools.cache
def compiled(environment: str = FLAGS_ENVIRONMENT) -> CompiledRuleset:
    """The demo's ruleset compiled for ``environment`` (cached: it is read-only)."""
    return compile_ruleset(ruleset_document(), environment)


def started_at(window_start: dt.date, experiment_start: int) -> dt.datetime:
    """When the experiment started: midnight UTC of day ``experiment_start`` of the window."""
    day = window_start + dt.timedelta(days=experiment_start)
    return dt.datetime.combine(day, dt.time(), dt.UTC)
