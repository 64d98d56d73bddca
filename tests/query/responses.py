"""Checks of the HTTP API's answers shared by its tests: an error's shape, and a body against
the OpenAPI document's schema."""

from __future__ import annotations

from typing import Any

import jsonschema

from tallystick.query.openapi import document

DOC = document("test")


def error_message(response: Any, status: int, code: str) -> str:
    """The message of an error answer, after checking its status, type and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def valid(schema: str, value: object) -> None:
    """``value`` matches the OpenAPI component ``schema``."""
    jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": DOC["components"]}
    ).validate(value)
