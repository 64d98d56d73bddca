"""The ``tally`` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tallystick.cli import audit as audit_cmd
from tallystick.cli import (
    backfill,
    catalog,
    catalog_cmd,
    config_cmd,
    demo,
    metrics,
    quality,
    schema_cmd,
    serve,
    status,
    streams,
)
from tallystick.cli import blocks as blocks_cmd
from tallystick.cli import experiments as experiments_cmd
from tallystick.cli import flags as flags_cmd
from tallystick.cli import keys as keys_cmd
from tallystick.cli import models as models_cmd
from tallystick.cli import privacy as privacy_cmd
from tallystick.cli import quality_alerts as quality_alerts
from tallystick.cli import quarantine as quarantine_cmd
from tallystick.cli import retention as retention_cmd
from tallystick.cli import users as users_cmd
from tallystick.config import ConfigError

app = typer.Typer(
    name="tally",
    help="Tallystick: self-hosted product metrics and experimentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from tallystick.version import __version__

        typer.echo(f"tally {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Tallystick: self-hosted product metrics and experimentation."""


schema_cmd.register(app)
serve.register(app)
backfill.register(app)
demo.register(app)
status.register(app)
metrics.register(app)
catalog.register(metrics.metrics_app)
catalog_cmd.register(app)
audit_cmd.register(app)
streams.register(app)
config_cmd.register(app)
models_cmd.register(app)
quality.register(app)
blocks_cmd.register(app)
quarantine_cmd.register(app)
retention_cmd.register(app)
users_cmd.register(app)
privacy_cmd.register(app)
keys_cmd.register(app)
flags_cmd.register(app)
experiments_cmd.register(app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise SystemExit(2) from None
