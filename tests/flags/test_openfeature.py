"""The OpenFeature provider, through the real ``openfeature`` API: values, reasons, variants,
errors (unknown flag, type mismatch, no ruleset yet), the targeting key, ruleset swaps and
exposures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason as OFReason

from support import run_coroutine
from tallystick.flags.evaluate import CompiledRuleset, Evaluation, compile_ruleset
from tallystick.flags.exposures import Exposure, ExposureLogger
from tallystick.flags.openfeature import TallystickProvider, attributes_of

RULESET: dict[str, Any] = {
    "flags": {
        "new-signin": {
            "type": "boolean",
            "default": False,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "staff",
                            "condition": {
                                "attribute": "email",
                                "op": "regex",
                                "value": "@ex\\.org$",
                            },
                            "value": True,
                        },
                        {"id": "ramp", "value": True, "rollout": {"coverage": 0.5}},
                    ]
                }
            },
        },
        "signin-dialog": {
            "type": "string",
            "default": "A",
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "ab",
                            "experiment": {
                                "variations": [
                                    {"key": "A", "value": "A"},
                                    {"key": "B", "value": "B"},
                                ]
                            },
                        }
                    ]
                }
            },
        },
        "limit": {
            "type": "number",
            "default": 10,
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "id": "pro",
                            "condition": {"attribute": "plan", "op": "equals", "value": "pro"},
                            "value": 2.5,
                        }
                    ]
                }
            },
        },
        "layout": {
            "type": "json",
            "default": {"columns": 2},
            "environments": {
                "prod": {
                    "rules": [
                        {
                            "condition": {"attribute": "plan", "op": "equals", "value": "free"},
                            "value": "compact",
                        }
                    ]
                }
            },
        },
        "old-banner": {"type": "boolean", "default": False, "killed": True},
        "dev-only": {
            "type": "boolean",
            "default": False,
            "environments": {"prod": {"enabled": False}},
        },
    }
}

FLAGS = compile_ruleset(RULESET, "prod")


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    api.shutdown()
    yield
    api.shutdown()


def ctx(key: str | None = None, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attributes)


def use(ruleset: CompiledRuleset | None = FLAGS, **kwargs: Any) -> TallystickProvider:
    provider = TallystickProvider(lambda: ruleset, **kwargs)
    api.set_provider(provider)
    return provider


def test_metadata_names_the_provider() -> None:
    use()
    assert api.get_provider_metadata().name == "tallystick"


def test_targeting_match_and_default() -> None:
    use()
    client = api.get_client()
    d = client.get_boolean_details("new-signin", False, ctx(email="ada@mail.org"))
    assert (d.value, d.reason, d.error_code) == (False, OFReason.DEFAULT, None)
    d = client.get_boolean_details("new-signin", False, ctx(email="ada@ex.org"))
    assert (d.value, d.reason, d.variant) == (True, OFReason.TARGETING_MATCH, None)
    assert d.flag_metadata == {"reason": "targeted", "rule": "staff"}


def test_rollout_is_a_split_and_follows_the_targeting_key() -> None:
    use()
    client = api.get_client()
    results: dict[str | None, int] = {}
    for i in range(200):
        d = client.get_boolean_details("new-signin", False, ctx(f"user-{i}"))
        expected = FLAGS.evaluate("new-signin", {"id": f"user-{i}"})
        assert d.value == expected.value
        results[d.reason] = results.get(d.reason, 0) + 1
    assert set(results) == {OFReason.SPLIT, OFReason.DEFAULT}


def test_experiment_variant_and_metadata() -> None:
    use()
    client = api.get_client()
    for i in range(50):
        d = client.get_string_details("signin-dialog", "A", ctx(f"user-{i}"))
        e = FLAGS.evaluate("signin-dialog", {"id": f"user-{i}"})
        assert (d.value, d.variant, d.reason) == (e.value, e.variation_key, OFReason.SPLIT)
        assert d.flag_metadata == {
            "reason": "experiment",
            "rule": "ab",
            "experiment": "signin-dialog",
            "variation": e.variation,
            "hash_attribute": "id",
        }


def test_no_targeting_key_skips_the_experiment() -> None:
    use()
    d = api.get_client().get_string_details("signin-dialog", "Z", ctx())
    assert (d.value, d.reason, d.variant) == ("A", OFReason.DEFAULT, None)


def test_killed_and_disabled_are_disabled() -> None:
    use()
    client = api.get_client()
    for key in ("old-banner", "dev-only"):
        d = client.get_boolean_details(key, True, ctx("user-1"))
        assert (d.value, d.reason, d.error_code) == (False, OFReason.DISABLED, None)


def test_unknown_flag_is_flag_not_found() -> None:
    use()
    d = api.get_client().get_boolean_details("nope", True, ctx("user-1"))
    assert (d.value, d.reason, d.error_code) == (True, OFReason.ERROR, ErrorCode.FLAG_NOT_FOUND)


def test_no_ruleset_yet_is_provider_not_ready() -> None:
    use(None)
    d = api.get_client().get_boolean_details("new-signin", True, ctx("user-1"))
    assert (d.value, d.error_code) == (True, ErrorCode.PROVIDER_NOT_READY)


@pytest.mark.parametrize(
    ("method", "key", "default"),
    [
        ("get_string_details", "new-signin", "x"),
        ("get_boolean_details", "signin-dialog", True),
        ("get_integer_details", "new-signin", 1),
        ("get_object_details", "limit", {}),
        ("get_float_details", "layout", 1.0),
    ],
)
def test_declared_type_mismatch(method: str, key: str, default: Any) -> None:
    use()
    d = getattr(api.get_client(), method)(key, default, ctx("user-1"))
    assert (d.value, d.reason, d.error_code) == (default, OFReason.ERROR, ErrorCode.TYPE_MISMATCH)


def test_numbers_as_integers_and_floats() -> None:
    use()
    client = api.get_client()
    d = client.get_integer_details("limit", 0, ctx("u"))
    assert (d.value, type(d.value), d.reason) == (10, int, OFReason.DEFAULT)
    f = client.get_float_details("limit", 0.0, ctx("u"))
    assert (f.value, type(f.value)) == (10.0, float)
    f = client.get_float_details("limit", 0.0, ctx("u", plan="pro"))
    assert (f.value, f.reason) == (2.5, OFReason.TARGETING_MATCH)
    d = client.get_integer_details("limit", 7, ctx("u", plan="pro"))
    assert (d.value, d.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_json_objects_and_scalar_mismatch() -> None:
    use()
    client = api.get_client()
    d = client.get_object_details("layout", {}, ctx("u"))
    assert (d.value, d.reason) == ({"columns": 2}, OFReason.DEFAULT)
    d = client.get_object_details("layout", {"x": 1}, ctx("u", plan="free"))
    assert (d.value, d.error_code) == ({"x": 1}, ErrorCode.TYPE_MISMATCH)


def test_the_ruleset_is_read_on_every_evaluation() -> None:
    current: list[CompiledRuleset] = [FLAGS]
    api.set_provider(TallystickProvider(lambda: current[0]))
    client = api.get_client()
    assert client.get_boolean_value("old-banner", True, ctx("u")) is False
    doc = {"flags": {"old-banner": {"type": "boolean", "default": True}}}
    current[0] = compile_ruleset(doc, "prod")
    assert client.get_boolean_value("old-banner", False, ctx("u")) is True


def test_attributes_of_context() -> None:
    when = dt.datetime(2026, 11, 2, 14, 3, tzinfo=dt.UTC)
    c = ctx("user-1", id="other", plan="pro", signed_up=when)
    assert attributes_of(c) == {"id": "user-1", "plan": "pro", "signed_up": when.isoformat()}
    assert attributes_of(c, "device_id")["device_id"] == "user-1"
    assert attributes_of(ctx(id="other")) == {"id": "other"}
    assert attributes_of(None) == {}


def test_targeting_attribute_feeds_a_custom_hash_attribute() -> None:
    doc = {
        "flags": {
            "x": {
                "type": "string",
                "default": "off",
                "environments": {
                    "prod": {
                        "rules": [
                            {
                                "experiment": {
                                    "hash_attribute": "device_id",
                                    "variations": [{"value": "a"}, {"value": "b"}],
                                }
                            }
                        ]
                    }
                },
            }
        }
    }
    flags = compile_ruleset(doc, "prod")
    use(flags, targeting_attribute="device_id")
    d = api.get_client().get_string_details("x", "off", ctx("dev-9"))
    assert d.reason == OFReason.SPLIT
    assert d.value == flags.evaluate("x", {"device_id": "dev-9"}).value


def test_exposures_are_logged_once_per_unit() -> None:
    sent: list[Exposure] = []
    use(on_exposure=ExposureLogger(sent.append))
    client = api.get_client()
    for _ in range(3):
        for i in range(10):
            client.get_string_value("signin-dialog", "A", ctx(f"user-{i}"))
        client.get_boolean_value("new-signin", False, ctx("user-1"))  # a rollout: no exposure
    assert len(sent) == 10
    assert {x.data["unit"] for x in sent} == {f"user-{i}" for i in range(10)}
    assert all(x.name == "experiment.exposure" for x in sent)


def test_no_exposure_on_a_type_mismatch() -> None:
    seen: list[Evaluation] = []
    use(on_exposure=seen.append)
    api.get_client().get_boolean_value("signin-dialog", False, ctx("user-1"))
    assert seen == []


def test_a_failing_exposure_callback_does_not_break_evaluation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(e: Evaluation) -> None:
        raise RuntimeError("queue full")

    use(on_exposure=boom)
    d = api.get_client().get_string_details("signin-dialog", "Z", ctx("user-1"))
    assert d.error_code is None
    assert d.value in {"A", "B"}
    assert "on_exposure failed" in caplog.text


def test_async_evaluation() -> None:
    use()

    async def go() -> str:
        d = await api.get_client().get_string_details_async("signin-dialog", "Z", ctx("user-3"))
        return d.value

    assert run_coroutine(go()) == FLAGS.evaluate("signin-dialog", {"id": "user-3"}).value
