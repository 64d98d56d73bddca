"""``tally quarantine ...`` and ``tally purge``: data left out of every analysis, and deleting it.

A quarantine rule takes effect at the next analysis (every analysis reads the rules in force);
lifting it brings the data back, unless ``tally purge`` deleted it from the lake meanwhile. Every
change is one transaction in the control plane with an audit-log row (kind ``quarantine``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.control.quarantine import Rule
    from tallystick.store.purge import PurgeReport

quarantine_app = typer.Typer(
    name="quarantine",
    help="Data left out of every analysis: add, list and lift quarantine rules.",
    no_args_is_help=True,
)
out = Console(highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app)
    app.command("purge")(purge)


def _when(at: dt.datetime | None) -> str | None:
    return None if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _status(rule: Rule) -> str:
    if not rule.active:
        return "lifted (purged)" if rule.purged_at else "lifted"
    return "active (purged)" if rule.purged_at else "active"


def _lake_counts(data: Path, rules: list[Rule]) -> dict[int, int]:
    """Events each rule matches in the lake now (none when there is no lake yet)."""
    from tallystick.store.lake import Lake
    from tallystick.store.purge import matched_events

    lake_dir = from_env(data=data).lake_dir
    return matched_events(Lake(lake_dir), rules) if lake_dir.is_dir() and rules else {}


@quarantine_app.command("add")
def add(
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="ID", help="Quarantine this user.id.", show_default=False),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="ID", help="Quarantine this session.id.", show_default=False
        ),
    ] = None,
    ip: Annotated[
        str | None,
        typer.Option(
            "--ip",
            metavar="CIDR",
            help="Quarantine clients of this network (/24 or wider for IPv4, /48 for IPv6).",
            show_default=False,
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="FIELD=VALUE",
            help="Quarantine events whose field has this value (app.version=1.4.2, data.plan=x).",
            show_default=False,
        ),
    ] = None,
    date_from: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="DATE|TIME",
            help="Only events from then on (client time; a date means its midnight, UTC).",
            show_default=False,
        ),
    ] = None,
    date_to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="DATE|TIME",
            help="Only events before then (a date: up to the end of that day, UTC).",
            show_default=False,
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (kept with the rule; required).", show_default=False),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Leave out of every analysis the events of a user, a session, a network or with a field
    value (optionally only within --from/--to). Reversible with `tally quarantine lift`."""
    from tallystick.control.quarantine import add_rule

    given = {"user": user, "session": session, "ip": ip, "where": where}
    chosen = [(k, v) for k, v in given.items() if v is not None]
    if len(chosen) != 1:
        fail(
            "give exactly one of --user ID, --session ID, --ip CIDR or --where FIELD=VALUE"
            + (f" (got {', '.join('--' + k for k, _ in chosen)})" if chosen else ""),
            2,
        )
    if reason is None:
        fail("say why the data is quarantined: --reason TEXT (kept with the rule)", 2)
    kind, value = chosen[0]
    with opened(data, control_url) as store:
        rule = add_rule(
            store, kind, value, reason=reason, actor=actor(), time_from=date_from, time_to=date_to
        )
    counts = _lake_counts(data, [rule])
    events = counts.get(rule.id, 0)
    out.print(
        f"quarantined {rule.matches()} (rule {rule.id}): {events:,} event"
        f"{'s' if events != 1 else ''} in the lake now left out of every analysis; "
        f"`tally quarantine lift {rule.id}` brings them back"
    )


@quarantine_app.command("list")
def list_rules(
    all_rules: Annotated[bool, typer.Option("--all", help="Include lifted rules.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the quarantine rules, with the events each matches in the lake now."""
    from tallystick.control.quarantine import list_rules as read

    with opened(data, control_url) as store:
        rules = read(store, include_lifted=all_rules)
    if fmt is Format.table and not rules:
        out.print(
            "Nothing is quarantined. Add a rule with `tally quarantine add --user ID "
            "--reason TEXT` (or --session, --ip, --where)."
        )
        return
    counts = _lake_counts(data, [r for r in rules if r.active])
    rows: list[dict[str, Any]] = []
    for rule in rules:
        row = rule.as_dict()
        row.pop("active")
        row["status"] = _status(rule)
        row["events"] = counts.get(rule.id) if rule.active else None
        if fmt is Format.table:
            row = {
                "id": rule.id,
                "matches": rule.matches(),
                "events": row["events"],
                "status": row["status"],
                "reason": rule.reason,
                "created": _when(rule.created_at),
                "created_by": rule.created_by,
                "lifted": _when(rule.lifted_at),
                "purged": _when(rule.purged_at),
            }
            if not all_rules:
                del row["lifted"]
        rows.append(row)
    render(rows, fmt, title="Quarantine rules")


@quarantine_app.command("lift")
def lift(
    rule_id: Annotated[
        int, typer.Argument(metavar="ID", help="The rule's id (tally quarantine list).")
    ],
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Stop applying a rule: its events count again (except what `tally purge` deleted). The
    rule stays listed with --all."""
    from tallystick.control.quarantine import lift_rule

    with opened(data, control_url) as store:
        rule = lift_rule(store, rule_id, actor())
    note = (
        "; it was purged: the rows it matched then are gone for good"
        if rule.purged_at is not None
        else ""
    )
    out.print(f"lifted rule {rule.id} ({rule.matches()}): its events count again{note}")


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (for scripts).")
    ] = False,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete quarantined data from the lake's Parquet files for good: the events the active
    quarantine rules match (every copy), their delivery-ledger rows and failed events. Needs the
    loader stopped; asks for confirmation unless --yes."""
    from tallystick.control.quarantine import list_rules as read
    from tallystick.control.quarantine import mark_purged
    from tallystick.store.lake import Lake
    from tallystick.store.purge import PurgeRefused, plan
    from tallystick.store.purge import purge as run_purge

    settings = from_env(data=data, control_url=control_url)
    with opened(data, control_url) as store:
        rules = read(store)
    if not rules:
        out.print("Nothing is quarantined: nothing to purge.")
        return
    if not settings.lake_dir.is_dir():
        fail(f"no lake at {settings.lake_dir}: nothing to purge (check --data)", 2)
    lake = Lake(settings.lake_dir)
    planned = plan(lake, rules)
    if dry_run:
        _show(planned, fmt)
        return
    if not planned.files:
        if fmt is Format.table:
            out.print("Nothing to delete: no lake file holds rows the active rules match.")
        else:
            _show(planned, fmt)
        return
    if not yes:
        if not sys.stdin.isatty():
            _show(planned, fmt)
            fail("purging deletes data for good: run it again with --yes to confirm", 2)
        _show(planned, Format.table)
        if not typer.confirm("Delete these rows from the lake for good?", default=False):
            out.print("Nothing deleted.")
            raise typer.Exit(1)
    try:
        done = run_purge(lake, rules, settings.data)
    except PurgeRefused as exc:
        fail(str(exc))
    with opened(data, control_url) as store:
        mark_purged(store, rules, actor(), done.summary())
    _show(done, fmt)


def _show(report: PurgeReport, fmt: Format) -> None:
    rows = [
        {
            "rule": rule.id,
            "matches": rule.matches(),
            "events": report.events_by_rule.get(rule.id, 0),
            "reason": rule.reason,
        }
        for rule in report.rules
    ]
    summary = report.summary()
    verb = "would delete" if report.dry_run else "deleted"
    title = (
        f"Purge {'(dry run) ' if report.dry_run else ''}— {verb} {summary['events']:,} events: "
        f"{summary['event_rows']:,} event rows, {summary['ledger_rows']:,} ledger rows, "
        f"{summary['failed_rows']:,} failed events"
    )
    if fmt is Format.json:
        import json

        body = {
            "dry_run": report.dry_run,
            **summary,
            "rules": rows,
            "files": [
                {"kind": f.kind, "path": f.path, "rows": f.rows, "removed": f.removed}
                for f in report.files
            ],
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    render(rows, fmt, title=title)
    if fmt is Format.table:
        files = len(report.files)
        if report.dry_run:
            out.print(
                f"{files} file{'s' if files != 1 else ''} would be rewritten; "
                "run `tally purge --yes` to delete."
            )
        else:
            out.print(
                f"{files} file{'s' if files != 1 else ''} rewritten. Rebuild table models "
                "(`tally models build`) that copied these events."
            )
