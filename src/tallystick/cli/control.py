"""What every control-plane command shares: opening the store, the actor, error handling."""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from tallystick.config import from_env

ControlUrlOption = Annotated[
    str | None,
    typer.Option(
        "--control-url",
        envvar="TALLYSTICK_CONTROL_URL",
        metavar="URL",
        help="Control-plane database (SQLAlchemy URL). Default: SQLite at DATA/control.db.",
        show_default=False,
    ),
]

if TYPE_CHECKING:  # SQLAlchemy is imported only by the commands that use it
    from tallystick.control.store import ControlStore

err = Console(stderr=True)


def actor() -> str:
    """Who changes the configuration from this command line (recorded in the audit log)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def opened(data: Path, control_url: str | None) -> Iterator[ControlStore]:
    """The control store of ``data`` (or ``control_url``); the store's errors become clear
    messages and exit codes (2 for bad input, 1 for a conflict or a missing definition)."""
    from tallystick.control.definitions import DefinitionError
    from tallystick.control.store import Conflict, ControlStore, NotFound

    settings = from_env(data=data, control_url=control_url)
    try:
        store = ControlStore.for_settings(settings)
    except Exception as exc:
        fail(
            f"cannot open the control plane's database ({type(exc).__name__}: {exc}); check "
            "--control-url / TALLYSTICK_CONTROL_URL"
        )
    try:
        yield store
    except DefinitionError as exc:
        fail(str(exc), 2)
    except (NotFound, Conflict) as exc:
        fail(str(exc))
    finally:
        store.close()
