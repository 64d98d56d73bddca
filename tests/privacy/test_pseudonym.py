from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallystick.config import ConfigError, Settings
from tallystick.privacy.pseudonym import (
    LENGTH,
    PREFIX,
    check,
    current,
    is_pseudonym,
    previous_keys,
    pseudonymize,
    stored_user_ids,
)


def test_a_pseudonym_is_a_prefixed_truncated_hmac() -> None:
    expected = hmac.new(b"k1", b"user-42", hashlib.sha256).hexdigest()[:40]
    assert pseudonymize("user-42", "k1") == PREFIX + expected
    assert len(pseudonymize("user-42", "k1")) == LENGTH


@given(st.text(max_size=300), st.text(min_size=1, max_size=64))
def test_pseudonyms_are_stable_fixed_length_and_recognisable(user_id: str, key: str) -> None:
    value = pseudonymize(user_id, key)
    assert value == pseudonymize(user_id, key)
    assert len(value) == LENGTH
    assert is_pseudonym(value)


def test_keys_and_ids_change_the_pseudonym() -> None:
    assert pseudonymize("u", "k1") != pseudonymize("u", "k2")
    assert pseudonymize("u1", "k1") != pseudonymize("u2", "k1")
    assert not is_pseudonym("user-42")
    assert not is_pseudonym(PREFIX + "z" * 40)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty key"):
        pseudonymize("u", "")


def test_stored_forms_without_pseudonyms_are_the_id_itself() -> None:
    assert stored_user_ids("u1", Settings()) == ["u1"]


def test_stored_forms_list_the_current_and_previous_keys() -> None:
    settings = Settings(
        pseudonymize_user_ids=True, pseudonym_key="new", pseudonym_previous_keys=" old1, ,old2,new"
    )
    assert previous_keys(settings) == ["old1", "old2", "new"]
    assert stored_user_ids("u1", settings) == [
        "u1",
        pseudonymize("u1", "new"),
        pseudonymize("u1", "old1"),
        pseudonymize("u1", "old2"),
    ]
    # keys still configured after pseudonymization is turned off: old events carry pseudonyms
    off = Settings(pseudonym_key="new")
    assert stored_user_ids("u1", off) == ["u1", pseudonymize("u1", "new")]


def test_pseudonymization_without_a_key_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="TALLYSTICK_PSEUDONYM_KEY"):
        check(Settings(pseudonymize_user_ids=True))
    with pytest.raises(ConfigError):
        current(Settings(pseudonymize_user_ids=True, pseudonym_key="  "))
    assert current(Settings(pseudonym_key="k")) is None
    assert current(Settings(pseudonymize_user_ids=True, pseudonym_key="k")) == "k"
