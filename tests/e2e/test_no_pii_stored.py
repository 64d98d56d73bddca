"""Issue 7's acceptance: after 10,000 events sent from known IP addresses, with emails (and phone
numbers, card numbers and IP addresses) in ``data`` and in page URLs, no raw IP and no email is
found anywhere under the data directory or in the server's logs.

A real ``tally serve`` on loopback behind a "proxy" (``trusted_proxies`` = 127.0.0.1, each
request naming its client in ``X-Forwarded-For``, public IPv4 and IPv6 addresses of the GeoIP
test database), with streams of different privacy policies (redact by default, hash with the
network dropped, reject), pseudonymous user ids (the ids sent are emails), invalid events and
refused requests carrying emails (the failed store). Every file is searched twice: while the
events wait in the spool, and after a graceful stop has loaded everything: Parquet files are
decoded and every value searched (they are compressed: a byte search alone would miss), every
other file (spool segments, session state, the control plane's SQLite database, the secret) is
searched byte by byte. So are the server's stdout and stderr (``--log-level info``). The field
catalog (example values of every field, in the control plane) is refreshed before the last search.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from tallystick.catalog.fields import refresh_fields
from tallystick.collect.server import free_port
from tallystick.config import Settings
from tallystick.control.definitions import parse_configuration
from tallystick.control.store import ControlStore
from tallystick.privacy.pseudonym import pseudonymize
from tallystick.store.lake import Lake
from tallystick.store.reader import with_retry

pytestmark = pytest.mark.e2e

GEO_DATABASE = Path(__file__).parents[1] / "data" / "maxmind" / "GeoIP2-City-Test.mmdb"
CLIENTS = ("81.2.69.142", "216.160.83.56", "89.160.20.112", "2a02:cf40::17", "2001:218::5")
"""The addresses requests come from (in the GeoIP test database: GB, US, SE, NO, JP)."""
DATA_IPS = ("198.51.100.23", "2001:db8:abcd:12::7")
EMAIL_DOMAIN = "inbox.example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
KEY = "test-pseudonym-key"
EVENTS = 10_000
BATCH = 100
CONFIG = {
    "unrouted_stream": "other",
    "streams": [
        {"name": "web", "events": ["page.*", "shared.*"]},
        {
            "name": "signup",
            "events": ["signup.*", "shared.*"],
            "privacy": {"pii": "hash", "ip": "drop"},
        },
        {"name": "strict", "events": ["strict.*"], "privacy": {"pii": "reject"}},
    ],
}
NAMES = ("page.view", "signup.submit", "shared.click", "misc.thing")


def email(i: int) -> str:
    return f"pii.person.{i}@{EMAIL_DOMAIN}"


def needles() -> list[bytes]:
    """What must not be found: the emails (by their domain and local part), every form of each
    address, the phone and card numbers."""
    forms = {EMAIL_DOMAIN, "pii.person.", PHONE, CARD, CARD.replace(" ", "")}
    for text in (*CLIENTS, *DATA_IPS):
        address = ipaddress.ip_address(text)
        forms.update({text, str(address), address.exploded})
    return sorted(f.encode() for f in forms)


def event(i: int) -> dict[str, Any]:
    """An event with an email in ``data`` and in its page URL's query string; every tenth one
    also with a phone number, a card number and IP addresses (in ``data`` and the URL)."""
    who = email(i)
    out: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": NAMES[i % len(NAMES)],
        "client_ts": "2026-11-22T10:00:00Z",
        "user": {"id": who, "anonymous_id": f"anon-{i % 500}"},
        "data": {"email": who, "n": i},
        "page": {"url": f"https://app.example.org/p/{i}?email={quote(who)}&tab=files"},
    }
    if i % 10 == 0:
        ip = DATA_IPS[i // 10 % 2]
        out["data"]["note"] = f"call {PHONE} or write to {who} from {ip}"
        out["data"]["card"] = CARD
        out["data"]["seen_from"] = [ip, "somewhere"]
        out["page"]["url"] += f"&ip={ip}#ref={who}"
        out["page"]["referrer"] = f"https://ref.example.net/?u={quote(who, safe='')}"
    return out


def bodies() -> Iterator[tuple[bytes, str]]:
    """``BATCH``-event request bodies (``EVENTS`` events in all), each with one event the
    strict stream refuses and one invalid event, and the client address it comes from."""
    for r in range(EVENTS // BATCH):
        batch = [event(r * BATCH + j) for j in range(BATCH)]
        batch[7]["name"] = "strict.submit"
        batch[9]["name"] = "Not A Name"  # invalid: the failed store, with its emails
        yield json.dumps(batch).encode(), CLIENTS[r % len(CLIENTS)]


def post(url: str, body: bytes, client: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/v1/events",
        data=body,
        headers={"Content-Type": "application/json", "X-Forwarded-For": client},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Server:
    """``tally serve`` with its stdout and stderr kept in files."""

    def __init__(self, data: Path, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout: IO[bytes] = (logs / "stdout.log").open("wb")
        self.stderr: IO[bytes] = (logs / "stderr.log").open("wb")
        env = {
            **os.environ,
            "TALLYSTICK_TRUSTED_PROXIES": "127.0.0.1",
            "TALLYSTICK_GEOIP_DATABASE": str(GEO_DATABASE),
            "TALLYSTICK_PSEUDONYMIZE_USER_IDS": "true",
            "TALLYSTICK_PSEUDONYM_KEY": KEY,
            "TALLYSTICK_FLUSH_INTERVAL_SECONDS": "3",
            "TALLYSTICK_MIN_FREE_BYTES": "0",
            "TALLYSTICK_WARM_UP": "false",
            "TALLYSTICK_ALERT_INTERVAL_SECONDS": "0",
        }
        cmd = [
            *(sys.executable, "-m", "tallystick", "serve", "--data", str(data)),
            *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"),
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.stdout, stderr=self.stderr, start_new_session=True
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"tally serve exited with {self.proc.returncode}"
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(self.url)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stdout.close()
        self.stderr.close()
        return self.proc.returncode


def strings(value: Any) -> Iterator[str]:
    """Every value of a decoded Parquet row as text (nested lists, maps and structs walked)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings(v)
    elif value is not None:
        yield value if isinstance(value, str) else str(value)


def search(root: Path, forbidden: list[bytes]) -> tuple[list[str], dict[str, int]]:
    """Where any of ``forbidden`` is found under ``root``, and how many files of each kind were
    searched (Parquet decoded value by value, and byte by byte too; everything else by bytes)."""
    found: list[str] = []
    kinds = {"parquet": 0, "spool": 0, "other": 0}
    texts = [f.decode() for f in forbidden]
    # the spool first: the loader takes its segments away
    files = sorted(
        (p for p in root.rglob("*") if p.is_file()), key=lambda p: "spool" not in p.parts
    )
    for path in files:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # the loader moved it on
            continue
        found += [f"{path}: {f!r}" for f in forbidden if f in raw]
        if path.suffix == ".parquet":
            kinds["parquet"] += 1
            try:
                table = pq.read_table(path)
            except (FileNotFoundError, OSError):
                continue
            values = "\x00".join(strings(table.to_pylist()))
            for t in texts:
                at = values.find(t)
                if at != -1:
                    found.append(f"{path}: {t!r} in {values[max(0, at - 60) : at + 60]!r}")
            schema_text = str(table.schema.metadata or "")
            found += [f"{path} (metadata): {t!r}" for t in texts if t in schema_text]
        elif "spool" in path.parts and raw:
            kinds["spool"] += 1
        else:
            kinds["other"] += 1
    return found, kinds


def test_no_raw_ip_and_no_email_is_stored_or_logged(tmp_path: Path) -> None:
    data, logs = tmp_path / "data", tmp_path / "logs"
    data.mkdir()
    logs.mkdir()
    with ControlStore.for_settings(Settings(data=data)) as store:
        store.apply(parse_configuration(CONFIG), actor="test")
    server = Server(data, logs)
    try:
        server.wait_ready()
        started = time.monotonic()
        accepted = refused_pii = 0
        spool_files = 0
        for n, (body, client) in enumerate(bodies()):
            if n % 20 == 19:  # the spool, while the requests come in (the loader empties it)
                found, kinds = search(data / "spool", needles())
                assert found == [], "\n".join(found[:20])
                spool_files += kinds["spool"]
            status, answer = post(server.url, body, client)
            assert status == 207, answer
            accepted += answer["accepted"]
            codes = [e["code"] for e in answer["errors"]]
            assert codes == ["personal_data", "invalid_field"], codes
            refused_pii += codes.count("personal_data")
        # whole requests refused, with emails and addresses in them
        broken = f'{{"name": "x", "data": {{"who": "{email(-1)}", "ip": "{DATA_IPS[0]}"'
        assert post(server.url, broken.encode(), CLIENTS[0])[0] == 400
        escaped = json.dumps([{"event_id": email(-2), "name": "x"}]).replace("@", "\\u0040")
        assert post(server.url, escaped.encode(), CLIENTS[3])[0] == 400
        assert accepted == EVENTS - 2 * (EVENTS // BATCH)
        assert refused_pii == EVENTS // BATCH
        sent = time.monotonic()
        print(f"sent {EVENTS:,} events in {sent - started:.1f} s")
        # while the events wait in the spool
        found, kinds = search(data, needles())
        print(f"searched {kinds} in {time.monotonic() - sent:.1f} s")
        assert found == [], "\n".join(found[:20])
        assert spool_files + kinds["spool"] >= 1, "no spool segment was ever searched"
    finally:
        stopping = time.monotonic()
        assert server.stop() == 0
        print(f"stopped (the spool loaded) in {time.monotonic() - stopping:.1f} s")
    # the field catalog keeps example values in the control plane: measured from the lake
    with ControlStore.for_settings(Settings(data=data)) as store:
        assert refresh_fields(Settings(data=data), store)
    stopped = time.monotonic()
    found, kinds = search(data, needles())
    print(f"searched {kinds} in {time.monotonic() - stopped:.1f} s after the stop")
    assert found == [], "\n".join(found[:20])
    assert kinds["parquet"] >= 3, kinds
    for log in (logs / "stdout.log", logs / "stderr.log"):
        text = log.read_bytes()
        assert [f for f in needles() if f in text] == [], text.decode(errors="replace")[-2000:]
    assert b"Uvicorn running" in (logs / "stderr.log").read_bytes()  # the logs were captured

    # what was stored instead
    lake = Lake(data / "lake")
    rows = with_retry(
        lake,
        lambda con: con.sql(
            "SELECT stream, user_id, geo_country, geo_network, data FROM raw_events"
        ).fetchall(),
    )
    per_stream: dict[str, int] = {}
    for stream, *_ in rows:
        per_stream[stream] = per_stream.get(stream, 0) + 1
    shared = sum(1 for i in range(EVENTS) if NAMES[i % len(NAMES)] == "shared.click")
    assert sum(per_stream.values()) == accepted + shared  # shared.click: a copy in two streams
    assert per_stream.keys() == {"web", "signup", "other"}
    by_stream = {s: [r for r in rows if r[0] == s] for s in per_stream}
    assert all(r[1].startswith("psn_") for r in rows)
    assert pseudonymize(email(0), KEY) in {r[1] for r in rows}
    assert {r[2] for r in by_stream["web"]} == {"GB", "US", "SE", "NO", "JP"}
    assert {r[3] for r in by_stream["web"]} >= {"81.2.69.0/24", "2a02:cf40::/48"}
    assert {r[3] for r in by_stream["signup"]} == {None}
    assert all("[email]" in r[4] for r in by_stream["web"])
    assert all("[email:" in r[4] for r in by_stream["signup"])
    failed = with_retry(
        lake, lambda con: con.sql("SELECT error_code, raw FROM failed_events").fetchall()
    )
    assert len(failed) == 2 * (EVENTS // BATCH) + 2
    assert any("[email]" in raw for _, raw in failed)
