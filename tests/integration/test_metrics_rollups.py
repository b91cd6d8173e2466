"""Hourly rollups: written with the turn's final write, and read back equal to the turn records.

A sample of turns goes through the real write path (agents, a tool turn, a failed turn); the
volume (2,000 turns of mixed agents, models, failures and cancels) through the same plan builder,
``write_plan``, batched into client-level bulk writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pymongo
import pytest
from pymongo import AsyncMongoClient
from strands import Agent, tool
from strands.types.session import SessionMessage

from mongodb_session_manager import (
    AsyncMetricsQuery,
    AsyncMongoDBSessionRepository,
    MetricsFilter,
    MetricsGroup,
    MetricsQuery,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    schema,
)
from mongodb_session_manager._plans import client_models, write_plan
from mongodb_session_manager.cli import main
from mongodb_session_manager.metrics.backfill import rebuild_rollups
from mongodb_session_manager.testing import CommandCounter, ScriptedModel, ScriptedResponse, ScriptedToolCall

START = datetime(2025, 6, 1, tzinfo=timezone.utc)
AGENTS = ("planner", "writer", "critic")
MODELS = ("model-a", "model-b")
STATUSES = ("completed",) * 7 + ("failed", "cancelled", "interrupted")
# Sums and maxima are exact on both paths; averages are divisions of equal sums.
EXACT = set(MetricsGroup.model_fields) - {
    "latency_avg_ms",
    "ttfb_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttfb_p50_ms",
    "ttfb_p95_ms",
}


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def turn_record(n: int) -> dict[str, Any]:
    started_at = START + timedelta(minutes=7 * n, seconds=n % 60)
    record: dict[str, Any] = {
        "status": STATUSES[n % len(STATUSES)],
        "started_at": started_at,
        "ended_at": started_at + timedelta(seconds=1),
        "model_id": MODELS[(n // 3) % 2] if n % 11 else None,
        "model_calls": 1,
        "accumulated_usage": {
            "inputTokens": 100 + n % 37,
            "outputTokens": 20 + n % 13,
            "totalTokens": 120 + n % 37 + n % 13,
            "cacheReadInputTokens": n % 5,
        },
        "accumulated_metrics": {"latencyMs": 300 + (n * 37) % 900},
        "tool_calls": n % 3,
        "tools": {},
    }
    if n % 4:
        record["accumulated_metrics"]["timeToFirstByteMs"] = 50 + n % 70
    return record


def seed_turns(repository: MongoDBSessionRepository, count: int) -> None:
    """``count`` closing messages with their records, through ``write_plan``: message + rollup $inc."""
    models: list[Any] = []
    namespaces = repository.namespaces
    for n in range(count):
        session_id, agent_id = f"bulk-{n % 40}", AGENTS[n % len(AGENTS)]
        message = SessionMessage.from_message({"role": "assistant", "content": [{"text": "ok"}]}, n)
        document = schema.message_document(session_id, agent_id, message, event_loop_metrics=turn_record(n))
        models += client_models(write_plan(session_id, document, None), namespaces)
        if len(models) >= 1000:
            repository.client.bulk_write(models, ordered=True)
            models = []
    if models:
        repository.client.bulk_write(models, ordered=True)


def assert_same(from_turns: MetricsGroup, from_rollups: MetricsGroup) -> None:
    assert from_rollups.model_dump(include=EXACT) == from_turns.model_dump(include=EXACT)
    assert from_rollups.latency_avg_ms == pytest.approx(from_turns.latency_avg_ms)
    assert from_rollups.ttfb_avg_ms == pytest.approx(from_turns.ttfb_avg_ms)
    assert from_rollups.latency_p95_ms is None  # percentiles come from turn records only


@pytest.fixture(scope="module")
def seeded(mongodb_uri: str) -> Iterator[MongoDBSessionRepository]:
    """2,000 turns, seeded once for the module's read-only tests (in a database of its own)."""
    name = f"msm_test_rollups_{uuid4().hex[:8]}"
    with pymongo.MongoClient(mongodb_uri) as client:
        repository = MongoDBSessionRepository(client=client, database_name=name)
        repository.ensure_indexes()
        seed_turns(repository, 2_000)
        yield repository
        client.drop_database(name)


@pytest.mark.parametrize("by", ["day", "hour", "model", "agent"])
def test_group_by_from_rollups_equals_group_by_from_turn_records(
    seeded: MongoDBSessionRepository, by: str
) -> None:
    query = MetricsQuery(seeded)

    from_turns = query.group_by(by, source="turns")  # type: ignore[arg-type]
    from_rollups = query.group_by(by, source="rollups")  # type: ignore[arg-type]

    assert sum(row.turns for row in from_turns) == 2_000
    assert [row.key for row in from_rollups] == [row.key for row in from_turns]
    for turns_row, rollups_row in zip(from_turns, from_rollups, strict=True):
        assert_same(turns_row, rollups_row)
    # auto: once a backfill says the rollups count every turn, a window without a start reads them.
    rebuild_rollups(seeded)
    assert query.group_by(by) == from_rollups  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "metrics_filter",
    [
        None,
        MetricsFilter(agent_id="writer"),
        MetricsFilter(model_id="model-b", since=START + timedelta(days=2), until=START + timedelta(days=5)),
        MetricsFilter(since=START + timedelta(hours=30)),
    ],
)
def test_summary_from_rollups_equals_summary_from_turn_records(
    seeded: MongoDBSessionRepository, metrics_filter: MetricsFilter | None
) -> None:
    query = MetricsQuery(seeded)
    from_turns = query.summary(metrics_filter, source="turns")
    assert from_turns.turns > 0
    assert from_turns.failed_turns > 0
    assert from_turns.cancelled_turns > 0
    assert_same(from_turns, query.summary(metrics_filter, source="rollups"))


async def test_the_async_query_reads_the_same_rollups(
    seeded: MongoDBSessionRepository, mongodb_uri: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    try:
        repository = AsyncMongoDBSessionRepository(client=client, database_name=seeded.database.name)
        rows = await AsyncMetricsQuery(repository).group_by("day")
    finally:
        await client.close()
    assert rows == MetricsQuery(seeded).group_by("day", source="rollups")


async def test_real_turns_are_rolled_up_in_their_final_write(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    def agent(session_id: str, agent_id: str, model: ScriptedModel) -> tuple[Agent, MongoDBSessionManager]:
        manager = MongoDBSessionManager(
            session_id=session_id, client=counted_client, database_name=database_name
        )
        return Agent(
            agent_id=agent_id, model=model, session_manager=manager, tools=[add], callback_handler=None
        ), manager

    planner, planner_manager = agent("real-1", "planner", ScriptedModel(["Hi.", "Sure."], model_id="model-a"))
    await planner.invoke_async("warm up")
    counter.commands.clear()
    await planner.invoke_async("hello")
    assert len(counter.commands) == 2  # a plain turn: the user message, then the reply with its rollup

    tool_turn = [ScriptedResponse(tool_calls=[ScriptedToolCall("add", {"a": 1, "b": 2})]), "3."]
    writer, writer_manager = agent("real-2", "writer", ScriptedModel(tool_turn, model_id="model-b"))
    await writer.invoke_async("add 1 and 2")
    failing = ScriptedModel(
        [ScriptedResponse(text="partial reply", error_after_chunks=1)], model_id="model-b"
    )
    critic, critic_manager = agent("real-3", "critic", failing)
    with pytest.raises(Exception, match="chunks"):
        await critic.invoke_async("go")
    for manager in (planner_manager, writer_manager, critic_manager):
        await manager.aclose()

    repository = MongoDBSessionRepository(client=counted_client, database_name=database_name)
    query = MetricsQuery(repository)
    from_turns = query.summary(source="turns")
    assert (from_turns.turns, from_turns.failed_turns, from_turns.tool_calls) == (4, 1, 1)
    assert_same(from_turns, query.summary(source="rollups"))
    for by in ("model", "agent"):
        turns_rows, rollup_rows = query.group_by(by, source="turns"), query.group_by(by, source="rollups")
        assert [row.key for row in rollup_rows] == [row.key for row in turns_rows]
        for turns_row, rollups_row in zip(turns_rows, rollup_rows, strict=True):
            assert_same(turns_row, rollups_row)


def test_backfill_rebuilds_rollups_for_turns_stored_without_them(
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    mongodb_uri: str,
    database_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository = MongoDBSessionRepository(client=mongo_client, database_name=database_name)
    repository.ensure_indexes()
    old_turns = []
    for n in range(300):  # as stored before rollups existed: turn records only
        message = SessionMessage.from_message({"role": "assistant", "content": [{"text": "ok"}]}, n)
        old_turns.append(
            schema.message_document(f"old-{n % 7}", AGENTS[n % 3], message, event_loop_metrics=turn_record(n))
        )
    repository.messages_collection.insert_many(old_turns)
    query = MetricsQuery(repository)
    assert query.summary(source="rollups").turns == 0

    for _ in range(2):  # idempotent: a second run rebuilds the same hours
        assert main(["metrics", "backfill", "--uri", mongodb_uri, "--database", database_name]) == 0
        assert "hourly rollups" in capsys.readouterr().out
        assert_same(query.summary(source="turns"), query.summary(source="rollups"))

    seed_turns(repository, 30)  # new turns $inc the hours the backfill wrote
    assert_same(query.summary(source="turns"), query.summary(source="rollups"))
    for turns_row, rollups_row in zip(
        query.group_by("hour", source="turns"), query.group_by("hour"), strict=True
    ):
        assert_same(turns_row, rollups_row)
