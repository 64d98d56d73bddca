"""``tally metrics ...``, ``tally funnel`` and ``tally retention``: analyses from the command line."""

from __future__ import annotations

import typer

metrics_app = typer.Typer(
    name="metrics",
    help="Core actions, active units, counts, ratios, percentiles, and the metric catalog.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(metrics_app, name="metrics")
