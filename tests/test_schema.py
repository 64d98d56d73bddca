"""The JSON Schema published by `tally schema export` agrees with the collector's validation."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from support import make_event
from tallystick.cli import app
from tallystick.collect.validate import check_event
from tallystick.messages import Problem
from tallystick.schema import FIELDS, NAME_PATTERN, column_for, json_schema

DOCS = Path(__file__).resolve().parents[1] / "docs"
LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _accepts(event: Any) -> bool:
    result = check_event(json.dumps(event).encode(), max_event_bytes=32768, latest_client_ts=LATEST)
    return not isinstance(result, Problem)


def _doc_examples() -> list[Any]:
    blocks = re.findall(r"```json\n(.*?)```", (DOCS / "event-schema.md").read_text(), re.S)
    return [json.loads(b) for b in blocks]


def test_schema_export_prints_the_schema() -> None:
    result = CliRunner().invoke(app, ["schema", "export"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema == json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)


def test_at_least_18_standard_attributes() -> None:
    standard = [f for f in FIELDS if "." in f.path or f.path in ("locale", "sent_ts")]
    assert len(standard) >= 18


@pytest.mark.parametrize("example", _doc_examples())
def test_documented_examples_are_valid(example: Any) -> None:
    jsonschema.validate(example, json_schema())
    assert _accepts(example)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("valid", {}, True),
    ("bad name", {"name": "Sign In"}, False),
    ("unknown field", {"colour": "red"}, False),
    ("nested data", {"data": {"a": {"b": 1}}}, False),
    ("camelCase key", {"data": {"fileCount": 1}}, False),
    ("list data", {"data": {"tags": ["a", 1, None, True]}}, True),
    ("seq zero", {"session": {"id": "s", "seq": 0}}, False),
    ("rate above 1", {"sample": {"unit": "user", "rate": 1.5}}, False),
    ("experiment", {"experiments": {"signin-dialog": "b"}}, True),
    ("bad locale", {"locale": "german!"}, False),
]


@pytest.mark.parametrize(("label", "change", "valid"), CASES, ids=[c[0] for c in CASES])
def test_schema_and_collector_agree(label: str, change: dict[str, Any], valid: bool) -> None:
    event = make_event(**change)
    assert _accepts(event) is valid
    try:
        jsonschema.validate(event, json_schema())
        schema_valid = True
    except jsonschema.ValidationError:
        schema_valid = False
    assert schema_valid is valid


@given(st.text(min_size=1, max_size=130))
def test_name_rule_matches_the_pattern(name: str) -> None:
    expected = re.fullmatch(NAME_PATTERN, name) is not None and len(name) <= 128
    assert _accepts(make_event(name=name)) is expected


def test_column_for() -> None:
    assert column_for("user.id") == "user_id"
    assert column_for("app.instance") == "app_instance"
    assert column_for("data.site") == "data.site"
    with pytest.raises(KeyError, match="unknown field"):
        column_for("user.idd")
