"""Enrichment benchmark: the loader's throughput (spool → Parquet lake) with and without
enrichment, in-process, on the same spooled events.

The events are the ingest benchmark's (~480 bytes of JSON, 10 standard attributes), spooled
as the collector writes them: request-context frames of 100 events, each request with a
``User-Agent`` header, country, region and network. User agents are drawn Zipf-like from ~2,600
distinct real strings (the vendored browser corpus under ``tests/data/useragents`` and the
crawler list's examples); every event carries ``sent_ts`` (a few clients with a skewed clock),
half the events come without a session id (visitors with an anonymous id: sessionization), and
all carry a page-view id (page-view linkage).

Each configuration loads the same spool into a fresh lake ``--repeat`` times (median):
enrichment off, each step alone, everything on, and everything on with *every user agent
unique* (the worst case: a bot rotating user agents defeats the cache). The time to build the
enricher (compiling the rules) is reported apart: a loader process pays it once at start.

Wall time and the process's CPU time (all threads) are both reported: on a busy machine the
CPU time is the steadier figure.

Run: ``.venv/bin/python bench/enrichment.py`` (``--events``, ``--repeat``). Prints a table and
writes ``bench/results/enrichment-<time>.json`` and ``bench/results/enrichment-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from tallystick.config import Settings
from tallystick.enrich.agents import crawler_instances, versions
from tallystick.enrich.pipeline import shared_agent_parser
from tallystick.store import spool
from tallystick.store.lake import Lake
from tallystick.store.loader import Loader
from tallystick.store.reader import count_events

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CORPUS = HERE.parent / "tests" / "data" / "useragents"
console = Console()

STEPS = ("enrich_user_agent", "enrich_bots", "enrich_geo", "enrich_clock", "enrich_sessions")
CONFIGS: dict[str, dict[str, bool]] = {
    "off": dict.fromkeys(STEPS, False),
    "user agent": {**dict.fromkeys(STEPS, False), "enrich_user_agent": True},
    "bots": {**dict.fromkeys(STEPS, False), "enrich_bots": True},
    "geo": {**dict.fromkeys(STEPS, False), "enrich_geo": True},
    "clock": {**dict.fromkeys(STEPS, False), "enrich_clock": True},
    "sessions": {**dict.fromkeys(STEPS, False), "enrich_sessions": True},
    "all": dict.fromkeys(STEPS, True),
}


def user_agents() -> list[str]:
    browsers = [
        json.loads(line)["useragent"]
        for line in (CORPUS / "fake-useragent-browsers.jsonl").read_text().splitlines()
    ]
    browsers += json.loads((CORPUS / "top-user-agents.json").read_text())
    return sorted(set(browsers)) + sorted(set(crawler_instances()))


def event(i: int, at: dt.datetime, rnd: random.Random) -> dict[str, Any]:
    skewed = i % 97 == 0  # a few clients whose clock is off by hours
    sent = at + dt.timedelta(seconds=1, hours=-3 if skewed else 0)
    user = rnd.randrange(5000)
    e: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "name": ["project.commit", "dataset.create", "search.query", "page.view"][i % 4],
        "client_ts": (at - dt.timedelta(hours=3 if skewed else 0)).isoformat(),
        "sent_ts": sent.isoformat(),
        "app": {"id": "research-portal", "version": "4.2.1", "instance": f"site-{i % 12}"},
        "client": {"library": "tallystick-js", "library_version": "0.1.0", "platform": "web"},
        "page": {"pageview_id": f"pv-{user}-{i // 50}", "url": "https://portal.example.org/p"},
        "locale": "de-DE",
        "data": {"project_id": f"p-{i % 300}", "files": i % 17, "duration_ms": 12.5 + i % 90},
    }
    if user % 2:
        e["user"] = {"anonymous_id": f"a-{user:05d}"}  # a visitor: no session id
    else:
        e["user"] = {"id": f"u-{user:05d}", "is_logged_in": True}
        e["session"] = {"id": f"s-{user}-{i // 400}", "seq": i % 20 + 1}
    return e


def build_spool(directory: Path, events: int, *, unique_agents: bool, seed: int = 1) -> None:
    """Spool segments of request-context frames (100 events each, one request's header)."""
    rnd = random.Random(seed)
    agents = user_agents()
    weights = [1 / (rank + 1) for rank in range(len(agents))]
    start = dt.datetime(2026, 3, 10, 8, 0, tzinfo=dt.UTC)
    directory.mkdir(parents=True)
    frames: list[bytes] = []
    segment = 0
    for r in range(events // 100):
        at = start + dt.timedelta(milliseconds=50 * r)
        header = rnd.choices(agents, weights)[0]
        if unique_agents:
            header = f"{header} r/{r}"
        ctx = spool.RequestContext(
            "product",
            keep_user_agent=r % 2 == 0,
            user_agent=header,
            country="DE",
            region="DE-BW",
            network="203.0.113.0/24",
        )
        batch = [event(r * 100 + j, at, rnd) for j in range(100)]
        received = int((at + dt.timedelta(seconds=1)).timestamp() * 1_000_000)
        frames.append(spool.context_frame(ctx, received, msgspec.json.encode(batch)))
        if len(frames) == 200:
            segment += 1
            (directory / f"bench-{segment:06d}{spool.READY_SUFFIX}").write_bytes(b"".join(frames))
            frames = []
    if frames:
        segment += 1
        (directory / f"bench-{segment:06d}{spool.READY_SUFFIX}").write_bytes(b"".join(frames))


def run(spool_dir: Path, work: Path, steps: dict[str, bool]) -> tuple[float, float, int]:
    """Wall and CPU seconds to load the spool into a fresh lake with ``steps``; events
    loaded."""
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(spool_dir, data / "spool")
    settings = Settings(data=data, min_free_bytes=0).with_changes(**steps)
    loader = Loader(settings)  # builds the enricher (the parser is shared in-process)
    started, cpu = time.perf_counter(), time.process_time()
    stats = loader.load_once()
    return time.perf_counter() - started, time.process_time() - cpu, stats.events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the spool")
    parser.add_argument("--repeat", type=int, default=3, help="loads per configuration")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tally-bench-enrich-"))
    try:
        started = time.perf_counter()
        parser_ = shared_agent_parser()
        setup = time.perf_counter() - started
        console.print(f"enricher built in {setup:.2f} s ({parser_.backend} parser)")
        build_spool(work / "spool", args.events, unique_agents=False)
        build_spool(work / "spool-unique", args.events, unique_agents=True)
        size = sum(p.stat().st_size for p in (work / "spool").iterdir())
        run(work / "spool", work, CONFIGS["all"])  # warm-up: imports, DuckDB, first files
        rows: list[dict[str, Any]] = []
        plan = [(name, steps, "spool") for name, steps in CONFIGS.items()]
        plan.append(("all, every UA unique", CONFIGS["all"], "spool-unique"))
        for name, steps, source in plan:
            console.print(f"loading: {name} …")
            times, cpus = [], []
            for _ in range(args.repeat):
                shared_agent_parser().info.cache_clear()  # each load starts cold
                seconds, cpu, loaded = run(work / source, work, steps)
                assert loaded == args.events, (loaded, args.events)
                times.append(seconds)
                cpus.append(cpu)
            stored = count_events(Lake(work / "data" / "lake"))
            assert stored == args.events, (stored, args.events)
            median, cpu = statistics.median(times), statistics.median(cpus)
            rows.append(
                {
                    "config": name,
                    "seconds": median,
                    "cpu_seconds": cpu,
                    "events_per_s": args.events / median,
                    "us_per_event": median / args.events * 1e6,
                    "cpu_us_per_event": cpu / args.events * 1e6,
                    "runs": times,
                    "cpu_runs": cpus,
                }
            )
        base, base_cpu = rows[0]["us_per_event"], rows[0]["cpu_us_per_event"]
        for r in rows:
            r["extra_us_per_event"] = r["us_per_event"] - base
            r["extra_cpu_us_per_event"] = r["cpu_us_per_event"] - base_cpu
        table = Table(
            title=f"loader throughput, {args.events:,} events ({size / 1e6:.0f} MB spooled), "
            f"{os.cpu_count()} cores, median of {args.repeat}"
        )
        columns = ("enrichment", "events/s", "µs/event", "vs off", "CPU µs/event", "vs off ")
        for col in columns:
            table.add_column(col, justify="left" if col == "enrichment" else "right")
        for r in rows:
            table.add_row(
                r["config"],
                f"{r['events_per_s']:,.0f}",
                f"{r['us_per_event']:.1f}",
                f"{r['extra_us_per_event']:+.1f}",
                f"{r['cpu_us_per_event']:.1f}",
                f"{r['extra_cpu_us_per_event']:+.1f}",
            )
        console.print(table)
        result = {
            "when": dt.datetime.now(dt.UTC).isoformat(),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "args": vars(args),
            "setup_seconds": setup,
            "parser": parser_.backend,
            "packages": versions(),
            "spool_bytes": size,
            "loads": rows,
        }
        RESULTS.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        for name in (f"enrichment-{stamp}.json", "enrichment-latest.json"):
            (RESULTS / name).write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
