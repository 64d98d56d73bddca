"""``tally status`` (what is in the lake and the spool) and ``tally failed`` (rejected events)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("failed")(failed)


def status(data: DataOption = DEFAULT_DATA, fmt: FormatOption = Format.table) -> None:
    """Show events and failed events in the lake, per day, and the spool backlog."""
    from tallystick.store.health import spool_counts
    from tallystick.store.lake import EVENTS, FAILED, Lake
    from tallystick.store.reader import with_retry

    settings = from_env(data=data)
    lake = Lake(settings.lake_dir)

    def work(con: Any) -> list[dict[str, Any]]:
        rows = con.execute(
            "SELECT CAST(client_ts AS DATE) AS day, count(*) AS events, "
            "count(DISTINCT nullif(user_id, '')) AS users, max(received_ts) AS latest_received "
            "FROM events GROUP BY ALL ORDER BY day"
        ).fetchall()
        fails = dict(
            con.execute(
                "SELECT CAST(received_ts AS DATE), count(*) FROM failed_events GROUP BY ALL"
            ).fetchall()
        )
        out = [
            {
                "day": r[0],
                "events": r[1],
                "users": r[2],
                "failed": fails.pop(r[0], 0),
                "latest_received": r[3],
            }
            for r in rows
        ]
        out += [
            {"day": d, "events": 0, "users": 0, "failed": n, "latest_received": None}
            for d, n in sorted(fails.items())
        ]
        return out

    rows = with_retry(lake, work)
    backlog, quarantined = spool_counts(settings.spool_dir)
    title = (
        f"{settings.data}: {len(lake.files(EVENTS))} event files, "
        f"{len(lake.files(FAILED))} failed files, {backlog} spool segments waiting"
    )
    if quarantined:
        title += f", {quarantined} quarantined (see docs/storage.md)"
    render(
        rows,
        fmt,
        title=title,
        columns=["day", "events", "users", "failed", "latest_received"],
    )


def failed(
    data: DataOption = DEFAULT_DATA,
    fmt: FormatOption = Format.table,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
    code: Annotated[str | None, typer.Option(help="Only this error code.")] = None,
) -> None:
    """List rejected events, newest first, with the reason each was refused."""
    from tallystick.store.lake import Lake
    from tallystick.store.reader import with_retry

    lake = Lake(from_env(data=data).lake_dir)

    def work(con: Any) -> list[dict[str, Any]]:
        where = "WHERE error_code = ?" if code else ""
        params = [code] if code else []
        cur = con.execute(
            f'SELECT received_ts, source, error_code, error_message, "index", event_id, '
            f"origin, raw FROM failed_events {where} ORDER BY received_ts DESC LIMIT {int(limit)}",
            params,
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    render(
        with_retry(lake, work),
        fmt,
        title="failed events",
        columns=[
            "received_ts",
            "source",
            "error_code",
            "error_message",
            "index",
            "event_id",
            "origin",
            "raw",
        ],
    )
