"""The clock-skew report: hand-computed cases, the DuckDB SQL over a real lake against the
plain-Python reference, and ``tally quality skew``."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tallystick.cli import app as cli
from tallystick.quality.reports import skew_body, skew_query
from tallystick.quality.skew import (
    COLUMNS,
    Grain,
    Sample,
    SkewRow,
    lake_skew_report,
    percentile,
    skew_report,
)
from tallystick.schema import Client, Event
from tallystick.store.lake import Lake, events_to_table
from tallystick.store.reader import connect

D = dt.date.fromisoformat
JS = ("tallystick-js", "1.5.0")
PY = ("tallystick-python", "0.9.1")


def sample(
    skew: int | None, day: str = "2026-03-02", client: tuple[str, str] | None = JS, **kw: Any
) -> Sample:
    return Sample(
        day=D(day),
        library=client[0] if client else None,
        version=client[1] if client else None,
        skew_ms=skew,
        corrected=kw.get("corrected", False),
    )


def write_lake(root: Path, samples: Sequence[Sample]) -> Lake:
    """One event per sample, received at noon of its day, with its skew (and, when corrected,
    a client_ts_original) as the collector would have stored them; each also in a second stream
    (a copy the report must not count twice)."""
    events, received, skews, originals = [], [], [], []
    for i, s in enumerate(samples):
        at = dt.datetime.combine(s.day, dt.time(12), tzinfo=dt.UTC) + dt.timedelta(seconds=i)
        client = Client(library=s.library, library_version=s.version) if s.library else None
        ts = at - dt.timedelta(milliseconds=s.skew_ms or 0)
        events.append(Event(event_id=uuid.uuid4(), name="page.view", client_ts=ts, client=client))
        received.append(at)
        skews.append(s.skew_ms)
        originals.append(ts - dt.timedelta(hours=1) if s.corrected else None)
    table = events_to_table(events, received, ["a"] * len(events))
    for name, values in (("clock_skew_ms", skews), ("client_ts_original", originals)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, field.type))
    copies = table.set_column(
        table.schema.get_field_index("stream"),
        table.schema.field("stream"),
        pa.array(["b"] * table.num_rows, pa.string()),
    )
    lake = Lake(root)
    if table.num_rows:
        lake.write_events(pa.concat_tables([table, copies]), "skewed")
    return lake


def sql_report(samples: Sequence[Sample], grain: Grain, **bounds: Any) -> list[SkewRow]:
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(write_lake(Path(tmp), samples))
        try:
            return lake_skew_report(con, grain, **bounds)
        finally:
            con.close()


def row(
    client: tuple[str, str] | None = JS,
    period: str | None = None,
    *,
    events: int,
    skews: Sequence[float] = (),
    median: float | None = None,
    median_abs: float | None = None,
    p95: float | None = None,
    corrected: int = 0,
) -> SkewRow:
    return SkewRow(
        period=D(period) if period else None,
        library=client[0] if client else None,
        version=client[1] if client else None,
        events=events,
        measured=len(skews),
        median_skew_ms=median,
        median_abs_skew_ms=median_abs,
        p95_abs_skew_ms=p95,
        max_abs_skew_ms=int(max(abs(s) for s in skews)) if skews else None,
        corrected=corrected,
        corrected_share=corrected / len(skews) if skews else None,
    )


CASES: dict[str, tuple[list[Sample], Grain, list[SkewRow]]] = {
    "nothing": ([], "all", []),
    "events without sent_ts are counted, not measured": (
        [sample(None), sample(None)],
        "all",
        [row(events=2)],
    ),
    "one measured event": (
        [sample(250), sample(None)],
        "all",
        [row(events=2, skews=[250], median=250, median_abs=250, p95=250)],
    ),
    "medians of the signed and the absolute skew; p95 interpolates": (
        # signed: -4000, 10, 20, 30 -> median 15; |skew|: 10, 20, 30, 4000 -> median 25,
        # p95 at position 2.85: 30 + 0.85 * 3970 = 3404.5
        [sample(10), sample(-4000), sample(20), sample(30)],
        "all",
        [
            row(
                events=4,
                skews=[10, -4000, 20, 30],
                median=15,
                median_abs=25,
                p95=3404.5,
            )
        ],
    ),
    "corrected events and their share of the measured": (
        [
            sample(90_000, corrected=True),
            sample(-120_000, corrected=True),
            sample(5),
            sample(None),
        ],
        "all",
        [
            row(
                events=4,
                skews=[90_000, -120_000, 5],
                median=5,
                median_abs=90_000,
                p95=117_000,
                corrected=2,
            )
        ],
    ),
    "rows per client, nulls last": (
        [sample(1, client=None), sample(2, client=PY), sample(3)],
        "all",
        [
            row(JS, events=1, skews=[3], median=3, median_abs=3, p95=3),
            row(PY, events=1, skews=[2], median=2, median_abs=2, p95=2),
            row(None, events=1, skews=[1], median=1, median_abs=1, p95=1),
        ],
    ),
    "by day of receipt": (
        [sample(1, "2026-03-01"), sample(3, "2026-03-02"), sample(5, "2026-03-02")],
        "day",
        [
            row(period="2026-03-01", events=1, skews=[1], median=1, median_abs=1, p95=1),
            row(period="2026-03-02", events=2, skews=[3, 5], median=4, median_abs=4, p95=4.9),
        ],
    ),
    "by week from Monday": (
        [sample(1, "2026-03-01"), sample(3, "2026-03-02"), sample(5, "2026-03-08")],
        "week",
        [
            row(period="2026-02-23", events=1, skews=[1], median=1, median_abs=1, p95=1),
            row(period="2026-03-02", events=2, skews=[3, 5], median=4, median_abs=4, p95=4.9),
        ],
    ),
}


def _close(actual: list[SkewRow], expected: list[SkewRow]) -> None:
    """Equal, floats to a relative 1e-9 (the SQL and Python interpolate in their own order)."""
    assert len(actual) == len(expected), (actual, expected)
    for a, e in zip(actual, expected, strict=True):
        for name in SkewRow.__dataclass_fields__:
            got, want = getattr(a, name), getattr(e, name)
            if isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-9), (name, a, e)
            else:
                assert got == want, (name, a, e)


@pytest.mark.parametrize("case", list(CASES))
def test_hand_computed_cases(case: str) -> None:
    samples, grain, expected = CASES[case]
    _close(skew_report(samples, grain), expected)
    _close(sql_report(samples, grain), expected)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([7.0], 0.95, 7.0), ([1.0, 2.0], 0.5, 1.5), ([0.0, 10.0, 20.0], 0.95, 19.0)],
)
def test_percentile_interpolates(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


SAMPLES = st.builds(
    Sample,
    day=st.dates(D("2026-02-27"), D("2026-03-10")),
    library=st.sampled_from([None, "tallystick-js", "tallystick-python"]),
    version=st.sampled_from([None, "1.0", "2.0"]),
    skew_ms=st.one_of(st.none(), st.integers(-(10**9), 10**9)),
    corrected=st.booleans(),
).filter(lambda s: s.library is not None or s.version is None)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.lists(SAMPLES, max_size=40),
    grain=st.sampled_from(["day", "week", "all"]),
    bounds=st.sampled_from([{}, {"date_from": D("2026-03-02")}, {"date_to": D("2026-03-04")}]),
)
def test_the_sql_agrees_with_the_reference(
    samples: list[Sample], grain: Grain, bounds: dict[str, dt.date]
) -> None:
    # only a measured event can have been corrected
    samples = [
        s if s.skew_ms is not None else Sample(**{**_fields(s), "corrected": False})
        for s in samples
    ]
    low = bounds.get("date_from", dt.date.min)
    high = bounds.get("date_to", dt.date.max)
    kept = [s for s in samples if low <= s.day <= high]
    _close(sql_report(samples, grain, **bounds), skew_report(kept, grain))


def _fields(s: Sample) -> dict[str, Any]:
    return {name: getattr(s, name) for name in Sample.__dataclass_fields__}


# -- the answer and the command ------------------------------------------------------------------

LAKE_SAMPLES = [
    sample(100, "2026-03-01"),
    sample(-300, "2026-03-02", corrected=False),
    sample(90_000, "2026-03-02", corrected=True),
    sample(None, "2026-03-02", client=PY),
    sample(40, "2026-03-03", client=PY),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skew") / "data"
    write_lake(root / "lake", LAKE_SAMPLES)
    return root


def test_the_answer(data: Path) -> None:
    body = skew_body(Lake(data / "lake"), skew_query({"grain": "day", "library": "tallystick-js"}))
    assert {k: body[k] for k in ("grain", "from", "to", "library")} == {
        "grain": "day",
        "from": None,
        "to": None,
        "library": "tallystick-js",
    }
    assert body["rows"] == [
        r.as_row("day")
        for r in skew_report([s for s in LAKE_SAMPLES if s.library == "tallystick-js"], "day")
    ]
    assert list(body["rows"][0]) == ["day", *COLUMNS]


def test_the_command_prints_json_csv_and_a_table(data: Path) -> None:
    runner = CliRunner()
    base = ["quality", "skew", "--data", str(data)]
    result = runner.invoke(cli, [*base, "--format", "json", "--from", "2026-03-02"])
    assert result.exit_code == 0, result.output
    kept = [s for s in LAKE_SAMPLES if s.day >= D("2026-03-02")]
    assert json.loads(result.stdout) == [r.as_row("all") for r in skew_report(kept, "all")]
    result = runner.invoke(cli, [*base, "--format", "csv", "--grain", "week"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == ",".join(["week", *COLUMNS])
    result = runner.invoke(cli, base)
    assert result.exit_code == 0, result.output
    assert "Clock skew in ms, the first day to the last day" in result.stdout
    result = runner.invoke(cli, [*base, "--format", "json", "--library", "tallystick-js"])
    [js] = json.loads(result.stdout)
    assert js["corrected_share"] == pytest.approx(1 / 3)  # one of three measured was corrected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grain", "hour"], "grain 'hour' is not one of day, week, all for the skew report."),
        (["--to", "2026-13-01"], "to '2026-13-01' is not a date: write YYYY-MM-DD."),
    ],
)
def test_mistakes_exit_2(data: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["quality", "skew", "--data", str(data), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
