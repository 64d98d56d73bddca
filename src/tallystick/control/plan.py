"""Plans: what applying a configuration would change, before it changes anything (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tallystick.control.definitions import Configuration

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    """One definition created, updated or deleted: its plain data before and after."""

    kind: Literal["stream", "model", "setting"]
    name: str
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed_keys(self) -> list[str]:
        """The settings that differ (every setting for a create or delete)."""
        before, after = self.before or {}, self.after or {}
        return [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]

    def describe(self) -> list[str]:
        """Lines such as ``~ stream product: sample {…} → {…}``."""
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        head = f"{sign} {self.kind} {self.name}"
        if self.action != "update":
            return [f"{head} ({self.action})"]
        before, after = self.before or {}, self.after or {}
        return [head] + [
            f"    {k}: {_show(before.get(k))} → {_show(after.get(k))}" for k in self.changed_keys
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "changed": self.changed_keys,
            "before": self.before,
            "after": self.after,
        }


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value)


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def summary(self) -> str:
        counts = {
            a: sum(c.action == a for c in self.changes) for a in ("create", "update", "delete")
        }
        if not self.changes:
            return "no changes: the control plane already matches"
        return (
            f"{counts['create']} to create, {counts['update']} to update, "
            f"{counts['delete']} to delete"
        )

    def lines(self) -> list[str]:
        return [line for change in self.changes for line in change.describe()]


def _diff(
    kind: Literal["stream", "model"],
    current: dict[str, dict[str, Any]],
    wanted: dict[str, dict[str, Any]],
) -> list[Change]:
    out: list[Change] = []
    for name, after in wanted.items():
        before = current.get(name)
        if before is None:
            out.append(Change(kind, name, "create", None, after))
        elif before != after:
            out.append(Change(kind, name, "update", before, after))
    out += [Change(kind, n, "delete", b, None) for n, b in current.items() if n not in wanted]
    return out


def plan(current: Configuration, wanted: Configuration) -> Plan:
    """The changes that turn ``current`` into ``wanted`` (the file is the whole truth: what it
    does not define is deleted). Streams come before the models that read them, deletions of
    models before deletions of streams."""
    changes: list[Change] = []
    if current.unrouted_stream != wanted.unrouted_stream:
        changes.append(
            Change(
                "setting",
                "unrouted_stream",
                "update",
                {"unrouted_stream": current.unrouted_stream},
                {"unrouted_stream": wanted.unrouted_stream},
            )
        )
    streams = _diff(
        "stream",
        {s.name: s.as_dict() for s in current.streams},
        {s.name: s.as_dict() for s in wanted.streams},
    )
    models = _diff(
        "model",
        {m.name: m.as_dict() for m in current.models},
        {m.name: m.as_dict() for m in wanted.models},
    )
    changes += [c for c in models if c.action == "delete"]
    changes += [c for c in streams if c.action != "delete"]
    changes += [c for c in streams if c.action == "delete"]
    changes += [c for c in models if c.action != "delete"]
    return Plan(tuple(changes))
