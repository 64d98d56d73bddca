"""The field catalog on a small real lake: counts, trends, data keys, redaction and the store.

Today is Thursday 2026-06-11: the last 7 complete days are 06-04..06-10 and the last 4
complete weeks start on Mondays 05-11, 05-18, 05-25 and 06-01 (06-08 starts the current week).
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics.lakerows import to_table
from tallystick.catalog.fields import (
    FieldInfo,
    change_percent,
    compute,
    merge,
    read_fields,
    refresh,
    trend,
    window,
)
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake

TODAY = dt.date(2026, 6, 11)
WEEKS = (dt.date(2026, 5, 11), dt.date(2026, 5, 18), dt.date(2026, 5, 25), dt.date(2026, 6, 1))


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00+00:00")


def page_views() -> list[dict[str, Any]]:
    """51 page views in stream product: 10, 10, 12, 12 in the four weeks and 7 on 06-09.

    data.load_ms on all (one is 12.5: integer and number); data.source on all 10 + 10 of the
    first two weeks, 6 of the third, 5 of the fourth (-50 %, shrinking) and the 7 of 06-09.
    """
    days = ["05-12"] * 10 + ["05-19"] * 10 + ["05-26"] * 12 + ["06-02"] * 5 + ["06-05"] * 7
    days += ["06-09"] * 7
    source_left = {"05-26": 6, "06-02": 5, "06-05": 0}
    rows = []
    for i, day in enumerate(days):
        data: dict[str, Any] = {"load_ms": 12.5 if i == 0 else 300 + i}
        if day in ("05-12", "05-19", "06-09") or source_left.get(day, 0) > 0:
            data["source"] = "ad"
            if day in source_left:
                source_left[day] -= 1
        if day == "06-09":
            data["beta"] = True
        url = "https://x.eu/users/123/profile" if i < 30 else "https://x.eu/home"
        rows.append(
            {
                "event_id": str(uuid.uuid4()),
                "name": "page.view",
                "client_ts": at(day, 8 + i % 10),
                "stream": "product",
                "page_url": url,
                "data": data,
            }
        )
    return rows


def signups() -> list[dict[str, Any]]:
    """16 sign-ups, 4 a week, each stored twice (streams growth and product).

    data.plan on all (free 3 times a week, pro once); data.contact (e-mail addresses) on two in
    the third week only (gone); data.trial on the four of the fourth week (new).
    """
    rows = []
    for week, monday in enumerate(WEEKS):
        for k in range(4):
            data: dict[str, Any] = {"plan": "pro" if k == 0 else "free"}
            if week == 2 and k < 2:
                data["contact"] = f"person{k}@example.com"
            if week == 3:
                data["trial"] = k % 2 == 0
            event = {
                "event_id": str(uuid.uuid4()),
                "name": "user.signup",
                "client_ts": dt.datetime.combine(monday + dt.timedelta(days=k), dt.time(9), dt.UTC),
                "user_id": f"u-{week}{k}",
                "data": data,
            }
            for stream in ("growth", "product"):
                rows.append({**event, "stream": stream})
    return rows


def old() -> list[dict[str, Any]]:
    """One event long before the weeks measured: data.old_flag and a search."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "name": "search.query",
            "client_ts": at("04-01"),
            "stream": "product",
            "data": {"old_flag": "order 1234567890123", "tags": ["a", "b"]},
        }
    ]


def write_lake(root: Path) -> Lake:
    lake = Lake(root)
    lake.write_events(to_table(page_views() + signups() + old()), "fixture")
    return lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return write_lake(tmp_path / "lake")


@pytest.fixture(scope="module")
def fields(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FieldInfo]:
    """The fields of one lake, computed once for the tests that only read them."""
    return by_name(compute(write_lake(tmp_path_factory.mktemp("fields") / "lake"), TODAY))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    with ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}") as opened:
        yield opened


def by_name(fields: list[FieldInfo]) -> dict[str, FieldInfo]:
    return {f.name: f for f in fields}


def test_window_is_the_last_complete_days_and_weeks() -> None:
    win = window(TODAY)
    assert win.days == (dt.date(2026, 6, 4), dt.date(2026, 6, 10))
    assert win.weeks == WEEKS
    assert win.current_week == dt.date(2026, 6, 8)
    assert window(dt.date(2026, 6, 8)).weeks == WEEKS  # a Monday: its week has just begun


LAST = dt.datetime(2026, 6, 5, tzinfo=dt.UTC)
THIS_WEEK = dt.datetime(2026, 6, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("weekly", "last_seen", "expected", "change"),
    [
        ((10, 10, 12, 12), LAST, "growing", 20.0),
        ((10, 9, 11, 11), LAST, "stable", 10.0),
        ((10, 12, 9, 9), LAST, "stable", -10.0),
        ((10, 10, 6, 5), LAST, "shrinking", -50.0),
        ((0, 0, 2, 4), LAST, "new", None),
        ((0, 0, 0, 0), THIS_WEEK, "new", None),
        ((0, 0, 2, 0), LAST, "gone", None),
        ((3, 0, 0, 0), LAST, "gone", -100.0),
        ((0, 0, 0, 0), LAST, "gone", None),
    ],
)
def test_trend(
    weekly: tuple[int, ...], last_seen: dt.datetime, expected: str, change: float | None
) -> None:
    assert trend(weekly, last_seen, dt.date(2026, 6, 8)) == expected
    assert change_percent(weekly) == change


def test_columns_counts_and_trends(fields: dict[str, FieldInfo]) -> None:
    url = fields["page.url"]
    assert (url.kind, url.types, url.type) == ("column", ("string",), "string")
    assert url.events == 51
    assert url.weeks == WEEKS
    assert url.weekly == (10, 10, 12, 12)
    assert url.per_day == 2.0  # 7 on 06-05 and 7 on 06-09
    assert (url.change_pct, url.trend) == (20.0, "growing")
    assert url.first_seen == at("05-12", 8)
    assert url.last_seen == at("06-09", 17)  # the 50th view: 8 + 49 % 10
    assert (url.event_names, url.streams) == (("page.view",), ("product",))
    assert url.distinct == 2
    assert set(url.examples) == {"https://x.eu/users/[id]/profile", "https://x.eu/home"}
    assert url.personal is None

    stamp = fields["client_ts"]
    assert stamp.events == 51 + 16 + 1  # each sign-up once, though stored in two streams
    assert stamp.event_names == ("page.view", "search.query", "user.signup")
    assert stamp.streams == ("growth", "product")
    assert stamp.weekly == (14, 14, 16, 16)
    assert stamp.type == "timestamp"

    user = fields["user.id"]
    assert (user.events, user.weekly, user.trend) == (16, (4, 4, 4, 4), "stable")
    assert user.personal == "name suggests a personal identifier (user id)"
    assert user.examples == ("[redacted]",)
    assert user.distinct == pytest.approx(16, abs=1)  # HyperLogLog: about

    # columns nobody filled are not fields
    assert "agent.user_agent" not in fields
    assert "experiments" not in fields
    assert "data" not in fields


def test_data_keys(fields: dict[str, FieldInfo]) -> None:
    load = fields["data.load_ms"]
    assert (load.kind, load.types, load.type) == ("data", ("integer", "number"), "integer|number")
    assert (load.events, load.weekly, load.per_day) == (51, (10, 10, 12, 12), 2.0)

    source = fields["data.source"]
    assert (source.weekly, source.change_pct, source.trend) == ((10, 10, 6, 5), -50.0, "shrinking")
    assert source.per_day == 1.0  # none of the 7 on 06-05, all 7 on 06-09
    assert source.examples == ("ad",)

    plan = fields["data.plan"]
    assert (plan.events, plan.weekly, plan.trend, plan.change_pct) == (
        16,
        (4, 4, 4, 4),
        "stable",
        0.0,
    )
    assert plan.examples == ("free", "pro")  # the most frequent first
    assert plan.streams == ("growth", "product")
    assert plan.event_names == ("user.signup",)
    assert plan.types == ("string",)

    contact = fields["data.contact"]
    assert (contact.weekly, contact.trend) == ((0, 0, 2, 0), "gone")
    assert contact.personal == "values look like e-mail addresses"
    assert contact.examples == ("[redacted]",)

    trial = fields["data.trial"]
    assert (trial.types, trial.weekly, trial.trend) == (("boolean",), (0, 0, 0, 4), "new")
    assert set(trial.examples) == {"true", "false"}

    beta = fields["data.beta"]
    assert (beta.weekly, beta.per_day, beta.trend) == ((0, 0, 0, 0), 1.0, "new")

    flag = fields["data.old_flag"]
    assert (flag.weekly, flag.trend, flag.per_day) == ((0, 0, 0, 0), "gone", 0.0)
    assert flag.first_seen == flag.last_seen == at("04-01")
    assert flag.examples == ("order [number]",)
    assert fields["data.tags"].types == ("array",)
    assert fields["data.tags"].examples == ('["a","b"]',)


def test_each_event_counts_once_however_many_copies(tmp_path: Path) -> None:
    """One event stored in two streams and re-sent later: 3 copies, 1 event."""
    event = {
        "event_id": str(uuid.uuid4()),
        "name": "page.view",
        "client_ts": at("06-03"),
        "page_url": "https://x.eu/",
        "data": {"load_ms": 5},
    }
    resent = dt.datetime(2026, 6, 5, tzinfo=dt.UTC)
    rows = [
        {**event, "stream": "product"},
        {**event, "stream": "performance"},
        {**event, "stream": "product", "received_ts": resent},
    ]
    lake = Lake(tmp_path / "lake")
    lake.write_events(to_table(rows[:2]), "first")
    lake.write_events(to_table(rows[2:]), "again")
    fields = by_name(compute(lake, TODAY))
    for name in ("page.url", "data.load_ms", "client_ts"):
        assert (fields[name].events, fields[name].weekly) == (1, (0, 0, 0, 1)), name
        assert fields[name].streams == ("performance", "product")


def test_an_empty_lake_has_no_fields(tmp_path: Path) -> None:
    assert compute(Lake(tmp_path / "lake"), TODAY) == []


def _drop_day(lake: Lake, day: str) -> None:
    shutil.rmtree(lake.root / "events" / f"date=2026-{day}")


def test_the_store_keeps_every_field_ever_seen(lake: Lake, store: ControlStore) -> None:
    first = by_name(refresh(lake, store, TODAY).fields)
    assert first["data.old_flag"].in_lake
    assert by_name(read_fields(store)) == first

    # Data ages out: the old search and the first week's page views leave the lake.
    _drop_day(lake, "04-01")
    _drop_day(lake, "05-12")
    later = dt.date(2026, 6, 12)
    fields = by_name(refresh(lake, store, later).fields)
    flag = fields["data.old_flag"]
    assert not flag.in_lake
    assert (flag.trend, flag.events, flag.per_day, flag.weekly) == ("gone", 0, 0.0, (0, 0, 0, 0))
    assert flag.first_seen == at("04-01")
    assert flag.examples == ("order [number]",)  # what was learnt stays
    assert fields["data.tags"].in_lake is False

    url = fields["page.url"]
    assert url.in_lake
    assert url.first_seen == at("05-12", 8)  # the earliest sighting, though no longer in the lake
    assert url.events == 41
    assert url.weekly == (0, 10, 12, 12)
    assert url.trend == "new"
    assert by_name(read_fields(store)) == fields
    assert {f.name for f in read_fields(store)} == set(first)


def test_merge_keeps_the_earliest_and_latest_sightings() -> None:
    early, late = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    stored = [
        FieldInfo("data.a", "data", ("string",), early, early, events=3),
        FieldInfo("data.b", "data", ("string",), early, late, events=5, trend="stable"),
    ]
    current = [
        FieldInfo("data.b", "data", ("integer",), late, late, events=2, trend="growing"),
        FieldInfo("data.c", "data", ("string",), late, late, events=1, trend="new"),
    ]
    merged = by_name(merge(stored, current, TODAY))
    assert list(merged) == ["data.a", "data.b", "data.c"]
    assert (merged["data.a"].trend, merged["data.a"].events, merged["data.a"].in_lake) == (
        "gone",
        0,
        False,
    )
    assert merged["data.a"].weeks == WEEKS
    b = merged["data.b"]
    assert (b.first_seen, b.last_seen, b.types, b.events, b.trend) == (
        early,
        late,
        ("integer",),
        2,
        "growing",
    )
    assert merged["data.c"] == current[1]


def test_as_dict_is_plain_json(fields: dict[str, FieldInfo]) -> None:
    plan = fields["data.plan"].as_dict()
    assert plan["weekly"] == [
        {"week": "2026-05-11", "events": 4},
        {"week": "2026-05-18", "events": 4},
        {"week": "2026-05-25", "events": 4},
        {"week": "2026-06-01", "events": 4},
    ]
    assert plan["first_seen"] == "2026-05-11T09:00:00Z"
    assert plan["type"] == "string"
    assert plan["as_of"] == "2026-06-11"
