"""Dashboard benchmark: how long each dashboard page takes to load in a real browser.

The issue's target: pages load in under 1 s on the demo data. On the demo data (``tally demo``'s
defaults: 1,500 users, 183 days, seed 7), served by a real ``tally serve`` on loopback and loaded
in Debian's chromium (headless, driven by Playwright), each page of the dashboard (``/`` KPIs,
``/core-actions``, ``/funnel``, ``/retention``, ``/explore``, ``/data-health``, ``/catalog``, each
in its default view) is timed from just before ``page.goto`` until the page's script has drawn
every chart and table (``<body data-state="ready">``; ``"error"``, or ``"locked"`` when the
server wants a read key, is a failure of the page):

- **first load**: a freshly started server, each page's first visit (in the order above), each
  in a fresh browser context (empty HTTP cache): whatever the server computes or caches on a
  first request is paid here;
- **repeat loads**: ``--repeat`` (7) further loads of the same page, each in a fresh browser
  context, so plotly.js (4.8 MB, 1.5 MB gzipped) and the page's assets are fetched again —
  median and max;
- **warm browser**: a persistent browser profile, as a user's own browser, with its disk cache
  and V8's code cache (Chrome compiles a script from its code cache once it has run it twice;
  fresh contexts, being incognito-like, never do): after two visits of ``/`` to warm it up, each
  page is visited ``--warm`` (3) times — median. The static assets come from the cache, the HTML
  and the API calls are fetched again.

For every load it records the HTTP API requests (``/v1/...``) the page made before it was ready,
with their durations (Playwright's request timing: request start to response end), so the
slowest API call of each page is known; where the time went (the HTML, plotly.js and the
deferred scripts having run, from the browser's Performance API; the first API request and the
last response); and the page's main-thread time by kind (Chrome's ``Performance.getMetrics``).
Slowness is reported, not asserted: the run exits with an error only if a page ends in its
error state (or never gets ready). 79 loads in all: ~3 to 4 minutes on two busy cores.

Run: ``make bench`` (or ``.venv/bin/python bench/dashboard.py --help``; ``--quick`` for a smoke
run on 300 users and 60 days). The demo data is built once per parameter set under
``bench/data/demo-u<users>-d<days>-s<seed>/`` (not committed; ~70 s) and reused. Needs Debian's
chromium at ``/usr/bin/chromium`` (``make bench`` installs it; no browser is ever downloaded).
Prints a table and writes ``bench/results/dashboard-<time>.json`` and
``bench/results/dashboard-latest.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Request,
    Response,
    ViewportSize,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from rich.console import Console
from rich.table import Table

from tallystick.cli.output import progress as progress_display
from tallystick.collect.server import ServerProcess
from tallystick.dashboard.pages import PAGES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DATA = HERE / "data"
console = Console()

TARGET: Final = 1.0  # seconds
CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
VIEWPORT: Final = ViewportSize(width=1280, height=900)
#: the page is done: drawn, failed, or waiting for a read key (the server has one; none is given)
READY: Final = ", ".join(f"body[data-state='{s}']" for s in ("ready", "error", "locked"))
DEMO_MARKER: Final = "demo.json"
#: visits of a page with charts that warm the persistent profile up before the warm loads
PRIMING: Final = 2
PRIMING_PATH: Final = "/"


# --------------------------------------------------------------------------------------------
# The demo data


@dataclass(frozen=True, slots=True)
class DemoSpec:
    """The parameters of one demo data set (``tally demo --users --days --seed``)."""

    users: int
    days: int
    seed: int

    @property
    def name(self) -> str:
        return f"demo-u{self.users}-d{self.days}-s{self.seed}"

    @property
    def params(self) -> dict[str, int]:
        return {"users": self.users, "days": self.days, "seed": self.seed}


def _demo_marker(root: Path) -> dict[str, Any] | None:
    """What ``tally demo`` wrote when it finished (``demo.json``), or None."""
    try:
        saved: dict[str, Any] = json.loads((root / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return saved


def ensure_demo(spec: DemoSpec, data: Path = DATA) -> tuple[Path, dict[str, Any], bool]:
    """The demo data of ``spec`` under ``data`` (built by ``tally demo --no-serve`` unless it is
    there already): its directory, what ``demo.json`` says and whether it was reused."""
    root = data / spec.name
    saved = _demo_marker(root)
    if saved is not None and saved.get("params") == spec.params:
        return root, saved, True
    console.print(f"building the demo data in {root} (tally demo --no-serve) …")
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tallystick", "demo", "--no-serve", "--data", str(root)]
    cmd += ["--users", str(spec.users), "--days", str(spec.days), "--seed", str(spec.seed)]
    subprocess.run(cmd, check=True)
    saved = _demo_marker(root)
    if saved is None or saved.get("params") != spec.params:
        raise SystemExit(f"tally demo did not finish: no {DEMO_MARKER} in {root}")
    return root, saved, False


# --------------------------------------------------------------------------------------------
# One page load


@dataclass(slots=True)
class ApiCall:
    """One request of a page to the HTTP API."""

    path: str
    """Path and query string."""
    status: int | None
    start_ms: float
    """When the browser started the request, after ``page.goto`` was called."""
    duration_ms: float
    """Request start to the end of the response (Playwright's timing), or -1 if it failed."""


@dataclass(slots=True)
class Load:
    """One load of one page: how long until it was ready, and what it asked the API."""

    seconds: float
    state: str
    """"ready", "error" (the page's error state), "locked" (it needs a read key: the server has
    one, e.g. from ``TALLYSTICK_READ_KEY``), "timeout" or "failed" (no page at all)."""
    api: list[ApiCall] = field(default_factory=list)
    requests: int = 0
    """All requests of the page (document, assets, API) before it was ready."""
    errors: list[str] = field(default_factory=list)
    """Console errors, failed requests, HTTP errors, and the page's status message on error."""
    phases: dict[str, float] = field(default_factory=dict)
    """When (ms after ``page.goto`` was called) the HTML had arrived, plotly.js had arrived, the
    deferred scripts had run (``DOMContentLoaded``), the first API request started and the last
    API response had arrived; ``api_span`` is the time between the last two."""
    renderer: dict[str, float] = field(default_factory=dict)
    """The page's main-thread time in seconds by kind (Chrome's ``Performance.getMetrics``)."""

    @property
    def slowest(self) -> ApiCall | None:
        return max(self.api, key=lambda c: c.duration_ms, default=None)

    def summary(self) -> dict[str, Any]:
        """The load without its list of API calls (for the repeat and warm loads)."""
        slowest = self.slowest
        return {
            "seconds": self.seconds,
            "state": self.state,
            "requests": self.requests,
            "api_requests": len(self.api),
            "slowest_api": asdict(slowest) if slowest else None,
            "phases_ms": self.phases,
            "renderer_seconds": self.renderer,
            "errors": self.errors,
        }


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def load(context: BrowserContext, url: str, timeout_s: float) -> Load:
    """Open ``url`` in a new tab of ``context`` and wait for the page's ready (or error) state."""
    page = context.new_page()
    finished: list[Request] = []
    errors: list[str] = []

    def on_finished(request: Request) -> None:
        finished.append(request)

    def on_failed(request: Request) -> None:
        errors.append(f"{request.method} {_path(request.url)}: {request.failure}")
        finished.append(request)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            errors.append(f"{response.request.method} {_path(response.url)}: {response.status}")

    page.on("requestfinished", on_finished)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    try:
        wall_ms = time.time() * 1000
        began = time.perf_counter()
        try:
            page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
            left = timeout_s - (time.perf_counter() - began)
            page.locator(READY).wait_for(state="attached", timeout=max(left, 0.001) * 1000)
            seconds = time.perf_counter() - began
            state = str(page.get_attribute("body", "data-state"))
        except PlaywrightError as exc:
            seconds = time.perf_counter() - began
            state = "timeout" if isinstance(exc, PlaywrightTimeout) else "failed"
            errors.append(str(exc).splitlines()[0])
        if state in ("error", "locked"):
            status = page.locator("#status")
            text = status.inner_text() if status.count() else ""
            errors.append(f"the page's {state} state: " + " ".join(text.split()))
        api = []
        for request in finished:
            if urllib.parse.urlsplit(request.url).path.startswith("/v1/"):
                timing = request.timing
                response = request.response() if request.failure is None else None
                end = timing["responseEnd"]
                api.append(
                    ApiCall(
                        path=_path(request.url),
                        status=response.status if response else None,
                        start_ms=round(timing["startTime"] - wall_ms, 1),
                        duration_ms=round(end, 1) if end >= 0 else -1.0,
                    )
                )
        done = Load(seconds, state, api, len(finished), errors)
        if state in ("ready", "error", "locked"):
            done.phases = _phases(page, wall_ms, api)
            metrics = cdp.send("Performance.getMetrics")["metrics"]
            done.renderer = {
                m["name"]: round(m["value"], 3) for m in metrics if m["name"] in RENDERER_METRICS
            }
        return done
    finally:
        cdp.detach()
        page.close()


#: What the page asks the browser's Performance API, once ready (``evaluate`` is a DevTools
#: call, which the page's Content-Security-Policy does not restrict).
TIMING_JS: Final = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  const plotly = performance.getEntriesByType("resource").find((r) => r.name.includes("plotly"));
  return {
    origin: performance.timeOrigin,
    html: n ? n.responseEnd : null,
    scripts_run: n ? n.domContentLoadedEventStart : null,
    plotly: plotly ? plotly.responseEnd : null,
  };
}"""
RENDERER_METRICS: Final = (
    "ScriptDuration",
    "LayoutDuration",
    "RecalcStyleDuration",
    "TaskDuration",
)


def _phases(page: Page, wall_ms: float, api: list[ApiCall]) -> dict[str, float]:
    timing: dict[str, float | None] = page.evaluate(TIMING_JS)
    origin = timing.pop("origin") or wall_ms
    phases = {
        name: round(origin - wall_ms + value, 1)
        for name, value in timing.items()
        if value is not None
    }
    ends = [c.start_ms + c.duration_ms for c in api if c.duration_ms >= 0]
    if ends:
        phases["api_first_start"] = min(c.start_ms for c in api)
        phases["api_done"] = round(max(ends), 1)
        phases["api_span"] = round(phases["api_done"] - phases["api_first_start"], 1)
    return phases


@contextmanager
def fresh_context(browser: Browser) -> Iterator[BrowserContext]:
    """A new browser context: its own, empty HTTP cache and storage."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context
    finally:
        context.close()


# --------------------------------------------------------------------------------------------
# The run


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure(
    playwright: Playwright,
    browser: Browser,
    base: str,
    paths: list[str],
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, Any]], list[Load]]:
    """First, repeat and warm loads of every page: a result per page path, and the loads that
    warmed the persistent profile up."""
    results: dict[str, dict[str, Any]] = {p: {"path": p, "loads": []} for p in paths}
    priming: list[Load] = []
    total = len(paths) * (1 + args.repeat + args.warm) + (PRIMING if args.warm else 0)
    with progress_display(console) as progress:
        task = progress.add_task("page loads", total=total)

        def visit(context: BrowserContext, path: str, description: str) -> Load:
            progress.update(task, description=f"{description} {path}")
            done = load(context, base + path, args.timeout)
            progress.advance(task)
            return done

        # 1. The first visit of every page on the fresh server, in a fresh context each.
        for path in paths:
            with fresh_context(browser) as context:
                first = visit(context, path, "first load")
            results[path]["first"] = asdict(first) | {"slowest_api": first.summary()["slowest_api"]}
            results[path]["loads"].append(first)
        # 2. Repeat loads, a fresh context (empty browser cache) each.
        for path in paths:
            repeats = []
            for i in range(args.repeat):
                with fresh_context(browser) as context:
                    repeats.append(visit(context, path, f"repeat {i + 1}/{args.repeat}"))
            results[path]["loads"] += repeats
            results[path]["repeat"] = _summary(repeats)
        # 3. Warm browser: a persistent profile, as a user's own browser (disk cache, and V8's
        # code cache: a script is compiled from its cache once it has run twice).
        if args.warm:
            with tempfile.TemporaryDirectory(prefix="tally-bench-profile-") as profile:
                context = playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport=VIEWPORT,
                )
                try:
                    for i in range(PRIMING):
                        priming.append(visit(context, PRIMING_PATH, f"warm-up {i + 1}/{PRIMING}"))
                    for path in paths:
                        warms = []
                        for i in range(args.warm):
                            warms.append(visit(context, path, f"warm {i + 1}/{args.warm}"))
                        results[path]["loads"] += warms
                        results[path]["warm"] = _summary(warms)
                finally:
                    context.close()
        else:
            for path in paths:
                results[path]["warm"] = _summary([])
    for r in results.values():
        loads: list[Load] = r.pop("loads")
        failed = [x for x in loads if x.state != "ready"]
        r["failed_loads"] = len(failed)
        r["failures"] = sorted({e for x in failed for e in x.errors})
        r["console_errors"] = sorted({e for x in loads if x.state == "ready" for e in x.errors})
        r["api_requests"] = sorted({len(x.api) for x in loads if x.state == "ready"})
        r["slowest_api"] = _slowest_calls(loads)
        r["met"] = not failed and r["repeat"]["median_seconds"] <= TARGET
        r["met_warm"] = not failed and r["warm"]["median_seconds"] <= TARGET
    return results, priming


def _summary(loads: list[Load]) -> dict[str, Any]:
    """Median and max of the successful loads, the median of each phase, and every load."""
    ok = [x for x in loads if x.state == "ready"]
    phases = sorted({name for x in ok for name in x.phases})
    return {
        "median_seconds": _median([x.seconds for x in ok]),
        "max_seconds": max((x.seconds for x in ok), default=float("nan")),
        "median_phases_ms": {
            name: _median([x.phases[name] for x in ok if name in x.phases]) for name in phases
        },
        "loads": [x.summary() for x in loads],
    }


def _slowest_calls(loads: list[Load]) -> list[dict[str, Any]]:
    """Per API path (without its query string): median and max duration, and how many times it
    was the slowest API call of a load; slowest median first."""
    durations: dict[str, list[float]] = {}
    slowest: dict[str, int] = {}
    for x in loads:
        for call in x.api:
            key = call.path.split("?")[0]
            if call.duration_ms >= 0:
                durations.setdefault(key, []).append(call.duration_ms)
        top = x.slowest
        if top is not None:
            key = top.path.split("?")[0]
            slowest[key] = slowest.get(key, 0) + 1
    rows = [
        {
            "path": key,
            "calls": len(values),
            "median_ms": round(statistics.median(values), 1),
            "max_ms": round(max(values), 1),
            "slowest_in_loads": slowest.get(key, 0),
        }
        for key, values in durations.items()
    ]
    return sorted(rows, key=lambda row: -float(row["median_ms"]))


def _seconds(value: float, *, bold: bool = False) -> str:
    if value != value:  # NaN: no successful load
        return "[red]-[/]"
    text = f"{value:.2f}"
    if bold:
        text = f"[bold]{text}[/]"
    return f"[red]{text}[/]" if value > TARGET else text


def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def report(results: dict[str, dict[str, Any]], spec: DemoSpec, args: argparse.Namespace) -> None:
    table = Table(
        title=f"dashboard page loads: demo data {spec.users:,} users, {spec.days} days "
        f"(seed {spec.seed}); chromium headless, {os.cpu_count()} cores",
        caption=f"seconds from page.goto to ready; first: fresh server and context; repeat: "
        f"{args.repeat} loads in fresh contexts (empty browser cache); warm: {args.warm} visits "
        f"with a warmed-up persistent profile (HTTP and code cache); ≤{TARGET:g} s?: no errors "
        f"and the repeat / warm median ≤ {TARGET:g} s; scripts ran: DOMContentLoaded (HTML and "
        "plotly.js fetched, parsed and run); API span: first API request to last response "
        "(medians of the repeat loads)",
    )
    for column in (
        "page",
        "first s",
        "repeat median s",
        "repeat max s",
        "warm median s",
        f"≤{TARGET:g} s? repeat / warm",
        "scripts ran ms",
        "API span ms",
        "API calls",
        "slowest API call (median ms)",
    ):
        left = column == "page" or column.startswith("slowest")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for path, r in results.items():
        if r["failed_loads"]:
            met = f"[red bold]error ({r['failed_loads']})[/]"
        else:
            met = " / ".join(
                "[green]yes[/]" if ok else "[red]no[/]" for ok in (r["met"], r["met_warm"])
            )
        top = r["slowest_api"][0] if r["slowest_api"] else None
        first = r["first"]
        table.add_row(
            path,
            _seconds(first["seconds"])
            if first["state"] == "ready"
            else f"[red]{first['state']}[/]",
            _seconds(r["repeat"]["median_seconds"], bold=True),
            _seconds(r["repeat"]["max_seconds"]),
            _seconds(r["warm"]["median_seconds"]),
            met,
            _ms(r["repeat"]["median_phases_ms"].get("scripts_run")),
            _ms(r["repeat"]["median_phases_ms"].get("api_span")),
            "/".join(str(n) for n in r["api_requests"]) or "-",
            f"{top['path']} ({top['median_ms']:.0f})" if top else "-",
        )
    Console(width=max(console.width, 190)).print(table)
    for path, r in results.items():
        for failure in r["failures"][:5]:
            console.print(f"[red]{path}: {failure}[/]")
        for error in r["console_errors"][:3]:
            console.print(f"[yellow]{path} (loaded): {error}[/]")


def machine(browser_version: str) -> dict[str, Any]:
    memory = next(
        (
            int(line.split()[1]) / 1024**2
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        None,
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1) if memory else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "chromium": browser_version,
        "playwright": version("playwright"),
        "load_average": os.getloadavg(),
    }


def source() -> dict[str, Any]:
    """The commit measured, and whether the dashboard's code had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("log", "-1", "--format=%H %s"),
        "uncommitted_in_src": git("status", "--porcelain", "--", "src").splitlines(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1500, help="demo users")
    parser.add_argument("--days", type=int, default=183, help="demo days of history")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="300 users, 60 days, 3 repeats")
    parser.add_argument("--repeat", type=int, default=None, help="fresh-context loads (7)")
    parser.add_argument("--warm", type=int, default=None, help="warm-browser visits (3)")
    parser.add_argument("--only", default="", help="comma-separated page paths (default: all)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per page load")
    args = parser.parse_args()
    if args.quick:
        args.users, args.days = 300, 60
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.warm is None:
        args.warm = 3
    if args.repeat < 1 or args.warm < 0:
        raise SystemExit("--repeat must be at least 1 and --warm at least 0")
    wanted = {p.strip() for p in args.only.split(",") if p.strip()}
    paths = [p.path for p in PAGES if not wanted or p.path in wanted]
    if not paths:
        raise SystemExit(f"no such page in --only; the pages: {', '.join(p.path for p in PAGES)}")
    if not CHROMIUM.exists():
        raise SystemExit(
            f"Debian's chromium is not installed ({CHROMIUM}): `make bench` installs it, or run "
            "apt-get install --no-install-recommends chromium (no browser is downloaded)"
        )

    spec = DemoSpec(args.users, args.days, args.seed)
    data, demo, reused = ensure_demo(spec)
    console.print(
        f"demo data {data.relative_to(ROOT)}: {demo.get('events', 0):,} events, built "
        f"{demo.get('built', '?')}" + (" (reused)" if reused else "")
    )
    measured = source()  # the dashboard's assets are read when the server starts
    load_before = os.getloadavg()
    began = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            with ServerProcess(data) as server:
                console.print(f"tally serve on {server.url}; chromium {browser.version}")
                results, priming = measure(p, browser, server.url, paths, args)
        finally:
            info = machine(browser.version)
            browser.close()
    seconds = time.monotonic() - began
    report(results, spec, args)
    info["load_average_before"] = load_before
    if max(load_before[0], info["load_average"][0]) > (os.cpu_count() or 1) / 2:
        console.print(
            f"[yellow]the machine was busy (load average {load_before[0]:.1f} before, "
            f"{info['load_average'][0]:.1f} after): timings are noisy[/]"
        )
    console.print(f"{seconds:.0f} s of page loads")
    if source() != measured:
        console.print("[yellow]the code changed during the run (a commit, or edits in src/)[/]")
    console.print(f"measured: {measured['commit'][:100]}")
    if measured["uncommitted_in_src"]:
        console.print(f"  with uncommitted changes: {' '.join(measured['uncommitted_in_src'])}")
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": info,
        "source": measured,
        "source_after": source(),
        "args": vars(args),
        "demo": {**demo, "path": str(data), "reused": reused},
        "target_seconds": TARGET,
        "seconds": seconds,
        "pages": list(results.values()),
        "warm_priming": [x.summary() for x in priming],
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"dashboard-{stamp}.json", "dashboard-latest.json"):
        (RESULTS / name).write_text(json.dumps(result, indent=2, default=str))
    failed = [path for path, r in results.items() if r["failed_loads"]]
    if any(x.state != "ready" for x in priming):
        failed.append(f"{PRIMING_PATH} (warming the profile up)")
    if failed:
        sys.exit(f"pages that failed (error or locked state, or no answer): {', '.join(failed)}")


if __name__ == "__main__":
    main()
