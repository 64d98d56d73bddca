"""Configurations sent over HTTP: JSON or YAML, and a refusal that names the place, its line (read
as `tally config apply` reads a file) and the reason."""

from __future__ import annotations

import pytest

from tallystick import messages
from tallystick.admin.documents import read_configuration, read_document
from tallystick.collect.requests import Refused

DOC = """\
version: 1
streams:
  - name: product
    events: [project.*]
    sample:
      unit: session
      rate: 0.1
  - name: web
    owner: web-team
models:
  - name: commits
    stream: product
    fields:
      - user.id
"""


@pytest.mark.parametrize(
    ("body", "content_type", "line", "where", "message"),
    [
        (
            DOC.replace("rate: 0.1", "rate: 7"),
            "application/yaml",
            7,
            "streams[0].sample.rate",
            "streams[0].sample.rate (line 7): a sample rate is a number from 0 to 1",
        ),
        (
            DOC.replace("stream: product", "stream: nosuch"),
            "",
            12,
            "models[0].stream",
            "models[0].stream (line 12): no stream 'nosuch'",
        ),
        (
            '{"streams": [{"name": "a", "enabled": "yes"}]}',
            "application/json",
            None,
            "streams[0].enabled",
            "streams[0].enabled: must be true or false, got 'yes'",
        ),
        (
            "streams:\n  - name: a\n   events: [x]\n",
            "text/yaml",
            3,
            None,
            "line 3: not valid YAML",
        ),
        (
            DOC.replace("    owner: web-team", "    owner: web-team\n    owner: other"),
            "application/yaml",
            10,
            None,
            "line 10: 'owner' is given twice (first on line 9)",
        ),
        (
            DOC.replace("    owner: web-team", "    owner: web-team\n    onwer: x"),
            "application/yaml",
            10,
            "streams[1].onwer",
            "streams[1].onwer (line 10): a stream has no setting 'onwer'",
        ),
    ],
    ids=["yaml value", "yaml reference", "json", "yaml syntax", "key twice", "unknown key"],
)
def test_a_bad_document_names_the_place_and_reason(
    body: str, content_type: str, line: int | None, where: str | None, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        read_configuration(body.encode(), content_type)
    error = refused.value.body()["error"]
    assert refused.value.status == 400
    assert error["code"] == messages.INVALID_DEFINITION
    assert error["message"].startswith(message), error["message"]
    assert error.get("line") == line
    assert error.get("where") == where


def test_json_and_yaml_read_the_same() -> None:
    as_json = '{"streams": [{"name": "a", "events": ["x.*"]}]}'
    assert read_configuration(as_json.encode(), "application/json") == read_configuration(
        b"streams:\n  - name: a\n    events: ['x.*']\n", "application/yaml"
    )
    # YAML reads JSON too, so a body without a content type works either way
    assert (
        read_document(as_json.encode(), "").data
        == read_document(as_json.encode(), "application/json; charset=utf-8").data
    )


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"{nope", "application/json", messages.MALFORMED_JSON),
        (b"\xff\xfe", "application/yaml", messages.INVALID_UTF8),
    ],
)
def test_unreadable_bodies(body: bytes, content_type: str, code: str) -> None:
    with pytest.raises(Refused) as refused:
        read_document(body, content_type)
    assert refused.value.problem.code == code
