"""``tally flags ...``: the feature-flags ruleset in the control plane (docs/flags.md).

``show`` prints it (every environment, or one as SDKs fetch it), ``apply`` replaces it from a
YAML or JSON file (validated, the changes listed first, audited), ``evaluate`` evaluates one flag
locally for the attributes given (from the stored ruleset or a file), as an SDK would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption
from tallystick.cli.output import print_document

flags_app = typer.Typer(
    name="flags",
    help="Feature flags: show, apply and evaluate the ruleset (docs/flags.md).",
    no_args_is_help=True,
)
out = Console()

EnvironmentOption = Annotated[
    str | None,
    typer.Option(
        "--environment",
        "-e",
        metavar="ENV",
        help="One environment (dev, prod, …).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(flags_app)


def _read(file: Path) -> Any:
    """A ruleset file's data, validated; a problem names the file, the line and the place."""
    from tallystick.control.config_file import ConfigFileError, line_of, read_yaml
    from tallystick.control.definitions import DefinitionError
    from tallystick.control.flags import validate

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text", 2)
    try:
        data, root = read_yaml(text, str(file))  # YAML reads JSON too
    except ConfigFileError as exc:
        fail(f"{exc} — nothing was changed", 2)
    try:
        validate(data)
    except DefinitionError as exc:
        fail(f"{file}:{line_of(root, exc.where)}: {exc} — nothing was changed", 2)
    return data


@flags_app.command("show")
def show(
    environment: EnvironmentOption = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="yaml|json", help="yaml (default) or json.")
    ] = "yaml",
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Print the ruleset: every environment, or with --environment the one SDKs fetch."""
    from tallystick.control.flags import get_environment, get_ruleset

    if fmt not in ("yaml", "json"):
        fail(f"unknown format {fmt!r}: use yaml or json", 2)
    with opened(data, control_url) as store:
        document = (
            get_ruleset(store)
            if environment is None
            else get_environment(store, environment).document
        )
    print_document(document, fmt)


@flags_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The whole ruleset, YAML or JSON.")],
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Replace the ruleset with FILE: validate it, list the changes, then apply them (audited;
    collectors and SDKs see them within seconds)."""
    from tallystick.control.flags import diff, get_ruleset, put_ruleset, validate

    wanted = _read(file)
    with opened(data, control_url) as store:
        changes = diff(get_ruleset(store), validate(wanted).to_dict())
        for line in changes:
            style = {"+": "green", "-": "red", "~": "yellow"}.get(line[:1], "")
            out.print(f"[{style}]{line}[/]", highlight=False)
        if not changes:
            out.print("no changes: the ruleset is as FILE says")
            return
        if not yes and not typer.confirm("Apply these changes?", default=False):
            fail("nothing was changed (answer yes, or pass --yes)")
        applied = put_ruleset(store, wanted, actor())
    envs = ", ".join(applied.changed + applied.removed) or "none"
    out.print(
        f"applied {len(changes)} change(s); environments written: {envs}; configuration "
        f"version {applied.version}",
        highlight=False,
    )


def _attribute(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        fail(f"--attr {text!r}: write NAME=VALUE (id=user-42, age=31, beta=true)", 2)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


@flags_app.command("evaluate")
def evaluate(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The flag's key.")],
    attr: Annotated[
        list[str] | None,
        typer.Option(
            "--attr",
            "-a",
            metavar="NAME=VALUE",
            help="A unit attribute (repeat it); a JSON value (31, true, [1,2]) is read as JSON.",
        ),
    ] = None,
    environment: Annotated[
        str, typer.Option("--environment", "-e", metavar="ENV", help="The environment.")
    ] = "prod",
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="FILE",
            help="Evaluate this ruleset file instead of the stored ruleset.",
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Evaluate one flag locally for a unit's attributes: its value, the reason and, for an
    experiment, the variation (JSON)."""
    from tallystick.control.flags import evaluation_dict, get_environment
    from tallystick.flags.errors import RulesetError
    from tallystick.flags.evaluate import parse_ruleset

    attributes = dict(_attribute(a) for a in attr or [])
    if file is not None:
        document = _read(file)
    else:
        with opened(data, control_url) as store:
            document = get_environment(store, environment).document
    try:
        compiled = parse_ruleset(document).compile(environment)
    except RulesetError as exc:
        fail(str(exc), 2)
    if key not in compiled:
        fail(f"no flag {key!r} in {environment}; the flags: {', '.join(compiled.keys()) or 'none'}")
    typer.echo(json.dumps({"flag": key, **evaluation_dict(compiled.evaluate(key, attributes))}))
