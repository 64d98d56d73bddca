"""``tally experiments ...``: experiment definitions in the control plane (docs/experiments.md).

``list`` and ``show`` print them, ``apply`` creates or replaces them from a YAML or JSON file
(one experiment or a list; validated, the changes listed, audited), ``start``/``stop`` run them
(writing/removing their rule in the flags ruleset), ``delete`` removes one, and ``plan`` gives the
sample size a design needs. ``analyze`` (the readout) is added by
:mod:`tallystick.cli.experiments_results`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tallystick.cli.control import ControlUrlOption, actor, fail, opened
from tallystick.cli.experiments_results import register_results
from tallystick.cli.options import DEFAULT_DATA, DataOption
from tallystick.cli.output import print_document

if TYPE_CHECKING:
    from tallystick.control.experiments import Change, StoredExperiment

experiments_app = typer.Typer(
    name="experiments",
    help="Experiments: define, start, stop and plan them (docs/experiments.md).",
    no_args_is_help=True,
)
out = Console()

FORMATS = ("table", "json", "yaml")
KeyArgument = Annotated[str, typer.Argument(metavar="KEY", help="The experiment's key.")]
FormatOption = Annotated[
    str, typer.Option("--format", metavar="table|json|yaml", help="table (default), json or yaml.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(experiments_app)


register_results(experiments_app)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}: use {', '.join(FORMATS)}", 2)


def _when(text: str | None) -> str:
    """``2026-10-01 09:00:00`` (UTC) from ``2026-10-01T09:00:00.123Z``."""
    return "" if text is None else text.replace("T", " ").removesuffix("Z").split(".")[0]


@experiments_app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="Only draft, running or stopped experiments."
        ),
    ] = None,
    fmt: FormatOption = "table",
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """List the experiments: key, status, owner, unit, variations, start and stop."""
    from tallystick.control.experiments import list_experiments
    from tallystick.experiments.definition import STATUSES

    _check_format(fmt)
    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}: use {', '.join(STATUSES)}", 2)
    with opened(data, control_url) as store:
        rows = [
            s.summary()
            for s in list_experiments(store)
            if status is None or s.experiment.status == status
        ]
    if fmt != "table":
        print_document(rows, fmt)
        return
    if not rows:
        out.print("no experiments yet: `tally experiments apply FILE` defines one")
        return
    # Below 120 columns: the key, status, unit, split and dates only (`show KEY` has the rest).
    wide = out.width >= 120
    columns = ["key", "status", "owner", "unit", "variations", "flag", "start", "stop"]
    if not wide:
        columns = ["key", "status", "unit", "variations", "start", "stop"]
    table = Table()
    for column in columns:
        table.add_column(column, no_wrap=column in ("key", "status", "unit"))
    for r in rows:
        cells = {
            "key": r["key"],
            "status": r["status"],
            "owner": r["owner"],
            "unit": r["unit"],
            "variations": " / ".join(f"{v['key']} {v['weight']:.0%}" for v in r["variations"]),
            "flag": f"{r['flag']} ({r['environment']})",
            "start": _when(r["start"]) if wide else _day(r["start"]),
            "stop": _when(r["stop"]) if wide else _day(r["stop"]),
        }
        table.add_row(*(cells[c] for c in columns))
    out.print(table)


def _day(text: str | None) -> str:
    """An ISO instant's date (UTC), for narrow tables."""
    return "—" if text is None else text[:10]


def _show_table(stored: StoredExperiment) -> None:
    from tallystick.experiments.definition import format_time

    e = stored.experiment
    d = e.to_dict()
    table = Table(show_header=False, title=f"{e.key}: {e.name}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("status", e.status)
    table.add_row("hypothesis", e.hypothesis)
    table.add_row("owner", e.owner + (f" ({', '.join(e.teams)})" if e.teams else ""))
    table.add_row("unit", f"{e.unit} (flags attribute {e.hash_attribute()})")
    table.add_row("flag", f"{e.flag} in {e.environment}, rule {e.rule_id()}")
    for v, w in zip(e.variations, e.weights, strict=True):
        table.add_row(f"variation {v.key}", f"{w:.1%}  {v.name}  → {json.dumps(v.value)}")
    if e.coverage != 1:
        table.add_row("coverage", f"{e.coverage:.1%}")
    if e.targeting is not None:
        table.add_row("targeting", json.dumps(e.targeting))
    if e.namespace is not None:
        table.add_row("namespace", f"{e.namespace[0]} [{e.namespace[1]}, {e.namespace[2]})")
    table.add_row("start", _when(d["start"]) or "(set when started)")
    table.add_row("stop", _when(d["stop"]) or "")
    for section, items in d["metrics"].items():
        if items:
            table.add_row(
                section, ", ".join(json.dumps(m) if isinstance(m, dict) else m for m in items)
            )
    design = f"mde {e.mde:g}, alpha {e.alpha:g}, power {e.power:g}, correction {d['correction']}"
    if e.sequential:
        design += ", sequential"
    table.add_row("design", design)
    if e.planned_sample_size is not None:
        table.add_row("planned sample size", f"{e.planned_sample_size:,}")
    updated = _when(format_time(stored.updated_at))
    table.add_row("version", f"{stored.version} ({updated} by {stored.updated_by})")
    out.print(table)


@experiments_app.command("show")
def show(
    key: KeyArgument,
    fmt: FormatOption = "table",
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Print one experiment; --format yaml or json prints its definition (to edit and apply)."""
    from tallystick.control.experiments import get_experiment

    _check_format(fmt)
    with opened(data, control_url) as store:
        stored = get_experiment(store, key)
    if fmt == "table":
        _show_table(stored)
    else:
        print_document(stored.experiment.to_dict(), fmt)


def _read(file: Path) -> list[Any]:
    """The experiment documents of a file (one, or a list), validated; a problem names the file,
    the line and the field."""
    from tallystick.control.config_file import ConfigFileError, line_of, read_yaml
    from tallystick.experiments.definition import ExperimentError, parse_experiment

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text", 2)
    try:
        data, root = read_yaml(text, str(file))  # YAML reads JSON too
    except ConfigFileError as exc:
        fail(f"{exc} — nothing was changed", 2)
    if data is None:
        fail(f"{file} is empty: write an experiment (a mapping) or a list of them", 2)
    documents = data if isinstance(data, list) else [data]
    for i, doc in enumerate(documents):
        try:
            parse_experiment(doc)
        except ExperimentError as exc:
            where = exc.path if not isinstance(data, list) else f"[{i}].{exc.path}".rstrip(".")
            fail(f"{file}:{line_of(root, where)}: {where}: {exc.message} — nothing was changed", 2)
    return documents


def _report(change: Change) -> None:
    style = {"unchanged": "dim", "delete": "red", "stop": "yellow"}.get(change.action, "green")
    head = f"[{style}]{change.action}[/] {change.key}"
    if change.version is not None:
        head += f" (configuration version {change.version})"
    out.print(head, highlight=False)
    for line in change.changes:
        out.print(f"  {line}", highlight=False, markup=False)
    for note in change.notes:
        out.print(f"  [yellow]note:[/] {note}", highlight=False)


@experiments_app.command("apply")
def apply(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="One experiment or a list of them, YAML or JSON."),
    ],
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Create or replace the experiments of FILE (all or none; audited). An existing experiment
    keeps its status: start and stop change it."""
    from tallystick.control.experiments import put_experiments

    documents = _read(file)
    with opened(data, control_url) as store:
        changes = put_experiments(store, documents, actor())
    for change in changes:
        _report(change)


@experiments_app.command("start")
def start(
    key: KeyArgument, data: DataOption = DEFAULT_DATA, control_url: ControlUrlOption = None
) -> None:
    """Start an experiment: write its rule into the flag's ruleset (SDKs assign units within
    seconds) and set its start to now unless it has one."""
    from tallystick.control.experiments import start_experiment

    with opened(data, control_url) as store:
        _report(start_experiment(store, key, actor()))


@experiments_app.command("stop")
def stop(
    key: KeyArgument, data: DataOption = DEFAULT_DATA, control_url: ControlUrlOption = None
) -> None:
    """Stop a running experiment: remove its flag rule (the flag serves its default) and set its
    stop to now. A stopped experiment cannot be restarted."""
    from tallystick.control.experiments import stop_experiment

    with opened(data, control_url) as store:
        _report(stop_experiment(store, key, actor()))


@experiments_app.command("delete")
def delete(
    key: KeyArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Delete an experiment's definition (a running one's flag rule too); audited."""
    from tallystick.control.experiments import delete_experiment, get_experiment

    with opened(data, control_url) as store:
        stored = get_experiment(store, key)
        running = stored.experiment.status == "running"
        question = f"Delete experiment {key!r}" + (
            " (running: its flag rule is removed too)?" if running else "?"
        )
        if not yes and not typer.confirm(question, default=False):
            fail("nothing was changed (answer yes, or pass --yes)")
        _report(delete_experiment(store, key, actor()))


# -- plan ------------------------------------------------------------------------------------------


def plan_numbers(
    *,
    baseline: float,
    kind: str,
    std: float | None,
    mde: float,
    alpha: float,
    power: float,
    weights: tuple[float, ...],
    planned: int | None,
) -> dict[str, Any]:
    """The sample size for a relative ``mde`` on ``baseline`` (a rate, or a mean with ``std``),
    and the relative MDE reachable with ``planned`` units; raises ``ValueError`` saying why."""
    from tallystick.experiments.power import minimum_detectable_effect, sample_size

    if kind == "conversion":
        if not 0 < baseline < 1:
            raise ValueError(f"a conversion baseline is a rate between 0 and 1, not {baseline:g}")
        variance = baseline * (1 - baseline)
    else:
        if std is None or not std > 0 or not math.isfinite(std):
            raise ValueError("a mean metric needs --std: the per-unit standard deviation (> 0)")
        if baseline == 0:
            raise ValueError("a relative effect needs a baseline mean other than 0")
        variance = std**2
    if any(w <= 0 for w in weights):
        raise ValueError("every variation needs a weight above 0 to be compared with the control")
    effect = mde * abs(baseline)
    total = math.ceil(
        float(sample_size(effect, variance, alpha=alpha, power=power, weights=weights))
    )
    per_variation = [math.ceil(total * w) for w in weights]
    result: dict[str, Any] = {
        "baseline": baseline,
        "kind": kind,
        "std": math.sqrt(variance),
        "mde": mde,
        "absolute_effect": effect,
        "alpha": alpha,
        "power": power,
        "weights": list(weights),
        "per_variation": per_variation,
        "total": sum(per_variation),
        "planned_sample_size": planned,
        "planned_mde": None,
    }
    if planned is not None:
        reachable = float(
            minimum_detectable_effect(variance, planned, alpha=alpha, power=power, weights=weights)
        )
        result["planned_mde"] = reachable / abs(baseline)
    return result


@experiments_app.command("plan")
def plan(
    key: KeyArgument,
    baseline: Annotated[
        float,
        typer.Option(
            "--baseline",
            metavar="X",
            help="The control's expected value: a rate (0–1) or, with --kind mean, a mean.",
        ),
    ],
    kind: Annotated[
        str, typer.Option("--kind", metavar="conversion|mean", help="The primary metric's kind.")
    ] = "conversion",
    std: Annotated[
        float | None,
        typer.Option("--std", metavar="S", help="Per-unit standard deviation (--kind mean)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="table|json", help="table (default) or json.")
    ] = "table",
    data: DataOption = DEFAULT_DATA,
    control_url: ControlUrlOption = None,
) -> None:
    """Units needed per variation and in total to detect the experiment's relative mde with its
    alpha and power (two-sided z-test, control vs each treatment), and the MDE its
    planned_sample_size reaches."""
    from tallystick.control.experiments import get_experiment

    if kind not in ("conversion", "mean"):
        fail(f"unknown kind {kind!r}: use conversion or mean", 2)
    if fmt not in ("table", "json"):
        fail(f"unknown format {fmt!r}: use table or json", 2)
    with opened(data, control_url) as store:
        e = get_experiment(store, key).experiment
    try:
        numbers = plan_numbers(
            baseline=baseline,
            kind=kind,
            std=std,
            mde=e.mde,
            alpha=e.alpha,
            power=e.power,
            weights=e.weights,
            planned=e.planned_sample_size,
        )
    except ValueError as exc:
        fail(str(exc), 2)
    if fmt == "json":
        typer.echo(json.dumps({"experiment": e.key, **numbers}, indent=2))
        return
    what = f"rate {baseline:g}" if kind == "conversion" else f"mean {baseline:g} (sd {std:g})"
    out.print(
        f"{e.key}: detect a {e.mde:.1%} relative change of a {what} — an absolute "
        f"{numbers['absolute_effect']:.4g} — with alpha {e.alpha:g} and power {e.power:.0%}",
        highlight=False,
    )
    table = Table()
    table.add_column("variation")
    table.add_column("weight", justify="right")
    table.add_column("units", justify="right")
    for v, w, n in zip(e.variations, e.weights, numbers["per_variation"], strict=True):
        table.add_row(v.key, f"{w:.1%}", f"{n:,}")
    table.add_row("total", "", f"{numbers['total']:,}", style="bold")
    out.print(table)
    if numbers["planned_mde"] is not None:
        out.print(
            f"with the planned {e.planned_sample_size:,} units the smallest detectable relative "
            f"change is {numbers['planned_mde']:.2%}",
            highlight=False,
        )
    if len(e.variations) > 2 or e.sequential:
        out.print(
            "note: this ignores the multiple-comparison correction and sequential testing, which "
            "need more units",
            highlight=False,
        )
