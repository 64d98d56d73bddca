"""The ``tally`` command line."""

from __future__ import annotations

import typer

from tallystick.cli import backfill, demo, schema_cmd, serve, status

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
    app()
