"""The privacy-budget ledger (control.dp_ledger) on SQLite and Postgres: spending, refusing a
release beyond the budget (in the ledger, on the command line and over HTTP), concurrent spends
that never overspend, datasets kept apart; ``tally privacy budget|releases``."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from query.responses import error_message, valid
from query.sample import RANGE, make_lake
from tallystick import messages
from tallystick.cli import app as cli
from tallystick.collect.app import Collector
from tallystick.config import Settings
from tallystick.control.dp_ledger import BudgetExhausted, Ledger
from tallystick.control.store import ControlStore

PARAMS: dict[str, Any] = {"analysis": "count", "params": {"event": "e"}}


def test_spending_adds_up_and_is_recorded(store: ControlStore) -> None:
    ledger = Ledger(store.engine, 2.0)
    assert ledger.budget("lake").spent == 0
    assert ledger.budget("lake").releases == 0
    first, after = ledger.spend("lake", 0.5, actor="cli:ann", **PARAMS)
    assert after.spent == 0.5
    assert after.remaining == 1.5
    second, after = ledger.spend("lake", 1.0, actor="key:3:bob", analysis="active", params={})
    assert after.spent == 1.5
    assert second.id > first.id
    budget = ledger.budget("lake")
    assert (budget.spent, budget.remaining, budget.releases) == (1.5, 0.5, 2)
    assert budget.last_release == second.at
    assert budget.last_release is not None
    assert budget.last_release.tzinfo is not None
    newest = ledger.releases()
    assert [(r.actor, r.analysis, r.epsilon) for r in newest] == [
        ("key:3:bob", "active", 1.0),
        ("cli:ann", "count", 0.5),
    ]
    assert newest[1].params == {"event": "e"}
    assert newest[0].as_dict()["at"].endswith("Z")


def test_a_release_beyond_the_budget_is_refused_and_not_recorded(store: ControlStore) -> None:
    ledger = Ledger(store.engine, 1.0)
    ledger.spend("lake", 0.75, actor="a", **PARAMS)
    with pytest.raises(BudgetExhausted) as refused:
        ledger.spend("lake", 0.5, actor="a", **PARAMS)
    message = str(refused.value)
    assert "0.25 of its 1 is left" in message
    assert "dp_budget_epsilon" in message
    assert "TALLYSTICK_DP_BUDGET_EPSILON" in message
    assert ledger.budget("lake").releases == 1
    with pytest.raises(BudgetExhausted):
        ledger.check("lake", 0.5)
    ledger.check("lake", 0.25)
    ledger.spend("lake", 0.25, actor="a", **PARAMS)  # exactly what was left
    assert ledger.budget("lake").remaining == 0
    with pytest.raises(BudgetExhausted):
        ledger.spend("lake", 1e-6, actor="a", **PARAMS)


def test_ten_tenths_fit_a_budget_of_one(store: ControlStore) -> None:
    ledger = Ledger(store.engine, 1.0)
    for _ in range(10):
        ledger.spend("lake", 0.1, actor="a", **PARAMS)
    with pytest.raises(BudgetExhausted):
        ledger.spend("lake", 0.01, actor="a", **PARAMS)


@pytest.mark.parametrize("epsilon", [0, -1.0, float("nan"), float("inf"), True])
def test_an_epsilon_must_be_a_positive_number(store: ControlStore, epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        Ledger(store.engine, 1.0).spend("lake", epsilon, actor="a", **PARAMS)


def test_datasets_have_budgets_of_their_own(store: ControlStore) -> None:
    ledger = Ledger(store.engine, 1.0)
    ledger.spend("lake", 1.0, actor="a", **PARAMS)
    with pytest.raises(BudgetExhausted):
        ledger.spend("lake", 0.1, actor="a", **PARAMS)
    ledger.spend("stream:web", 0.6, actor="a", **PARAMS)
    assert [(b.dataset, b.spent, b.releases) for b in ledger.budgets(("lake", "other"))] == [
        ("lake", 1.0, 1),
        ("other", 0.0, 0),
        ("stream:web", 0.6, 1),
    ]
    assert [r.dataset for r in ledger.releases("stream:web")] == ["stream:web"]


def test_concurrent_spends_never_overspend(store_url: str) -> None:
    """20 threads, each with its own connection pool (as separate processes would be), try to
    spend 0.1 each of a budget of 1.0 at the same moment: exactly 10 succeed."""
    stores = [ControlStore.open(store_url) for _ in range(20)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def spend(store: ControlStore) -> None:
        ledger = Ledger(store.engine, 1.0)
        start.wait()
        try:
            ledger.spend("lake", 0.1, actor="t", **PARAMS)
            result = "spent"
        except BudgetExhausted:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=spend, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(outcomes) == ["refused"] * 10 + ["spent"] * 10
        budget = Ledger(stores[0].engine, 1.0).budget("lake")
        assert budget.releases == 10
        assert budget.spent == pytest.approx(1.0)
    finally:
        for s in stores:
            s.close()


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_lake(root / "lake")
    return root


def _tally(*args: str, budget: float = 1.5) -> Any:
    env = {"TALLYSTICK_DP_BUDGET_EPSILON": str(budget)}
    return CliRunner().invoke(cli, list(args), env=env)


def _count(data: Path, *extra: str) -> list[str]:
    dates = ["--from", RANGE["from"], "--to", RANGE["to"]]
    return ["metrics", "count", "--event", "create", *dates, "--data", str(data), *extra]


def test_the_cli_releases_until_the_budget_is_spent(data: Path) -> None:
    first = _tally(*_count(data, "--dp-epsilon", "1", "--format", "json"))
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["dp"]["epsilon"] == 1.0
    assert body["dp"]["remaining"] == 0.5
    assert body["dp"]["sensitivity"] == 10 + 5  # default K, five weekly periods
    assert len(body["rows"]) == 5
    assert set(body["rows"][0]) == {"period", "events", "units"}
    refused = _tally(*_count(data, "--dp-epsilon", "1"))
    assert refused.exit_code == 1
    assert "would exceed the privacy budget of dataset 'lake'" in refused.stderr
    assert "0.5 of its 1.5 is left" in refused.stderr
    table = _tally(
        *_count(data, "--dp-epsilon", "0.5", "--dp-max-events-per-user", "2"),
        "--dp-max-periods-per-user",
        "3",
    )
    assert table.exit_code == 0, table.output
    assert "differentially private" in table.stdout
    assert "max-events-per-user 2, max-periods-per-user 3" in table.stdout
    assert "0 of 1.5 left" in table.stdout
    budget = _tally("privacy", "budget", "--data", str(data), "--format", "json")
    assert budget.exit_code == 0, budget.output
    [lake] = json.loads(budget.stdout)
    assert (lake["dataset"], lake["spent"], lake["remaining"], lake["releases"]) == (
        "lake",
        1.5,
        0.0,
        2,
    )
    listed = _tally("privacy", "releases", "--data", str(data), "--format", "json")
    assert [r["epsilon"] for r in json.loads(listed.stdout)] == [0.5, 1.0]
    csv_out = _tally("privacy", "releases", "--data", str(data), "--format", "csv")
    assert "max_events_per_user=2" in csv_out.stdout


def test_the_cli_refuses_dp_options_it_cannot_honour(data: Path) -> None:
    wrong = _tally(*_count(data, "--dp-epsilon", "1", "--breakdown", "app.environment"))
    assert wrong.exit_code == 2
    assert "no breakdown" in wrong.stderr
    zero = _tally(*_count(data, "--dp-epsilon", "0"))
    assert zero.exit_code == 2
    assert "above 0" in zero.stderr
    alone = _tally(*_count(data, "--dp-max-events-per-user", "3"))
    assert alone.exit_code == 2
    assert "add dp_epsilon" in alone.stderr
    empty = _tally("privacy", "releases", "--data", str(data))
    assert empty.exit_code == 0
    assert "no differentially private releases yet" in empty.stderr


# -- HTTP ------------------------------------------------------------------------------------------


def _client(root: Path) -> TestClient:
    settings = Settings(data=root / "data", min_free_bytes=0, dp_budget_epsilon=1.5)
    make_lake(settings.lake_dir)
    return TestClient(Collector(settings), base_url="http://127.0.0.1")


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with _client(tmp_path) as c:
        yield c


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server for requests that are refused before anything is spent."""
    with _client(tmp_path_factory.mktemp("refusing")) as c:
        yield c


def test_http_releases_until_the_budget_is_spent(client: TestClient) -> None:
    query = {**RANGE, "event": "create", "dp_epsilon": "1", "dp_max_events_per_user": "3"}
    got = client.get("/v1/query/count", params=query)
    assert got.status_code == 200, got.text
    body = got.json()
    valid("CountResult", body)
    assert body["dp"]["sensitivity"] == 3 + 5
    assert body["dp"]["remaining"] == 0.5
    assert body["dp"]["dataset"] == "lake"
    assert [dt.date.fromisoformat(r["period"]).weekday() for r in body["rows"]] == [0] * 5
    refused = client.post(
        "/v1/query/active", json={**RANGE, "active": ["login"], "dp_epsilon": 0.75}
    )
    message = error_message(refused, 403, messages.PRIVACY_BUDGET_EXHAUSTED)
    assert "0.5 of its 1.5 is left" in message
    posted = client.post("/v1/query/active", json={**RANGE, "active": ["login"], "dp_epsilon": 0.5})
    assert posted.status_code == 200, posted.text
    valid("ActiveResult", posted.json())
    assert posted.json()["dp"]["remaining"] == 0
    assert client.get("/v1/query/count", params=query).status_code == 403


def test_http_never_serves_a_release_from_the_answer_cache(client: TestClient) -> None:
    query = {**RANGE, "event": "create", "dp_epsilon": "0.1", "dp_max_events_per_user": "1"}
    bodies = [client.get("/v1/query/count", params=query).json() for _ in range(5)]
    assert [b["dp"]["release"] for b in bodies] == sorted({b["dp"]["release"] for b in bodies})
    assert bodies[-1]["dp"]["spent"] == pytest.approx(0.5)
    assert len({json.dumps(b["rows"]) for b in bodies}) > 1  # fresh noise each time


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("funnel", {"steps": "signup,login", "dp_epsilon": "1"}, "made of count and active"),
        ("count", {"event": "create", "dp_epsilon": "x"}, "'dp_epsilon' must be a number"),
        ("count", {"event": "create", "dp_epsilon": "1", "breakdown": "data.plan"}, "breakdown"),
        ("active", {"active": "login", "dp_epsilon": "1", "dp_max_events_per_user": "2"}, "once"),
    ],
)
def test_http_refuses_what_it_cannot_release(
    refusing: TestClient, path: str, params: dict[str, str], message: str
) -> None:
    got = refusing.get(f"/v1/query/{path}", params={**RANGE, **params})
    assert message in error_message(got, 400, messages.INVALID_QUERY)
