"""The storability check: what BSON cannot round-trip is named by its dotted path."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest

from mongodb_session_manager._storable import MAX_DEPTH, check_metadata, check_storable, first_unstorable
from mongodb_session_manager.errors import InvalidSessionInputError


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"a": [1, {"b\x00": 1}]}, "a.1.b\\x00", "NUL"),
        ({"x": "\ud800"}, "x", "lone surrogate"),
        ({"\udc80": 1}, "\\udc80", "lone surrogate"),
        ({"n": [2**63]}, "n.0", "64-bit"),
        ({"n": -(2**63) - 1}, "n", "64-bit"),
        ({1: "int key"}, "1", "keys must be str"),
        ({"u": uuid.uuid4()}, "u", "UUID cannot be stored"),
        ({"d": datetime.date(2024, 1, 1)}, "d", "date cannot be stored"),
        ({"r": {"$ref": "c", "$id": 1}}, "r.$ref", "DBRef"),
    ],
)
def test_the_first_bad_part_is_named(value: Any, path: str, reason: str) -> None:
    found = first_unstorable(value)
    assert found is not None
    assert found[0] == path
    assert reason in found[1]


def test_what_bson_holds_passes() -> None:
    value = {
        "$schema": "a tool input may use $ keys",
        "a.b": "and dotted keys",
        "n": [2**63 - 1, -(2**63), 1.5, True, None, b"\x00bytes"],
        "t": ("tuples", "become", "lists"),
        "nul": "NUL\x00in a value is fine",
        "when": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    }
    assert first_unstorable(value) is None
    assert first_unstorable(nested(MAX_DEPTH)) is None


def test_nesting_past_the_limit_is_refused_without_recursing_further() -> None:
    found = first_unstorable(nested(10_000))  # would exhaust the recursion limit if walked
    assert found is not None
    assert "nested deeper" in found[1]
    assert found[0].count("k") == MAX_DEPTH


def test_check_storable_raises_the_package_error_with_the_full_path() -> None:
    with pytest.raises(InvalidSessionInputError, match=r"^message\.content\.0\.text: .*nothing was written"):
        check_storable({"content": [{"text": "\udfff"}]}, "message")


@pytest.mark.parametrize("key", ["$where", "a.b", ""])
def test_metadata_keys_must_be_queryable(key: str) -> None:
    with pytest.raises(InvalidSessionInputError, match="metadata keys"):
        check_metadata({"outer": {key: 1}})
    assert first_unstorable({key: 1}) is None  # elsewhere such keys are stored as they are
