"""``tally quality ...``: can the data be trusted? Loss, duplicates, clock skew and alerts."""

from __future__ import annotations

import typer

quality_app = typer.Typer(
    name="quality",
    help="Data quality: loss and duplicates, clock skew, alert rules.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app)
