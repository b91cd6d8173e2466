"""Aggregation pipelines over turn records: pure functions, checked without a server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mongodb_session_manager import InvalidSessionInputError, MetricsFilter, schema
from mongodb_session_manager.metrics import pipelines

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_every_match_repeats_the_partial_index_filter() -> None:
    """The partial indexes only serve queries that state their filter."""
    partial = dict(schema.MESSAGE_INDEXES[1].options["partialFilterExpression"])
    filters = [
        None,
        MetricsFilter(),
        MetricsFilter(since=SINCE),
        MetricsFilter(session_ids=["a"], agent_id="x", model_id="m"),
    ]
    for metrics_filter in filters:
        match = pipelines.turn_match(metrics_filter)
        assert {key: match[key] for key in partial} == partial


def test_filters_become_one_match_on_the_turn_records() -> None:
    until = SINCE + timedelta(days=7)
    metrics_filter = MetricsFilter(
        since=SINCE, until=until, agent_id="writer", model_id="m-1", session_ids=["a", "b"]
    )

    assert pipelines.turn_match(metrics_filter) == {
        "event_loop_metrics": {"$exists": True},
        "event_loop_metrics.started_at": {"$gte": SINCE, "$lt": until},
        "session_id": {"$in": ["a", "b"]},
        "agent_id": "writer",
        "event_loop_metrics.model_id": "m-1",
    }
    assert pipelines.filter_stages(metrics_filter, sessions_collection="sessions") == [
        {"$match": pipelines.turn_match(metrics_filter)}
    ]


def test_queries_across_sessions_read_only_turn_records() -> None:
    """Cross-session queries name the partial index; session-bound ones leave it to the planner."""
    index_names = {spec.name for spec in schema.MESSAGE_INDEXES}

    assert pipelines.turn_hint(MetricsFilter(since=SINCE)) == pipelines.turn_hint(None) == "turn_started_at"
    assert "turn_started_at" in index_names
    assert pipelines.turn_hint(MetricsFilter(session_ids=["a"])) is None


@pytest.mark.parametrize("by", ["week", "$agent_id", "session"])
def test_unknown_groupings_are_refused(by: Any) -> None:
    with pytest.raises(InvalidSessionInputError):
        pipelines.group_pipeline(by, None, sessions_collection="sessions")


def test_percentiles_use_the_approximate_method() -> None:
    (stage,) = [s for s in pipelines.summary_pipeline(None, sessions_collection="sessions") if "$group" in s]
    latency = stage["$group"]["latency_percentiles"]["$percentile"]
    assert latency["method"] == "approximate"
    assert latency["p"] == [0.5, 0.95, 0.99]


def test_plain_metadata_values_are_equality_matches() -> None:
    metrics_filter = MetricsFilter(metadata={"tenant": "acme", "plan": {"tier": "gold"}})

    stages = pipelines.filter_stages(metrics_filter, sessions_collection="chats")

    lookup = stages[1]["$lookup"]
    assert lookup["from"] == "chats"
    assert (lookup["localField"], lookup["foreignField"]) == ("session_id", "_id")
    assert lookup["pipeline"][0] == {"$match": {"metadata.tenant": "acme", "metadata.plan": {"tier": "gold"}}}
    assert stages[2] == {"$match": {"_session": {"$ne": []}}}
