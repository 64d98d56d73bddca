"""``tally.yaml``: the control plane's configuration as a file to review in git.

``dump`` writes a ``Configuration`` as YAML; ``load`` reads one back and, when it cannot be
used, says on which line and why (``tally.yaml:14: streams[1].sample.rate: a sample rate is a
number from 0 to 1, got 1.5``) — a YAML syntax error, a key given twice or a definition problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tallystick.control.definitions import Configuration, DefinitionError, parse_configuration

HEADER: Final = (
    "# Tallystick control-plane configuration: streams and data models.\n"
    "# Apply with `tally config apply FILE` (it shows the plan first).\n"
)
_STEP: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class ConfigFileError(ValueError):
    """A configuration file that cannot be applied: the line and the reason."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def dump(config: Configuration) -> str:
    return HEADER + yaml.safe_dump(
        config.as_dict(), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def _steps(where: str) -> Iterator[str | int]:
    for match in _STEP.finditer(where):
        key, index = match.groups()
        yield int(index) if index is not None else key


def line_of(root: Node | None, where: str) -> int:
    """The line of the deepest node on the dotted path ``where`` (1 when there is none)."""
    node = root
    line = 1 if root is None else int(root.start_mark.line) + 1
    for step in _steps(where):
        child: Node | None = None
        if isinstance(node, MappingNode) and isinstance(step, str):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == step:
                    child = value
                    line = int(key.start_mark.line) + 1
                    break
        elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
            line = int(child.start_mark.line) + 1
        if child is None:
            break
        node = child
    return line


def _duplicate_key(node: Node | None) -> tuple[int, str] | None:
    """The first mapping key given twice (YAML would silently keep the last)."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                line = int(key.start_mark.line) + 1
                if key.value in seen:
                    return line, f"{key.value!r} is given twice (first on line {seen[key.value]})"
                seen[key.value] = line
            found = _duplicate_key(value)
            if found:
                return found
    elif isinstance(node, SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def read_yaml(text: str, file: str) -> tuple[Any, Node | None]:
    """A YAML document's data and node tree (for ``line_of``); a ConfigFileError names the line
    of a syntax error or of a key given twice."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        raise ConfigFileError(file, line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(file, 1, f"not valid YAML: {exc}") from None
    duplicate = _duplicate_key(root)
    if duplicate is not None:
        raise ConfigFileError(file, *duplicate)
    return data, root


def load(text: str, file: str = "tally.yaml") -> Configuration:
    """Read a configuration file; a ConfigFileError names the line of the first problem."""
    data, root = read_yaml(text, file)
    try:
        return parse_configuration(data)
    except DefinitionError as exc:
        raise ConfigFileError(file, line_of(root, exc.where), str(exc)) from None
