"""The experiment readout (``tallystick.experiments.readout``) on hand-built lakes: every number
against a plain-Python / scipy computation from the raw rows (per-unit values, Welch t, the delta
method, Holm, chi-square), the verdict's sign with and without ``inverse``, the sample-ratio
mismatch on a skewed split, units in two variations, the planned sample size and the warnings;
and the catalog-metric conversions (``tallystick.experiments.catalog_metrics``)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as sps

from experiments.readout_lake import (
    KEY,
    NOW,
    START,
    catalog,
    event,
    experiment,
    lake_rows,
)
from metrics.lakerows import write_rows
from tallystick.experiments.catalog_metrics import (
    UnsupportedMetric,
    inverse_of,
    to_experiment_metric,
)
from tallystick.experiments.definition import MetricRef
from tallystick.experiments.readout import readout
from tallystick.metrics.engines import ChDBEngine, DuckDBEngine, Engine
from tallystick.metrics.params import Filter
from tallystick.store.lake import Lake

# -- the reference: plain Python from the rows --------------------------------------------------


def _units(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, tuple[dt.datetime, str]], int]:
    """Each single-variation device's first exposure and variation; the devices in two."""
    seen: dict[str, list[tuple[dt.datetime, str]]] = {}
    for r in rows:
        if r["name"] == "experiment.exposure" and START <= r["client_ts"] < NOW:
            seen.setdefault(r["user_anonymous_id"], []).append(
                (r["client_ts"], r["experiments"][KEY])
            )
    first = {u: (min(xs)[0], xs[0][1]) for u, xs in seen.items() if len({v for _, v in xs}) == 1}
    return first, len(seen) - len(first)


def _per_unit(
    rows: Sequence[Mapping[str, Any]], variation: str
) -> dict[str, list[tuple[float, float]]]:
    """Per metric, each device's (value, denominator) in ``variation``."""
    first, _ = _units(rows)
    out: dict[str, list[tuple[float, float]]] = {
        "bounce_rate": [],
        "signin_completed": [],
        "signin_latency": [],
        "pages": [],
    }
    for device, (t, v) in first.items():
        if v != variation:
            continue
        mine = [r for r in rows if r["user_anonymous_id"] == device and t <= r["client_ts"] < NOW]
        ends = [r for r in mine if r["name"] == "session.end"]
        signins = [r for r in mine if r["name"] == "signin.completed"]
        views = [r for r in mine if r["name"] == "page.view" and r["data"]["kind"] != "bot-check"]
        bounced = sum(1 for r in ends if r["data"]["pageviews"] == 1)
        out["bounce_rate"].append((bounced, len(ends)))
        out["signin_completed"].append((1.0 if signins else 0.0, 1.0))
        out["signin_latency"].append((sum(r["data"]["duration_ms"] for r in signins), len(signins)))
        out["pages"].append((len(views), 1.0))
    return out


def _moments(values: list[tuple[float, float]], kind: str) -> tuple[float, float, int]:
    """(mean, per-unit variance, n): sample variance, p(1 − p), or the delta method."""
    n = len(values)
    ys = [y for y, _ in values]
    if kind == "ratio":
        ds = [d for _, d in values]
        my, md = sum(ys) / n, sum(ds) / n
        vy = sum((y - my) ** 2 for y in ys) / (n - 1)
        vd = sum((d - md) ** 2 for d in ds) / (n - 1)
        c = sum((y - my) * (d - md) for y, d in values) / (n - 1)
        r = sum(ys) / sum(ds)
        return r, vy / md**2 - 2 * c * my / md**3 + my**2 * vd / md**4, n
    m = sum(ys) / n
    if kind == "conversion":
        return m, m * (1 - m), n
    return m, sum((y - m) ** 2 for y in ys) / (n - 1), n


def _compare(a: tuple[float, float, int], b: tuple[float, float, int]) -> dict[str, Any]:
    (ma, va, na), (mb, vb, nb) = a, b
    se_a, se_b = va / na, vb / nb
    dof = (se_a + se_b) ** 2 / (se_b**2 / (nb - 1) + se_a**2 / (na - 1))
    t = sps.t.ppf(0.975, dof)
    diff, sd = mb - ma, math.sqrt(se_a + se_b)
    rel = diff / ma
    rel_sd = math.sqrt(vb / (ma**2 * nb) + va * mb**2 / (ma**4 * na))
    return {
        "control_mean": ma,
        "mean": mb,
        "absolute_effect": diff,
        "absolute_ci": [diff - t * sd, diff + t * sd],
        "effect": rel,
        "ci": [rel - t * rel_sd, rel + t * rel_sd],
        "p_value": 2 * sps.t.sf(abs(rel) / rel_sd, dof),
        "chance_to_win": sps.norm.cdf(rel / rel_sd),
    }


def _holm(ps: list[float]) -> list[float]:
    order = sorted(range(len(ps)), key=lambda k: ps[k])
    out, running = [0.0] * len(ps), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[k]))
        out[k] = running
    return out


KINDS = {
    "bounce_rate": "ratio",
    "signin_completed": "conversion",
    "signin_latency": "ratio",
    "pages": "mean",
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, list[dict[str, Any]]]:
    rows = lake_rows()
    return write_rows(tmp_path_factory.mktemp("lake"), rows), rows


ENGINES: dict[str, Any] = {"duckdb": DuckDBEngine, "clickhouse": ChDBEngine}


def _variation(doc: Mapping[str, Any], metric: str, variation: str) -> dict[str, Any]:
    m = next(m for m in doc["metrics"] if m["metric"] == metric)
    found: dict[str, Any] = next(v for v in m["variations"] if v["variation"] == variation)
    return found


@pytest.mark.parametrize("engine", list(ENGINES))
def test_readout_equals_a_plain_python_computation(
    lake: tuple[Lake, list[dict[str, Any]]], engine: str
) -> None:
    if engine == "clickhouse":
        pytest.importorskip("chdb")
    the_lake, rows = lake
    eng: Engine = ENGINES[engine](the_lake)
    doc = readout(experiment(), catalog(), eng, now=NOW)
    first, both = _units(rows)
    counts = {v: sum(1 for _, w in first.values() if w == v) for v in "ab"}
    assert [(v["key"], v["units"], v["control"]) for v in doc["variations"]] == [
        ("a", counts["a"], True),
        ("b", counts["b"], False),
    ]
    assert doc["multiple_variations"] == both == 3
    assert doc["window"] == {"start": "2026-03-10T00:00:00Z", "end": "2026-03-20T00:00:00Z"}
    assert doc["analysed_at"] == "2026-03-20T00:00:00Z"
    assert doc["unit"] == "user.anonymous_id"
    assert doc["experiment"] == experiment().to_dict()
    assert doc["version"] is None
    # SRM: scipy's chi-square goodness of fit against 50/50.
    chi = sps.chisquare([counts["a"], counts["b"]])
    assert doc["srm"]["p_value"] == pytest.approx(chi.pvalue, rel=1e-9)
    assert doc["srm"]["flagged"] is False
    assert doc["srm"]["observed"] == counts
    assert doc["srm"]["expected"] == pytest.approx({v: sum(counts.values()) / 2 for v in "ab"})
    # Per metric: means, effects, intervals and p-values from the per-unit values.
    a_values, b_values = _per_unit(rows, "a"), _per_unit(rows, "b")
    expected = {
        name: _compare(_moments(a_values[name], kind), _moments(b_values[name], kind))
        for name, kind in KINDS.items()
    }
    adjusted = dict(zip(KINDS, _holm([expected[k]["p_value"] for k in KINDS]), strict=True))
    assert [m["metric"] for m in doc["metrics"]] == [
        "bounce_rate",
        "signin_completed",
        "pages",
        "signin_latency",
    ]
    for m in doc["metrics"]:
        name = m["metric"]
        assert m["kind"] == KINDS[name]
        assert m["inverse"] is (name in ("bounce_rate", "signin_latency"))
        control, treatment = m["variations"]
        want = expected[name]
        assert control == {
            "variation": "a",
            "control": True,
            "n": counts["a"],
            "mean": pytest.approx(want["control_mean"], rel=1e-12),
        }
        assert treatment["n"] == counts["b"]
        for field in ("mean", "absolute_effect", "effect", "p_value"):
            assert treatment[field] == pytest.approx(want[field], rel=1e-9), (name, field)
        for field in ("ci", "absolute_ci"):
            assert treatment[field] == pytest.approx(want[field], rel=1e-9), (name, field)
        assert treatment["p_value_adjusted"] == pytest.approx(adjusted[name], rel=1e-9)
        win = want["chance_to_win"]
        assert treatment["chance_to_win"] == pytest.approx(1 - win if m["inverse"] else win)
        assert treatment["significant"] is bool(adjusted[name] < 0.05)
        assert treatment["status"] == "ok"
    # b bounces less: a negative effect on a lower-is-better metric is better.
    bounce = _variation(doc, "bounce_rate", "b")
    assert bounce["effect"] < 0
    assert bounce["ci"][1] < 0
    assert bounce["significant"]
    assert bounce["verdict"] == "better"
    assert bounce["chance_to_win"] > 0.99
    assert bounce["risk"]["treatment"] < bounce["risk"]["control"]
    # Exposures per day: every device once, on the UTC day of its first exposure.
    per_day: dict[str, dict[str, int]] = {}
    for t, v in first.values():
        day = per_day.setdefault(t.date().isoformat(), {"a": 0, "b": 0})
        day[v] += 1
    assert {d["day"]: {"a": d["a"], "b": d["b"]} for d in doc["exposures"]} == per_day


def test_mean_metric_interval_is_scipys_welch(lake: tuple[Lake, list[dict[str, Any]]]) -> None:
    the_lake, rows = lake
    doc = readout(experiment(), catalog(), DuckDBEngine(the_lake), now=NOW)
    a = [y for y, _ in _per_unit(rows, "a")["pages"]]
    b = [y for y, _ in _per_unit(rows, "b")["pages"]]
    welch = sps.ttest_ind(b, a, equal_var=False)
    ci = welch.confidence_interval(0.95)
    got = _variation(doc, "pages", "b")
    assert got["absolute_ci"] == pytest.approx([ci.low, ci.high], rel=1e-9)


def test_inverse_follows_the_experiment_over_the_catalog(
    lake: tuple[Lake, list[dict[str, Any]]],
) -> None:
    the_lake, _ = lake
    engine = DuckDBEngine(the_lake)
    default = readout(experiment(), catalog(), engine, now=NOW)
    # The same data, judged as if a higher bounce rate were better: the verdict turns.
    flipped = experiment(metrics={"primary": [{"metric": "bounce_rate", "inverse": False}]})
    doc = readout(flipped, catalog(), engine, now=NOW)
    before, after = _variation(default, "bounce_rate", "b"), _variation(doc, "bounce_rate", "b")
    assert doc["metrics"][0]["inverse"] is False
    assert after["effect"] == pytest.approx(before["effect"])
    assert after["verdict"] == "worse"
    assert before["verdict"] == "better"
    assert after["chance_to_win"] == pytest.approx(1 - before["chance_to_win"])
    assert after["risk"]["treatment"] == pytest.approx(before["risk"]["control"])


def test_a_skewed_split_is_flagged(tmp_path: Path) -> None:
    rows = lake_rows(units=500, seed=5, share_a=0.62, both=0)
    doc = readout(experiment(), catalog(), DuckDBEngine(write_rows(tmp_path, rows)), now=NOW)
    observed = [v["units"] for v in doc["variations"]]
    assert observed == [310, 190]
    assert doc["srm"]["p_value"] == pytest.approx(sps.chisquare(observed).pvalue, rel=1e-9)
    assert doc["srm"]["flagged"] is True
    assert doc["srm"]["p_value"] < 0.001
    assert any(w.startswith("sample ratio mismatch") for w in doc["warnings"])
    assert doc["multiple_variations"] == 0
    assert not any("two or more variations" in w for w in doc["warnings"])
    # The same split with the matching weights is fine.
    weighted = readout(
        experiment(weights=[0.62, 0.38]),
        catalog(),
        DuckDBEngine(write_rows(tmp_path / "again", rows)),
        now=NOW,
    )
    assert weighted["srm"]["flagged"] is False
    assert weighted["srm"]["expected"] == pytest.approx({"a": 310.0, "b": 190.0})


def test_units_in_two_variations_are_counted_and_warned(
    lake: tuple[Lake, list[dict[str, Any]]],
) -> None:
    the_lake, _ = lake
    doc = readout(experiment(), catalog(), DuckDBEngine(the_lake), now=NOW)
    assert doc["multiple_variations"] == 3
    assert any(w.startswith("3 unit(s) were exposed to two or more") for w in doc["warnings"])


def test_planned_sample_size_and_progress(lake: tuple[Lake, list[dict[str, Any]]]) -> None:
    the_lake, rows = lake
    engine = DuckDBEngine(the_lake)
    exposed = sum(1 for _ in _units(rows)[0].values())
    fixed = readout(experiment(planned_sample_size=1600), catalog(), engine, now=NOW)
    assert fixed["planned_sample_size"] == 1600
    assert fixed["progress"] == pytest.approx(exposed / 1600)
    peek = [w for w in fixed["warnings"] if "planned units exposed" in w]
    assert peek
    assert peek[0].startswith(f"{exposed} of 1600 planned units exposed")
    assert "peeking" in peek[0]
    # From the power calculation: the control's bounce rate and its delta-method variance,
    # 5 % relative MDE, two-sided α = 0.05, power 0.8, 50/50 (normal approximation).
    doc = readout(experiment(), catalog(), engine, now=NOW)
    mean, variance, _ = _moments(_per_unit(rows, "a")["bounce_rate"], "ratio")
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    closed_form = 4 * variance * z**2 / (0.05 * mean) ** 2
    assert doc["planned_sample_size"] == pytest.approx(closed_form, rel=1e-3)
    assert doc["progress"] == pytest.approx(exposed / doc["planned_sample_size"])
    # Sequential intervals may be read at any time: no peeking warning.
    sequential = readout(
        experiment(planned_sample_size=1600, sequential=True), catalog(), engine, now=NOW
    )
    assert not any("planned units exposed" in w for w in sequential["warnings"])
    assert sequential["sequential"] is True


def test_sequential_and_correction_follow_the_definition(
    lake: tuple[Lake, list[dict[str, Any]]],
) -> None:
    the_lake, _ = lake
    engine = DuckDBEngine(the_lake)
    plain = readout(experiment(correction="none"), catalog(), engine, now=NOW)
    assert plain["correction"] == "none"
    for m in plain["metrics"]:
        b = m["variations"][1]
        assert b["p_value_adjusted"] == b["p_value"]
    seq = readout(experiment(sequential=True), catalog(), engine, now=NOW)
    fixed = readout(experiment(), catalog(), engine, now=NOW)
    s, f = _variation(seq, "pages", "b"), _variation(fixed, "pages", "b")
    assert s["effect"] == pytest.approx(f["effect"])
    assert s["ci"][1] - s["ci"][0] > f["ci"][1] - f["ci"][0]  # always-valid: wider


def test_a_stopped_experiment_is_read_up_to_its_stop(
    lake: tuple[Lake, list[dict[str, Any]]],
) -> None:
    the_lake, rows = lake
    stop = START + dt.timedelta(days=2)
    doc = readout(
        experiment(status="stopped", stop="2026-03-12T00:00:00Z"),
        catalog(),
        DuckDBEngine(the_lake),
        now=NOW,
    )
    assert doc["window"]["end"] == "2026-03-12T00:00:00Z"
    exposed = {
        r["user_anonymous_id"]
        for r in rows
        if r["name"] == "experiment.exposure" and START <= r["client_ts"] < stop
    }
    assert sum(v["units"] for v in doc["variations"]) + doc["multiple_variations"] == len(exposed)
    assert doc["exposures"][-1]["day"] == "2026-03-11"


def test_not_started_and_no_exposures(tmp_path: Path) -> None:
    empty = DuckDBEngine(write_rows(tmp_path, [event("page.view", "d1", START)]))
    draft = readout(experiment(status="draft", start=None), catalog(), empty, now=NOW)
    assert draft["window"]["start"] is None
    assert draft["warnings"][0].startswith("the experiment has not started (status draft)")
    assert any(w.startswith("no units exposed yet") for w in draft["warnings"])
    assert draft["planned_sample_size"] is None
    assert draft["progress"] is None
    assert draft["exposures"] == []
    assert draft["srm"]["p_value"] == 1.0
    assert not draft["srm"]["flagged"]
    control, treatment = draft["metrics"][0]["variations"]
    assert control["n"] == 0
    assert treatment["status"] == "no_units"
    assert treatment["verdict"] == "inconclusive"
    assert treatment["effect"] is None
    later = readout(experiment(), catalog(), empty, now=START - dt.timedelta(days=1))
    assert (
        later["warnings"][0] == "the experiment starts at 2026-03-10T00:00:00Z: nothing to read yet"
    )
    assert not any(w.startswith("no units exposed") for w in later["warnings"])


def test_metrics_an_experiment_cannot_use_are_reported(
    lake: tuple[Lake, list[dict[str, Any]]],
) -> None:
    the_lake, _ = lake
    doc = readout(
        experiment(
            metrics={"primary": ["bounce_rate"], "secondary": ["signin_funnel", "bounce_rat"]}
        ),
        catalog(),
        DuckDBEngine(the_lake),
        now=NOW,
    )
    funnel, typo = doc["metrics"][1], doc["metrics"][2]
    assert funnel["variations"] == []
    assert "funnel metric" in funnel["error"]
    assert "count, ratio, percentile" in funnel["error"]
    assert typo["title"] is None
    assert "did you mean 'bounce_rate'" in typo["error"]
    left_out = [w for w in doc["warnings"] if " is left out: " in w]
    assert [w.split(" (")[0] for w in left_out] == ["metric signin_funnel", "metric bounce_rat"]
    assert doc["metrics"][0]["variations"][1]["verdict"] == "better"  # the rest is analysed


# -- catalog metrics --------------------------------------------------------------------------


def test_catalog_metrics_become_experiment_metrics() -> None:
    c = catalog()
    bounce, inverse = to_experiment_metric(c["bounce_rate"], MetricRef("bounce_rate", "primary"))
    assert (bounce.kind, bounce.event, bounce.denominator, inverse) == (
        "ratio",
        "session.end",
        "session.end",
        True,
    )
    assert bounce.numerator_where == (Filter("data.pageviews", "=", ("1",)),)
    assert bounce.where == ()
    assert bounce.denominator_where == ()
    pages, inverse = to_experiment_metric(c["pages"])
    assert (pages.kind, pages.where, inverse) == (
        "mean",
        (Filter("data.kind", "!=", ("bot-check",)),),
        False,
    )
    ref = MetricRef("signin_completed", "secondary", kind="conversion", cuped_days=7)
    conversion, _ = to_experiment_metric(c["signin_completed"], ref)
    assert (conversion.kind, conversion.cuped_days) == ("conversion", 7)
    latency, inverse = to_experiment_metric(c["signin_latency"])
    assert (latency.kind, latency.event, latency.value, latency.denominator, inverse) == (
        "ratio",
        "signin.completed",
        "data.duration_ms",
        "signin.completed",
        True,
    )
    assert (
        inverse_of(c["signin_latency"], MetricRef("signin_latency", "guardrail", inverse=False))
        is False
    )


@pytest.mark.parametrize(
    ("name", "ref", "message"),
    [
        ("signin_funnel", None, "signin_funnel is a funnel metric"),
        (
            "bounce_rate",
            MetricRef("bounce_rate", "primary", kind="mean"),
            "read as ratio, not mean",
        ),
        ("pages", MetricRef("pages", "primary", kind="ratio"), "read as mean or conversion"),
        (
            "bounce_rate",
            MetricRef("bounce_rate", "primary", cuped_days=7),
            "CUPED (cuped_days) does not apply to ratios",
        ),
    ],
)
def test_unsupported_metrics_say_why(name: str, ref: MetricRef | None, message: str) -> None:
    with pytest.raises(UnsupportedMetric, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_experiment_metric(catalog()[name], ref)
