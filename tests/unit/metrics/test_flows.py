"""Metrics flows without a server: parsing aggregation rows, and the steps each query takes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from strands.types.session import SessionMessage

from mongodb_session_manager import (
    InvalidSessionInputError,
    MetricsFilter,
    SessionNotFoundError,
    schema,
)
from mongodb_session_manager.metrics import flows, pipelines
from mongodb_session_manager.metrics.flows import (
    Aggregate,
    group_flow,
    parse_group,
    parse_turn,
    session_metrics_flow,
    summary_flow,
    top_sessions_flow,
)

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)


def turn_document(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "status": "completed",
        "started_at": datetime(2024, 5, 2, 9, 30),  # naive, as the driver returns it
        "ended_at": datetime(2024, 5, 2, 9, 31),
        "duration_ms": 812.5,
        "model_id": "model-a",
        "stop_reason": "end_turn",
        "model_calls": 2,
        "accumulated_usage": {"inputTokens": 40, "outputTokens": 9, "totalTokens": 49},
        "accumulated_metrics": {"latencyMs": 310, "timeToFirstByteMs": 33},
        "cycles": {"count": 2, "durations_ms": [400.0, 412.5]},
        "tool_calls": 1,
        "tools": {"search": {"calls": 1, "successes": 1, "errors": 0, "time_ms": 12.5}},
        **overrides,
    }
    message = SessionMessage({"role": "assistant", "content": [{"text": "done"}]}, 3)
    return schema.message_document("s-1", "assistant", message, event_loop_metrics=record)


# --- parsing ----------------------------------------------------------------------------------


def test_a_turn_record_parses_into_turn_metrics() -> None:
    turn = parse_turn(turn_document())

    assert (turn.session_id, turn.agent_id, turn.message_id) == ("s-1", "assistant", 3)
    assert turn.started_at == datetime(2024, 5, 2, 9, 30, tzinfo=timezone.utc)
    assert (turn.input_tokens, turn.output_tokens, turn.total_tokens) == (40, 9, 49)
    assert (turn.latency_ms, turn.time_to_first_byte_ms) == (310, 33)
    assert (turn.cycles, turn.cycle_durations_ms) == (2, [400.0, 412.5])
    assert turn.tools["search"].time_ms == 12.5
    assert turn.error is None


def test_a_failed_turn_keeps_its_error() -> None:
    turn = parse_turn(
        turn_document(status="failed", error={"type": "TimeoutError", "message": "provider timed out"})
    )
    assert turn.status == "failed"
    assert turn.error is not None
    assert (turn.error.type, turn.error.message) == ("TimeoutError", "provider timed out")


def test_no_matching_turns_is_an_empty_summary() -> None:
    empty = parse_group(None)
    assert (empty.key, empty.turns, empty.error_rate, empty.latency_p95_ms) == (None, 0, 0.0, None)


def test_error_rate_is_failed_over_all_turns() -> None:
    row = {
        "_id": "model-a",
        "turns": 8,
        "failed_turns": 2,
        **dict.fromkeys(
            [
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "cache_read_input_tokens",
                "cache_write_input_tokens",
                "latency_ms",
                "tool_calls",
            ],
            0,
        ),
        "latency_percentiles": [1.0, 2.0, 3.0],
        "ttfb_percentiles": [None, None],
    }
    group = parse_group(row)
    assert group.error_rate == 2 / 8
    assert (group.latency_p50_ms, group.latency_p95_ms, group.latency_p99_ms) == (1.0, 2.0, 3.0)


# --- flows ------------------------------------------------------------------------------------


def test_session_metrics_reads_the_session_then_a_page_of_turns() -> None:
    flow = session_metrics_flow("s-1", skip=2, limit=5)

    first = next(flow)
    assert first.target == "sessions"
    second = flow.send(
        [{"_id": "s-1", "totals": {"turns": 3, "inputTokens": 40}, "agents": {"assistant": {}}}]
    )
    assert second.target == "messages"
    assert second.pipeline[0] == {"$match": {"session_id": "s-1", "event_loop_metrics": {"$exists": True}}}
    assert {"$skip": 2} in second.pipeline[-1]["$facet"]["page"]
    with pytest.raises(StopIteration) as done:
        flow.send([{"total": [{"n": 3}], "page": [turn_document()]}])

    metrics = done.value.value
    assert (metrics.totals.turns, metrics.totals.input_tokens, metrics.total_turns) == (3, 40, 3)
    assert metrics.agents["assistant"].turns == 0
    assert [turn.message_id for turn in metrics.turns] == [3]


def test_a_missing_session_is_not_found() -> None:
    flow = session_metrics_flow("ghost", skip=0, limit=10)
    next(flow)
    with pytest.raises(SessionNotFoundError):
        flow.send([])


@pytest.mark.parametrize(("skip", "limit"), [(-1, 10), (0, 0), (0, 100_000), (True, 5)])
def test_bad_pages_are_refused_before_any_query(skip: Any, limit: Any) -> None:
    with pytest.raises(InvalidSessionInputError):
        next(session_metrics_flow("s-1", skip=skip, limit=limit))


def test_bad_rankings_are_refused_before_any_query() -> None:
    with pytest.raises(InvalidSessionInputError):
        next(top_sessions_flow("cost", 5, None, sessions_collection="sessions"))  # type: ignore[arg-type]
    with pytest.raises(InvalidSessionInputError):
        next(top_sessions_flow("tokens", 0, None, sessions_collection="sessions"))


def test_summary_from_turns_without_metadata_is_one_aggregation_on_the_messages() -> None:
    metrics_filter = MetricsFilter(since=SINCE)

    step = next(summary_flow(metrics_filter, sessions_collection="sessions", source="turns"))

    assert step == Aggregate(
        "messages",
        pipelines.summary_pipeline(metrics_filter, sessions_collection="sessions"),
        hint="turn_started_at",
    )


def test_a_metadata_filter_first_reads_the_matching_session_ids() -> None:
    flow = summary_flow(
        MetricsFilter(metadata={"tenant": "acme"}, session_ids=["a", "c"]), sessions_collection="sessions"
    )

    first = next(flow)
    assert first.target == "sessions"
    assert first.pipeline[0] == {"$match": {"metadata.tenant": "acme"}}
    second = flow.send([{"_id": "a"}, {"_id": "b"}])

    # Only sessions both named and matching; no join, and the planner picks the session index.
    assert second.pipeline[0]["$match"]["session_id"] == {"$in": ["a"]}
    assert not any("$lookup" in stage for stage in second.pipeline)
    assert second.hint is None


def test_too_many_matching_sessions_fall_back_to_a_join(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flows, "MAX_PREQUERIED_SESSIONS", 1)
    flow = summary_flow(MetricsFilter(metadata={"tenant": "acme"}), sessions_collection="chats")

    next(flow)
    second = flow.send([{"_id": "a"}, {"_id": "b"}])

    assert "session_id" not in second.pipeline[0]["$match"]
    assert second.pipeline[1]["$lookup"]["from"] == "chats"


def test_auto_reads_the_rollups_when_they_answer_the_filter_and_cover_its_window() -> None:
    on_the_hour = MetricsFilter(since=datetime(2025, 1, 1, 8), agent_id="a", model_id="m")
    flow = summary_flow(on_the_hour, sessions_collection="sessions")
    assert next(flow) == Aggregate("rollups", [{"$match": {"_id": "coverage"}}])
    covered = {"_id": "coverage", "since": datetime(2025, 1, 1, 6)}
    assert flow.send([covered]) == Aggregate("rollups", pipelines.rollup_summary_pipeline(on_the_hour))

    grouping = group_flow("day", None, sessions_collection="s", timezone="UTC")
    next(grouping)
    assert grouping.send([covered]).target == "messages"  # no start: turns before the rollups count
    grouping = group_flow("day", None, sessions_collection="s", timezone="UTC")
    next(grouping)
    backfilled = {"_id": "coverage", "since": datetime(1970, 1, 1)}
    assert grouping.send([backfilled]).target == "rollups"


@pytest.mark.parametrize(
    ("metrics_filter", "timezone"),
    [
        (MetricsFilter(since=datetime(2025, 1, 1, 8, 30)), "UTC"),
        (MetricsFilter(until=datetime(2025, 1, 1, 8, 0, 1)), "UTC"),
        (
            MetricsFilter(since=datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
            "UTC",
        ),
        (MetricsFilter(session_ids=["s"]), "UTC"),
        (MetricsFilter(metadata={"tenant": "acme"}), "UTC"),
        (None, "Asia/Kolkata"),
    ],
)
def test_auto_falls_back_to_turns_and_forced_rollups_refuse_what_they_cannot_answer(
    metrics_filter: MetricsFilter | None, timezone: str
) -> None:
    flow = group_flow("day", metrics_filter, sessions_collection="s", timezone=timezone)
    assert next(flow).target in ("messages", "sessions")
    with pytest.raises(InvalidSessionInputError, match="source='rollups'"):
        next(group_flow("day", metrics_filter, sessions_collection="s", timezone=timezone, source="rollups"))


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(InvalidSessionInputError, match="source"):
        next(summary_flow(None, sessions_collection="s", source="cache"))  # type: ignore[arg-type]
