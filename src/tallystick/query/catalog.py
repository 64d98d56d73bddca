"""The metric catalog as the HTTP API shows it (``GET /v1/catalog``), read again whenever a
definition file changes, so edits show up while the server runs.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tallystick.metrics.catalog import Catalog, MetricDef, Problem, catalog_files, read_catalog
from tallystick.metrics.materialize import FORMAT, read_state, results_path
from tallystick.metrics.params import GRAINS
from tallystick.metrics.registry import value_column
from tallystick.store.lake import Lake

if TYPE_CHECKING:
    from tallystick.control.store import ControlStore

#: dashboard page slugs, in the dashboard's order
PAGES: Final = ("kpis", "core-actions", "funnel", "retention", "explore")
USAGE_WEEKS: Final = 4
"""Usage frequency is the mean number of runs per week over this many weeks."""

_Stamp = tuple[tuple[str, int, int], ...]


def used_in(metric: MetricDef) -> list[str]:
    """The dashboard pages that show ``metric``: ``kpis`` for importance ``kpi``, the page of
    its type (``core-actions``, ``funnel``, ``retention``), and ``explore`` for every one."""
    pages = {"explore"}
    if metric.importance == "kpi":
        pages.add("kpis")
    pages |= {
        page
        for type_, page in (
            ("core", "core-actions"),
            ("funnel", "funnel"),
            ("retention", "retention"),
        )
        if metric.type == type_
    }
    return [p for p in PAGES if p in pages]


def materialized(lake: Lake, metric: MetricDef) -> list[str]:
    """The grains at which results of ``metric``'s current definition are on disk (``tally
    metrics materialize``)."""
    out: list[str] = []
    for grain in GRAINS:
        state = read_state(lake, metric.name, grain)
        if (
            state is not None
            and state.get("format") == FORMAT
            and state.get("definition") == metric.definition_hash()
            and (lake.root / results_path(metric.name, grain)).is_file()
        ):
            out.append(grain)
    return out


def usage(store: ControlStore, now: dt.datetime | None = None) -> dict[str, float]:
    """Runs per week of each metric that ran (``ControlStore.record_metric_run``): the mean
    over the last ``USAGE_WEEKS`` weeks."""
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(weeks=USAGE_WEEKS)
    return {c.metric: round(c.runs / USAGE_WEEKS, 2) for c in store.metric_costs(since=since)}


def describe(
    metric: MetricDef, lake: Lake, runs: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """One metric as ``/v1/catalog`` lists it: the definition, the analysis it runs, its
    headline column, the pages that show it, its materialised grains and, when ``runs`` (from
    ``usage``) is known, how often it runs per week."""
    analysis = metric.analysis
    return {
        **metric.to_dict(),
        "analysis": analysis,
        "value": value_column(analysis, metric.parameters()),
        "used_in": used_in(metric),
        "materialized": materialized(lake, metric),
        "runs_per_week": None if runs is None else runs.get(metric.name, 0.0),
    }


def listing(
    catalog: Catalog,
    problems: list[Problem],
    lake: Lake,
    runs: Mapping[str, float] | None = None,
    shown: Callable[[MetricDef], bool] | None = None,
) -> dict[str, Any]:
    """The body of ``GET /v1/catalog`` (``runs``: ``usage`` of the control store, if any;
    ``shown``: which metrics the reader may see, every one by default — a metric that reads
    an event routed only to private streams it may not read is left out, see
    ``control.visibility``)."""
    return {
        "directory": str(catalog.directory),
        "metrics": [describe(m, lake, runs) for m in catalog if shown is None or shown(m)],
        "problems": [str(p) for p in problems],
    }


class CatalogFiles:
    """The catalog of one directory, parsed again only when a file was added, removed or
    changed (its size or modification time)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._cached: tuple[_Stamp, Catalog, list[Problem]] | None = None

    def _stamp(self) -> _Stamp:
        out = []
        for path in catalog_files(self.directory):
            try:
                st = path.stat()
            except OSError:  # removed since the listing: read_catalog says what it finds
                continue
            out.append((str(path), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def read(self) -> tuple[Catalog, list[Problem]]:
        """The valid definitions and the problems of the others (a missing directory is an
        empty catalog)."""
        stamp = self._stamp()
        with self._lock:
            if self._cached is not None and self._cached[0] == stamp:
                return self._cached[1], list(self._cached[2])
        catalog, problems = read_catalog(self.directory)
        with self._lock:
            self._cached = (stamp, catalog, problems)
        return catalog, list(problems)
