"""IP blocks, rate limits and geography through a real `tally serve` on loopback.

The server trusts 127.0.0.1 as a proxy, so each request names its client in X-Forwarded-For.
One server for the module (one worker: rate limits are per worker); each test uses addresses of
its own. The last test stops the server and looks for the addresses in every file it left.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from support import make_event
from tallystick.cli import app as cli
from tallystick.collect.server import ServerProcess
from tallystick.control.blocks import hits, list_blocks
from tallystick.control.store import ControlStore
from tallystick.store.lake import Lake
from tallystick.store.reader import with_retry

pytestmark = pytest.mark.e2e

CITY = Path(__file__).resolve().parents[1] / "data" / "maxmind" / "GeoIP2-City-Test.mmdb"
POLL_SECONDS = 0.2
DEADLINE = 15.0
BURST = 3
SENT_FROM: set[str] = set()
"""Every address a test named: none may end up on disk."""
ANSWERS: Counter[int] = Counter()
"""Every status the server answered with."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge") / "data"


@pytest.fixture(scope="module")
def server(data: Path) -> Iterator[ServerProcess]:
    env = {
        "TALLYSTICK_TRUSTED_PROXIES": "127.0.0.1",
        "TALLYSTICK_GEOIP_DATABASE": str(CITY),
        "TALLYSTICK_RATE_LIMIT_PER_IP": "0.01",  # a token every 100 s: the burst is all there is
        "TALLYSTICK_RATE_LIMIT_PER_KEY": "0.01",
        "TALLYSTICK_RATE_LIMIT_BURST": str(BURST),
        "TALLYSTICK_CONTROL_POLL_SECONDS": str(POLL_SECONDS),
        "TALLYSTICK_SPOOL_ROTATE_SECONDS": "0.2",
        "TALLYSTICK_WARM_UP": "false",
        "TALLYSTICK_MIN_FREE_BYTES": "0",
    }
    proc = ServerProcess(data, env=env, extra_args=["--flush-interval-seconds", "0.2"])
    with proc:
        yield proc


def post(
    server: ServerProcess, client: str, events: list[dict[str, Any]], key: str | None = None
) -> tuple[int, dict[str, Any], Message]:
    SENT_FROM.add(client)
    headers = {"X-Forwarded-For": f"6.6.6.6, {client}", "User-Agent": "edge-test/1"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        server.url + "/v1/events", data=json.dumps(events).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            ANSWERS[response.status] += 1
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        ANSWERS[exc.code] += 1
        return exc.code, json.loads(exc.read()), exc.headers


def tally(data: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--data", str(data)])
    assert result.exit_code == 0, result.output
    return result.output


def eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {DEADLINE} s")


def listed_blocks(data: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        tally(data, "block", "list", "--all", "--format", "json")
    )
    return rows


def test_a_blocked_range_gets_403_is_counted_and_is_let_through_once_removed(
    server: ServerProcess, data: Path
) -> None:
    assert post(server, "198.51.100.7", [make_event()])[0] == 200
    tally(data, "block", "add", "198.51.100.0/24", "--reason", "flood")
    (block,) = listed_blocks(data)
    # the running server applies it at its next poll (fresh addresses: no rate limit on the way)
    probes = iter(f"198.51.100.{n}" for n in range(30, 100))
    eventually(lambda: post(server, next(probes), [make_event()])[0] == 403, "block applied")
    refused = 1
    for n in range(20):
        status, body, _ = post(server, f"198.51.100.{n + 10}", [make_event()])
        assert status == 403
        assert body["error"]["code"] == "ip_blocked"
        refused += 1
    assert post(server, "198.51.101.7", [make_event()])[0] == 200  # next door: not blocked

    lake = Lake(data / "lake")
    with ControlStore.open(f"sqlite:///{data / 'control.db'}") as store:
        blocks = list_blocks(store, include_removed=True)
    eventually(lambda: hits(lake, blocks)[block["id"]].count >= refused, "the refusals in the lake")
    (row,) = listed_blocks(data)
    assert row["requests_refused"] == refused  # each exactly once
    assert row["last_hit"] is not None
    assert "Blocked IP ranges" in tally(data, "block", "list")

    tally(data, "block", "remove", str(block["id"]))
    removed_at = time.monotonic()
    addresses = iter(f"198.51.100.{n}" for n in range(100, 250))  # fresh rate-limit buckets
    eventually(lambda: post(server, next(addresses), [make_event()])[0] == 200, "block lifted")
    assert time.monotonic() - removed_at < POLL_SECONDS + 5
    (row,) = listed_blocks(data)
    assert row["status"] == "removed"
    assert row["requests_refused"] >= refused


def test_rate_limit_per_ip_burst_then_429_with_retry_after(server: ServerProcess) -> None:
    answers = [post(server, "192.0.2.10", [make_event()]) for _ in range(BURST + 2)]
    assert [status for status, _, _ in answers] == [200] * BURST + [429, 429]
    _, body, headers = answers[BURST]
    assert body["error"]["code"] == "rate_limited"
    assert "your address" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 100  # a token every 100 s
    assert post(server, "192.0.2.11", [make_event()])[0] == 200  # another client: unaffected
    # the spoofed left part of X-Forwarded-For does not help: the proxy's entry counts
    assert post(server, "192.0.2.10", [make_event()])[0] == 429


def test_rate_limit_per_key_then_another_key_is_unaffected(server: ServerProcess) -> None:
    statuses = [
        post(server, f"192.0.2.{20 + n}", [make_event()], key="wk-live-1")[0]
        for n in range(BURST + 1)
    ]
    assert statuses == [200] * BURST + [429]
    status, body, headers = post(server, "192.0.2.40", [make_event()], key="wk-live-1")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert "your write key" in body["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
    assert post(server, "192.0.2.41", [make_event()], key="wk-live-2")[0] == 200


def test_geography_lands_in_the_lake_and_no_address_on_disk(
    server: ServerProcess, data: Path
) -> None:
    """Last: stops the server so the loader drains the spool."""
    events = [make_event(), make_event("signin.open"), make_event("project.open")]
    assert post(server, "81.2.69.160", events)[0] == 200
    assert post(server, "2001:218::1", [make_event("jp.event")])[0] == 200
    logged = server.output()
    assert server.stop() == 0
    assert "wk-live" not in logged
    assert not any(address in logged for address in SENT_FROM)

    lake = Lake(data / "lake")

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return with_retry(lake, lambda con: con.execute(sql).fetchall())

    assert rows(
        "SELECT name, geo_country, geo_region, geo_network FROM raw_events "
        "WHERE geo_country IS NOT NULL ORDER BY name"
    ) == [
        ("jp.event", "JP", None, "2001:218::/48"),
        ("project.commit", "GB", "GB-ENG", "81.2.69.0/24"),
        ("project.open", "GB", "GB-ENG", "81.2.69.0/24"),
        ("signin.open", "GB", "GB-ENG", "81.2.69.0/24"),
    ]
    # every accepted event has its network, and the spoofed 6.6.6.6 is nobody's
    assert rows("SELECT count(*) FROM raw_events WHERE geo_network IS NULL") == [(0,)]
    assert rows("SELECT count(*) FROM raw_events WHERE geo_network LIKE '6.6.6.%'") == [(0,)]
    declined = dict(
        rows(
            "SELECT reason || ':' || name, sum(count) FROM declined_events "
            "WHERE stream = '(collector)' GROUP BY ALL"
        )
    )
    assert declined["blocked:198.51.100.0/24"] == ANSWERS[403]
    assert declined["rate_limited:ip"] == 3  # 2 + the spoofed retry
    assert declined["rate_limited:key"] == 2

    # no address in any file's bytes, nor in any decoded Parquet value (columns are compressed)
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    everything = b"".join(p.read_bytes() for p in files)
    import pyarrow.parquet as pq

    decoded = "".join(
        json.dumps(pq.read_table(p).to_pylist(), default=str)
        for p in files
        if p.suffix == ".parquet"
    )
    for address in SENT_FROM | {"6.6.6.6"}:
        assert address.encode() not in everything, address
        assert address not in decoded, address
    for key in ("wk-live-1", "wk-live-2"):
        assert key.encode() not in everything
