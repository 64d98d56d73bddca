"""``tally keys create|list|revoke``: the API keys (see ``control.keys`` and docs/access.md).

A key is printed once, when it is created, on standard output alone (so that a script can
capture it); everything else goes to standard error. The control plane keeps only its hash.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render

keys_app = typer.Typer(
    name="keys",
    help="API keys: write keys (send events), read keys (queries, dashboard), admin keys.",
    no_args_is_help=True,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app)


def _when(at: dt.datetime | None) -> str | None:
    return None if at is None else f"{at:%Y-%m-%d %H:%M} UTC"


@keys_app.command("create")
def create(
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            metavar="write|read|admin",
            help="write: sends events only; read: queries and the dashboard; admin: also "
            "changes the configuration.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Who or what uses the key (shown in the list and the audit).",
            show_default=False,
        ),
    ],
    app: Annotated[
        str | None,
        typer.Option(
            "--app", help="A write key's app (required for write keys).", show_default=False
        ),
    ] = None,
    origins: Annotated[
        list[str] | None,
        typer.Option(
            "--origin",
            metavar="URL",
            help="A browser origin a write key may send events from (scheme://host[:port]); "
            "repeat for more. Other origins are refused.",
            show_default=False,
        ),
    ] = None,
    streams: Annotated[
        list[str] | None,
        typer.Option(
            "--stream",
            metavar="NAME",
            help="A private stream a read key may read ('*': all of them); repeat for more.",
            show_default=False,
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Create a key and print it once: it is stored hashed and cannot be shown again."""
    from tallystick.control.keys import create_key

    with opened(data, control_url) as store:
        key, secret = create_key(
            store,
            kind,
            name,
            actor=actor(),
            app=app,
            origins=origins or (),
            streams=streams or (),
        )
    print(secret)
    err.print(
        f"created {key.kind} key {key.id} ({key.name}, {key.prefix}…). This is the only time "
        "the key is shown: keep it somewhere safe. `tally keys revoke "
        f"{key.id}` ends it at once."
    )


@keys_app.command("list")
def list_keys(
    all_keys: Annotated[
        bool, typer.Option("--all/--active", help="Include revoked keys (default: yes).")
    ] = True,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the keys: id, kind, name, prefix, app, origins, streams, when made, last used and
    revoked (never the keys themselves)."""
    from tallystick.control.keys import list_keys as read

    with opened(data, control_url) as store:
        keys = read(store, include_revoked=all_keys)
    if fmt is Format.table and not keys:
        out.print(
            "No keys: every kind of request is open (loopback only). Create one with "
            "`tally keys create --kind read --name NAME`."
            if all_keys
            else "No active keys (`tally keys list` shows the revoked ones too)."
        )
        return
    rows: list[dict[str, Any]] = []
    for key in keys:
        if fmt is Format.table:
            rows.append(
                {
                    "id": key.id,
                    "kind": key.kind,
                    "name": key.name,
                    "prefix": key.prefix + "…",
                    "app": key.app,
                    "origins": ", ".join(key.origins) or None,
                    "streams": ", ".join(key.streams) or None,
                    "created": _when(key.created_at),
                    "last_used": _when(key.last_used_at),
                    "status": "active" if key.active else f"revoked {_when(key.revoked_at)}",
                }
            )
        else:
            rows.append(key.as_dict())
    render(rows, fmt, title="API keys")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID", help="The key's id (tally keys list).")],
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Revoke a key: the very next request with it fails, on every server process, and its
    dashboard sessions end."""
    from tallystick.control.keys import revoke_key

    with opened(data, control_url) as store:
        key = revoke_key(store, key_id, actor())
    out.print(f"revoked {key.kind} key {key.id} ({key.name}, {key.prefix}…)")
