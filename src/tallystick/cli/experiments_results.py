"""``tally experiments analyze``: an experiment's readout (docs/experiments.md, Results)."""

from __future__ import annotations

import typer


def register_results(app: typer.Typer) -> None:
    """Add ``analyze`` to ``tally experiments`` (called from cli/experiments.py)."""
    return None
