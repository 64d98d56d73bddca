"""``GET /v1/experiments/{key}/results``: an experiment's readout (``experiments.readout``).

The definitions (``GET /v1/experiments``, ``/v1/experiments/{key}``) are the control-plane API's;
the results read the lake, so the query API answers them, for a read key. A reader who may not
see some private streams gets the readout without their rows, and a metric that reads only
events of such streams is left out as an unknown one (as ``/v1/metrics/<name>`` does).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

from tallystick.control.visibility import EVERYTHING, Visibility
from tallystick.metrics.catalog import Catalog
from tallystick.metrics.params import MetricError

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule
    from tallystick.control.store import ControlStore
    from tallystick.metrics.engines import Engine

RESULTS_PATH: Final = "/v1/experiments/{key}/results"
_RESULTS: Final = re.compile(r"/v1/experiments/([^/]+)/results/?")
PARAMS: Final = ("at", "include_bots")


def results_key(path: str) -> str | None:
    """The experiment key of a ``/v1/experiments/{key}/results`` path, else None."""
    match = _RESULTS.fullmatch(path)
    return None if match is None else urllib.parse.unquote(match.group(1))


def parse_at(value: Any) -> dt.datetime | None:
    """``at``: an ISO-8601 instant (a date is its midnight UTC; no offset is UTC)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MetricError(
            f"at must be an ISO-8601 date-time such as 2026-10-15T12:00:00Z, got {value!r}"
        )
    try:
        at = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise MetricError(
            f"at {value!r} is not an ISO-8601 date-time: write e.g. 2026-10-15T12:00:00Z"
        ) from None
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def check_params(params: dict[str, Any]) -> tuple[dt.datetime | None, bool]:
    """``at`` and ``include_bots`` of a request (MetricError naming what is wrong)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise MetricError(
            f"the results take only at and include_bots, not {', '.join(unknown)}: the metrics, "
            "window and design are the experiment's definition (GET /v1/experiments/{key})"
        )
    bots = params.get("include_bots", "false")
    if not isinstance(bots, str) or bots.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise MetricError(f"include_bots must be true or false, got {bots!r}")
    return parse_at(params.get("at")), bots.lower() in ("true", "1", "yes")


def visible(catalog: Catalog, view: Visibility) -> Catalog:
    """The catalog as ``view`` sees it: without metrics reading events it may not see."""
    if view.everything:
        return catalog
    return Catalog(catalog.directory, tuple(m for m in catalog if view.events(m.events)))


def results_body(
    store: ControlStore,
    catalog: Catalog,
    engine: Engine,
    rules: tuple[Rule, ...],
    key: str,
    *,
    at: dt.datetime | None = None,
    include_bots: bool = False,
    view: Visibility = EVERYTHING,
) -> dict[str, Any]:
    """The readout of experiment ``key`` (``UnknownExperiment`` when there is none)."""
    from tallystick.control.experiments import get_experiment
    from tallystick.experiments.readout import readout

    stored = get_experiment(store, key)
    return readout(
        stored,
        visible(catalog, view),
        engine,
        rules,
        now=at,
        hidden=view.hidden,
        include_bots=include_bots,
    )
