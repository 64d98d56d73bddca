"""Catalog metrics as experiment metrics: a :class:`~tallystick.metrics.catalog.MetricDef` and
the experiment's :class:`~tallystick.experiments.definition.MetricRef` to a
:class:`~tallystick.experiments.sql.Metric` and whether lower is better.

An experiment computes every metric per unit of randomisation from the unit's events after its
first exposure, so a catalog metric is read for its events and filters only (its ``unit`` and
``breakdown`` do not apply):

========== ============================================================= ====================
type       experiment metric                                             kinds
========== ============================================================= ====================
count      the unit's ``event`` events (a mean: events per unit), or     mean (default),
           whether it did one (``kind: conversion``)                     conversion
ratio      the unit's ``numerator`` events (``numerator_where``) over    ratio
           its ``denominator`` events; bounced sessions / sessions
percentile the sum of ``field`` over the unit's ``event`` events over    ratio
           their number: the mean per event (latency)
========== ============================================================= ====================

The catalog's ``where`` filters every event of the metric. ``inverse`` (lower is better) is the
MetricRef's when it says, else the catalog entry's ``direction: lower``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from tallystick.experiments.definition import MetricRef
from tallystick.experiments.sql import Kind, Metric
from tallystick.metrics.catalog import MetricDef, ParamValue
from tallystick.metrics.params import Filter, MetricError, as_filters

#: catalog type → the experiment kinds it can be read as (the default first)
KINDS: Final[dict[str, tuple[Kind, ...]]] = {
    "count": ("mean", "conversion"),
    "ratio": ("ratio",),
    "percentile": ("ratio",),
}


class UnsupportedMetric(MetricError):
    """A catalog metric an experiment cannot use (its type, or the kind asked for)."""


def _filters(value: ParamValue | None) -> tuple[Filter, ...]:
    if value is None:
        return ()
    items: Sequence[str] = [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
    return as_filters(items)


def _event(metric: MetricDef, key: str) -> str:
    value = metric.params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UnsupportedMetric(f"metric {metric.name}: {key} must be one event name")
    return value.strip()


def kind_of(metric: MetricDef, ref: MetricRef | None = None) -> Kind:
    """The experiment kind ``metric`` is read as (the MetricRef's ``kind`` when it says)."""
    kinds = KINDS.get(metric.type)
    if kinds is None:
        works = ", ".join(KINDS)
        raise UnsupportedMetric(
            f"metric {metric.name} is a {metric.type} metric, which an experiment cannot "
            f"compute per unit — use a catalog metric of type {works}"
        )
    wanted = None if ref is None else ref.kind
    if wanted is None:
        return kinds[0]
    if wanted not in kinds:
        raise UnsupportedMetric(
            f"metric {metric.name} is a {metric.type} metric: it is read as "
            f"{' or '.join(kinds)}, not {wanted} — change or remove its kind in the experiment"
        )
    return wanted


def inverse_of(metric: MetricDef, ref: MetricRef | None = None) -> bool:
    """Lower is better: the MetricRef's ``inverse`` when given, else ``direction: lower``."""
    if ref is not None and ref.inverse is not None:
        return ref.inverse
    return metric.direction == "lower"


def to_experiment_metric(metric: MetricDef, ref: MetricRef | None = None) -> tuple[Metric, bool]:
    """The experiment metric of catalog ``metric`` (keyed by its name) and its ``inverse``.

    Raises :class:`UnsupportedMetric` (a MetricError) naming the metric for a type or kind that
    does not work, and MetricError for an invalid combination (CUPED on a ratio).
    """
    kind = kind_of(metric, ref)
    where = _filters(metric.params.get("where"))
    cuped_days = None if ref is None else ref.cuped_days or None  # 0: no CUPED
    if cuped_days is not None and kind == "ratio":
        raise UnsupportedMetric(
            f"metric {metric.name} is read as a ratio: CUPED (cuped_days) does not apply to "
            "ratios — remove cuped_days from the experiment's metric"
        )
    if metric.type == "count":
        out = Metric(metric.name, kind, _event(metric, "event"), cuped_days=cuped_days, where=where)
    elif metric.type == "ratio":
        out = Metric(
            metric.name,
            "ratio",
            _event(metric, "numerator"),
            denominator=_event(metric, "denominator"),
            where=where,
            numerator_where=_filters(metric.params.get("numerator_where")),
        )
    else:  # percentile: the mean of the field per event
        event = _event(metric, "event")
        out = Metric(
            metric.name,
            "ratio",
            event,
            value=str(metric.params["field"]),
            denominator=event,
            where=where,
        )
    return out, inverse_of(metric, ref)
