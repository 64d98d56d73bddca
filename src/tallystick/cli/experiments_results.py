"""``tally experiments analyze KEY``: an experiment's readout (docs/experiments.md, Results).

Reads the stored experiment, its metrics from the catalog and the lake (DuckDB, or ClickHouse
with ``--engine``), and prints per metric and variation the effect against the control with its
interval, p-value and chance to win, the sample-ratio-mismatch check and the warnings
(``--format table``), or the readout document that ``GET /v1/experiments/{key}/results``
serves (``--format json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tallystick.cli.control import ControlUrlOption, fail, opened
from tallystick.cli.options import DEFAULT_DATA, DataOption

if TYPE_CHECKING:
    from tallystick.metrics.catalog import Catalog

FORMATS = ("table", "json")
_VERDICT_STYLES = {"better": "bold green", "worse": "bold red", "inconclusive": "dim"}


def register_results(app: typer.Typer) -> None:
    """Add ``analyze`` to ``tally experiments`` (called from cli/experiments.py)."""
    app.command("analyze")(analyze)


def analyze(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The experiment's key.")],
    fmt: Annotated[
        str, typer.Option("--format", metavar="table|json", help="table (default) or json.")
    ] = "table",
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="DATETIME",
            help="Read as of this instant (ISO-8601, e.g. 2026-10-15T12:00:00Z). Default: now.",
            show_default=False,
        ),
    ] = None,
    include_bots: Annotated[
        bool, typer.Option("--include-bots", help="Count events from bots too.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="duckdb|clickhouse",
            help="duckdb, or clickhouse (chDB in-process, or the server at --engine-url).",
        ),
    ] = "duckdb",
    engine_url: Annotated[
        str | None,
        typer.Option(
            "--engine-url",
            metavar="URL",
            help="A ClickHouse server: clickhouse://user:password@host:8123/database?table=events",
            show_default=False,
        ),
    ] = None,
    data: DataOption = DEFAULT_DATA,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config-dir",
            envvar="TALLYSTICK_CONFIG_DIR",
            metavar="DIR",
            help="Configuration directory; the catalog is its metrics/ folder. Default: "
            "DATA/config.",
            show_default=False,
        ),
    ] = None,
    control_url: ControlUrlOption = None,
) -> None:
    """Analyse an experiment: per metric and variation the effect against the control, its
    interval, p-value and chance to win, and the sample-ratio-mismatch check."""
    from tallystick.control.experiments import get_experiment
    from tallystick.experiments.readout import readout
    from tallystick.metrics.api import open_engine
    from tallystick.metrics.params import MetricError
    from tallystick.query.experiments import parse_at

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}", 2)
    if engine not in ("duckdb", "clickhouse"):
        fail(f"unknown engine {engine!r}: use duckdb or clickhouse", 2)
    try:
        now = parse_at(at)
    except MetricError as exc:
        fail(f"--{exc}", 2)
    with opened(data, control_url) as store:
        stored = get_experiment(store, key)
    catalog = _catalog(data, config_dir)
    err = Console(stderr=True)
    try:
        lake_engine = open_engine(data, engine, engine_url)
        if err.is_terminal:
            with err.status(f"analysing {key} on {engine}…", spinner="dots"):
                doc = readout(stored, catalog, lake_engine, now=now, include_bots=include_bots)
        else:
            doc = readout(stored, catalog, lake_engine, now=now, include_bots=include_bots)
    except MetricError as exc:
        fail(str(exc))
    if fmt == "json":
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print_readout(doc, Console(highlight=False))


def _catalog(data: Path, config_dir: Path | None) -> Catalog:
    """The catalog's valid definitions; problems in the others are listed on stderr (a metric
    of the experiment among them is then reported as missing)."""
    from tallystick.config import ConfigError, from_env
    from tallystick.metrics.catalog import read_catalog

    try:
        settings = from_env(data=data, config_dir=config_dir)
    except ConfigError as exc:
        fail(str(exc), 2)
    catalog, problems = read_catalog(settings.catalog_dir)
    if problems:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for problem in problems:
            err.print(f"warning: {problem}", markup=False)
    return catalog


# -- the table ---------------------------------------------------------------------------------


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def _value(x: float | None, kind: str | None) -> str:
    if x is None:
        return "—"
    if kind == "conversion":
        return f"{x:.1%}"
    return f"{x:.4g}"


def _p(x: float | None) -> str:
    if x is None:
        return "—"
    return "<0.0001" if x < 0.0001 else f"{x:.4f}"


def _chance(x: float | None) -> str:
    if x is not None and x > 0.999:
        return ">99.9%"
    if x is not None and x < 0.001:
        return "<0.1%"
    return _pct(x, signed=False)


def _when(text: str | None) -> str:
    return "—" if text is None else text.replace("T", " ").removesuffix("Z").split(".")[0]


def print_readout(doc: dict[str, Any], out: Console) -> None:
    """The readout as text: the experiment, its units and SRM check, the effects (a table on a
    terminal at least :data:`WIDE` columns wide, else a block per metric × treatment) and the
    warnings."""
    e = doc["experiment"]
    title = e["key"] if e["name"] == e["key"] else f"{e['key']} — {e['name']}"
    out.print(Text(title, style="bold"))
    out.print(f"hypothesis: {e['hypothesis']}", markup=False)
    window = doc["window"]
    out.print(
        f"status {e['status']} · unit {doc['unit']} · exposures {_when(window['start'])} to "
        f"{_when(window['end'])} UTC · analysed {_when(doc['analysed_at'])} UTC",
        markup=False,
    )
    units = " · ".join(
        f"{v['key']}{' (control)' if v['control'] else ''} {v['units']:,}"
        for v in doc["variations"]
    )
    total = sum(v["units"] for v in doc["variations"])
    planned = doc["planned_sample_size"]
    line = f"units: {units} — {total:,} exposed"
    if planned:
        line += f" of {planned:,} planned ({_pct(doc['progress'], signed=False)})"
    out.print(line, markup=False)
    srm = doc["srm"]
    if srm["flagged"]:
        out.print(
            Text(
                f"SAMPLE RATIO MISMATCH: p = {srm['p_value']:.2g} < {srm['threshold']:g} — "
                "units are not split as planned; do not trust these results",
                style="bold red",
            )
        )
    else:
        out.print(f"sample ratio: as planned (p = {srm['p_value']:.2g})", markup=False)
    test = "sequential (always valid)" if doc["sequential"] else "fixed horizon"
    out.print(f"test: {test}, alpha {doc['alpha']:g}, correction {doc['correction']}", markup=False)
    if out.width < WIDE:
        _print_cards(doc, out)
    else:
        _print_table(doc, out)
    for warning in doc["warnings"]:
        out.print(Text(f"warning: {warning}", style="yellow"))


WIDE = 120
"""Terminals at least this wide get one table; narrower ones a block per metric × treatment."""


def _comparisons(
    doc: dict[str, Any],
) -> list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]]:
    """(metric, control row, treatment row) per metric × treatment; a metric left out once,
    with no rows."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]] = []
    for m in doc["metrics"]:
        if m.get("error"):
            out.append((m, None, None))
            continue
        rows = m["variations"]
        control = next((r for r in rows if r["control"]), None)
        out += [(m, control, r) for r in rows if not r["control"]]
    return out


def _cells(m: dict[str, Any], control: dict[str, Any] | None, r: dict[str, Any]) -> dict[str, Any]:
    low, high = r["ci"]
    p = _p(r["p_value_adjusted"])
    if _p(r["p_value"]) != p:
        p += f" (raw {_p(r['p_value'])})"
    verdict = r["verdict"]
    if r["status"] != "ok":
        verdict += f" ({r['status'].replace('_', ' ')})"
    return {
        "variation": f"{r['variation']} vs {control['variation'] if control else '?'}",
        "control": _value(None if control is None else control["mean"], m["kind"]),
        "treatment": _value(r["mean"], m["kind"]),
        "effect": _pct(r["effect"]),
        "interval": "—" if low is None or high is None else f"[{_pct(low)}, {_pct(high)}]",
        "p": p,
        "chance": _chance(r["chance_to_win"]),
        "verdict": Text(verdict, style=_VERDICT_STYLES[r["verdict"]]),
    }


def _print_cards(doc: dict[str, Any], out: Console) -> None:
    """Narrow terminals: per metric × treatment a heading line and a line of numbers."""
    level = f"{1 - doc['alpha']:.0%}"
    for m, control, r in _comparisons(doc):
        head = Text(m["metric"], style="bold")
        head.append(f" ({m['role']}{', lower is better' if m['inverse'] else ''})", style="dim")
        if r is None:
            head.append(" left out", style="yellow")
            out.print(head)
            continue
        c = _cells(m, control, r)
        head.append(f" {c['variation']}: ")
        head.append_text(c["verdict"])
        out.print(head)
        out.print(
            f"  {c['control']} → {c['treatment']} · effect {c['effect']}, {level} interval "
            f"{c['interval']}",
            markup=False,
        )
        out.print(f"  p-value {c['p']} · chance to win {c['chance']}", markup=False)


def _print_table(doc: dict[str, Any], out: Console) -> None:
    table = Table(show_lines=False, header_style="bold")
    for column, justify in (
        ("metric", "left"),
        ("variation", "left"),
        ("control", "right"),
        ("treatment", "right"),
        ("effect", "right"),
        ("95% interval" if doc["alpha"] == 0.05 else "interval", "right"),
        ("p-value", "right"),
        ("chance to win", "right"),
        ("verdict", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    label_of: dict[str, Text] = {}
    for m, control, r in _comparisons(doc):
        label = Text("")
        if m["metric"] not in label_of:
            label = label_of[m["metric"]] = Text(m["metric"], style="bold")
            label.append(f"\n{m['role']}{', lower is better' if m['inverse'] else ''}", style="dim")
        if r is None:
            table.add_row(label, "", "", "", "", "", "", "", Text("left out", style="yellow"))
            continue
        c = _cells(m, control, r)
        table.add_row(
            label,
            c["variation"],
            c["control"],
            c["treatment"],
            c["effect"],
            c["interval"],
            c["p"],
            c["chance"],
            c["verdict"],
        )
    out.print(table)


__all__ = ["analyze", "print_readout", "register_results"]
