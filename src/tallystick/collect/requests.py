"""What the HTTP APIs share about requests: the ``Refused`` exception every refusal travels in,
reading a bounded body and its JSON."""

from __future__ import annotations

from typing import Any

import msgspec

from tallystick import messages
from tallystick.collect.asgi import Receive
from tallystick.collect.body import read_body as body_within
from tallystick.messages import Problem


class Refused(Exception):
    """A request an API answers with an error: status, problem, headers, and for
    a definition the place of the problem (``where``, and ``line`` in a YAML document)."""

    def __init__(
        self,
        status: int,
        problem: Problem,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        *,
        where: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(problem.message)
        self.status = status
        self.problem = problem
        self.headers = headers
        self.where = where
        self.line = line

    def body(self) -> dict[str, Any]:
        """``{"error": {"code", "message"}}``, with ``where`` and ``line`` when known."""
        error: dict[str, Any] = self.problem.as_dict()
        if self.where is not None:
            error["where"] = self.where
        if self.line is not None:
            error["line"] = self.line
        return {"error": error}


async def read_body(receive: Receive, limit: int, hint: str) -> bytes:
    """The whole request body; 413 (with ``hint``: what to send instead) once it passes
    ``limit`` bytes."""
    body = await body_within(receive, limit, None)
    if isinstance(body, Problem):
        raise Refused(
            413,
            Problem(messages.REQUEST_TOO_LARGE, f"the body is larger than {limit:,} bytes: {hint}"),
        )
    return body


def json_value(body: bytes) -> Any:
    """The JSON of a body (``None`` for an empty one); 400 ``malformed_json`` when it is not."""
    if not body.strip():
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise Refused(
            400,
            Problem(
                messages.MALFORMED_JSON, f"the body is not valid JSON ({exc}): send an object."
            ),
        ) from None


def json_object(body: bytes, example: str) -> dict[str, Any]:
    """A body that must be a JSON object (empty: ``{}``)."""
    value = json_value(body)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(
            400,
            Problem(messages.INVALID_QUERY, f"the body must be a JSON object, such as {example}"),
        )
    return value
