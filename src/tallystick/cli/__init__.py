"""The ``tally`` command line."""

from __future__ import annotations

import typer
from rich.console import Console

from tallystick.cli import backfill, demo, schema_cmd, serve, status
from tallystick.config import ConfigError

app = typer.Typer(
    name="tally",
    help="Tallystick: self-hosted product metrics and experimentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schema_cmd.register(app)
serve.register(app)
backfill.register(app)
demo.register(app)
status.register(app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
