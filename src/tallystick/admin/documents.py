"""Whole configurations sent over HTTP: JSON or YAML, read into plain data; a document that
cannot be used is refused with the place a DefinitionError names (``streams[1].sample.rate``)
and, for YAML, its line — read as ``tally config apply`` reads a file (``control.config_file``:
syntax errors and keys given twice are refused too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yaml.nodes import Node

from tallystick import messages
from tallystick.collect.requests import Refused, json_value
from tallystick.control.config_file import ConfigFileError, line_of, read_yaml
from tallystick.control.definitions import Configuration, DefinitionError, parse_configuration
from tallystick.messages import Problem


@dataclass(frozen=True, slots=True)
class Document:
    """A request body read as data; ``root`` is its YAML node tree (``None`` for JSON)."""

    data: Any
    root: Node | None


def read_document(body: bytes, content_type: str) -> Document:
    """The body as data: JSON when the content type says so, YAML otherwise (YAML reads JSON
    too). A document that cannot be read is refused with its line."""
    if "json" in content_type.lower():
        return Document(json_value(body), None)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(
            400, Problem(messages.INVALID_UTF8, "the document is not UTF-8 text: save it as UTF-8")
        ) from None
    try:
        data, root = read_yaml(text, "the document")
    except ConfigFileError as exc:
        raise Refused(
            400,
            Problem(messages.INVALID_DEFINITION, f"line {exc.line}: {exc.message}"),
            line=exc.line,
        ) from None
    return Document(data, root)


def refuse_definition(exc: DefinitionError, root: Node | None = None) -> Refused:
    """400 ``invalid_definition`` naming the place (and its line in the YAML ``root``) and the
    reason."""
    line = line_of(root, exc.where) if root is not None and exc.where else None
    message = f"{exc.where} (line {line}): {exc.message}" if line is not None else str(exc)
    return Refused(
        400, Problem(messages.INVALID_DEFINITION, message), where=exc.where or None, line=line
    )


def read_configuration(body: bytes, content_type: str) -> Configuration:
    """A whole configuration from a request body; refused with the place and the reason."""
    document = read_document(body, content_type)
    try:
        return parse_configuration(document.data)
    except DefinitionError as exc:
        raise refuse_definition(exc, document.root) from None
