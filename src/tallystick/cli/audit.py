"""``tally audit``: the audit and gap report (see docs/audit.md)."""

from __future__ import annotations

import datetime as dt
import enum
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tallystick.cli.catalog import ConfigDirOption
from tallystick.cli.control import ControlUrlOption
from tallystick.cli.metrics import _fail
from tallystick.cli.options import DEFAULT_DATA, DataOption


class AuditFormat(enum.StrEnum):
    md = "md"
    html = "html"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    fmt: Annotated[
        AuditFormat,
        typer.Option(
            "--format",
            help="md (Markdown), html (one page, no scripts) or json.",
            case_sensitive=False,
        ),
    ] = AuditFormat.md,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report to FILE instead of printing it.",
            show_default=False,
        ),
    ] = None,
    today: Annotated[
        str | None,
        typer.Option(
            "--today",
            metavar="DATE",
            help="Audit as of this UTC date (YYYY-MM-DD), for expiry and the last 30 days. "
            "Default: today.",
            show_default=False,
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    config_dir: ConfigDirOption = None,
    control_url: ControlUrlOption = None,
) -> None:
    """What is collected and measured, and the gaps: undefined or unowned metrics, events
    never seen, unread streams, undeclared events, expiring streams, long retention, slow
    metrics, unreliable sources and fields that look personal."""
    from tallystick.catalog.audit import AuditError, report
    from tallystick.catalog.audit_render import render
    from tallystick.config import ConfigError, from_env

    try:
        day = None if today is None else dt.date.fromisoformat(today.strip())
    except ValueError:
        raise _fail(f"--today {today!r} is not a date: write it as YYYY-MM-DD") from None
    try:
        settings = from_env(data=data, config_dir=config_dir, control_url=control_url)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    try:
        result = report(settings, today=day)
    except AuditError as exc:
        raise _fail(str(exc)) from None
    body = render(result, str(fmt))
    if output is None:
        typer.echo(body, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    busy = sum(1 for s in result.sections if s.count)
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"Wrote the audit to {output}: {result.total} items in {busy} of "
        f"{len(result.sections)} sections.",
        markup=False,
    )
