"""``tally serve``: the collector on loopback (or any host), with the loader beside it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tallystick.cli.options import DEFAULT_DATA, DataOption
from tallystick.config import from_env


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    data: DataOption = DEFAULT_DATA,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Collector worker processes.")] = 1,
    max_event_bytes: Annotated[int | None, typer.Option(help="Largest event, bytes.")] = None,
    max_request_bytes: Annotated[
        int | None, typer.Option(help="Largest request body after decompression, bytes.")
    ] = None,
    max_events_per_request: Annotated[int | None, typer.Option(help="Events per request.")] = None,
    min_free_bytes: Annotated[
        int | None, typer.Option(help="Refuse events when less disk than this is free.")
    ] = None,
    flush_interval_seconds: Annotated[
        float | None, typer.Option(help="How often the loader moves the spool into the lake.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the collector (POST /v1/events), the HTTP API and dashboard (/), and the loader."""
    from tallystick.collect.edge import check_settings
    from tallystick.collect.server import serve as run

    settings = from_env(
        data=data,
        max_event_bytes=max_event_bytes,
        max_request_bytes=max_request_bytes,
        max_events_per_request=max_events_per_request,
        min_free_bytes=min_free_bytes,
        flush_interval_seconds=flush_interval_seconds,
    )
    check_settings(settings)  # trusted_proxies, rate limits, the GeoIP database: exit 2 if bad
    Console(stderr=True).print(
        f"[bold]tallystick[/] collector on [cyan]http://{host}:{port}[/] "
        f"({workers} worker{'s' if workers > 1 else ''}), data in [cyan]{settings.data}[/]"
    )
    run(settings, host=host, port=port, workers=workers, log_level=log_level)
