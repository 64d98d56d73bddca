"""The experiment SQL (``tallystick.experiments.sql``) on a hand-built lake: its sufficient
statistics (filtered metrics included) and the units newly exposed per day equal a plain-Python
computation of the same definitions, exactly, on DuckDB and chDB; golden SQL for DuckDB
(rewrite with ``UPDATE_GOLDEN=1`` after reviewing the change)."""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlglot import exp

from metrics.lakerows import write_rows
from tallystick.experiments import analyze
from tallystick.experiments.sql import (
    EXPOSURE_EVENT,
    STAT_COLUMNS,
    ExperimentQuery,
    Metric,
)
from tallystick.metrics.engines import ChDBEngine, DuckDBEngine, Engine
from tallystick.metrics.params import Filter, MetricError
from tallystick.metrics.sql import render
from tallystick.store.lake import Lake

GOLDEN = Path(__file__).parent / "golden"
KEY = "signin-dialog"
T0 = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
START = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 17, tzinfo=dt.UTC)
QUERY = ExperimentQuery(
    KEY,
    ("a", "b"),
    (
        Metric("signin", "conversion", "sign_in.ok", cuped_days=3),
        Metric("pages", "mean", "page.view", cuped_days=3),
        Metric("revenue", "mean", "purchase", value="data.amount", cuped_days=5),
        Metric("bounce", "ratio", "session.bounce", denominator="session.start"),
        # Filtered: sessions with one page view over sessions (one event, two sides) ...
        Metric(
            "one_page",
            "ratio",
            "session.end",
            denominator="session.end",
            numerator_where=(Filter("data.pageviews", "=", ("1",)),),
        ),
        # ... page views of paying plans (the covariate filtered too) ...
        Metric(
            "paid_pages",
            "mean",
            "page.view",
            where=(Filter("data.plan", "in", ("pro", "team")),),
            cuped_days=3,
        ),
        Metric(
            "paid_signin", "conversion", "sign_in.ok", where=(Filter("data.plan", "=", ("pro",)),)
        ),
        # ... and every filter at once (!= matches a missing field).
        Metric(
            "not_free_bounce",
            "ratio",
            "session.end",
            denominator="session.start",
            where=(Filter("data.plan", "!=", ("free",)),),
            numerator_where=(Filter("data.pageviews", "in", ("1", "2")),),
            denominator_where=(Filter("data.plan", "!=", ("team",)),),
        ),
    ),
    start=START,
    end=END,
)


def _event(name: str, user: str | None, at: dt.datetime, **more: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "name": name, "user_id": user, "client_ts": at, **more}


def _exposure(user: str | None, at: dt.datetime, variation: str) -> dict[str, Any]:
    return _event(EXPOSURE_EVENT, user, at, experiments={KEY: variation})


def _lake_rows(seed: int = 7, users: int = 60) -> list[dict[str, Any]]:
    """Users exposed (some twice, some to both variations, some before the start), with
    events before and after their exposure, some outside every window."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    names = (
        "sign_in.ok",
        "page.view",
        "purchase",
        "session.bounce",
        "session.start",
        "session.end",
        "other",
    )
    for u in range(users):
        user = f"u{u}"
        variation = "ab"[rng.getrandbits(1)]
        first = T0 + dt.timedelta(hours=rng.randrange(0, 24 * 8), seconds=rng.randrange(3600))
        rows.append(_exposure(user, first, variation))
        if u % 5 == 0:  # exposed again, later, same variation
            rows.append(_exposure(user, first + dt.timedelta(hours=5), variation))
        if u % 11 == 3:  # then exposed to the other variation: left out
            rows.append(_exposure(user, first + dt.timedelta(hours=2), "ba"[variation == "b"]))
        if u % 13 == 4:  # an exposure before the experiment started (ignored)
            rows.append(_exposure(user, START - dt.timedelta(hours=3), variation))
        for _ in range(rng.randrange(0, 12)):
            at = first + dt.timedelta(hours=rng.uniform(-24 * 8, 24 * 9))
            name = rng.choice(names)
            more: dict[str, Any] = {}
            if name == "purchase":
                more["data"] = {"amount": rng.choice([1.5, 2.25, 10, 0.5])}
                if rng.random() < 0.2:
                    more["data"] = {"amount": "n/a"}  # not a number: counts 0
            elif name != "other":
                data: dict[str, Any] = {}
                if rng.random() < 0.8:  # else no plan
                    data["plan"] = rng.choice(["free", "pro", "team"])
                if name == "session.end" and rng.random() < 0.9:
                    data["pageviews"] = rng.choice([1, 1, 2, 3])
                more["data"] = data
            rows.append(_event(name, user, at, **more))
    # Noise: events of the other experiment, of anonymous units, other event names.
    rows.append(_event(EXPOSURE_EVENT, "u1", T0, experiments={"other": "a"}))
    rows.append(_exposure(None, T0 + dt.timedelta(hours=1), "a"))
    rows.append(_event("sign_in.ok", None, T0 + dt.timedelta(hours=2)))
    # A copy of an event (same id and name): counts once.
    rows.append(dict(next(r for r in rows if r["name"] == "page.view")))
    return rows


def _holds(row: Mapping[str, Any], filters: Sequence[Filter]) -> bool:
    """``row`` matches every filter (``data.<key>`` fields; a missing one only matches !=)."""
    for f in filters:
        raw = (row.get("data") or {}).get(f.field.removeprefix("data."))
        actual = None if raw is None else str(raw)
        if f.op == "=" and actual != f.values[0]:
            return False
        if f.op == "in" and actual not in f.values:
            return False
        if f.op == "!=" and actual == f.values[0]:
            return False
    return True


def _reference(
    rows: Sequence[Mapping[str, Any]], q: ExperimentQuery
) -> tuple[dict[tuple[str, str], dict[str, float]], dict[str | None, int]]:
    """The statistics by their definitions, one unit at a time."""
    seen: set[tuple[str, str]] = set()
    unique: list[Mapping[str, Any]] = []
    for r in rows:
        if (r["event_id"], r["name"]) not in seen:
            seen.add((r["event_id"], r["name"]))
            unique.append(r)
    exposures: dict[str, list[tuple[dt.datetime, str]]] = {}
    for r in unique:
        variation = (r.get("experiments") or {}).get(q.experiment)
        if r["name"] != EXPOSURE_EVENT or r["user_id"] is None or variation is None:
            continue
        if q.start is not None and r["client_ts"] < q.start:
            continue
        if q.end is not None and r["client_ts"] >= q.end:
            continue
        exposures.setdefault(r["user_id"], []).append((r["client_ts"], variation))
    units: dict[str | None, int] = {}
    first: dict[str, tuple[dt.datetime, str]] = {}
    for user, xs in exposures.items():
        variations = {v for _, v in xs}
        if len(variations) > 1:
            units[None] = units.get(None, 0) + 1
            continue
        first[user] = (min(t for t, _ in xs), xs[0][1])
        units[xs[0][1]] = units.get(xs[0][1], 0) + 1

    def value(
        m_event: str,
        field: str | None,
        conversion: bool,
        evs: list[Any],
        filters: Sequence[Filter] = (),
    ) -> float:
        matching = [r for r in evs if r["name"] == m_event and _holds(r, filters)]
        if conversion:
            return 1.0 if matching else 0.0
        if field is None:
            return float(len(matching))
        total = 0.0
        for r in matching:
            amount = (r.get("data") or {}).get(field.removeprefix("data."))
            total += amount if isinstance(amount, (int, float)) else 0.0
        return total

    out: dict[tuple[str, str], dict[str, float]] = {}
    for m in q.metrics:
        for user, (t, variation) in first.items():
            mine = [r for r in unique if r["user_id"] == user and r["name"] != EXPOSURE_EVENT]
            after = [
                r for r in mine if r["client_ts"] >= t and (q.end is None or r["client_ts"] < q.end)
            ]
            conv = m.kind == "conversion"
            num_filters = (*m.where, *m.numerator_where)
            y = value(m.event, m.value, conv, after, num_filters)
            s = out.setdefault((m.key, variation), dict.fromkeys(STAT_COLUMNS, 0.0))
            s["n"] += 1
            s["sum"] += y
            s["sum_squares"] += y * y
            if m.denominator is not None:
                den_filters = (*m.where, *m.denominator_where)
                d = value(m.denominator, m.denominator_value, False, after, den_filters)
                s["denominator_sum"] += d
                s["denominator_sum_squares"] += d * d
                s["main_denominator_sum_product"] += y * d
            if m.cuped_days is not None:
                pre_start = t - dt.timedelta(days=m.cuped_days)
                before = [r for r in mine if pre_start <= r["client_ts"] < t]
                x = value(m.event, m.value, conv, before, num_filters)
                s["covariate_sum"] += x
                s["covariate_sum_squares"] += x * x
                s["main_covariate_sum_product"] += y * x
    return out, units


def _daily_reference(rows: Sequence[Mapping[str, Any]], q: ExperimentQuery) -> dict[Any, list[int]]:
    """Units newly exposed per UTC day of their first exposure, per variation (units in two
    variations left out)."""
    exposures: dict[str, list[tuple[dt.datetime, str]]] = {}
    for r in rows:
        variation = (r.get("experiments") or {}).get(q.experiment)
        if r["name"] != EXPOSURE_EVENT or r["user_id"] is None or variation is None:
            continue
        if (q.start and r["client_ts"] < q.start) or (q.end and r["client_ts"] >= q.end):
            continue
        exposures.setdefault(r["user_id"], []).append((r["client_ts"], variation))
    out: dict[Any, list[int]] = {}
    for xs in exposures.values():
        if len({v for _, v in xs}) > 1:
            continue
        day = min(t for t, _ in xs).astimezone(dt.UTC).date()
        out.setdefault(day, [0] * len(q.variations))[q.variations.index(xs[0][1])] += 1
    return out


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, list[dict[str, Any]]]:
    rows = _lake_rows()
    return write_rows(tmp_path_factory.mktemp("lake"), rows), rows


ENGINES: dict[str, Any] = {"duckdb": DuckDBEngine, "clickhouse": ChDBEngine}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_statistics_equal_a_plain_python_computation(
    lake: tuple[Lake, list[dict[str, Any]]], engine: str
) -> None:
    if engine == "clickhouse":
        pytest.importorskip("chdb")
    the_lake, rows = lake
    eng: Engine = ENGINES[engine](the_lake)
    data = QUERY.run(eng)
    expected, units = _reference(rows, QUERY)
    assert data.multiple_variations == units[None] > 0
    assert data.units.tolist() == [units["a"], units["b"]]
    for i, m in enumerate(QUERY.metrics):
        for j, v in enumerate(QUERY.variations):
            for c in STAT_COLUMNS:
                got = float(getattr(data.stats, c)[i, j])
                want = expected[m.key, v][c]
                if c.startswith("denominator") or c == "main_denominator_sum_product":
                    want = want if m.denominator is not None else float("nan")
                if c.startswith("covariate") or c == "main_covariate_sum_product":
                    want = want if m.cuped_days is not None else float("nan")
                assert got == want or (np.isnan(got) and np.isnan(want)), (m.key, v, c, got, want)
    kinds = [m.kind == "conversion" for m in QUERY.metrics]
    assert data.stats.binomial[:, 0].tolist() == kinds
    # The covariates are not all zero: the pre-period counts.
    assert float(data.stats.covariate_sum[1].sum()) > 0
    # The filters keep some events and leave out others.
    at = {m.key: n for n, m in enumerate(QUERY.metrics)}
    one_page, paid, pages = at["one_page"], at["paid_pages"], at["pages"]
    assert 0 < data.stats.sum[one_page].sum() < data.stats.denominator_sum[one_page].sum()
    assert 0 < data.stats.sum[paid].sum() < data.stats.sum[pages].sum()
    assert float(data.stats.covariate_sum[paid].sum()) > 0
    # Newly exposed units per day: every day from the first exposure to the last.
    daily = _daily_reference(rows, QUERY)
    assert [d for d, _ in data.daily] == [
        min(daily) + dt.timedelta(days=n) for n in range((max(daily) - min(daily)).days + 1)
    ]
    assert {d: list(c) for d, c in data.daily if any(c)} == daily
    assert [sum(c[j] for _, c in data.daily) for j in range(2)] == data.units.tolist()
    result = analyze(data.stats, units=data.units, weights=[0.5, 0.5])
    assert len(result.records()) == len(QUERY.metrics)


def test_units_in_two_variations_bots_and_events_before_exposure_are_left_out(
    tmp_path: Path,
) -> None:
    rows = [
        _exposure("u1", T0 + dt.timedelta(hours=1), "a"),
        _event("page.view", "u1", T0),  # before u1's exposure: covariate only
        _event("page.view", "u1", T0 + dt.timedelta(hours=2)),
        _event("page.view", "u1", T0 + dt.timedelta(hours=3)),
        _exposure("u2", T0 + dt.timedelta(hours=1), "b"),
        _exposure("u2", T0 + dt.timedelta(hours=4), "b"),  # a second exposure: first counts
        _event("page.view", "u2", T0 + dt.timedelta(hours=2)),
        _event("page.view", "u2", T0 - dt.timedelta(days=4)),  # before the CUPED window
        _exposure("u3", T0 + dt.timedelta(hours=1), "a"),
        _exposure("u3", T0 + dt.timedelta(hours=2), "b"),  # both: left out
        _event("page.view", "u3", T0 + dt.timedelta(hours=3)),
        _exposure("u4", T0 + dt.timedelta(hours=1), "b"),  # no events: y = 0
        _event("page.view", "u4", END + dt.timedelta(hours=1)),  # after the end
        {**_exposure("u5", T0 + dt.timedelta(hours=1), "a"), "agent_is_bot": True},  # a bot
        _event("page.view", "u5", T0 + dt.timedelta(hours=2)),
        # The variation in data only (flags.exposures, for keys outside the map's pattern).
        _event(EXPOSURE_EVENT, "u6", T0, data={"experiment": KEY, "variation": "b"}),
        _event("page.view", "u6", T0 + dt.timedelta(hours=2)),
        _event(EXPOSURE_EVENT, "u7", T0, data={"experiment": "other", "variation": "b"}),
    ]
    q = ExperimentQuery(
        KEY, ("a", "b"), (Metric("pages", "mean", "page.view", cuped_days=3),), start=START, end=END
    )
    data = q.run(DuckDBEngine(write_rows(tmp_path, rows)))
    assert data.multiple_variations == 1
    assert data.units.tolist() == [1, 3]
    s = data.stats
    assert s.n[0].tolist() == [1, 3]
    assert s.sum[0].tolist() == [2, 2]
    assert s.sum_squares[0].tolist() == [4, 2]
    assert s.covariate_sum[0].tolist() == [1, 0]
    assert s.main_covariate_sum_product[0].tolist() == [2, 0]
    assert np.isnan(s.denominator_sum).all()


def test_filters_belong_to_the_sides_they_name() -> None:
    pageviews = (Filter("data.pageviews", "=", ("1",)),)
    with pytest.raises(MetricError, match="numerator_where / denominator_where are for a ratio"):
        Metric("m", "mean", "page.view", numerator_where=pageviews)
    with pytest.raises(MetricError, match="Filter objects"):
        Metric("m", "mean", "page.view", where=("data.pageviews=1",))  # type: ignore[arg-type]
    m = Metric("m", "ratio", "a", denominator="b", where=pageviews, denominator_where=pageviews)
    assert m.side_filters("numerator") == pageviews
    assert m.side_filters("denominator") == pageviews  # each filter once


def test_daily_exposures_fill_the_days_between(tmp_path: Path) -> None:
    rows = [
        _exposure("u1", T0 + dt.timedelta(hours=1), "a"),
        _exposure("u1", T0 + dt.timedelta(days=1, hours=1), "a"),  # not new: counted on day 0
        _exposure("u2", T0 + dt.timedelta(hours=23, minutes=59), "b"),
        _exposure("u3", T0 + dt.timedelta(days=3), "b"),
        _exposure("u4", T0 + dt.timedelta(days=3, hours=2), "a"),
        _exposure("u4", T0 + dt.timedelta(days=3, hours=3), "b"),  # both: left out
        _exposure("u5", T0 + dt.timedelta(days=2), "c"),  # not a variation of the experiment
    ]
    q = ExperimentQuery(KEY, ("a", "b"), (Metric("pages", "mean", "page.view"),), start=START)
    for engine in ENGINES.values():
        if engine is ChDBEngine:
            pytest.importorskip("chdb")
        data = q.run(engine(write_rows(tmp_path / engine.__name__, rows)))
        day = START.date()
        assert data.daily == (
            (day, (1, 1)),
            (day + dt.timedelta(days=1), (0, 0)),
            (day + dt.timedelta(days=2), (0, 0)),
            (day + dt.timedelta(days=3), (0, 1)),
        )
        assert data.other_variations == 1


def test_generated_sql_matches_the_golden_file() -> None:
    for name, build in (
        ("stats", QUERY.build_stats),
        ("exposures", QUERY.build_exposures),
        ("daily", QUERY.build_daily),
    ):
        sql = render(build(exp.to_table("events")), "duckdb", pretty=True) + "\n"
        path = GOLDEN / f"{name}.duckdb.sql"
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_text(sql)
        assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1 and review it"
        assert sql == path.read_text(), f"{path.name} changed; review, run with UPDATE_GOLDEN=1"
