"""Data models: a stream's events narrowed to chosen fields, materialised in the engine as a
view (read live) or a table (a snapshot), with data-quality checks.

The definitions live in the control plane (``control.definitions.Model``); this package turns
them into SQL (``sql``, pure), materialises them (``build``) and runs their checks
(``checks``). The two entry points the CLI and the HTTP API call:

* ``build_models(settings, store, names=None) -> list[BuildResult]``
* ``run_checks(settings, store, names=None, since_days=None) -> list[CheckRun]``
"""

from __future__ import annotations

from tallystick.models.build import BuildResult, build_models, drop_model
from tallystick.models.checks import run_checks
from tallystick.models.sql import EngineBusy, ModelError

__all__ = ["BuildResult", "EngineBusy", "ModelError", "build_models", "drop_model", "run_checks"]
