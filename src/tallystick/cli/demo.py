"""``tally demo``: build the demo product's data through the real collector, then serve."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import signal
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tallystick.cli.options import DEFAULT_DATA, DataOption
from tallystick.cli.output import progress as progress_display
from tallystick.collect.server import ServerProcess
from tallystick.config import Settings, from_env

MARKER = "demo.json"
DEMO_ACTOR = "demo"
"""Who the demo's control-plane changes are recorded as."""


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    data: DataOption = DEFAULT_DATA,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    users: Annotated[int, typer.Option(min=1, help="Users of the demo product.")] = 1500,
    days: Annotated[int, typer.Option(min=1, help="Days of history, ending today.")] = 183,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after building the data.")
    ] = True,
) -> None:
    """Build a realistic demo product's events through the real collector, then keep serving."""
    console = Console(stderr=True)
    settings = from_env(data=data)
    settings.data.mkdir(parents=True, exist_ok=True)
    from tallystick.demo.catalog import install as install_catalog

    if install_catalog(settings.catalog_dir):
        console.print(f"Wrote the demo's metric catalog to [cyan]{settings.catalog_dir}[/].")
    marker = settings.data / MARKER
    params = {"users": users, "days": days, "seed": seed}
    built = _already_built(marker, params)
    if not built:
        _apply_configuration(console, settings)
        _apply_experiment(console, settings, params)
    server = ServerProcess(settings.data, host=host, port=port if serve else None)
    # `kill` (SIGTERM) stops the demo like Ctrl-C does: the server it started stops with it.
    signal.signal(signal.SIGTERM, _interrupt)
    console.print(f"Starting the collector on [cyan]{server.url}[/] …")
    try:
        server.start()
    except (RuntimeError, TimeoutError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        console.print(
            f"[red]error:[/] the collector did not start on {server.url}: {reason}\n"
            "If the port is taken, pass another one with --port."
        )
        raise typer.Exit(2) from None
    try:
        if built:
            console.print(
                f"Demo data already in [cyan]{settings.data}[/] (remove {marker} to rebuild)."
            )
        else:
            _build(console, server.url, settings.lake_dir, params, marker)
            _time_metrics(console, server.url, settings.catalog_dir)
        if not serve:
            return
        console.print(
            f"\n[bold green]Serving[/]: open the dashboard at [cyan]{server.url}/[/] "
            f"(the API: {server.url}/v1, events: POST /v1/events). Press Ctrl-C to stop."
        )
        from tallystick.collect.server import keyed_kinds

        open_kinds = keyed_kinds(settings).open_kinds
        if open_kinds:  # the server says so on its own standard error, which the demo keeps
            console.print(
                f"[bold yellow]OPEN MODE[/]: {'; '.join(open_kinds)}. Anyone who can reach this "
                "machine's loopback may do that; create keys with `tally keys create` before "
                "serving beyond it (docs/access.md)."
            )
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        console.print("Stopping …")
    finally:
        server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _already_built(marker: Path, params: dict[str, int]) -> bool:
    if not marker.exists():
        return False
    try:
        saved = json.loads(marker.read_text())
    except ValueError:
        return False
    return bool(saved.get("params") == params)


def _build(
    console: Console, url: str, lake_dir: Path, params: dict[str, int], marker: Path
) -> None:
    from tallystick.demo.extras import invalid, undeclared
    from tallystick.demo.generator import generate as gen
    from tallystick.demo.replay import as_sent_now
    from tallystick.demo.send import send as post
    from tallystick.store.lake import Lake
    from tallystick.store.reader import count_events

    started = time.monotonic()
    events = as_sent_now(gen(users=params["users"], days=params["days"], seed=params["seed"]))
    end = dt.datetime.now(dt.UTC).date()
    gaps = [
        *undeclared(end=end, days=params["days"], seed=params["seed"]),
        *invalid(end=end, seed=params["seed"]),
    ]
    lake = Lake(lake_dir)
    before = count_events(lake)
    with progress_display(console) as progress:
        task = progress.add_task("sending events", total=None)
        result = post(events, url, progress=lambda n: progress.advance(task, n))
        # what the audit should find: an undeclared event and a client whose events fail
        extra = post(gaps, url, progress=lambda n: progress.advance(task, n))
        result = dataclasses.replace(
            result,
            sent=result.sent + extra.sent,
            accepted=result.accepted + extra.accepted,
            rejected=result.rejected + extra.rejected,
            requests=result.requests + extra.requests,
        )
        loading = progress.add_task("loading into the lake", total=result.accepted)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stored = count_events(lake) - before
            progress.update(loading, completed=min(stored, result.accepted))
            if stored >= result.accepted:
                break
            time.sleep(0.5)
    marker.write_text(
        json.dumps(
            {
                "params": params,
                "built": dt.datetime.now(dt.UTC).isoformat(),
                "events": result.accepted,
            }
        )
    )
    console.print(
        f"Sent {result.sent:,} events in {result.requests:,} requests "
        f"({result.accepted:,} accepted, {result.rejected:,} rejected) in "
        f"{time.monotonic() - started:.1f} s."
    )
    if extra.rejected:
        console.print(
            f"The {extra.rejected} refused events are on purpose, like the undeclared "
            "debug.layout_shift events: `tally audit` finds them."
        )


def _apply_configuration(console: Console, settings: Settings) -> None:
    """Apply the demo's streams and models (``tallystick.demo.streams``) to the control plane,
    unless it holds someone else's configuration."""
    from tallystick.control.store import ControlStore
    from tallystick.demo.streams import configuration, is_demo

    wanted = configuration(dt.datetime.now(dt.UTC).date())
    with ControlStore.for_settings(settings) as store:
        if not is_demo(store.configuration()):
            console.print(
                "The control plane holds streams or models of your own: "
                "keeping them (the demo's are not applied)."
            )
            return
        changes = store.apply(wanted, actor=DEMO_ACTOR)
    if changes:
        console.print(
            f"Applied the demo's control-plane configuration: {len(wanted.streams)} streams, "
            f"{len(wanted.models)} data models (tally config export shows them)."
        )


def _apply_experiment(console: Console, settings: Settings, params: dict[str, int]) -> None:
    """Apply the demo's flags ruleset and its ``signin-dialog`` experiment, started on the day
    the generated history starts serving variant b (``tallystick.demo.experiment``), unless the
    control plane holds flags or experiments someone else wrote."""
    from tallystick.control import experiments as control_experiments
    from tallystick.control import flags as control_flags
    from tallystick.control.store import ControlStore
    from tallystick.demo import experiment as demo_experiment
    from tallystick.demo.generator import DemoSpec

    spec = DemoSpec(end=dt.datetime.now(dt.UTC).date(), **params)
    start = demo_experiment.started_at(spec.start, spec.experiment_start)
    definition = demo_experiment.experiment_document()
    key = str(definition["key"])
    with ControlStore.for_settings(settings) as store:
        writers = {r.updated_by or "someone" for r in control_flags.list_rulesets(store)}
        writers |= {e.updated_by for e in control_experiments.list_experiments(store)}
        theirs = sorted(writers - {DEMO_ACTOR})
        if theirs:
            console.print(
                "The control plane holds feature flags or experiments of your own (written by "
                f"{', '.join(theirs)}): keeping them (the demo's {key} experiment is not "
                "applied; tally experiments list shows what is there)."
            )
            return
        control_flags.put_ruleset(store, demo_experiment.ruleset_document(), actor=DEMO_ACTOR)
        if any(e.key == key for e in control_experiments.list_experiments(store)):
            # an earlier demo build's, with another window: start it again from this one's
            control_experiments.delete_experiment(store, key, actor=DEMO_ACTOR)
        control_experiments.put_experiment(store, definition, actor=DEMO_ACTOR)
        control_experiments.start_experiment(store, key, actor=DEMO_ACTOR, at=start)
    console.print(
        f"Applied the demo's feature flags and started the {key} experiment on "
        f"{start:%Y-%m-%d} (tally experiments analyze {key} reads it)."
    )


def _time_metrics(console: Console, url: str, catalog_dir: Path) -> None:
    """Run every catalog metric once through the HTTP API, so their query times are recorded
    (for ``tally audit``) and their answers are kept for the dashboard."""
    from tallystick.metrics.catalog import read_catalog

    catalog, _ = read_catalog(catalog_dir)
    started = time.monotonic()

    def ran_ok(name: str) -> bool:
        address = f"{url}/v1/metrics/{urllib.parse.quote(name)}"
        try:
            with urllib.request.urlopen(address, timeout=120) as response:
                response.read()
        except OSError:  # HTTPError included
            return False
        return True

    # two at a time: what the server runs at once per worker
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(catalog.names(), pool.map(ran_ok, catalog.names()), strict=True))
    failed = [name for name, ok in done.items() if not ok]
    ran = len(catalog) - len(failed)
    console.print(
        f"Ran {ran} catalog metric{'s' if ran != 1 else ''} once in "
        f"{time.monotonic() - started:.1f} s (their query times feed tally audit)."
        + (f" Could not run: {', '.join(failed)}." if failed else "")
    )
