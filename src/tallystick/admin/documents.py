"""Whole configurations sent over HTTP: JSON or YAML, read into plain data, and the line of the
place a DefinitionError names (``streams[1].sample.rate`` → line 14), so that a refused document
says where and why, as ``tally config apply`` does for a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tallystick import messages
from tallystick.admin.http import Refused, json_value
from tallystick.control.definitions import Configuration, DefinitionError, parse_configuration
from tallystick.messages import Problem

_STEP: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Document:
    """A request body read as data; ``text`` is the YAML it came from (``None`` for JSON)."""

    data: Any
    text: str | None


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
        return Document(yaml.safe_load(text), text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        where = f"line {line}: " if line else ""
        raise Refused(
            400,
            Problem(
                messages.INVALID_DEFINITION,
                f"{where}the document is not valid YAML ({exc.problem}): check the indentation "
                "and the quoting there",
            ),
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise Refused(
            400,
            Problem(messages.INVALID_DEFINITION, f"the document is not valid YAML ({exc})"),
        ) from None


def steps(where: str) -> list[str | int]:
    """``streams[1].sample.rate`` → ``["streams", 1, "sample", "rate"]``."""
    return [int(index) if index else key for key, index in _STEP.findall(where)]


def locate(text: str, where: str) -> int | None:
    """The 1-based line of ``where`` in the YAML ``text``: the key's line for a mapping entry,
    the item's for a list item, or the nearest enclosing place that exists (a missing setting
    points at the mapping that lacks it)."""
    try:
        node: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = int(node.start_mark.line) + 1
    for step in steps(where):
        child: Node | None = None
        if isinstance(step, str) and isinstance(node, MappingNode):
            for key, value in node.value:
                if getattr(key, "value", None) == step:
                    line = int(key.start_mark.line) + 1
                    child = value
                    break
        elif isinstance(step, int) and isinstance(node, SequenceNode) and step < len(node.value):
            child = node.value[step]
            line = int(child.start_mark.line) + 1
        if child is None:
            break
        node = child
    return line


def refuse_definition(exc: DefinitionError, text: str | None = None) -> Refused:
    """400 ``invalid_definition`` naming the place (and its line in ``text``) and the reason."""
    line = locate(text, exc.where) if text is not None and exc.where else None
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
        raise refuse_definition(exc, document.text) from None
