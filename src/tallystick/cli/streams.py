"""``tally streams ...``: which events are collected, sampled, kept and for how long.

Every change is one transaction in the control plane with an audit-log row; running collectors
pick it up within seconds (``control_poll_seconds``), without a restart.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.config import from_env

if TYPE_CHECKING:
    from tallystick.control.definitions import Stream
    from tallystick.control.plan import Plan

streams_app = typer.Typer(
    name="streams",
    help="Streams: which events are collected, sampled, kept and for how long.",
    no_args_is_help=True,
)
out = Console()

NameArgument = Annotated[str, typer.Argument(help="The stream's name.")]
EventsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--events",
        help="Event names or prefixes routed to the stream (signin.open, signin.*, *); "
        "repeat or separate with commas.",
    ),
]
DescriptionOption = Annotated[str | None, typer.Option("--description", help="What it is for.")]
OwnerOption = Annotated[str | None, typer.Option("--owner", help="Who answers for it.")]
SampleUnitOption = Annotated[
    str | None, typer.Option("--sample-unit", help="Sample by session, user or pageview.")
]
SampleRateOption = Annotated[
    float | None, typer.Option("--sample-rate", help="Share of units kept, 0 to 1.")
]
StartsOption = Annotated[
    str | None, typer.Option("--starts", help="Collect from this date or time (UTC).")
]
ExpiresOption = Annotated[
    str | None,
    typer.Option("--expires", help="Stop collecting at this date or time (UTC) until renewed."),
]
KeepOption = Annotated[
    list[str] | None,
    typer.Option(
        "--keep",
        help="Contextual attributes stored (app, user, session, page, page.url, ...); "
        "repeat or separate with commas. Default: all.",
    ),
]
CurateOption = Annotated[
    list[str] | None,
    typer.Option(
        "--curate",
        help="Drop events matching 'FIELD OP VALUE', e.g. 'app.environment equals test' or "
        "'data.plan in [free, trial]'; repeatable.",
    ),
]
RetentionOption = Annotated[
    int | None, typer.Option("--retention-days", min=1, help="Keep events this many days.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(streams_app)


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def parse_curate(text: str) -> dict[str, Any]:
    """``'FIELD OP VALUE'`` as a rule's plain data; VALUE is read as YAML (numbers, lists)."""
    parts = text.strip().split(None, 2)
    if len(parts) != 3:
        fail(f"--curate {text!r}: write FIELD OP VALUE, e.g. 'app.environment equals test'", 2)
    field, op, raw = parts
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return {"field": field, "op": op, "value": value}


def _changes(
    *,
    events: list[str] | None,
    description: str | None,
    owner: str | None,
    sample_unit: str | None,
    sample_rate: float | None,
    starts: str | None,
    expires: str | None,
    keep: list[str] | None,
    curate: list[str] | None,
    retention_days: int | None,
    current: Stream | None = None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if events is not None:
        changes["events"] = _split(events)
    if description is not None:
        changes["description"] = description
    if owner is not None:
        changes["owner"] = owner
    if sample_unit is not None or sample_rate is not None:
        was = current.sample if current is not None else None
        changes["sample"] = {
            "unit": sample_unit or (was.unit if was else "session"),
            "rate": sample_rate if sample_rate is not None else (was.rate if was else None),
        }
        if changes["sample"]["rate"] is None:
            fail("--sample-unit needs --sample-rate (a number from 0 to 1)", 2)
    if starts is not None:
        changes["starts"] = starts
    if expires is not None:
        changes["expires"] = expires
    if keep is not None:
        changes["keep"] = _split(keep)
    if curate is not None:
        changes["curation"] = [parse_curate(c) for c in curate]
    if retention_days is not None:
        changes["retention_days"] = retention_days
    return changes


def _report(plan: Plan, what: str) -> None:
    if not plan:
        out.print(f"{what}: nothing to change")
        return
    for line in plan.lines():
        out.print(line, highlight=False)


DECLINED_DAYS = 7


def _declined(data: Path, now: dt.datetime) -> dict[str, dict[str, int]]:
    """What each stream declined in the last ``DECLINED_DAYS`` days (from the lake)."""
    from tallystick.store.health import declined
    from tallystick.store.lake import Lake

    lake_dir = from_env(data=data).lake_dir
    since = now.date() - dt.timedelta(days=DECLINED_DAYS - 1)
    return declined(Lake(lake_dir), since) if lake_dir.exists() else {}


def _declined_text(reasons: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(reasons.items())) or "none"


def _row(stream: Stream, now: dt.datetime, declined: dict[str, int]) -> dict[str, Any]:
    sample = stream.sample
    return {
        "name": stream.name,
        "status": stream.status(now),
        "events": ", ".join(stream.events) or "(none)",
        "sample": f"{sample.rate:g} by {sample.unit}" if sample else "all",
        "expires": stream.expires.date().isoformat() if stream.expires else "never",
        "retention_days": stream.retention_days if stream.retention_days else "forever",
        "owner": stream.owner,
        f"declined_{DECLINED_DAYS}_days": _declined_text(declined),
        "description": stream.description,
    }


@streams_app.command("list")
def list_streams(
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List the streams with their status (collecting, disabled, expired, scheduled) and the
    events each declined in the last 7 days."""
    now = dt.datetime.now(dt.UTC)
    with opened(data, control_url) as store:
        config = store.configuration()
    counts = _declined(data, now) if config.streams else {}
    rows = [
        _row(s, now, counts.get(s.name, {})) for s in sorted(config.streams, key=lambda s: s.name)
    ]
    if fmt is Format.table and not rows:
        out.print(
            "No streams yet: every event goes to the "
            f"'{config.unrouted_stream}' stream. Create one with `tally streams create`."
        )
        return
    render(rows, fmt, title=f"Streams (undeclared events go to '{config.unrouted_stream}')")


@streams_app.command("show")
def show(
    name: NameArgument,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Show a stream's definition, status and recent changes."""
    now = dt.datetime.now(dt.UTC)
    with opened(data, control_url) as store:
        stream = store.stream(name)
        log = store.audit_log(kind="stream", name=name, limit=10)
    out.print(f"[bold]{name}[/]: {stream.status(now)}")
    out.print(
        f"declined in the last {DECLINED_DAYS} days: "
        f"{_declined_text(_declined(data, now).get(name, {}))}",
        highlight=False,
    )
    out.print(yaml.safe_dump(stream.as_dict(), sort_keys=False).rstrip(), highlight=False)
    if log:
        out.print("\n[bold]Recent changes[/]")
        for entry in log:
            changed = ", ".join(entry.as_dict()["changed"]) or "-"
            out.print(
                f"{entry.at:%Y-%m-%d %H:%M} UTC  {entry.actor}  {entry.action}  ({changed})",
                highlight=False,
            )


@streams_app.command("create")
def create(
    name: NameArgument,
    events: EventsOption = None,
    description: DescriptionOption = None,
    owner: OwnerOption = None,
    sample_unit: SampleUnitOption = None,
    sample_rate: SampleRateOption = None,
    starts: StartsOption = None,
    expires: ExpiresOption = None,
    keep: KeepOption = None,
    curate: CurateOption = None,
    retention_days: RetentionOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Create a stream."""
    from tallystick.control.definitions import parse_stream

    raw = {"name": name, "enabled": not disabled} | _changes(
        events=events,
        description=description,
        owner=owner,
        sample_unit=sample_unit,
        sample_rate=sample_rate,
        starts=starts,
        expires=expires,
        keep=keep,
        curate=curate,
        retention_days=retention_days,
    )
    with opened(data, control_url) as store:
        _report(store.put_stream(parse_stream(raw), actor(), create_only=True), name)


@streams_app.command("update")
def update(
    name: NameArgument,
    events: EventsOption = None,
    description: DescriptionOption = None,
    owner: OwnerOption = None,
    sample_unit: SampleUnitOption = None,
    sample_rate: SampleRateOption = None,
    starts: StartsOption = None,
    expires: ExpiresOption = None,
    keep: KeepOption = None,
    curate: CurateOption = None,
    retention_days: RetentionOption = None,
    no_sample: Annotated[bool, typer.Option("--no-sample", help="Keep every unit.")] = False,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    keep_all: Annotated[
        bool, typer.Option("--keep-all", help="Store every contextual attribute.")
    ] = False,
    no_curation: Annotated[
        bool, typer.Option("--no-curation", help="Remove every curation rule.")
    ] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Change some settings of a stream; the others stay as they are."""
    with opened(data, control_url) as store:
        current = store.stream(name)
        changes = _changes(
            events=events,
            description=description,
            owner=owner,
            sample_unit=sample_unit,
            sample_rate=sample_rate,
            starts=starts,
            expires=expires,
            keep=keep,
            curate=curate,
            retention_days=retention_days,
            current=current,
        )
        for flag, key in (
            (no_sample, "sample"),
            (no_expiry, "expires"),
            (keep_all, "keep"),
            (no_curation, "curation"),
        ):
            if flag:
                if key in changes:
                    fail(f"--{key} and the option that removes it cannot be given together", 2)
                changes[key] = None
        if not changes:
            fail("nothing to change: give at least one option (see --help)", 2)
        _report(store.update_stream(name, actor(), "update", **changes), name)


@streams_app.command("enable")
def enable(
    name: NameArgument, data: DataOption = DEFAULT_DATA, control_url: ControlUrlOption = None
) -> None:
    """Switch a stream on."""
    with opened(data, control_url) as store:
        _report(store.update_stream(name, actor(), "enable", enabled=True), name)


@streams_app.command("disable")
def disable(
    name: NameArgument, data: DataOption = DEFAULT_DATA, control_url: ControlUrlOption = None
) -> None:
    """Switch a stream off: its events are no longer stored (other streams are unaffected)."""
    with opened(data, control_url) as store:
        _report(store.update_stream(name, actor(), "disable", enabled=False), name)


def renewed_until(current: Stream, until: str | None, days: int | None, now: dt.datetime) -> str:
    """The new expiry of a renewed stream: ``until``, or ``days`` from now (default: as long as
    its last term, or 90 days)."""
    from tallystick.control.definitions import format_time, parse_time

    if until is not None and days is not None:
        fail("give --until or --days, not both", 2)
    if until is not None:
        chosen = parse_time(until, "--until")
        assert chosen is not None
        if chosen <= now:
            fail(f"--until {until} is not in the future", 2)
        return str(format_time(chosen))
    if days is None:
        days = 90
        if current.starts is not None and current.expires is not None:
            days = max(1, (current.expires - current.starts).days)
    return str(format_time(now.replace(microsecond=0) + dt.timedelta(days=days)))


@streams_app.command("renew")
def renew(
    name: NameArgument,
    until: Annotated[
        str | None, typer.Option("--until", help="New expiry date or time (UTC).")
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days", min=1, help="Expire this many days from now (default: its last term or 90)."
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Renew a stream: move its expiry into the future, so it collects again if it had expired."""
    from tallystick.control.definitions import DefinitionError

    now = dt.datetime.now(dt.UTC)
    with opened(data, control_url) as store:
        current = store.stream(name)
        try:
            expires = renewed_until(current, until, days, now)
        except DefinitionError as exc:
            fail(str(exc), 2)
        _report(store.update_stream(name, actor(), "renew", expires=expires), name)


@streams_app.command("delete")
def delete(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete a stream's definition (its stored events stay in the lake)."""
    with opened(data, control_url) as store:
        store.stream(name)
        if not yes and not typer.confirm(f"Delete stream {name}?", default=False):
            fail("not deleted")
        _report(store.delete_stream(name, actor()), name)


@streams_app.command("log")
def log(
    name: Annotated[str | None, typer.Argument(help="Only this stream or model.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many changes.")] = 50,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The audit log: every configuration change, newest first, with who made it and what
    changed."""
    with opened(data, control_url) as store:
        entries = store.audit_log(name=name, limit=limit)
    if fmt is Format.json:
        render([e.as_dict() for e in entries], fmt)
        return
    rows = [
        {
            "at": f"{e.at:%Y-%m-%d %H:%M:%S}",
            "actor": e.actor,
            "action": e.action,
            "kind": e.kind,
            "name": e.name,
            "changed": ", ".join(e.as_dict()["changed"]),
            "version": e.version,
        }
        for e in entries
    ]
    render(rows, fmt, title="Configuration changes (UTC)")
