"""``tally privacy budget`` and ``tally privacy releases``: the privacy-budget ledger.

Differentially private releases (``tally metrics count|active --dp-epsilon E``, or
``dp_epsilon`` over HTTP) spend from their dataset's budget; these commands show what is spent
and left, and every release recorded. See docs/differential-privacy.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tallystick.cli.control import ControlUrlOption, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render

privacy_app = typer.Typer(
    name="privacy",
    help="The privacy budget of differentially private releases.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(privacy_app, name="privacy")


@privacy_app.command("budget")
def budget(
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Per dataset: the privacy budget, what releases spent of it and what is left."""
    from tallystick.config import from_env
    from tallystick.control.dp_ledger import Ledger
    from tallystick.privacy.dp import LAKE

    settings = from_env(data=data, control_url=control_url)
    with opened(data, control_url) as store:
        rows = [b.as_dict() for b in Ledger.of(store, settings).budgets((LAKE,))]
    render(rows, fmt, title="privacy budget (epsilon)")


@privacy_app.command("releases")
def releases(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", metavar="NAME", help="Only this dataset's releases."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", min=1, help="How many, newest first.")
    ] = 100,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """The differentially private releases recorded, newest first."""
    from tallystick.config import from_env
    from tallystick.control.dp_ledger import Ledger

    settings = from_env(data=data, control_url=control_url)
    with opened(data, control_url) as store:
        found = Ledger.of(store, settings).releases(dataset, limit)
    if not found and fmt is Format.table:
        typer.echo("no differentially private releases yet", err=True)
        return
    rows = [r.as_dict() for r in found]
    if fmt is not Format.json:
        rows = [{**r, "params": _params(r["params"])} for r in rows]
    render(rows, fmt, title="differentially private releases")


def _params(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v not in (None, [], False))
