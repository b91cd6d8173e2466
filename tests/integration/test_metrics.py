"""Per-turn metrics: what capture stores for real agents, and what the query API reads back.

Every expected number comes from the scripted model's own record of its calls (``model.calls``)
or from the seeded turns, computed here in Python, never typed in.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pymongo
import pytest
from pymongo import AsyncMongoClient
from strands import Agent, tool
from strands.types.session import Session, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMetricsQuery,
    MetricsFilter,
    MetricsQuery,
    MetricsTotals,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    SessionNotFoundError,
    TurnMetrics,
    schema,
)
from mongodb_session_manager.async_repository import AsyncMongoDBSessionRepository
from mongodb_session_manager.metrics import flows
from mongodb_session_manager.testing import (
    ScriptedCall,
    ScriptedModel,
    ScriptedModelError,
    ScriptedResponse,
    ScriptedToolCall,
)

Client = pymongo.MongoClient[dict[str, Any]]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@pytest.fixture
def repository(client: Client, database_name: str) -> MongoDBSessionRepository:
    return MongoDBSessionRepository(client=client, database_name=database_name)


@pytest.fixture
def query(repository: MongoDBSessionRepository) -> MetricsQuery:
    return MetricsQuery(repository)


def weather_script() -> list[ScriptedResponse | str]:
    return [
        ScriptedResponse(text="Hello! How can I help you today?", latency_ms=110, cache_read_tokens=7),
        ScriptedResponse(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})], latency_ms=230),
        ScriptedResponse(text="It is sunny in Paris.", latency_ms=95),
        ScriptedResponse(text="You are welcome, goodbye.", latency_ms=70),
    ]


def weather_agent(model: ScriptedModel, manager: MongoDBSessionManager) -> Agent:
    return Agent(
        agent_id="assistant", model=model, tools=[get_weather], session_manager=manager, callback_handler=None
    )


def expected_turn(calls: Sequence[ScriptedCall]) -> dict[str, Any]:
    """What one turn's record must say, summed from the model calls the turn made."""
    done = [call for call in calls if not call.fails]
    usage: Counter[str] = Counter()
    for call in done:
        usage.update(dict(call.usage))
    tools = Counter(tool.name for call in done for tool in call.response.tool_calls)
    return {
        "model_calls": len(done),
        "input_tokens": usage["inputTokens"],
        "output_tokens": usage["outputTokens"],
        "total_tokens": usage["totalTokens"],
        "cache_read_input_tokens": usage["cacheReadInputTokens"],
        "latency_ms": sum(call.metrics["latencyMs"] for call in done),
        "tool_calls": sum(tools.values()),
        "tools": {name: (count, count, 0) for name, count in tools.items()},
    }


def observed_turn(turn: TurnMetrics) -> dict[str, Any]:
    return {
        "model_calls": turn.model_calls,
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "total_tokens": turn.total_tokens,
        "cache_read_input_tokens": turn.cache_read_input_tokens,
        "latency_ms": turn.latency_ms,
        "tool_calls": turn.tool_calls,
        "tools": {name: (t.calls, t.successes, t.errors) for name, t in turn.tools.items()},
    }


def summed(turns: Iterable[TurnMetrics]) -> MetricsTotals:
    turns = list(turns)
    return MetricsTotals(
        turns=len(turns),
        failed_turns=sum(turn.status == "failed" for turn in turns),
        input_tokens=sum(turn.input_tokens for turn in turns),
        output_tokens=sum(turn.output_tokens for turn in turns),
        total_tokens=sum(turn.total_tokens for turn in turns),
        cache_read_input_tokens=sum(turn.cache_read_input_tokens for turn in turns),
        latency_ms=sum(turn.latency_ms for turn in turns),
        tool_calls=sum(turn.tool_calls for turn in turns),
    )


def message_counts(repository: MongoDBSessionRepository, session_id: str) -> list[int]:
    """Stored messages per turn: turn records close turns, so count up to each of them."""
    documents = repository.messages_collection.find({"session_id": session_id}, sort=[("message_id", 1)])
    counts, current = [], 0
    for document in documents:
        current += 1
        if "event_loop_metrics" in document:
            counts.append(current)
            current = 0
    return counts


# --- capture, read back through the query API -------------------------------------------------


@pytest.mark.parametrize("guide_pattern", [False, True], ids=["hooks-only", "manual-appends"])
async def test_each_streamed_turn_records_exactly_its_own_usage(
    repository: MongoDBSessionRepository, guide_pattern: bool
) -> None:
    model = ScriptedModel(weather_script())
    manager = MongoDBSessionManager("weather-chat", repository=repository)
    agent = weather_agent(model, manager)
    calls_per_turn = []
    for prompt in ["Hi", "Weather in Paris?", "Thanks"]:
        first_call = len(model.calls)
        if guide_pattern:
            manager.append_message({"role": "user", "content": prompt}, agent)
        text = "".join([event["data"] async for event in agent.stream_async(prompt) if "data" in event])
        if guide_pattern:
            manager.append_message({"role": "assistant", "content": text}, agent)
            manager.sync_agent(agent)  # on the event loop: handed to the I/O thread, not waited for
            await manager.flush()
        calls_per_turn.append(model.calls[first_call:])

    metrics = MetricsQuery(repository).session_metrics("weather-chat")

    assert [observed_turn(turn) for turn in metrics.turns] == [expected_turn(c) for c in calls_per_turn]
    assert [turn.status for turn in metrics.turns] == ["completed"] * 3
    assert {turn.model_id for turn in metrics.turns} == {"scripted-model"}
    assert metrics.total_turns == 3
    assert metrics.totals == summed(metrics.turns)
    assert metrics.agents == {"assistant": metrics.totals}
    # A plain turn stores the user message and the reply; the tool turn adds the tool exchange.
    assert message_counts(repository, "weather-chat") == [2, 4, 2]
    assert repository.messages_collection.count_documents({"session_id": "weather-chat"}) == len(
        agent.messages
    )


async def test_a_turn_that_fails_mid_stream_is_recorded_as_failed(
    repository: MongoDBSessionRepository,
) -> None:
    model = ScriptedModel(
        [ScriptedResponse(text="Let me think about this one", error_after_chunks=2), "Second try works."]
    )
    manager = MongoDBSessionManager("flaky", repository=repository)
    agent = weather_agent(model, manager)

    with pytest.raises(ScriptedModelError):
        async for _ in agent.stream_async("First question"):
            pass
    failed_calls = list(model.calls)
    async for _ in agent.stream_async("Again please"):
        pass

    metrics = MetricsQuery(repository).session_metrics("flaky")
    failed, completed = metrics.turns
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.type == "ScriptedModelError"
    # Nothing of the reply came: the turn is closed by an assistant message marked incomplete,
    # which carries the turn's record.
    stored = repository.messages_collection.find_one({"session_id": "flaky", "message_id": failed.message_id})
    assert stored is not None
    assert stored["role"] == "assistant"
    assert stored["incomplete"] == {"reason": "error: ScriptedModelError"}
    assert observed_turn(failed) == expected_turn(failed_calls)
    assert observed_turn(completed) == expected_turn(model.calls[len(failed_calls) :])
    assert completed.status == "completed"
    assert metrics.totals == summed(metrics.turns)
    assert metrics.totals.failed_turns == 1


def test_sync_call_records_a_turn(repository: MongoDBSessionRepository) -> None:
    model = ScriptedModel(["Hello from a sync call."])
    agent = weather_agent(model, MongoDBSessionManager("sync-call", repository=repository))

    agent("Hello")

    (turn,) = MetricsQuery(repository).session_metrics("sync-call").turns
    assert observed_turn(turn) == expected_turn(model.calls)


async def test_invoke_async_records_a_turn(repository: MongoDBSessionRepository) -> None:
    model = ScriptedModel(weather_script()[1:3])
    agent = weather_agent(model, MongoDBSessionManager("invoke-async", repository=repository))

    await agent.invoke_async("Weather in Paris?")

    (turn,) = MetricsQuery(repository).session_metrics("invoke-async").turns
    assert observed_turn(turn) == expected_turn(model.calls)
    assert turn.cycles == 2


def test_session_metrics_of_an_unknown_session_raise(query: MetricsQuery) -> None:
    with pytest.raises(SessionNotFoundError):
        query.session_metrics("nobody-here")


# --- queries over a seeded set of turns -------------------------------------------------------

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
MODELS = ("model-small", "model-large", "model-tools")
AGENTS = ("planner", "writer")
TOOLS = ("search", "calculator")


def seeded_turns(seed: int = 7, sessions: int = 20, turns: int = 200) -> list[dict[str, Any]]:
    """Turn-record documents as the manager writes them, with varied days, models and agents."""
    rng = random.Random(seed)
    documents = []
    next_message_id: Counter[tuple[str, str]] = Counter()
    for index in range(turns):
        session_id, agent_id = f"session-{index % sessions:02d}", rng.choice(AGENTS)
        started_at = START + timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        input_tokens, output_tokens = rng.randint(10, 900), rng.randint(1, 300)
        latency = rng.randint(80, 4000)
        tools = {}
        for name in TOOLS:
            calls = rng.choice((0, 0, 1, 2))
            if calls:
                errors = rng.choice((0, 0, 0, 1))
                tools[name] = {
                    "calls": calls,
                    "successes": calls - errors,
                    "errors": errors,
                    "time_ms": rng.uniform(1, 50),
                }
        status = "failed" if rng.random() < 0.1 else "completed"
        record = {
            "status": status,
            "started_at": started_at,
            "ended_at": started_at + timedelta(milliseconds=latency + 5),
            "duration_ms": float(latency + 5),
            "model_id": rng.choice(MODELS),
            "stop_reason": None if status == "failed" else "end_turn",
            "model_calls": 1 + len(tools),
            "accumulated_usage": {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "totalTokens": input_tokens + output_tokens,
            },
            "accumulated_metrics": {"latencyMs": latency, "timeToFirstByteMs": rng.randint(5, latency)},
            "cycles": {"count": 1 + len(tools), "durations_ms": []},
            "tool_calls": sum(tool["calls"] for tool in tools.values()),
            "tools": tools,
        }
        message_id = next_message_id[session_id, agent_id] * 2 + 1
        next_message_id[session_id, agent_id] += 1
        message = SessionMessage({"role": "assistant", "content": [{"text": "ok"}]}, message_id)
        documents.append(schema.message_document(session_id, agent_id, message, event_loop_metrics=record))
    return documents


def tier(session_id: str) -> str:
    return "gold" if int(session_id.rsplit("-", 1)[1]) % 3 == 0 else "free"


@pytest.fixture
def seeded(repository: MongoDBSessionRepository) -> list[dict[str, Any]]:
    documents = seeded_turns()
    session_ids = sorted({document["session_id"] for document in documents})
    repository.collection.insert_many(
        [
            schema.session_document(
                Session(session_id=session_id, session_type=SessionType.AGENT),
                metadata={"tier": tier(session_id)},
            )
            for session_id in session_ids
        ]
    )
    repository.messages_collection.insert_many([dict(document) for document in documents])
    return documents


def metric(document: dict[str, Any], *path: str) -> Any:
    value: Any = document["event_loop_metrics"]
    for name in path:
        value = value[name]
    return value


def nearest_rank(values: Sequence[float], p: float) -> float:
    """The p-th percentile by the nearest-rank rule: the smallest value with >= p of the data at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def grouped(
    documents: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        groups[key(document)].append(document)
    return dict(groups)


def expected_group(documents: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [metric(d, "accumulated_metrics", "latencyMs") for d in documents]
    ttfbs = [metric(d, "accumulated_metrics", "timeToFirstByteMs") for d in documents]
    failed = sum(metric(d, "status") == "failed" for d in documents)
    return {
        "turns": len(documents),
        "failed_turns": failed,
        "error_rate": failed / len(documents),
        "input_tokens": sum(metric(d, "accumulated_usage", "inputTokens") for d in documents),
        "output_tokens": sum(metric(d, "accumulated_usage", "outputTokens") for d in documents),
        "total_tokens": sum(metric(d, "accumulated_usage", "totalTokens") for d in documents),
        "latency_ms": sum(latencies),
        "latency_avg_ms": pytest.approx(sum(latencies) / len(latencies)),
        "latency_p50_ms": nearest_rank(latencies, 0.5),
        "latency_p95_ms": nearest_rank(latencies, 0.95),
        "latency_p99_ms": nearest_rank(latencies, 0.99),
        "ttfb_p50_ms": nearest_rank(ttfbs, 0.5),
        "ttfb_p95_ms": nearest_rank(ttfbs, 0.95),
        "tool_calls": sum(metric(d, "tool_calls") for d in documents),
    }


def day_of(document: dict[str, Any]) -> datetime:
    started: datetime = metric(document, "started_at")
    return started.replace(hour=0, minute=0, second=0, microsecond=0)


GROUP_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "day": day_of,
    "hour": lambda d: metric(d, "started_at").replace(minute=0, second=0, microsecond=0),
    "model": lambda d: metric(d, "model_id"),
    "agent": lambda d: d["agent_id"],
}


@pytest.mark.parametrize("by", list(GROUP_KEYS))
def test_group_by_matches_the_turns_grouped_in_python(
    query: MetricsQuery, seeded: list[dict[str, Any]], by: str
) -> None:
    expected = grouped(seeded, GROUP_KEYS[by])

    rows = query.group_by(by, source="turns")  # type: ignore[arg-type]

    assert [row.key for row in rows] == sorted(expected)
    for row in rows:
        observed = row.model_dump(include=set(expected_group(expected[row.key])))
        assert observed == expected_group(expected[row.key]), row.key


def test_summary_honours_time_agent_model_and_metadata_filters(
    query: MetricsQuery, seeded: list[dict[str, Any]]
) -> None:
    since, until = START + timedelta(days=1), START + timedelta(days=3, hours=12)
    wanted = MetricsFilter(since=since, until=until, agent_id="writer", metadata={"tier": "gold"})
    expected = [
        d
        for d in seeded
        if since <= metric(d, "started_at") < until
        and d["agent_id"] == "writer"
        and tier(d["session_id"]) == "gold"
    ]
    assert 0 < len(expected) < len(seeded)

    summary = query.summary(wanted)

    assert summary.key is None
    assert summary.model_dump(include=set(expected_group(expected))) == expected_group(expected)
    by_model = query.summary(MetricsFilter(model_id="model-large", session_ids=["session-01", "session-02"]))
    assert by_model.turns == sum(
        metric(d, "model_id") == "model-large" and d["session_id"] in ("session-01", "session-02")
        for d in seeded
    )
    assert query.summary(MetricsFilter(metadata={"tier": "platinum"})).turns == 0


def test_metadata_filters_agree_whether_ids_are_prequeried_or_joined(
    query: MetricsQuery, seeded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gold = MetricsFilter(metadata={"tier": "gold"})
    expected = [d for d in seeded if tier(d["session_id"]) == "gold"]

    prequeried = query.group_by("agent", gold)
    monkeypatch.setattr(flows, "MAX_PREQUERIED_SESSIONS", 1)
    joined = query.group_by("agent", gold)

    assert prequeried == joined
    assert sum(row.turns for row in joined) == len(expected)


def test_tool_usage_sums_every_turns_tools(query: MetricsQuery, seeded: list[dict[str, Any]]) -> None:
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for document in seeded:
        for name, stats in metric(document, "tools").items():
            expected[name].update({"turns": 1, **{k: stats[k] for k in ("calls", "successes", "errors")}})

    usage = query.tool_usage()

    assert {
        tool.name: Counter(tool.model_dump(include={"turns", "calls", "successes", "errors"}))
        for tool in usage
    } == expected
    assert [tool.calls for tool in usage] == sorted((tool.calls for tool in usage), reverse=True)
    times = {
        name: sum(metric(d, "tools")[name]["time_ms"] for d in seeded if name in metric(d, "tools"))
        for name in expected
    }
    assert {tool.name: tool.time_ms for tool in usage} == pytest.approx(times)


@pytest.mark.parametrize(
    ("by", "path"),
    [("tokens", ("accumulated_usage", "totalTokens")), ("latency", ("accumulated_metrics", "latencyMs"))],
)
def test_top_sessions_rank_by_summed_tokens_or_latency(
    query: MetricsQuery, seeded: list[dict[str, Any]], by: str, path: tuple[str, ...]
) -> None:
    sums: Counter[str] = Counter()
    for document in seeded:
        sums[document["session_id"]] += metric(document, *path)
    expected = sorted(sums.items(), key=lambda item: (-item[1], item[0]))[:5]

    top = query.top_sessions(by=by, limit=5)  # type: ignore[arg-type]

    field = "total_tokens" if by == "tokens" else "latency_ms"
    assert [(rank.session_id, getattr(rank, field)) for rank in top] == expected


def test_session_metrics_pages_turns_in_start_order(
    query: MetricsQuery, seeded: list[dict[str, Any]]
) -> None:
    own = sorted(
        (d for d in seeded if d["session_id"] == "session-04"), key=lambda d: metric(d, "started_at")
    )

    page = query.session_metrics("session-04", skip=3, limit=4)

    assert page.total_turns == len(own)
    assert [(turn.agent_id, turn.message_id) for turn in page.turns] == [
        (d["agent_id"], d["message_id"]) for d in own[3:7]
    ]
    assert all(turn.started_at.tzinfo is not None for turn in page.turns)


async def test_async_query_returns_what_the_sync_query_returns(
    mongodb_uri: str, database_name: str, query: MetricsQuery, seeded: list[dict[str, Any]]
) -> None:
    since = MetricsFilter(since=START + timedelta(days=2), metadata={"tier": "free"})
    async with AsyncMongoClient[dict[str, Any]](mongodb_uri) as async_client:
        async_query = AsyncMetricsQuery(
            AsyncMongoDBSessionRepository(client=async_client, database_name=database_name)
        )

        assert await async_query.summary(since) == query.summary(since)
        assert await async_query.group_by("model", since) == query.group_by("model", since)
        assert await async_query.tool_usage(since) == query.tool_usage(since)
        assert await async_query.top_sessions(by="latency", filter=since) == query.top_sessions(
            by="latency", filter=since
        )
        assert await async_query.session_metrics("session-07", limit=3) == query.session_metrics(
            "session-07", limit=3
        )
