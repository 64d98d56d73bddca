"""The one error a ruleset, a flag or a condition raises when its definition is invalid."""

from __future__ import annotations

__all__ = ["ConditionError", "RulesetError"]


class RulesetError(ValueError):
    """An invalid definition: ``path`` says where (``flags.checkout.rules[2].condition.op``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ConditionError(RulesetError):
    """An invalid attribute condition or segment."""
