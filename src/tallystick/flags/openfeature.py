"""An OpenFeature provider over a compiled ruleset (``pip install 'tallystick[openfeature]'``).

::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from tallystick.flags.openfeature import TallystickProvider

    api.set_provider(TallystickProvider(lambda: current_ruleset, on_exposure=log_exposure))
    client = api.get_client()
    client.get_string_value("signin-dialog", "A", EvaluationContext("user-42", {"plan": "pro"}))

- The provider reads the ruleset through a callable on every evaluation, so an SDK that fetches
  a new ruleset swaps it in without touching the provider. ``None`` (not loaded yet) gives the
  caller's default with ``PROVIDER_NOT_READY``.
- The context's attributes are the unit's attributes; its **targeting key** is the attribute
  ``targeting_attribute`` (``id`` by default: the default ``hash_attribute`` of rollouts and
  experiments) and wins over an attribute of that name. A top-level ``datetime`` attribute is
  passed as its ISO 8601 string.
- Reasons: ``targeted`` → ``TARGETING_MATCH``; ``rollout`` and ``experiment`` → ``SPLIT``;
  ``default`` → ``DEFAULT``; ``disabled`` and ``killed`` → ``DISABLED``; an unknown flag →
  ``FLAG_NOT_FOUND`` (reason ``ERROR``, the caller's default).
- Types: boolean flags resolve as booleans, string flags as strings, number flags as floats or
  integers (an integer request for 2.5 is a mismatch; 3.0 gives 3), JSON flags holding an
  object or a list as objects. Anything else is ``TYPE_MISMATCH`` with the caller's default and
  no exposure.
- ``variant`` is the experiment's variation key (else ``None``); ``flag_metadata`` carries the
  Tallystick ``reason``, the ``rule`` and, for an assignment, ``experiment``, ``variation``
  (index) and ``hash_attribute``.
- ``on_exposure`` is called with every served evaluation that is an experiment exposure (pass
  an :class:`~tallystick.flags.exposures.ExposureLogger`, which dedups); ``on_evaluation``
  with every served evaluation (the SDK notes it for the request's ``X-Tally-Flags``). Their
  errors are logged, never raised into the caller's flag evaluation.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider, Metadata

from tallystick.flags.evaluate import (
    DEFAULT_HASH_ATTRIBUTE,
    CompiledRuleset,
    Evaluation,
    Reason,
)

__all__ = ["PROVIDER_NAME", "REASONS", "TallystickProvider", "attributes_of"]

log = logging.getLogger(__name__)

PROVIDER_NAME: Final = "tallystick"

REASONS: Final[Mapping[str, OFReason]] = {
    Reason.TARGETED: OFReason.TARGETING_MATCH,
    Reason.ROLLOUT: OFReason.SPLIT,
    Reason.EXPERIMENT: OFReason.SPLIT,
    Reason.DEFAULT: OFReason.DEFAULT,
    Reason.DISABLED: OFReason.DISABLED,
    Reason.KILLED: OFReason.DISABLED,
}

T = TypeVar("T")
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]
_MISSING: Final = object()


def attributes_of(
    context: EvaluationContext | None, targeting_attribute: str = DEFAULT_HASH_ATTRIBUTE
) -> dict[str, Any]:
    """The unit's attributes: the context's, with the targeting key as ``targeting_attribute``."""
    if context is None:
        return {}
    attributes = {
        k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in context.attributes.items()
    }
    if context.targeting_key:
        attributes[targeting_attribute] = context.targeting_key
    return attributes


def _as_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _MISSING


def _as_str(value: Any) -> Any:
    return value if isinstance(value, str) else _MISSING


def _as_int(value: Any) -> Any:
    if isinstance(value, bool):
        return _MISSING
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return _MISSING


def _as_float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _MISSING
    return float(value)


def _as_object(value: Any) -> Any:
    return value if isinstance(value, dict | list) else _MISSING


class TallystickProvider(AbstractProvider):
    """OpenFeature flag resolution from a :class:`CompiledRuleset` (local, no I/O)."""

    def __init__(
        self,
        ruleset: Callable[[], CompiledRuleset | None],
        *,
        targeting_attribute: str = DEFAULT_HASH_ATTRIBUTE,
        on_exposure: Callable[[Evaluation], object] | None = None,
        on_evaluation: Callable[[Evaluation], object] | None = None,
    ) -> None:
        super().__init__()
        self._ruleset = ruleset
        self.targeting_attribute = targeting_attribute
        self.on_exposure = on_exposure
        self.on_evaluation = on_evaluation

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def _resolve(
        self,
        flag_key: str,
        default_value: T,
        context: EvaluationContext | None,
        flag_types: tuple[str, ...],
        convert: Callable[[Any], Any],
        wanted: str,
    ) -> FlagResolutionDetails[T]:
        ruleset = self._ruleset()
        if ruleset is None:
            return FlagResolutionDetails(
                default_value,
                ErrorCode.PROVIDER_NOT_READY,
                "no ruleset has been loaded yet",
                OFReason.ERROR,
            )
        kind = ruleset.flag_type(flag_key)
        if kind is None:
            return FlagResolutionDetails(
                default_value,
                ErrorCode.FLAG_NOT_FOUND,
                f"no flag {flag_key!r} in the ruleset ({ruleset.environment})",
                OFReason.ERROR,
            )
        if kind not in flag_types:
            return FlagResolutionDetails(
                default_value,
                ErrorCode.TYPE_MISMATCH,
                f"flag {flag_key!r} is a {kind} flag, not {wanted}",
                OFReason.ERROR,
            )
        e = ruleset.evaluate(
            flag_key, attributes_of(context, self.targeting_attribute), default_value
        )
        value = convert(e.value)
        if value is _MISSING:
            return FlagResolutionDetails(
                default_value,
                ErrorCode.TYPE_MISMATCH,
                f"flag {flag_key!r} gave {e.value!r}, not {wanted}",
                OFReason.ERROR,
            )
        if self.on_evaluation is not None:
            try:
                self.on_evaluation(e)
            except Exception:
                log.exception("on_evaluation failed for flag %r", flag_key)
        if e.exposure and self.on_exposure is not None:
            try:
                self.on_exposure(e)
            except Exception:
                log.exception("on_exposure failed for flag %r", flag_key)
        metadata: dict[str, bool | int | float | str] = {"reason": e.reason}
        if e.rule is not None:
            metadata["rule"] = e.rule
        if e.experiment is not None:
            metadata["experiment"] = e.experiment
        if e.variation is not None:
            metadata["variation"] = e.variation
        if e.hash_attribute is not None:
            metadata["hash_attribute"] = e.hash_attribute
        return FlagResolutionDetails(
            value,
            reason=REASONS.get(e.reason, OFReason.UNKNOWN),
            variant=e.variation_key,
            flag_metadata=metadata,
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(
            flag_key, default_value, evaluation_context, ("boolean",), _as_bool, "a boolean"
        )

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(
            flag_key, default_value, evaluation_context, ("string",), _as_str, "a string"
        )

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(
            flag_key, default_value, evaluation_context, ("number",), _as_int, "an integer"
        )

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(
            flag_key, default_value, evaluation_context, ("number",), _as_float, "a number"
        )

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        return self._resolve(
            flag_key,
            default_value,
            evaluation_context,
            ("json",),
            _as_object,
            "an object or a list",
        )
