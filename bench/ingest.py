"""Ingest benchmark: the real collector on loopback with durable (fsync'd) acknowledgements.

Measures, in one run:
- batched ingestion (100 events per request) and single-event requests (throughput, p50/p99),
  driven by ``wrk`` (a C load generator) so the client is not the bottleneck;
- the same loads against a bare decode-only endpoint (same validation, no spool) — the ceiling;
- idle RSS of ``tally serve`` (collector process(es) and the loader process);
- how long after its acknowledgement an event becomes queryable in the lake;
- the collector again with streams configured (``STREAMS``: routing by prefix, a curation rule, a
  ``keep`` list and a 10 % session sample, so every event is judged field by field);
- the collector behind a "proxy" (``trusted_proxies`` = 127.0.0.1, every request naming one of
  ``GEO_CLIENTS`` addresses in ``X-Forwarded-For``) with geography off (``enrich_geo=false``) and
  on (MaxMind's City test database): the cost of the client address, the lookup and the network.

Run: ``make bench`` (or ``.venv/bin/python bench/ingest.py --help``). Prints a table and writes
``bench/results/ingest-<time>.json`` and ``bench/results/ingest-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tallystick.collect.server import ServerProcess, free_port
from tallystick.store.lake import Lake
from tallystick.store.reader import count_events, with_retry

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GEO_DATABASE = HERE.parent / "tests" / "data" / "maxmind" / "GeoIP2-City-Test.mmdb"
GEO_CLIENTS = 2000
console = Console()


def event(i: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "event_id": str(uuid.uuid4()),
        "name": ["project.commit", "dataset.create", "search.query", "page.view"][i % 4],
        "client_ts": now,
        "app": {"id": "research-portal", "version": "4.2.1", "instance": f"site-{i % 12}"},
        "client": {"library": "tallystick-js", "library_version": "0.1.0", "platform": "web"},
        "user": {"id": f"u-{i % 5000:05d}", "is_logged_in": True},
        "session": {"id": f"s-{i // 20}", "seq": i % 20 + 1},
        "page": {"pageview_id": f"pv-{i // 5}", "url": "https://portal.example.org/projects"},
        "locale": "de-DE",
        "data": {"project_id": f"p-{i % 300}", "files": i % 17, "duration_ms": 12.5 + i % 90},
    }


STREAMS: dict[str, Any] = {
    "streams": [
        {
            "name": "product",
            "events": ["project.*", "dataset.*"],
            "curation": [{"field": "app.environment", "op": "equals", "value": "test"}],
        },
        {"name": "search", "events": ["search.*"], "keep": ["session", "page.url"]},
        {"name": "sampled", "events": ["*"], "sample": {"unit": "session", "rate": 0.1}},
    ]
}


def apply_streams(data: Path) -> None:
    from tallystick.config import Settings
    from tallystick.control.definitions import parse_configuration
    from tallystick.control.store import ControlStore

    with ControlStore.for_settings(Settings(data=data)) as store:
        store.apply(parse_configuration(STREAMS), actor="bench")


def client_addresses(n: int) -> list[str]:
    """``n`` client addresses: a third in networks the City test database knows (GB, SE, US,
    CN, JP, with and without a region), the rest public addresses it does not know."""
    known = ["81.2.69.{}", "89.160.20.{}", "216.160.83.{}", "175.16.199.{}", "2001:218::{:x}"]
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(known[i % len(known)].format(128 + i % 64))
        else:
            out.append(f"{23 + i % 150}.{(i * 7) % 256}.{(i * 13) % 256}.{i % 250 + 1}")
    return out


def lua_script(path: Path, bodies: list[bytes], clients: list[str] | None = None) -> None:
    """A wrk script cycling through pre-built bodies (each with its own event ids) and, when
    given, through client addresses sent as ``X-Forwarded-For``."""
    lines = ["local bodies = {"]
    for b in bodies:
        lines.append("[==[" + b.decode() + "]==],")
    lines += ["}", "local clients = {"]
    lines += [f'"{c}",' for c in clients or []]
    lines += [
        "}",
        "local i = 0",
        "local c = 0",
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        "request = function()",
        "  i = i % #bodies + 1",
        "  if #clients > 0 then",
        "    c = c % #clients + 1",
        '    wrk.headers["X-Forwarded-For"] = clients[c]',
        "  end",
        '  return wrk.format(nil, "/v1/events", nil, bodies[i])',
        "end",
    ]
    path.write_text("\n".join(lines))


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, script: Path, *, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def rss_mb(root_pid: int, loader_pid: int) -> dict[str, float]:
    """RSS of a process and its descendants, in MB, split into collector and loader."""
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,rss=,args="], capture_output=True, text=True, check=True
    ).stdout
    procs: dict[int, tuple[int, int, str]] = {}
    for line in out.splitlines():
        fields = line.split(None, 3)
        procs[int(fields[0])] = (
            int(fields[1]),
            int(fields[2]),
            fields[3] if len(fields) > 3 else "",
        )
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for child, (parent, _, _) in procs.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    collector = loader = 0.0
    for member in tree & procs.keys():
        _, rss_kb, _args = procs[member]
        if member == loader_pid:
            loader += rss_kb / 1024
        else:
            collector += rss_kb / 1024  # tally serve, its workers, the resource tracker
    return {"collector_mb": collector, "loader_mb": loader, "total_mb": collector + loader}


def _count_id(con: Any, event_id: str) -> int:
    return int(
        con.execute("SELECT count(*) FROM raw_events WHERE event_id = ?", [event_id]).fetchall()[0][
            0
        ]
    )


def visibility_seconds(url: str, lake: Lake, tries: int = 5) -> float:
    """Seconds from the acknowledgement of one event until a lake query finds it (worst of N)."""
    worst = 0.0
    for _ in range(tries):
        e = event(0)
        req = urllib.request.Request(
            url + "/v1/events",
            data=json.dumps(e).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
        acked = time.monotonic()
        while True:
            found = with_retry(lake, functools.partial(_count_id, event_id=e["event_id"]))
            if found:
                break
            time.sleep(0.05)
        worst = max(worst, time.monotonic() - acked)
    return worst


def decode_only(port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "decode_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        env=env,
        cwd=HERE,
    )


def drain(spool: Path, limit: float = 120.0) -> None:
    """Wait until the loader has caught up, so one load does not run into the last one's tail."""
    deadline = time.monotonic() + limit
    while any(spool.glob("*.ready")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


def wait_ready(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load")
    parser.add_argument("--workers", type=int, default=1, help="collector worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-streams",
        dest="streams",
        action="store_false",
        help="skip the run with streams configured",
    )
    parser.add_argument(
        "--no-geo",
        dest="geo",
        action="store_false",
        help="skip the runs with geography off and on behind a proxy",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run `make bench` (it installs wrk) or apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    batch_bodies = [
        json.dumps({"events": [event(i * 100 + j) for j in range(100)]}).encode()
        for i in range(200)
    ]
    single_bodies = [json.dumps(event(i)).encode() for i in range(2000)]
    batch_lua, single_lua = work / "batch.lua", work / "single.lua"
    lua_script(batch_lua, batch_bodies)
    lua_script(single_lua, single_bodies)
    clients = client_addresses(GEO_CLIENTS)
    batch_proxied, single_proxied = work / "batch-proxied.lua", work / "single-proxied.lua"
    lua_script(batch_proxied, batch_bodies, clients)
    lua_script(single_proxied, single_bodies, clients)
    rows: list[dict[str, Any]] = []

    # The bare decode-only endpoint: the ceiling.
    port = free_port()
    proc = decode_only(port, args.workers)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        for label, script in (("batched", batch_lua), ("single", single_lua)):
            console.print(f"decode-only, {label} …")
            r = run_wrk(
                url + "/v1/events", script, seconds=args.seconds, connections=args.connections
            )
            rows.append({"target": "decode-only", "load": label, **r})
    finally:
        proc.terminate()
        proc.wait()

    # The real collector with durable acknowledgements.
    server = ServerProcess(work / "data", workers=args.workers).start()
    try:
        time.sleep(2)
        assert server.proc is not None
        lock = work / "data" / "loader.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.2)
        loader_pid = int(lock.read_text())
        idle = rss_mb(server.proc.pid, loader_pid)
        for label, script in (("batched", batch_lua), ("single", single_lua)):
            console.print(f"collector, {label} …")
            r = run_wrk(
                server.url + "/v1/events",
                script,
                seconds=args.seconds,
                connections=args.connections,
            )
            rows.append({"target": "collector", "load": label, **r})
            drain(work / "data" / "spool")
        time.sleep(3)
        loaded = rss_mb(server.proc.pid, loader_pid)
        visible = visibility_seconds(server.url, Lake(work / "data" / "lake"))
    finally:
        server.stop()
    if args.streams:
        apply_streams(work / "streams")
        server = ServerProcess(work / "streams", workers=args.workers).start()
        try:
            time.sleep(2)
            for label, script in (("batched", batch_lua), ("single", single_lua)):
                console.print(f"collector with streams, {label} …")
                r = run_wrk(
                    server.url + "/v1/events",
                    script,
                    seconds=args.seconds,
                    connections=args.connections,
                )
                rows.append({"target": "collector+streams", "load": label, **r})
                drain(work / "streams" / "spool")
        finally:
            server.stop()
    if args.geo:
        proxied = {"TALLYSTICK_TRUSTED_PROXIES": "127.0.0.1"}
        for target, env in (
            ("collector, geo off", {**proxied, "TALLYSTICK_ENRICH_GEO": "false"}),
            ("collector, geo on", {**proxied, "TALLYSTICK_GEOIP_DATABASE": str(GEO_DATABASE)}),
        ):
            data = work / target.replace(", ", "-").replace(" ", "-")
            server = ServerProcess(data, workers=args.workers, env=env).start()
            try:
                time.sleep(2)
                for label, script in (("batched", batch_proxied), ("single", single_proxied)):
                    console.print(f"{target}, {label} …")
                    r = run_wrk(
                        server.url + "/v1/events",
                        script,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                    rows.append({"target": target, "load": label, **r})
                    drain(data / "spool")
            finally:
                server.stop()
    stored = count_events(Lake(work / "data" / "lake"))
    expected = len(batch_bodies) * 100 + len(single_bodies) + 5
    if stored != expected:
        console.print(f"[red]integrity: {stored} distinct events stored, {expected} expected[/]")

    for r in rows:
        r["events_per_s"] = r["rps"] * (100 if str(r["load"]) == "batched" else 1)
    ceiling = {r["load"]: r["events_per_s"] for r in rows if r["target"] == "decode-only"}
    for r in rows:
        r["share_of_decode_only"] = r["events_per_s"] / ceiling[r["load"]]

    table = Table(
        title=f"ingest benchmark ({os.cpu_count()} cores, {args.workers} worker(s), "
        f"{args.connections} connections, {args.seconds} s per load)"
    )
    for col in (
        "target",
        "load",
        "requests/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "vs decode-only",
    ):
        table.add_column(col, justify="right" if col not in ("target", "load") else "left")
    for r in rows:
        table.add_row(
            str(r["target"]),
            str(r["load"]),
            f"{r['rps']:,.0f}",
            f"{r['events_per_s']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['non_2xx']:.0f}",
            f"{r['share_of_decode_only']:.0%}",
        )
    console.print(table)
    console.print(
        f"idle RSS: collector {idle['collector_mb']:.0f} MB, loader "
        f"{idle['loader_mb']:.0f} MB, total {idle['total_mb']:.0f} MB"
    )
    console.print(
        f"RSS after the loads: collector {loaded['collector_mb']:.0f} MB, loader "
        f"{loaded['loader_mb']:.0f} MB"
    )
    console.print(f"ack → queryable in the lake (worst of 5): {visible:.2f} s")
    console.print(
        f"every acknowledged event stored exactly once: {stored == expected} "
        f"({stored:,} distinct events)"
    )

    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "args": vars(args),
        "loads": rows,
        "idle_rss_mb": idle,
        "rss_after_load_mb": loaded,
        "distinct_events_stored": stored,
        "distinct_events_expected": expected,
        "visibility_seconds": visible,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"ingest-{stamp}.json", "ingest-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
