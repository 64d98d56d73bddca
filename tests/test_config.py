"""Settings from the environment: every kind of value, and a clear error for a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tallystick.config import ConfigError, Settings, from_env


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"TALLYSTICK_WARM_UP": "false"}, "warm_up", False),
        ({"TALLYSTICK_WARM_UP": "0"}, "warm_up", False),
        ({"TALLYSTICK_WARM_UP": "Yes"}, "warm_up", True),
        ({}, "warm_up", True),
        ({"TALLYSTICK_CONTROL_POLL_SECONDS": "0.5"}, "control_poll_seconds", 0.5),
        (
            {"TALLYSTICK_CONTROL_URL": "postgresql+psycopg://t@/db"},
            "control_url",
            "postgresql+psycopg://t@/db",
        ),
        ({"TALLYSTICK_MAX_EVENT_BYTES": "1e3"}, "max_event_bytes", 1000),
        ({"TALLYSTICK_DATA": "/srv/tally"}, "data", Path("/srv/tally")),
    ],
)
def test_values_from_the_environment(env: dict[str, str], key: str, value: object) -> None:
    assert getattr(from_env(env), key) == value


def test_settings_survive_the_trip_to_a_worker_process() -> None:
    settings = Settings(warm_up=False, control_url="sqlite:////tmp/c.db", control_poll_seconds=3)
    assert from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TALLYSTICK_WARM_UP": "maybe"}, "TALLYSTICK_WARM_UP='maybe' is not a valid boolean"),
        ({"TALLYSTICK_CONTROL_POLL_SECONDS": "often"}, "is not a valid number"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(env)


def test_the_control_database_defaults_to_the_data_directory(tmp_path: Path) -> None:
    assert Settings(data=tmp_path).control_database == f"sqlite:///{tmp_path.resolve()}/control.db"
    assert "secret" not in repr(Settings(control_url="postgresql://u:secret@h/db"))
