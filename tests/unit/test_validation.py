from __future__ import annotations

from typing import Any

import pytest

from mongodb_session_manager import InvalidSessionInputError
from mongodb_session_manager._redact import redact_uri
from mongodb_session_manager._validation import validate_agent_id, validate_message_id, validate_session_id


@pytest.mark.parametrize("value", ["user-123", "a" * 512, "ünïcode ok", "with.dot"])
def test_session_ids_that_are_fine(value: str) -> None:
    assert validate_session_id(value) == value


@pytest.mark.parametrize(
    "value", [None, 7, {"$ne": 1}, ["x"], "", " ", "a" * 513, "a\x00b", "$where"], ids=repr
)
def test_session_ids_that_are_refused(value: Any) -> None:
    with pytest.raises(InvalidSessionInputError, match="session_id"):
        validate_session_id(value)


@pytest.mark.parametrize("value", ["a.b", "$set", "", {"a": 1}], ids=repr)
def test_agent_ids_that_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="agent_id"):
        validate_agent_id(value)


@pytest.mark.parametrize("value", [-1, 1.5, "3", True], ids=repr)
def test_message_ids_must_be_non_negative_ints(value: Any) -> None:
    with pytest.raises(InvalidSessionInputError):
        validate_message_id(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mongodb://user:secret@host:27017/db", "mongodb://user:***@host:27017/db"),
        ("mongodb+srv://u:p%40ss@cluster.example.net/", "mongodb+srv://u:***@cluster.example.net/"),
        (
            "failed to reach mongodb://a:b@h1,h2/?x=1 twice",
            "failed to reach mongodb://a:***@h1,h2/?x=1 twice",
        ),
        ("mongodb://localhost:27017/", "mongodb://localhost:27017/"),
    ],
)
def test_connection_strings_lose_their_password(text: str, expected: str) -> None:
    assert redact_uri(text) == expected
