"""``tally users delete ID`` and ``tally users deletions``: deleting a user, and the requests.

``delete`` records a request (only keyed hashes of the id: see ``control.deletions``). When no
server runs, the command carries it out itself, holding the loader's lock; when one runs, its
loader process does it within seconds and the command waits for it (``--no-wait``: it returns
at once). See docs/retention.md.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.config import Settings
    from tallystick.control.deletions import DeletionRequest

users_app = typer.Typer(
    name="users",
    help="Delete a user's events everywhere and suppress later ones; list the requests.",
    no_args_is_help=True,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
POLL_SECONDS = 0.2


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


@users_app.command("delete")
def delete(
    user_id: Annotated[
        str, typer.Argument(metavar="ID", help="The user.id the user's events carry, as sent.")
    ],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="When a server runs: wait until its loader has deleted the user (default), "
            "or return once the request is recorded.",
        ),
    ] = True,
    timeout: Annotated[
        float,
        typer.Option("--timeout", metavar="SECONDS", help="How long --wait waits."),
    ] = 120.0,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete a user: their events (under every form the id is stored, pseudonyms included)
    leave the lake, the delivery ledger, the failed events and the spool; materialised metrics
    and table models are refreshed; their later events are not stored. The id itself is never
    written anywhere."""
    from tallystick.control.deletions import PENDING, get_deletion, request_deletion
    from tallystick.store.deletion import run_here
    from tallystick.store.purge import PurgeRefused

    settings = from_env(data=data, control_url=control_url)
    _warn_without_pseudonym_keys(settings)
    with opened(data, control_url) as store:
        try:
            request = request_deletion(store, settings, user_id, actor())
        except ValueError as exc:
            fail(str(exc), 2)
        try:
            run_here(settings, store, wait=0)
        except PurgeRefused:
            if not wait:
                _show(request, fmt, "recorded: the server's loader deletes the user in seconds")
                return
            request = _wait(store, request.id, timeout)
        else:
            request = get_deletion(store, request.id)
        if request.status == PENDING:  # pragma: no cover - run_here ran every pending request
            fail(f"deletion request {request.id} is still pending")
    _show(request, fmt)
    if request.status != "done":
        fail(f"deletion request {request.id} failed: {request.message}")


def _warn_without_pseudonym_keys(settings: Settings) -> None:
    """The request can only name the pseudonyms this process can compute: say so when the lake
    holds pseudonymous ids and no pseudonym key is set here."""
    if settings.pseudonym_key or settings.pseudonym_previous_keys:
        return
    if not settings.lake_dir.is_dir():
        return
    from tallystick.privacy.pseudonym import PREFIX
    from tallystick.store.lake import Lake
    from tallystick.store.reader import connect

    con = connect(Lake(settings.lake_dir))
    try:
        row = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM raw_events WHERE starts_with(user_id, ?) LIMIT 1)",
            [PREFIX],
        ).fetchone()
    finally:
        con.close()
    if row and row[0]:
        err.print(
            "[yellow]warning:[/] the lake holds pseudonymous user ids, but no pseudonym key is "
            "set for this command: only events stored under the id as given can be found. Set "
            "TALLYSTICK_PSEUDONYM_KEY (and TALLYSTICK_PSEUDONYM_PREVIOUS_KEYS) as the server has "
            "them, or ask the server: POST /v1/admin/users/delete",
            highlight=False,
        )


def _wait(store: Any, request_id: int, timeout: float) -> DeletionRequest:
    from tallystick.control.deletions import PENDING, get_deletion

    until = time.monotonic() + timeout
    with err.status(
        f"the server's loader is deleting the user (request {request_id})…", spinner="dots"
    ):
        while True:
            request = get_deletion(store, request_id)
            if request.status != PENDING:
                return request
            if time.monotonic() >= until:
                fail(
                    f"deletion request {request_id} is still pending after {timeout:g} s: the "
                    "server's loader carries it out between batches (is `tally serve` running "
                    "and its loader alive?). The user's new events are suppressed already; "
                    "`tally users deletions` shows when it is done"
                )
            time.sleep(POLL_SECONDS)


def _row(request: DeletionRequest) -> dict[str, Any]:
    report = request.outcome or {}
    return {
        "request": request.id,
        "status": request.status,
        "requested_at": request.requested_at,
        "requested_by": request.requested_by,
        "done_at": request.done_at,
        "event_rows": report.get("event_rows"),
        "ledger_rows": report.get("ledger_rows"),
        "failed_rows": report.get("failed_rows"),
        "subject_hash": request.subject_hash[:16] + "…",
        "message": request.message,
    }


def _show(request: DeletionRequest, fmt: Format, note: str | None = None) -> None:
    if fmt is Format.json:
        _json(request.as_dict())
        return
    row = _row(request)
    rows = [{"field": k, "value": "" if v is None else str(v)} for k, v in row.items()]
    render(rows, fmt, title=f"Deletion request {request.id}: {note or request.status}")


@users_app.command("deletions")
def deletions(
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="pending|done|failed", help="Only requests with this status."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="At most N requests, newest first.")
    ] = 100,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """The deletion requests, newest first: who asked, when, the status and what was removed
    (never the user id: a keyed hash of it)."""
    from tallystick.control.deletions import STATUSES, list_deletions

    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}: use {', '.join(STATUSES)}", 2)
    with opened(data, control_url) as store:
        found = list_deletions(store, status=status, limit=limit)
    if fmt is Format.json:
        _json([r.as_dict() for r in found])
        return
    render([_row(r) for r in found], fmt, title="Deletion requests")
    if not found and fmt is Format.table:
        out.print("No deletion requests.")


def _json(body: object) -> None:
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
