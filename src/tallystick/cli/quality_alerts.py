"""``tally quality check`` (evaluate the alert rules; cron-friendly exit code) and ``tally
quality alerts`` (their history)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console

from tallystick.cli.control import ControlUrlOption, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption, FormatOption
from tallystick.cli.output import Format, render
from tallystick.cli.quality import quality_app
from tallystick.config import Settings, from_env

if TYPE_CHECKING:
    from tallystick.quality.alerts import AlertRun

err = Console(stderr=True)
COLUMNS: Final = ("at", "stream", "rule", "state", "value", "expected", "message", "delivery")
_AGO: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*([hd])$")


def _time(raw: str, option: str) -> dt.datetime:
    """A time given on the command line: ISO 8601 (a date means its midnight, UTC), or for
    ``--since`` a span back from now (``24h``, ``7d``)."""
    from tallystick.control.definitions import DefinitionError, parse_time

    ago = _AGO.match(raw.strip())
    if ago and option == "--since":
        hours = float(ago[1]) * (24 if ago[2] == "d" else 1)
        return dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    try:
        value = parse_time(raw, option)
    except DefinitionError as exc:
        fail(str(exc), 2)
    assert value is not None
    return value


def _show(value: float | None, rule: str, *, expected: bool = False) -> str | None:
    if value is None:
        return None
    if rule == "experiment_srm":  # a p-value, and the threshold
        return f"p {value:.2g}"
    if rule == "experiment_guardrail":  # the relative effect
        return f"{value * 100:+.3g} %"
    if rule == "volume":
        return f"{value:,.1f}" if expected and not value.is_integer() else f"{value:,.0f}"
    return f"{value * 100:.3g} %"


def _delivery(run: AlertRun) -> str:
    if run.notice is None or run.delivery is None:
        return ""
    parts = [run.notice]
    webhook = run.delivery.get("webhook")
    if isinstance(webhook, dict):
        if webhook.get("status") == "sent":
            parts.append("webhook sent")
        else:
            parts.append(f"webhook failed ({webhook.get('error')})")
    elif not run.delivery.get("log"):
        parts.append("not sent (--no-deliver)")
    return ", ".join(parts)


def _rows(runs: Sequence[AlertRun]) -> list[dict[str, Any]]:
    return [
        {
            "at": r.as_dict()["at"],
            "stream": r.stream,
            "rule": r.label,
            "state": "FIRING" if r.fired else "quiet",
            "value": _show(r.value, r.rule),
            "expected": _show(r.expected, r.rule, expected=True),
            "message": r.message,
            "delivery": _delivery(r),
        }
        for r in runs
    ]


def _print(runs: Sequence[AlertRun], fmt: Format, title: str) -> None:
    if fmt is Format.json:
        import json
        import sys

        sys.stdout.write(json.dumps([r.as_dict() for r in runs], ensure_ascii=False, indent=2))
        sys.stdout.write("\n")
        return
    render(_rows(runs), fmt, title=title, columns=COLUMNS)


def _evaluate(
    settings: Settings,
    at: dt.datetime | None,
    stream: str | None,
    webhook: str | None,
    *,
    deliver: bool,
    experiment: str | None = None,
) -> list[AlertRun]:
    """``quality.alerts.check``; whatever stops it exits 2, so that 1 always means "firing"."""
    import duckdb

    from tallystick.control.definitions import DefinitionError
    from tallystick.control.experiments import UnknownExperiment
    from tallystick.control.store import ControlStore
    from tallystick.metrics.catalog import read_catalog
    from tallystick.quality.alerts import check as run_check
    from tallystick.store.lake import Lake

    catalog, problems = read_catalog(settings.catalog_dir)
    for problem in problems:  # the experiments' metrics defined there are left out
        err.print(f"catalog: {problem}", highlight=False)

    try:
        store = ControlStore.for_settings(settings)
    except Exception as exc:
        fail(
            f"cannot open the control plane's database ({type(exc).__name__}: {exc}); check "
            "--control-url / TALLYSTICK_CONTROL_URL",
            2,
        )
    try:
        return run_check(
            store,
            Lake(settings.lake_dir),
            at=at,
            stream=stream,
            experiment=experiment,
            catalog=catalog,
            webhook_url=webhook,
            deliver=deliver,
        )
    except UnknownExperiment:
        fail(f"no experiment {experiment!r}; `tally experiments list` shows them", 2)
    except KeyError:
        fail(f"no stream {stream!r}; `tally streams list` shows the streams", 2)
    except DefinitionError as exc:
        fail(f"a stored definition cannot be used: {exc}", 2)
    except (duckdb.Error, OSError) as exc:
        fail(f"cannot read the lake in {settings.lake_dir} ({type(exc).__name__}: {exc})", 2)
    finally:
        store.close()


@quality_app.command("check")
def check(
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config-dir",
            envvar="TALLYSTICK_CONFIG_DIR",
            metavar="DIR",
            help="Configuration directory; the experiments' metrics come from its metrics/ "
            "folder. Default: DATA/config.",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option("--stream", metavar="NAME", help="Only this stream's rules."),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", metavar="KEY", help="Only this experiment's rules."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Evaluate as of this time (ISO 8601, UTC unless an offset is given). "
            "Default: now.",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOption = Format.table,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            metavar="URL",
            help="POST notices here (JSON). Default: the alert_webhook_url setting.",
            show_default=False,
        ),
    ] = None,
    no_deliver: Annotated[
        bool,
        typer.Option(
            "--no-deliver",
            help="A dry run: print only; send nothing and record nothing.",
        ),
    ] = False,
) -> None:
    """Evaluate the alert rules of the streams and the running experiments; exit 0 when all are
    quiet, 1 when one fires, 2 on a usage or configuration error. Notices (fired, resolved) go
    to the log and the webhook."""
    from tallystick.quality.alert_delivery import WebhookError, check_url

    settings = from_env(data=data, control_url=control_url, config_dir=config_dir)
    when = _time(at, "--at") if at is not None else None
    url = webhook if webhook is not None else settings.alert_webhook_url
    if url:
        try:
            check_url(url)
        except WebhookError as exc:
            fail(f"--webhook: {exc}" if webhook is not None else f"alert_webhook_url: {exc}", 2)
    # notices go to the log: this command's stderr (cron mails it)
    logger = logging.getLogger("tallystick.alerts")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger.addHandler(handler)
    try:
        runs = _evaluate(
            settings, when, stream, url or None, deliver=not no_deliver, experiment=experiment
        )
    finally:
        logger.removeHandler(handler)
    if not runs:
        if fmt is Format.json:
            _print([], fmt, "")
        if experiment and not stream:
            err.print(
                f"No alert rules to evaluate: experiment {experiment!r} is not running, or its "
                "`alerts:` are [] (see docs/experiments.md#alerts).",
                highlight=False,
            )
            return
        target = f"stream {stream!r} has" if stream else "no stream has"
        err.print(
            f"No alert rules to evaluate: {target} any (add `alerts:` to a stream, see "
            "docs/data-trust.md#alerts)" + ("." if stream else ", and no experiment is running."),
            highlight=False,
        )
        return
    _print(runs, fmt, f"Alert rules at {runs[0].as_dict()['at']}")
    firing = sum(r.fired for r in runs)
    changes = sum(r.notice is not None for r in runs)
    summary = f"{len(runs)} rules: {firing} firing, {len(runs) - firing} quiet"
    if changes:
        summary += f"; {changes} change{'s' if changes > 1 else ''} " + (
            "not sent (--no-deliver)" if no_deliver else "announced"
        )
    if firing:
        err.print(f"[red]{summary}[/]", highlight=False)
        raise typer.Exit(1)
    err.print(f"[green]{summary}[/]", highlight=False)


@quality_app.command("alerts")
def alerts(
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="TIME",
            help="Only evaluations at or after TIME: ISO 8601, or a span back such as 24h or 7d.",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[
        str | None, typer.Option("--stream", metavar="NAME", help="Only this stream's rules.")
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", metavar="KEY", help="Only this experiment's rules."),
    ] = None,
    notices: Annotated[
        bool,
        typer.Option("--notices", help="Only evaluations that announced a change."),
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 200,
    fmt: FormatOption = Format.table,
) -> None:
    """The history of alert evaluations, newest first."""
    from tallystick.quality.alerts import history
    from tallystick.quality.experiment_alerts import subject

    if stream is not None and experiment is not None:
        fail("give --stream or --experiment, not both", 2)
    start = _time(since, "--since") if since is not None else None
    if experiment is not None:
        stream = subject(experiment)
    with opened(data, control_url) as store:
        runs = history(store, start, limit, stream=stream, notices=notices)
    if not runs and fmt is Format.table:
        err.print("No alert evaluations recorded yet: run `tally quality check`.")
        return
    _print(runs, fmt, "Alert history (newest first)")
