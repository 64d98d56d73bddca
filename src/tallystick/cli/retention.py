"""``tally retention enforce``: delete what the retention policy no longer keeps.

``tally retention`` itself is the cohort analysis (``cli.metrics``); this module adds the
subcommand to its group. See ``store.retention`` for what each setting keeps.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.metrics import retention_app
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.store.retention import RetentionReport

out = Console(highlight=False)


def register(app: typer.Typer) -> None:
    """The subcommand joins ``tally retention`` (registered by ``cli.metrics``)."""
    del app
    retention_app.command("enforce")(enforce)


def enforce(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted.")
    ] = False,
    fmt: FormatOption = Format.table,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete the lake's rows older than the retention policy keeps: events by their stream's
    retention_days (or the retention_days setting), failed events and declined counts by
    failed_retention_days, materialised results by results_retention_days. `tally serve` does
    it every retention_interval_seconds; this command needs the server stopped."""
    from tallystick.store.lake import Lake
    from tallystick.store.purge import PurgeRefused
    from tallystick.store.retention import audit, enforce_locked, plan, policy_for

    settings = from_env(data=data, control_url=control_url)
    with opened(data, control_url) as store:
        policy = policy_for(settings, store)
    if not settings.lake_dir.is_dir():
        fail(f"no lake at {settings.lake_dir}: nothing to enforce (check --data)", 2)
    lake = Lake(settings.lake_dir)
    if dry_run:
        _show(plan(lake, policy), fmt)
        return
    try:
        report = enforce_locked(lake, policy, settings.data, wait=1.0)
    except PurgeRefused as exc:
        interval = settings.retention_interval_seconds
        every = f"every {interval:g} s" if interval > 0 else "never (retention_interval_seconds 0)"
        fail(f"{exc}. The running server enforces retention itself: {every}")
    with opened(data, control_url) as store:
        audit(store, report, actor())
    _show(report, fmt)


def _show(report: RetentionReport, fmt: Format) -> None:
    summary = report.summary()
    if fmt is Format.json:
        body = {
            **summary,
            "files": [
                {"kind": f.kind, "path": f.path, "rows": f.rows, "removed": f.removed}
                for f in report.files
            ],
        }
        _json(body)
        return
    cutoffs = report.policy.as_dict()
    kinds = {
        "events": ("event_rows", cutoffs["events_before"]),
        "messages": ("ledger_rows", "with their events"),
        "failed": ("failed_rows", cutoffs["failed_before"]),
        "declined": ("declined_rows", cutoffs["failed_before"]),
        "metrics": ("result_rows", cutoffs["results_before"]),
    }
    rows = []
    for kind, (key, before) in kinds.items():
        files = [f for f in report.files if f.kind == kind]
        rows.append(
            {
                "kind": kind,
                "rows removed": summary[key],
                "files rewritten": sum(1 for f in files if f.removed < f.rows),
                "files deleted": sum(1 for f in files if f.removed == f.rows),
                "rows dated before": before or "kept forever",
            }
        )
    for stream, before in cutoffs["streams_before"].items():
        rows.append(
            {
                "kind": f"events of {stream}",
                "rows removed": "",
                "files rewritten": "",
                "files deleted": "",
                "rows dated before": before,
            }
        )
    verb = "would remove" if report.dry_run else "removed"
    title = f"Retention {'(dry run) ' if report.dry_run else ''}on {cutoffs['today']}: {verb}"
    render(rows, fmt, title=title)
    if not report.files and fmt is Format.table:
        out.print("Nothing to delete: every row is within its retention.")


def _json(body: object) -> None:
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
