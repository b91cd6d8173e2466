"""The command line's option types, without a server."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import pytest

from mongodb_session_manager.cli._parser import parse_args, parse_key_value, parse_positive, parse_when


def test_meta_is_a_key_and_a_string_value() -> None:
    assert parse_key_value("tenant=acme") == ("tenant", "acme")
    assert parse_key_value("note=a=b") == ("note", "a=b")
    assert parse_key_value("empty=") == ("empty", "")


@pytest.mark.parametrize("value", ["tenant", "=acme"])
def test_meta_needs_a_key_and_an_equals_sign(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected key=value"):
        parse_key_value(value)


@pytest.mark.parametrize("value", ["$where=1", "items.$=1", "a.$b=1"])
def test_meta_keys_follow_the_metadata_filter_rule(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must not start with '\\$'"):
        parse_key_value(value)


def test_dates_without_a_zone_are_utc() -> None:
    assert parse_when("2025-01-31") == datetime(2025, 1, 31, tzinfo=timezone.utc)
    assert parse_when("2025-01-31T12:00:00Z") == datetime(2025, 1, 31, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", ["-1", "ten"])
def test_counts_are_non_negative_ints(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_positive(value)


def test_global_options_get_their_defaults_wherever_they_are_left_out() -> None:
    before = parse_args(["--database", "db1", "sessions", "list"])
    after = parse_args(["sessions", "list", "--database", "db2"])
    neither = parse_args(["sessions", "list"])

    assert (before.database, after.database) == ("db1", "db2")
    assert (neither.uri, neither.json, neither.collection) == (None, False, "sessions")
