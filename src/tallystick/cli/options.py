"""Options every command shares: ``--data`` and ``--format``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tallystick.cli.output import Format
from tallystick.config import DEFAULT_DATA_DIR

DataOption = Annotated[
    Path,
    typer.Option(
        "--data",
        envvar="TALLYSTICK_DATA",
        help="Data directory (spool, lake, control database).",
        show_default=True,
    ),
]
DEFAULT_DATA = Path(DEFAULT_DATA_DIR)

FormatOption = Annotated[
    Format, typer.Option("--format", help="Output format.", case_sensitive=False)
]
