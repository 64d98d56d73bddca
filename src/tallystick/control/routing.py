"""Routing: which streams an event goes to, by its name.

A stream lists event names (``signin.open``) and prefixes (``signin.*``: every name that starts
with ``signin.``; ``*`` alone: every name). An event goes to every stream that lists its name or
a prefix of it — zero, one or several — and, when none does, to the fallback stream (by default
``unrouted``), where it is reported as undeclared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

UNROUTED: Final = "unrouted"
_NAME: Final = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_PREFIX: Final = re.compile(r"^([a-z0-9_]+\.)*\*$")


class RouteError(ValueError):
    """A selector that cannot be used."""


def check_selector(selector: str) -> str:
    """``selector`` if it is an event name or a prefix ending in ``*``, else a RouteError."""
    if _NAME.match(selector) or _PREFIX.match(selector):
        return selector
    raise RouteError(
        f"cannot route {selector!r}: give an event name (signin.open) or a prefix ending in "
        "'.*' (signin.*), or * for every event"
    )


@dataclass(frozen=True, slots=True)
class Router:
    """Compiled selectors of every stream: exact names in a dict, prefixes in a list."""

    exact: Mapping[str, tuple[str, ...]]
    prefixes: tuple[tuple[str, str], ...]
    """(prefix without the ``*``, stream), longest prefix first."""
    fallback: str = UNROUTED

    @classmethod
    def build(cls, streams: Mapping[str, Iterable[str]], fallback: str = UNROUTED) -> Router:
        exact: dict[str, list[str]] = {}
        prefixes: list[tuple[str, str]] = []
        for stream, selectors in streams.items():
            for selector in selectors:
                check_selector(selector)
                if selector.endswith("*"):
                    prefixes.append((selector[:-1], stream))
                else:
                    exact.setdefault(selector, []).append(stream)
        prefixes.sort(key=lambda p: (-len(p[0]), p[1]))
        return cls({k: tuple(v) for k, v in exact.items()}, tuple(prefixes), fallback)

    def streams(self, name: str) -> tuple[str, ...]:
        """The streams ``name`` goes to (each once, in a stable order), or the fallback."""
        found = list(self.exact.get(name, ()))
        found += [stream for prefix, stream in self.prefixes if name.startswith(prefix)]
        unique = tuple(dict.fromkeys(found))
        return unique or (self.fallback,)

    def declared(self, name: str) -> bool:
        """Whether a stream lists ``name`` or a prefix of it (else it goes to the fallback)."""
        return name in self.exact or any(name.startswith(p) for p, _ in self.prefixes)
