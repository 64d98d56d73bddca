"""``GET /v1/experiments/{key}/results`` through a real `tally serve`: events sent to
``/v1/events`` with a write key, experiments applied and started over the admin API, and the
results read with a read key equal the readout computed in this process over the same data
directory; who may read them (401 without a key, 403 for a write key), ``at``, a 404 that
suggests the key, a 400 for a bad ``at``, and an SRM flagged on a skewed split."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.readout_lake import CATALOG_YAML, KEY, NOW, experiment_doc, lake_rows
from support import http_call, make_event, same_json
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings, from_env
from tallystick.control.experiments import get_experiment
from tallystick.control.keys import create_key
from tallystick.control.store import ControlStore
from tallystick.experiments.readout import readout
from tallystick.metrics.catalog import load_catalog
from tallystick.metrics.engines import DuckDBEngine
from tallystick.store.lake import Lake


def call(base: str, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    status, _, document = http_call(base, method, path, key, body)
    return status, document


pytestmark = pytest.mark.e2e

AT = "2026-03-20T00:00:00Z"
SKEWED = "checkout-button"


def as_event(row: dict[str, Any]) -> dict[str, Any]:
    """A lake row of ``readout_lake`` as the event a client sends."""
    more: dict[str, Any] = {"data": row.get("data") or {}}
    if row.get("experiments"):
        more["experiments"] = row["experiments"]
    return make_event(
        row["name"],
        event_id=row["event_id"],
        client_ts=row["client_ts"].isoformat().replace("+00:00", "Z"),
        user={"anonymous_id": row["user_anonymous_id"]},
        **more,
    )


def skewed_events(seed: int = 11) -> list[dict[str, Any]]:
    """300 devices of ``checkout-button``: 200 shown a, 100 shown b (a broken split)."""
    rng = random.Random(seed)
    out = []
    for u in range(300):
        device, v = f"c{u}", "a" if u < 200 else "b"
        at = f"2026-03-1{rng.randrange(0, 5)}T{rng.randrange(24):02d}:00:00Z"
        out.append(
            make_event(
                "experiment.exposure",
                client_ts=at,
                user={"anonymous_id": device},
                experiments={SKEWED: v},
                data={},
            )
        )
        pages = rng.choice([1, 2, 3])
        out.append(
            make_event(
                "session.end",
                client_ts=at.replace(":00:00Z", ":30:00Z"),
                user={"anonymous_id": device},
                data={"pageviews": pages},
            )
        )
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    data: Path = tmp_path_factory.mktemp("results") / "data"
    data.mkdir()
    settings = from_env(data=data)
    settings.catalog_dir.mkdir(parents=True)
    (settings.catalog_dir / "experiments.yaml").write_text(CATALOG_YAML)
    keys: dict[str, str] = {}
    with ControlStore.for_settings(Settings(data=data)) as store:
        for kind in ("admin", "read"):
            _, keys[kind] = create_key(store, kind, f"{kind}-key", actor="test")
        _, keys["write"] = create_key(store, "write", "web", actor="test", app="web")
    with ServerProcess(data, extra_args=["--flush-interval-seconds", "0.2"]) as running:
        base = running.url
        for key, doc in (
            (KEY, experiment_doc()),
            (SKEWED, experiment_doc(key=SKEWED, metrics={"primary": ["bounce_rate"]})),
        ):
            doc.pop("status")
            status, body = call(base, "PUT", f"/v1/admin/experiments/{key}", keys["admin"], doc)
            assert status == 201, body
            status, body = call(base, "POST", f"/v1/admin/experiments/{key}/start", keys["admin"])
            assert status == 200, body
        events = [as_event(r) for r in lake_rows()] + skewed_events()
        for i in range(0, len(events), 500):
            status, body = call(base, "POST", "/v1/events", keys["write"], events[i : i + 500])
            assert status == 200, body
            assert body["rejected"] == 0, body
        # Wait until the loader has moved every exposure into the lake.
        exposures = sum(e["name"] == "experiment.exposure" for e in events)
        deadline = time.monotonic() + 60
        while True:
            status, body = call(
                base,
                "GET",
                "/v1/query/count?event=experiment.exposure&grain=month&from=2026-03-01&to=2026-03-31",
                keys["read"],
            )
            assert status == 200, body
            if body["rows"][0]["events"] == exposures:
                break
            assert time.monotonic() < deadline, f"{body['rows']} of {exposures} exposures loaded"
            time.sleep(0.2)
        yield base, keys, data


def test_results_equal_the_readout_over_the_same_data(
    served: tuple[str, dict[str, str], Path],
) -> None:
    base, keys, data = served
    status, got = call(base, "GET", f"/v1/experiments/{KEY}/results?at={AT}", keys["read"])
    assert status == 200, got
    settings = from_env(data=data)
    with ControlStore.for_settings(settings) as store:
        stored = get_experiment(store, KEY)
    expected = readout(
        stored, load_catalog(settings.catalog_dir), DuckDBEngine(Lake(settings.lake_dir)), now=NOW
    )
    assert same_json(got, json.loads(json.dumps(expected)))
    assert got["version"] == stored.version
    assert got["experiment"]["status"] == "running"
    assert got["multiple_variations"] == 3
    bounce = got["metrics"][0]["variations"][1]
    assert (bounce["verdict"], bounce["significant"]) == ("better", True)
    assert not got["srm"]["flagged"]
    # The definition stays the control-plane API's, on the same server.
    status, definition = call(base, "GET", f"/v1/experiments/{KEY}", keys["read"])
    assert status == 200, definition
    assert definition["experiment"] == got["experiment"]


def test_who_may_read_the_results(served: tuple[str, dict[str, str], Path]) -> None:
    base, keys, _ = served
    path = f"/v1/experiments/{KEY}/results?at={AT}"
    status, body = call(base, "GET", path, None)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    status, body = call(base, "GET", path, keys["write"])
    assert status == 403, body
    status, body = call(base, "GET", path, keys["admin"])
    assert status == 200, body
    status, body = call(base, "POST", path, keys["read"], {})
    assert status == 405, body


def test_at_bounds_the_window(served: tuple[str, dict[str, str], Path]) -> None:
    base, keys, _ = served
    path = f"/v1/experiments/{KEY}/results"
    _, full = call(base, "GET", f"{path}?at={AT}", keys["read"])
    status, early = call(base, "GET", f"{path}?at=2026-03-12T00:00:00Z", keys["read"])
    assert status == 200, early
    assert early["window"]["end"] == "2026-03-12T00:00:00Z"
    assert early["exposures"][-1]["day"] == "2026-03-11"
    units = sum(v["units"] for v in early["variations"])
    assert 0 < units < sum(v["units"] for v in full["variations"])
    status, now = call(base, "GET", path, keys["read"])
    assert status == 200, now
    assert now["analysed_at"] > AT  # the server's clock: after the test data


def test_unknown_key_and_bad_parameters(served: tuple[str, dict[str, str], Path]) -> None:
    base, keys, _ = served
    status, body = call(base, "GET", "/v1/experiments/signin-dialg/results", keys["read"])
    assert status == 404, body
    assert body["error"]["code"] == "not_found"
    message = body["error"]["message"]
    assert "no experiment 'signin-dialg'; did you mean 'signin-dialog'?" in message
    assert "GET /v1/experiments lists them" in message
    status, body = call(base, "GET", f"/v1/experiments/{KEY}/results?at=soon", keys["read"])
    assert status == 400, body
    assert body["error"]["code"] == "invalid_query"
    assert "at 'soon' is not an ISO-8601 date-time" in body["error"]["message"]
    status, body = call(base, "GET", f"/v1/experiments/{KEY}/results?from=2026-03-01", keys["read"])
    assert status == 400, body
    assert "the results take only at and include_bots, not from" in body["error"]["message"]


def test_a_skewed_split_is_flagged(served: tuple[str, dict[str, str], Path]) -> None:
    base, keys, _ = served
    status, got = call(base, "GET", f"/v1/experiments/{SKEWED}/results?at={AT}", keys["read"])
    assert status == 200, got
    assert got["srm"]["observed"] == {"a": 200, "b": 100}
    assert got["srm"]["expected"] == {"a": 150.0, "b": 150.0}
    # chi-square with 1 degree of freedom: X² = 2·50²/150, p = erfc(sqrt(X²/2))
    assert got["srm"]["p_value"] == pytest.approx(math.erfc(math.sqrt(50**2 / 150)), rel=1e-9)
    assert got["srm"]["flagged"] is True
    assert got["warnings"][0].startswith("sample ratio mismatch (p = ")
