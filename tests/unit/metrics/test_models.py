"""The metrics filter: what it accepts, what it refuses, how it reads datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mongodb_session_manager import InvalidSessionInputError, MetricsFilter

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "metadata",
    [
        {"$where": "sleep(1000)"},
        {"tenant": {"$ne": "acme"}},
        {"tenant": {"name": {"$regex": ".*"}}},
        {"tenant": [{"$gt": ""}]},
        {"": "empty key"},
    ],
)
def test_metadata_filters_refuse_operators(metadata: dict[str, Any]) -> None:
    with pytest.raises(InvalidSessionInputError):
        MetricsFilter(metadata=metadata)


@pytest.mark.parametrize(
    "options",
    [
        {"agent_id": "$agent"},
        {"agent_id": "a.b"},
        {"session_ids": "one-session"},
        {"session_ids": ["ok", {"$gt": ""}]},
        {"model_id": ""},
        {"since": SINCE, "until": SINCE - timedelta(days=1)},
    ],
)
def test_bad_filters_are_refused_as_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidSessionInputError) as raised:
        MetricsFilter(**options)
    assert isinstance(raised.value, ValueError)


def test_naive_datetimes_in_a_filter_are_utc() -> None:
    metrics_filter = MetricsFilter(since=datetime(2024, 5, 1), until=datetime(2024, 5, 2))
    assert metrics_filter.since == SINCE
    assert metrics_filter.until == SINCE + timedelta(days=1)
