"""``tally block ...``: IP ranges the collector refuses (403), and how often it did.

A change is one transaction in the control plane with an audit-log row; running collectors
apply it within ``control_poll_seconds``, without a restart.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.control.blocks import Block, Hits

block_app = typer.Typer(
    name="block",
    help="Blocked IP ranges: the collector answers them with 403 and counts them.",
    no_args_is_help=True,
)
out = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(block_app)


def _when(at: dt.datetime | None) -> str | None:
    return None if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _hits(data: Path, blocks: list[Block]) -> dict[int, Hits]:
    from tallystick.control.blocks import hits
    from tallystick.store.lake import Lake

    lake_dir = from_env(data=data).lake_dir
    return hits(Lake(lake_dir), blocks) if lake_dir.exists() else {}


def _row(block: Block, hits: Hits | None) -> dict[str, Any]:
    return {
        "id": block.id,
        "network": block.network,
        "reason": block.reason,
        "status": "active" if block.active else "removed",
        "requests_refused": hits.count if hits else 0,
        "last_hit": _when(hits.last) if hits else None,
        "created": _when(block.created_at),
        "created_by": block.created_by,
        "removed": _when(block.removed_at),
        "removed_by": block.removed_by,
    }


@block_app.command("add")
def add(
    network: Annotated[
        str,
        typer.Argument(
            help="The range in CIDR notation (203.0.113.0/24, 2001:db8::/32) or one address."
        ),
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is blocked (kept with the block).")
    ],
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Block an IP range: its requests to POST /v1/events get 403 and are counted."""
    from tallystick.control.blocks import add_block

    with opened(data, control_url) as store:
        block = add_block(store, network, reason, actor())
    out.print(
        f"blocked {block.network} (block {block.id}); collectors apply it within seconds",
        highlight=False,
    )


@block_app.command("list")
def list_blocks(
    all_blocks: Annotated[bool, typer.Option("--all", help="Include removed blocks.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the blocks, the requests each refused and the time of the last one."""
    from tallystick.control.blocks import list_blocks as read

    with opened(data, control_url) as store:
        blocks = read(store, include_removed=True)
    counts = _hits(data, blocks)
    shown = [b for b in blocks if all_blocks or b.active]
    if fmt is Format.table and not shown:
        out.print("No IP ranges are blocked. Block one with `tally block add CIDR --reason TEXT`.")
        return
    rows = [_row(b, counts.get(b.id)) for b in shown]
    if fmt is Format.table and not all_blocks:
        for row in rows:
            del row["removed"], row["removed_by"]
    render(rows, fmt, title="Blocked IP ranges")


@block_app.command("remove")
def remove(
    block_id: Annotated[
        int, typer.Argument(metavar="ID", help="The block's id (tally block list).")
    ],
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Lift a block (it stays in the list with --all, with its counts)."""
    from tallystick.control.blocks import remove_block

    with opened(data, control_url) as store:
        block = remove_block(store, block_id, actor())
    out.print(
        f"removed block {block.id} ({block.network}); collectors apply it within seconds",
        highlight=False,
    )
