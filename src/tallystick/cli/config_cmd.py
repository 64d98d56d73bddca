"""``tally config export|plan|apply``: the control plane as one YAML file to review in git.

``apply`` makes the control plane equal the file (what the file does not define is deleted),
prints the plan first and changes anything only on confirmation or ``--yes``; a file that cannot
be used is refused with its line and reason, and nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption

if TYPE_CHECKING:
    from tallystick.control.definitions import Configuration
    from tallystick.control.plan import Plan

config_app = typer.Typer(
    name="config",
    help="Export the control plane's configuration to YAML, or apply a YAML file.",
    no_args_is_help=True,
)
out = Console()
FileArgument = Annotated[
    Path, typer.Argument(help="The configuration file (YAML, as `tally config export` writes).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(config_app)


@config_app.command("export")
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Print the whole configuration (streams, models) as YAML."""
    from tallystick.control.config_file import dump

    with opened(data, control_url) as store:
        text = dump(store.configuration())
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        Console(stderr=True).print(f"wrote {output}")


def _read(file: Path) -> Configuration:
    from tallystick.control.config_file import ConfigFileError, load

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text", 2)
    try:
        return load(text, str(file))
    except ConfigFileError as exc:
        fail(f"{exc} — nothing was changed", 2)


def _print_plan(plan: Plan) -> None:
    for line in plan.lines():
        style = {"+": "green", "-": "red", "~": "yellow"}.get(line[:1], "")
        out.print(f"[{style}]{line}[/]" if style else line, highlight=False)
    out.print(f"[bold]Plan:[/] {plan.summary()}")


@config_app.command("plan")
def plan_cmd(
    file: FileArgument,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Show what applying FILE would change, and change nothing."""
    wanted = _read(file)
    with opened(data, control_url) as store:
        _print_plan(store.plan(wanted))


@config_app.command("apply")
def apply(
    file: FileArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Make the control plane equal FILE: print the plan, then apply it in one transaction."""
    wanted = _read(file)
    with opened(data, control_url) as store:
        plan = store.plan(wanted)
        _print_plan(plan)
        if not plan:
            return
        if not yes and not typer.confirm("Apply these changes?", default=False):
            fail("nothing was changed (answer yes, or pass --yes)")
        applied = store.apply(wanted, actor())
        out.print(f"applied: {applied.summary()}; configuration version {store.version()}")
