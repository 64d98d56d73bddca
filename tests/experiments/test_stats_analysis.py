"""The experiment-level API: analyze(), records, mixed batches, interval adjustment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.stats_cases import batch, make_cases
from tallystick.experiments import (
    MetricStats,
    Status,
    adjust_p_values,
    analyze,
    ci_alpha,
    frequentist,
)
from tallystick.experiments.analysis import RECORD_DTYPE


def signin_experiment(seed: int = 8) -> tuple[MetricStats, np.ndarray]:
    """The sign-in dialog demo: variant B lowers the bounce rate (bounced sessions / sessions
    per user) and raises sign-in conversion; 3 metrics (bounce rate, sign-in, minutes) × 2
    variations."""
    rng = np.random.default_rng(seed)
    units = np.array([5_000, 5_040])
    cols: dict[str, list[list[float]]] = {k: [[], [], []] for k in ("s", "ss", "d", "dd", "md")}
    for n, bounce, signin in zip(units, (0.40, 0.34), (0.30, 0.36), strict=True):
        sessions = 1.0 + rng.poisson(1.2, n)
        bounced = rng.binomial(sessions.astype(np.int64), bounce).astype(np.float64)
        signed_in = (rng.random(n) < signin).astype(np.float64)
        minutes = rng.lognormal(1.5, 0.7, n)
        for m, values in enumerate((bounced, signed_in, minutes)):
            cols["s"][m].append(float(values.sum()))
            cols["ss"][m].append(float(values @ values))
        cols["d"][0].append(float(sessions.sum()))
        cols["dd"][0].append(float(sessions @ sessions))
        cols["md"][0].append(float(bounced @ sessions))
        for m in (1, 2):  # not ratio metrics
            for k in ("d", "dd", "md"):
                cols[k][m].append(np.nan)
    stats = MetricStats.of(
        n=np.broadcast_to(units, (3, 2)),
        sum=cols["s"],
        sum_squares=cols["ss"],
        binomial=[[False], [True], [False]],
        denominator_sum=cols["d"],
        denominator_sum_squares=cols["dd"],
        main_denominator_sum_product=cols["md"],
    )
    return stats, units


def test_signin_demo_reports_lower_bounce_rate_with_the_right_sign() -> None:
    stats, units = signin_experiment()
    result = analyze(stats, units, [0.5, 0.5], inverse=[True, False, False])
    rec = result.records()
    assert rec.dtype == RECORD_DTYPE
    assert rec.shape == (3,)
    bounce, signin, _ = rec
    assert bounce["control_mean"] == pytest.approx(0.40, abs=0.02)
    assert bounce["effect"] < 0  # relative change of the bounce rate: down
    assert bounce["ci_high"] < 0
    assert bounce["p_value"] < 0.001
    assert bounce["chance_to_win"] > 0.99  # lower is better for an inverse metric
    assert bounce["risk_treatment"] < bounce["risk_control"]
    assert signin["effect"] > 0
    assert signin["chance_to_win"] > 0.9
    assert not rec["srm_flagged"].any()
    assert rec["srm_p_value"][0] == pytest.approx(0.689, abs=0.01)
    np.testing.assert_allclose(rec["p_value_adjusted"], adjust_p_values(rec["p_value"], "holm"))


def test_srm_flag_reaches_every_row() -> None:
    stats, _ = signin_experiment()
    result = analyze(stats, [5_000, 4_500], [0.5, 0.5])
    assert result.srm.flagged
    assert result.records()["srm_flagged"].all()


def test_mixed_batch_equals_one_call_per_metric() -> None:
    """Vectorising over a batch mixing mean, binomial, ratio and CUPED metrics gives the same
    numbers as analysing each metric alone."""
    cases = make_cases(seed=5, per_kind=4)
    control, treatment = batch(cases)
    together = frequentist(control, treatment)
    for i in range(len(cases)):
        alone = frequentist(control[i : i + 1], treatment[i : i + 1])
        for name in ("estimate", "ci_low", "ci_high", "p_value"):
            a = getattr(together.relative, name)[i]
            b = getattr(alone.relative, name)[0]
            assert a == pytest.approx(b, rel=1e-12)


def test_more_variations_compare_each_to_control() -> None:
    stats = MetricStats.of(n=[[1000, 1000, 1000]], sum=[[100, 130, 100]], binomial=True)
    result = analyze(stats, [1000, 1000, 1000], [1, 1, 1], correction="bh")
    rec = result.records()
    assert list(rec["variation"]) == [1, 2]
    assert rec["effect"][0] == pytest.approx(0.3)
    assert rec["effect"][1] == pytest.approx(0.0)
    np.testing.assert_allclose(rec["p_value_adjusted"], adjust_p_values(rec["p_value"], "bh"))


def test_adjusted_intervals_are_wider_and_match_the_level() -> None:
    stats, units = signin_experiment()
    plain = analyze(stats, units, [0.5, 0.5], correction="holm")
    wide = analyze(stats, units, [0.5, 0.5], correction="holm", adjust_intervals=True)
    np.testing.assert_allclose(wide.frequentist.alpha, 0.05 / 3)
    f_plain, f_wide = plain.frequentist.relative, wide.frequentist.relative
    assert (f_wide.ci_high - f_wide.ci_low > f_plain.ci_high - f_plain.ci_low).all()
    np.testing.assert_array_equal(f_wide.p_value, f_plain.p_value)


def test_ci_alpha_for_bh_uses_the_number_of_rejections() -> None:
    p = np.array([[0.001, 0.002, 0.5, 0.9]])
    assert ci_alpha(p, "bh", 0.05)[0, 0] == pytest.approx(2 * 0.05 / 4)
    assert ci_alpha(p, "holm", 0.05)[0, 0] == pytest.approx(0.05 / 4)
    assert ci_alpha(np.array([[0.5, 0.9]]), "bh")[0, 0] == pytest.approx(0.05 / 2)


def test_sequential_analysis_is_wider_than_fixed_horizon() -> None:
    stats, units = signin_experiment()
    fixed = analyze(stats, units, [0.5, 0.5]).records()
    seq = analyze(stats, units, [0.5, 0.5], sequential_testing=True).records()
    assert ((seq["ci_high"] - seq["ci_low"]) > (fixed["ci_high"] - fixed["ci_low"])).all()
    assert (seq["p_value"] >= fixed["p_value"]).all()
    np.testing.assert_array_equal(seq["effect"], fixed["effect"])


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="sum_squares"):
        MetricStats.of(10, 5.0)
    with pytest.raises(ValueError, match="alpha"):
        frequentist(
            MetricStats.of(10, 5.0, binomial=True),
            MetricStats.of(10, 5.0, binomial=True),
            alpha=1.5,
        )
    with pytest.raises(ValueError, match="shape"):
        analyze(MetricStats.of([10], [5.0], binomial=True), [10], [1])
    stats = MetricStats.of([[10, 10]], [[5.0, 6.0]], binomial=True)
    assert analyze(stats, [10, 10], [1, 1]).records()["status"][0] == Status.OK


def test_rows_are_json_ready_with_the_issue_field_names() -> None:
    stats, units = signin_experiment()
    result = analyze(stats, units, [0.5, 0.5], inverse=[True, False, False])
    rows = result.rows()
    text = json.dumps(rows, allow_nan=False)
    first = json.loads(text)[0]
    assert {"effect", "ci", "p_value", "chance_to_win", "risk", "srm"} <= set(first)
    assert first["ci"][0] < first["effect"] < first["ci"][1]
    assert first["srm"] == {
        "p_value": pytest.approx(0.689, abs=0.01),
        "flagged": False,
        "threshold": 0.001,
    }
    assert first["status"] == "ok"
    # no units in the treatment: values are null (not NaN), the split is flagged
    empty = MetricStats.of([[10, 0]], [[5.0, 0.0]], binomial=True)
    row = analyze(empty, [100, 0], [1, 1]).rows()[0]
    assert row["status"] == "no_units"
    assert row["effect"] is None
    assert row["p_value"] is None
    assert row["srm"]["flagged"]
    json.dumps(row, allow_nan=False)
