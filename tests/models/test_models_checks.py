"""Data-quality checks on a real lake, against answers counted by hand from ``shoplake``.

The ``orders`` model over the shop stream has five rows (o1's re-sent copy never counts)::

    event user_id amount plan  qty coupon happened (client_ts)  received_ts
    o1    u1      "10"   free  1   NULL   2030-01-09 10:00      2030-01-10 08:00
    o2    u2      "250"  pro   2   SAVE   2030-01-09 11:00      2030-01-10 09:00
    o3    NULL    "-5"   gold  3   NULL   2030-01-09 12:00      2030-01-10 10:00
    o4    u1      "n/a"  free  1   NULL   2030-01-08 09:00      2030-01-09 00:00
    o5    u3      "40"   NULL  5   NULL   2030-01-01 09:00      2030-01-01 10:00

(amount is text: its JSON values mix numbers and "n/a".) ``NOW`` is 2030-01-10 12:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from metrics.lakerows import to_table
from models.shoplake import NOW, add_streams, at, orders, row, write_shop
from tallystick.config import Settings
from tallystick.control.definitions import parse_model
from tallystick.control.store import ControlStore, NotFound
from tallystick.models import ModelError, build_models, run_checks
from tallystick.models.checks import check_model, labels
from tallystick.models.sql import ROW_CHECKS
from tallystick.store.lake import Lake


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data=tmp_path_factory.mktemp("models-checks") / "data")
    write_shop(settings.lake_dir)
    return settings


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(":memory:")
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlStore]:
    with ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}") as s:
        add_streams(s)
        yield s


O3 = {"amount": "-5", "plan": "gold", "qty": 3, "coupon": None, "happened": "2030-01-09T12:00:00Z"}

CASES: list[tuple[str, dict[str, Any], int | None, dt.datetime, tuple[Any, ...]]] = [
    # id, check, since_days, now, (passed, failing, checked, examples, message)
    (
        "not_null fails",
        {"type": "not_null", "field": "user_id"},
        None,
        NOW,
        (
            False,
            1,
            5,
            [O3],
            "user_id: 1 of 5 rows (20.0 %) are NULL — e.g. {amount: '-5', plan: 'gold', "
            "qty: 3, coupon: NULL, happened: 2030-01-09T12:00:00Z}",
        ),
    ),
    (
        "not_null: JSON null and a missing key are NULL",
        {"type": "not_null", "field": "coupon"},
        None,
        NOW,
        (False, 4, 5, None, "coupon: 4 of 5 rows (80.0 %) are NULL — e.g. {user_id: 'u3', "),
    ),
    (
        "not_null passes for recent events",
        {"type": "not_null", "field": "plan"},
        2,
        NOW,
        (True, 0, 3, None, "plan: none of 3 rows is NULL (events since 2030-01-08T12:00:00Z)"),
    ),
    (
        "accepted_values fails, NULL not checked",
        {"type": "accepted_values", "field": "plan", "values": ["free", "pro"]},
        None,
        NOW,
        (
            False,
            1,
            4,
            [{"value": "gold", "rows": 1}],
            "plan: 1 of 4 rows with a value (25.0 %) have one outside 'free', 'pro': "
            "'gold' (1 row)",
        ),
    ),
    (
        "accepted_values passes",
        {"type": "accepted_values", "field": "plan", "values": ["free", "pro", "gold"]},
        None,
        NOW,
        (True, 0, 4, None, "plan: all 4 rows with a value have an accepted one"),
    ),
    (
        "accepted_values of numbers",
        {"type": "accepted_values", "field": "qty", "values": [1, 2, 3]},
        None,
        NOW,
        (False, 1, 5, [{"value": 5, "rows": 1}], "qty: 1 of 5 rows with a value (20.0 %)"),
    ),
    (
        "range over text: out of bounds and not a number",
        {"type": "range", "field": "amount", "min": 0, "max": 100},
        None,
        NOW,
        (
            False,
            3,
            5,
            [
                {"value": "-5", "rows": 1},
                {"value": "250", "rows": 1},
                {"value": "n/a", "rows": 1},
            ],
            "amount: 3 of 5 rows with a value (60.0 %) hold no number between 0 and 100: "
            "'-5' (1 row), '250' (1 row), 'n/a' (1 row)",
        ),
    ),
    (
        "range with a minimum passes",
        {"type": "range", "field": "qty", "min": 1},
        None,
        NOW,
        (True, 0, 5, None, "qty: all 5 rows with a value hold numbers of at least 1"),
    ),
    (
        "range with a maximum",
        {"type": "range", "field": "qty", "max": 2},
        None,
        NOW,
        (
            False,
            2,
            5,
            [{"value": 3, "rows": 1}, {"value": 5, "rows": 1}],
            "qty: 2 of 5 rows with a value (40.0 %) hold no number of at most 2: 3 (1 row), "
            "5 (1 row)",
        ),
    ),
    (
        "unique fails, NULL not checked",
        {"type": "unique", "field": "user_id"},
        None,
        NOW,
        (
            False,
            2,
            4,
            [{"value": "u1", "rows": 2}],
            "user_id: 2 of 4 rows with a value (50.0 %) share it with another row: 'u1' (2 rows)",
        ),
    ),
    (
        "unique passes for recent events",
        {"type": "unique", "field": "user_id"},
        2,
        NOW,
        (True, 0, 2, None, "user_id: all 2 rows with a value have one of their own (events since"),
    ),
    (
        "freshness passes (the later re-sent copy does not count)",
        {"type": "freshness", "max_age_hours": 3},
        None,
        NOW,
        (
            True,
            0,
            5,
            [{"newest": "2030-01-10T10:00:00Z", "rows_with_time": 5}],
            "the newest received_ts is 2030-01-10T10:00:00Z, 2.0 hours old: within the 3-hour "
            "limit",
        ),
    ),
    (
        "freshness fails",
        {"type": "freshness", "max_age_hours": 1.5},
        None,
        NOW,
        (False, 1, 5, None, "2.0 hours old: over the 1.5-hour limit"),
    ),
    (
        "freshness of a column, at the limit",
        {"type": "freshness", "field": "happened", "max_age_hours": 24},
        None,
        NOW,
        (True, 0, 5, None, "the newest happened is 2030-01-09T12:00:00Z, 24.0 hours old: within"),
    ),
    (
        "freshness of a column, over the limit",
        {"type": "freshness", "field": "happened", "max_age_hours": 23.5},
        None,
        NOW,
        (False, 1, 5, None, "24.0 hours old: over the 23.5-hour limit"),
    ),
    (
        "freshness of a column that holds no times",
        {"type": "freshness", "field": "plan", "max_age_hours": 24},
        None,
        NOW,
        (False, 1, 5, None, "none of 5 rows has a plan that reads as a time (the limit is 24"),
    ),
    (
        "row_count_change fails (--since does not apply)",
        {"type": "row_count_change", "max_change": 0.5},
        1,
        NOW,
        (
            False,
            1,
            4,
            [{"day": "2030-01-09", "rows": 3}, {"day": "2030-01-08", "rows": 1}],
            "3 rows on 2030-01-09 (the last complete UTC day) against 1 on 2030-01-08 (the day "
            "before): +200.0 %, beyond the ±50 % allowed",
        ),
    ),
    (
        "row_count_change at its limit",
        {"type": "row_count_change", "max_change": 2},
        None,
        NOW,
        (True, 0, 4, None, "+200.0 %, within the ±200 % allowed"),
    ),
    (
        "row_count_change with no rows on either day",
        {"type": "row_count_change", "max_change": 0.5},
        None,
        at(4, 12),
        (True, 0, 0, None, "no rows on 2030-01-03 (the last complete UTC day) nor the day before"),
    ),
    (
        "row_count_change from none to some",
        {"type": "row_count_change", "max_change": 0.5},
        None,
        at(2, 12),
        (False, 1, 1, None, "1 row on 2030-01-01 (the last complete UTC day) against 0 on "),
    ),
]


@pytest.mark.parametrize(
    ("check", "since_days", "now", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_each_check_against_hand_counted_answers(
    con: duckdb.DuckDBPyConnection,
    shop: Settings,
    check: dict[str, Any],
    since_days: int | None,
    now: dt.datetime,
    expected: tuple[Any, ...],
) -> None:
    passed, failing, checked, examples, message = expected
    (run,) = check_model(con, shop, orders(checks=[check]), now=now, since_days=since_days)
    assert (run.passed, run.failing, run.checked) == (passed, failing, checked), run.message
    assert message in run.message, run.message
    if examples is not None:
        assert run.examples == examples
    if passed and check["type"] not in ("freshness", "row_count_change"):
        assert run.examples is None
    assert (run.target_kind, run.target, run.label) == (
        "model",
        "orders",
        orders(checks=[check]).checks[0].label,
    )
    spec = dict(check)
    if since_days is not None and check["type"] in ROW_CHECKS:
        spec["since_days"] = since_days
    assert run.spec == spec


def test_the_same_event_in_two_streams_is_checked_per_stream(
    con: duckdb.DuckDBPyConnection, shop: Settings
) -> None:
    check = {"type": "not_null", "field": "user_id"}
    web = parse_model(
        {"name": "web_orders", "stream": "web", "fields": ["user.id"], "checks": [check]}
    )
    (run,) = check_model(con, shop, web, now=NOW)
    # web's copy of o2 has no user (shop's has u2); w1 has u7; stream-less rows never count
    assert (run.failing, run.checked) == (1, 2)
    assert run.message == "user_id: 1 of 2 rows (50.0 %) are NULL"


def test_repeated_checks_get_labels_of_their_own() -> None:
    model = orders(
        checks=[
            {"type": "range", "field": "qty", "min": 0},
            {"type": "range", "field": "qty", "max": 9},
            {"type": "freshness", "max_age_hours": 1},
            {"type": "range", "field": "qty", "max": 99},
        ]
    )
    assert labels(model.checks) == ["range(qty)", "range(qty) #2", "freshness", "range(qty) #3"]


def test_a_table_is_checked_as_built_and_a_view_as_stored_now(
    tmp_path: Path, store: ControlStore
) -> None:
    settings = Settings(data=tmp_path / "data")
    lake = write_shop(settings.lake_dir)
    check = {"type": "not_null", "field": "user_id"}
    store.put_model(orders(checks=[check]), "test")
    store.put_model(orders(name="orders_t", materialize="table", checks=[check]), "test")

    runs = {r.target: r for r in run_checks(settings, store, now=NOW)}
    assert (runs["orders"].failing, runs["orders"].checked) == (1, 5)
    assert not runs["orders_t"].passed
    assert (runs["orders_t"].failing, runs["orders_t"].checked) == (0, 0)
    assert runs["orders_t"].message == (
        "the table has not been built: run `tally models build orders_t` first"
    )

    build_models(settings, store, ["orders_t"], now=NOW)
    (run,) = run_checks(settings, store, ["orders_t"], now=NOW)
    assert (run.failing, run.checked) == (1, 5)

    # a new event without a user arrives: the view sees it now, the table once rebuilt
    late = row("o9", "shop", at(10, 1), at(10, 2), None, {"amount": 1})
    lake.write_events(to_table([late]), "late")
    runs = {r.target: r for r in run_checks(settings, store, now=NOW)}
    assert (runs["orders"].failing, runs["orders"].checked) == (2, 6)
    assert (runs["orders_t"].failing, runs["orders_t"].checked) == (1, 5)
    build_models(settings, store, now=NOW)
    (run,) = run_checks(settings, store, ["orders_t"], now=NOW)
    assert (run.failing, run.checked) == (2, 6)

    # the definition gains a column after the build
    fields = [*orders().as_dict()["fields"], "page.url"]
    store.put_model(
        orders(name="orders_t", materialize="table", fields=fields, checks=[check]), "t"
    )
    (run,) = run_checks(settings, store, ["orders_t"], now=NOW)
    assert not run.passed
    assert run.message == (
        "the table was built before the model changed (no column page_url): "
        "run `tally models build orders_t` again"
    )


def test_results_are_stored_and_the_latest_of_each_check_read_back(
    shop: Settings, store: ControlStore
) -> None:
    checks = [
        {"type": "not_null", "field": "user_id"},
        {"type": "range", "field": "qty", "min": 1},
    ]
    store.put_model(orders(checks=checks), "test")
    store.put_model(parse_model({"name": "quiet", "stream": "web", "fields": ["user.id"]}), "t")
    first = run_checks(shop, store, now=NOW)
    assert [(r.target, r.label, r.passed) for r in first] == [
        ("orders", "not_null(user_id)", False),
        ("orders", "range(qty)", True),
    ]
    later = NOW + dt.timedelta(hours=1)
    run_checks(shop, store, ["orders"], since_days=2, now=later)
    latest = store.latest_checks("orders")
    assert [(r.label, r.failing, r.checked, r.spec.get("since_days")) for r in latest] == [
        ("not_null(user_id)", 1, 3, 2),
        ("range(qty)", 0, 3, 2),
    ]
    assert {r.ran_at for r in latest} == {later}
    assert latest[0].examples == [O3]


@pytest.mark.parametrize(
    ("names", "since_days", "error", "text"),
    [
        (["nope"], None, NotFound, "no model 'nope'"),
        (None, 0, ModelError, "--since must be 1 day or more, got 0"),
    ],
)
def test_bad_requests_are_refused(
    shop: Settings,
    store: ControlStore,
    names: list[str] | None,
    since_days: int | None,
    error: type[Exception],
    text: str,
) -> None:
    with pytest.raises(error, match=text):
        run_checks(shop, store, names, since_days)


def test_a_model_of_an_empty_lake_has_nothing_fresh(tmp_path: Path, store: ControlStore) -> None:
    settings = Settings(data=tmp_path / "empty")
    Lake(settings.lake_dir)
    store.put_model(
        orders(
            checks=[{"type": "freshness", "max_age_hours": 1}, {"type": "unique", "field": "qty"}]
        ),
        "t",
    )
    fresh, unique = run_checks(settings, store, now=NOW)
    assert (fresh.passed, fresh.message) == (
        False,
        "no rows at all: nothing has arrived (the limit is 1 hour)",
    )
    assert (unique.passed, unique.checked, unique.message) == (
        True,
        0,
        "qty: all 0 rows with a value have one of their own",
    )
