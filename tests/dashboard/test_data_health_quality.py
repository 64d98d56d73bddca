"""The Data health page's loss, duplicates, clock-skew and alert sections in Debian's chromium, on
a lake with known loss, duplicates and skew and an alert history: every number shown is the HTTP
API's."""

from __future__ import annotations

import datetime as dt
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from playwright.sync_api import BrowserContext, Page

from browser_support import Watched, api, watched_tab
from quality.lossgen import generate
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings
from tallystick.control.store import ControlStore
from tallystick.quality.alerts import AlertRun, record
from tallystick.store.lake import Lake, events_to_table

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RANGE = {"from": "2026-02-23", "to": "2026-03-08"}
VIEW = f"/data-health?range=custom&from={RANGE['from']}&to={RANGE['to']}"
AT = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def _alerts() -> list[AlertRun]:
    spec = {"rule": "loss_rate", "max": 0.05}
    fired = {"notice": "fired", "log": True, "webhook": None}
    resolved = {"notice": "resolved", "log": True, "webhook": {"status": "sent", "attempts": 1}}
    return [
        AlertRun(AT, "web", "loss_rate", "loss", spec, False, 0.01, 0.05, "loss 1 %"),
        AlertRun(AT + dt.timedelta(hours=1), "web", "loss_rate", "loss", spec, True, 0.2, 0.05,
                 "loss 20 % is above 5 %", fired),
        AlertRun(AT + dt.timedelta(hours=3), "web", "loss_rate", "loss", spec, False, 0.02, 0.05,
                 "loss 2 % is back under 5 %", resolved),
        AlertRun(AT + dt.timedelta(days=30), "web", "loss_rate", "loss", spec, True, 0.3, 0.05,
                 "after the range", fired),
    ]  # fmt: skip


def _skewed(table: pa.Table) -> pa.Table:
    """Every delivery with a skew of some seconds, one in nine beyond the threshold and
    corrected (their client_ts_original is the client_ts they were sent with, so the ledger is
    unchanged); the copies of one delivery (its streams) share them, as the collector's do."""
    keys = zip(table["event_id"].to_pylist(), table["received_ts"].to_pylist(), strict=True)
    marks = [zlib.crc32(f"{event_id}{received}".encode()) for event_id, received in keys]
    skews = [m % 5000 - 1000 + (120_000 if m % 9 == 0 else 0) for m in marks]
    original = [
        ts if m % 9 == 0 else None
        for m, ts in zip(marks, table["client_ts"].to_pylist(), strict=True)
    ]
    for name, values in (("clock_skew_ms", skews), ("client_ts_original", original)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array(values, field.type))
    return table


@pytest.fixture(scope="module")
def trust_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = Settings(data=tmp_path_factory.mktemp("trust") / "data", min_free_bytes=0)
    log = generate(random.Random(8), sessions=40, unsequenced=10)
    events, received, streams = log.events()
    table = _skewed(events_to_table(events, received, streams))
    Lake(settings.lake_dir).write_events(table, "generated")
    store = ControlStore.for_settings(settings)
    try:
        record(store, _alerts())
    finally:
        store.close()
    return settings.data


@pytest.fixture(scope="module")
def trust_server(trust_data: Path) -> Iterator[ServerProcess]:
    with ServerProcess(trust_data) as running:
        yield running


@pytest.fixture
def tab(profile: BrowserContext, trust_server: ServerProcess) -> Iterator[Watched]:
    yield from watched_tab(profile, trust_server.url)


def _values(page: Page, table: str, key: str) -> list[str | None]:
    cells = page.locator(f"{table} tbody [data-key='{key}']")
    return [cells.nth(i).get_attribute("data-value") for i in range(cells.count())]


def _number(value: Any) -> str | None:
    """A JSON number as the page's script writes it (String(v) in JavaScript)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_loss_duplicates_skew_and_alerts_are_the_api_s(tab: Watched) -> None:
    page = tab.open(VIEW)
    tab.assert_clean()
    for card in ("#quality-loss", "#quality-duplicates", "#quality-skew"):
        chart = page.locator(f"{card}[data-rendered='true']")
        assert chart.count() == 1, card
        assert chart.locator(".main-svg").count() > 0

    loss = api(tab.base, "/v1/quality/loss", {**RANGE, "grain": "day"})
    totals = loss["totals"]
    assert min(totals["lost"], totals["duplicates_natural"], totals["duplicates_synthetic"]) > 0
    tile = page.locator("#tile-loss dd")
    assert float(tile.get_attribute("data-value") or "nan") == pytest.approx(totals["loss_rate"])
    assert f"{totals['lost']:,} of {totals['expected']:,} messages" in tile.inner_text()
    duplicates = totals["duplicates_natural"] + totals["duplicates_synthetic"]
    assert page.locator("#tile-duplicates dd").get_attribute("data-value") == str(duplicates)

    table = "section.card:has(> #quality-loss)"
    for key in ("day", "sessions", "expected", "received", "lost", "duplicates_synthetic"):
        assert _values(page, table, key) == [_number(r[key]) for r in loss["rows"]], key
    rates = _values(page, table, "loss_rate")
    assert [None if v is None else float(v) for v in rates] == [
        pytest.approx(r["loss_rate"]) if r["loss_rate"] is not None else None for r in loss["rows"]
    ]

    skew = api(tab.base, "/v1/quality/skew", {**RANGE, "grain": "all"})
    table = "section.card:has(> #quality-skew)"
    assert skew["rows"]
    assert sum(r["corrected"] for r in skew["rows"]) > 0
    for key in ("events", "measured", "max_abs_skew_ms", "corrected"):
        assert _values(page, table, key) == [_number(r[key]) for r in skew["rows"]], key
    p95 = [float(v or "nan") for v in _values(page, table, "p95_abs_skew_ms")]
    assert p95 == [pytest.approx(r["p95_abs_skew_ms"]) for r in skew["rows"]]

    alerts = page.locator("#alerts tbody tr")
    assert alerts.count() == 2  # the notices of the range, newest first
    assert "loss 2 % is back under 5 %" in alerts.nth(0).inner_text()
    assert "webhook (delivered)" in alerts.nth(0).inner_text()
    assert "loss 20 % is above 5 %" in alerts.nth(1).inner_text()
    tab.screenshot("data-health-quality")

    # a range without data says so, section by section (the same tab: one page load less)
    page = tab.open("/data-health?range=custom&from=2025-01-06&to=2025-01-19")
    tab.assert_clean()
    assert "No sequenced messages in this range." in page.inner_text(
        "section.card:has(> #quality-loss)"
    )
    assert "No events in this range." in page.inner_text("section.card:has(> #quality-skew)")
    assert "No alert fired or resolved in this range." in page.inner_text("#alerts")
    assert page.locator("#tile-loss dd").inner_text().startswith("no sequenced messages")
