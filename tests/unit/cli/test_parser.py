"""The command line's option types, without a server."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

import pytest

from mongodb_session_manager.cli._parser import (
    parse_args,
    parse_key_value,
    parse_page_size,
    parse_port,
    parse_positive,
    parse_when,
)


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


@pytest.mark.parametrize("value", ["0", "1001", "-5"])
def test_page_sizes_are_between_1_and_1000(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_page_size(value)


def test_ports_are_tcp_ports() -> None:
    assert parse_port("0") == 0
    assert parse_port("65535") == 65535
    with pytest.raises(argparse.ArgumentTypeError, match="TCP port"):
        parse_port("65536")


def test_the_default_database_is_the_guides() -> None:
    assert parse_args(["sessions", "list"]).database == "chat_db"


def test_metrics_filters_work_before_or_after_the_action() -> None:
    before = parse_args(["metrics", "--agent", "a", "top-sessions", "--by", "latency"])
    after = parse_args(["metrics", "top-sessions", "--agent", "a", "--limit", "3"])
    summary = parse_args(["metrics", "--group-by", "day"])

    assert (before.action, before.agent, before.by, before.limit) == ("top-sessions", "a", "latency", 10)
    assert (after.agent, after.by, after.limit) == ("a", "tokens", 3)
    assert (summary.action, summary.agent, summary.format, summary.group_by) == (None, None, "table", "day")


def test_show_pages_by_limit_and_offset() -> None:
    args = parse_args(["sessions", "show", "s-1"])
    assert (args.limit, args.offset) == (100, 0)
    args = parse_args(["sessions", "show", "s-1", "--limit", "10", "--offset", "20"])
    assert (args.limit, args.offset) == (10, 20)
