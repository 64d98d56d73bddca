"""``tally schema export``: print the event JSON Schema."""

from __future__ import annotations

import json

import typer

from tallystick.schema import json_schema

schema_app = typer.Typer(help="The event monoschema.", no_args_is_help=True)


@schema_app.command("export")
def export() -> None:
    """Print the JSON Schema of an event (monoschema v1)."""
    typer.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(schema_app, name="schema")
