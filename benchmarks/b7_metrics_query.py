"""B7: ``MetricsQuery.group_by("day", filter)`` over many stored turn records.

Turn records are seeded fast: ``insert_many`` of documents built by ``schema.message_document``
with an ``event_loop_metrics`` record shaped like the one the manager writes, spread over 30 days
and 1,000 sessions. A minimal ``$group`` by day (counts only) on the same index is the floor.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from strands.types.session import Session, SessionMessage, SessionType

from mongodb_session_manager import MetricsFilter, MetricsQuery, MongoDBSessionManagerFactory, schema

from ._common import REPLY, Context, Result, ratio

DAYS = 30
SESSIONS = 1_000
BATCH = 5_000
MAX_REPEATS = 3  # a full-size query scans every turn record: seconds each on SecantusDB


def run(ctx: Context) -> Result:
    count = ctx.size.metric_turns
    result = Result(
        "B7", f"Metrics: group_by('day') over {count:,} stored turns", "report (no target in the issue)"
    )
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=ctx.database("b7"))
    now = datetime.now(timezone.utc)
    seed_s = _seed(factory, count, now)
    query = MetricsQuery(factory.repository)
    everything = MetricsFilter(since=now - timedelta(days=DAYS + 1))
    last_week = MetricsFilter(since=now - timedelta(days=7))
    rows = query.group_by("day", everything)
    if sum(row.turns for row in rows) != count:
        raise AssertionError(f"group_by saw {sum(row.turns for row in rows)} turns, seeded {count}")
    timings: dict[str, list[float]] = {"all": [], "week": [], "floor": []}
    for _ in range(min(ctx.size.repeats, MAX_REPEATS)):
        timings["all"].append(_timed(lambda: query.group_by("day", everything)))
        timings["week"].append(_timed(lambda: query.group_by("day", last_week)))
        timings["floor"].append(_timed(lambda: _floor(factory, everything.since)))
    result.add(f"group_by('day'), all {count:,} turns ({len(rows)} days)", timings["all"], "ms")
    result.add("group_by('day'), last 7 days", timings["week"], "ms")
    result.add("floor: $group by day, count only", timings["floor"], "ms")
    result.add("ratio group_by / floor", ratio(timings["all"], timings["floor"]), "x")
    result.add("per 1,000 turns, group_by all", [t / count * 1000 for t in timings["all"]], "ms")
    result.notes.append(f"seeded {count:,} turn records in {seed_s:.1f} s (insert_many, {BATCH:,} per batch)")
    return result


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _seed(factory: MongoDBSessionManagerFactory, count: int, now: datetime) -> float:
    repository = factory.repository
    repository.ensure_indexes()  # index upkeep is part of the real write cost
    start = time.perf_counter()
    session_ids = [f"b7-{n}" for n in range(min(SESSIONS, count))]
    repository.collection.insert_many(
        [schema.session_document(Session(session_id, SessionType.AGENT)) for session_id in session_ids]
    )
    batch: list[dict[str, Any]] = []
    for n in range(count):
        session_id, turn = session_ids[n % len(session_ids)], n // len(session_ids)
        started_at = now - timedelta(days=DAYS * n / count)
        batch.append(_turn_document(session_id, 2 * turn + 1, n, started_at))
        if len(batch) == BATCH:
            repository.messages_collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        repository.messages_collection.insert_many(batch, ordered=False)
    return time.perf_counter() - start


def _turn_document(session_id: str, message_id: int, n: int, started_at: datetime) -> dict[str, Any]:
    """A turn's closing assistant message with its metrics record (varied by ``n``)."""
    message = {"role": "assistant", "content": [{"text": REPLY}]}
    record = {
        "status": "failed" if n % 50 == 0 else "completed",
        "started_at": started_at,
        "ended_at": started_at + timedelta(milliseconds=900),
        "duration_ms": 900.0,
        "model_id": "scripted-model",
        "stop_reason": "end_turn",
        "model_calls": 1 + n % 2,
        "accumulated_usage": {"inputTokens": 400 + n % 97, "outputTokens": 60, "totalTokens": 460 + n % 97},
        "accumulated_metrics": {"latencyMs": 800 + n % 300, "timeToFirstByteMs": 200 + n % 50},
        "cycles": {"count": 1 + n % 2, "durations_ms": [450.0] * (1 + n % 2)},
        "tool_calls": n % 2,
        "tools": {"add": {"calls": 1, "successes": 1, "errors": 0, "time_ms": 2.0}} if n % 2 else {},
    }
    session_message = SessionMessage.from_message(message, message_id)  # type: ignore[arg-type]
    return schema.message_document(session_id, "assistant", session_message, event_loop_metrics=record)


def _floor(factory: MongoDBSessionManagerFactory, since: datetime | None) -> list[dict[str, Any]]:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"event_loop_metrics.started_at": {"$gte": since}}},
        {
            "$group": {
                "_id": {"$dateTrunc": {"date": "$event_loop_metrics.started_at", "unit": "day"}},
                "n": {"$sum": 1},
            }
        },
        {"$sort": {"_id": 1}},
    ]
    return list(factory.repository.messages_collection.aggregate(pipeline, hint="turn_started_at"))
