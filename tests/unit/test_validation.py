from __future__ import annotations

from typing import Any

import pytest

from mongodb_session_manager import InvalidSessionInputError, MetricsFilter, schema
from mongodb_session_manager._redact import redact_uri
from mongodb_session_manager._validation import (
    validate_agent_id,
    validate_message_id,
    validate_metadata_filter,
    validate_session_id,
)


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


@pytest.mark.parametrize(
    "metadata",
    [
        {"tenant": "acme"},
        {"tenant": "acme", "plan": {"tier": "gold"}},
        {"tags": ["a", "b"], "scores": [1, [2, 3]]},
        {"user.name": "ana"},  # a dotted path into the metadata is an equality match too
        {"note": "$not an operator in a value"},
        {},
    ],
    ids=repr,
)
def test_metadata_filters_that_are_equality_matches(metadata: dict[str, Any]) -> None:
    checked = validate_metadata_filter(metadata)
    assert checked == metadata
    assert checked is not metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {"$where": "sleep(1000)"},
        {"tenant": {"$ne": "acme"}},
        {"tenant": {"name": {"$regex": ".*"}}},
        {"tenant": [{"$gt": ""}]},
        {"tenant": [[{"$gt": ""}]]},
        {"tenant": ({"$gt": ""},)},
        {"items.$": 1},
        {"items.$[x]": 1},
        {"tenant": {"a.$b": 1}},
        {"": "empty key"},
        {"tenant": {"": 1}},
        {7: "not a str key"},
        {"tenant": {7: "x"}},
    ],
    ids=repr,
)
def test_metadata_filters_with_operators_are_refused(metadata: dict[Any, Any]) -> None:
    with pytest.raises(InvalidSessionInputError, match="metadata filter keys"):
        validate_metadata_filter(metadata)


def test_a_nested_operator_names_the_field_it_was_found_in() -> None:
    with pytest.raises(InvalidSessionInputError, match=r"'\$ne' \(in the value for 'user'\)"):
        validate_metadata_filter({"user": {"name": {"$ne": None}}})


@pytest.mark.parametrize("metadata", ["tenant=acme", ["tenant"], 7], ids=repr)
def test_a_metadata_filter_must_be_a_mapping(metadata: Any) -> None:
    with pytest.raises(InvalidSessionInputError, match="metadata must be a dict"):
        validate_metadata_filter(metadata)


def test_no_metadata_filter_is_an_empty_one() -> None:
    assert validate_metadata_filter(None) == {}


def test_every_metadata_filter_follows_the_one_rule() -> None:
    """Session listings and metrics filters refuse what the rule refuses, with its message."""
    hostile = {"user": {"$ne": None}}
    with pytest.raises(InvalidSessionInputError, match="metadata filter keys"):
        schema.session_list_filter(metadata=hostile)
    with pytest.raises(InvalidSessionInputError, match="metadata filter keys"):
        MetricsFilter(metadata=hostile)
    assert schema.session_list_filter(metadata={"tenant": "acme"}) == {"metadata.tenant": "acme"}


@pytest.mark.parametrize("database_name", ["bad.name", "a b", "a/b", 'a"b', "$db", ""])
def test_a_database_name_mongodb_refuses_is_a_configuration_error_before_any_io(database_name: str) -> None:
    import mongomock

    from mongodb_session_manager import ConfigurationError, MongoDBSessionRepository

    with pytest.raises(ConfigurationError, match="database_name"):
        MongoDBSessionRepository(client=mongomock.MongoClient(), database_name=database_name)
