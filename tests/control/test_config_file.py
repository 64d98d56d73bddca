"""``tally.yaml``: written by export, read by apply, with the line of every problem."""

from __future__ import annotations

import pytest

from tallystick.control.config_file import ConfigFileError, dump, load
from tallystick.control.definitions import parse_configuration

TEXT = """\
version: 1
streams:
  - name: product
    events: [project.*]
    sample:
      unit: session
      rate: 0.1
  - name: auth
    events: [signin.*]
    expires: 2027-01-31
models:
  - name: commits
    stream: product
    fields: [event_id, user.id]
"""


def test_dump_then_load_gives_the_same_configuration() -> None:
    config = load(TEXT)
    assert load(dump(config)) == config
    assert dump(config).startswith("# Tallystick")
    assert config.stream("auth") is not None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (TEXT.replace("rate: 0.1", "rate: 1.5"), 7, "streams[0].sample.rate: a sample rate"),
        (TEXT.replace("expires: 2027-01-31", "expires: soon"), 10, "streams[1].expires"),
        (TEXT.replace("stream: product", "stream: nope"), 13, "models[0].stream: no stream"),
        (TEXT.replace("[project.*]", "[Project]"), 4, "streams[0].events[0]: cannot route"),
        (
            TEXT.replace("    events: [signin.*]\n", "    events: [signin.*]\n    name: x\n"),
            10,
            "'name' is given twice (first on line 8)",
        ),
        (TEXT.replace("models:", "models: ["), 12, "not valid YAML"),
        ("- a\n- b\n", 1, "the configuration must be a mapping"),
    ],
)
def test_a_bad_file_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load(text, "t.yaml")
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"t.yaml:{line}: ")


def test_an_empty_file_is_an_empty_configuration() -> None:
    assert load("") == parse_configuration({})
