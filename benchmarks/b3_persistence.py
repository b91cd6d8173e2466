"""B3: what persistence adds to a turn, against the floor of raw pymongo inserts.

Method (see README): the same scripted turn runs on two agents, one with the manager and one
without, interleaved turn by turn; persistence = median(with - without). Cross-check: the time
the turn spent awaiting the manager's write callbacks. Floor: ``insert_one`` of the very
documents the turn stored (read back, same size), on the same client, one after the other.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from pymongo import InsertOne, MongoClient, UpdateOne
from strands import Agent
from strands.hooks import AfterInvocationEvent, MessageAddedEvent
from strands.types.session import SessionAgent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory, schema

from ._common import Context, Document, Result, make_agent, ratio

TARGET_RATIO = 1.5


class TimedManager(MongoDBSessionManager):
    """The manager, plus the time its write callbacks kept the turn waiting."""

    waited_ms = 0.0

    async def _on_message_added(self, event: MessageAddedEvent) -> None:
        start = time.perf_counter()
        await super()._on_message_added(event)
        self.waited_ms += (time.perf_counter() - start) * 1000

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        start = time.perf_counter()
        await super()._on_after_invocation(event)
        self.waited_ms += (time.perf_counter() - start) * 1000


def run(ctx: Context) -> Result:
    result = Result("B3", "Per-turn persistence time vs raw inserts", f"<= {TARGET_RATIO}x the floor")
    database = ctx.database("b3")
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=database)
    floors = Floors(ctx.client, database)
    runs = [
        asyncio.run(_one_run(factory, floors, repeat, ctx.size.turns)) for repeat in range(ctx.size.repeats)
    ]
    columns = {name: [run[name] for run in runs] for name in runs[0]}
    result.add("turn with the manager", columns["with"], "ms")
    result.add("same turn, no session manager", columns["without"], "ms")
    result.add("persistence (with - without)", columns["persistence"], "ms")
    result.add("persistence (awaited in write hooks)", columns["hooks"], "ms")
    result.add("floor: raw insert_one x2, same docs", columns["floor"], "ms")
    result.add("  same, into a collection with the message indexes", columns["indexed"], "ms")
    result.add("  the manager's writes, raw (insert + bulkWrite)", columns["same_writes"], "ms")
    by_subtraction = result.add(
        "ratio: persistence / floor", ratio(columns["persistence"], columns["floor"]), "x"
    )
    result.add("ratio: hook wait / floor", ratio(columns["hooks"], columns["floor"]), "x")
    result.add(
        "ratio: persistence / the manager's writes, raw",
        ratio(columns["persistence"], columns["same_writes"]),
        "x",
    )
    result.notes.append(f"{ctx.size.turns} turns per run, medians per run; 2 messages per turn")
    result.judge(
        by_subtraction.median <= TARGET_RATIO,
        f"persistence costs {by_subtraction.median:.2f}x the raw inserts of the same documents",
    )
    return result


class Floors:
    """Raw pymongo writes of a turn's documents on the manager's client, timed."""

    def __init__(self, client: MongoClient[Document], database: str) -> None:
        self.client = client
        self.database = client[database]
        self.bare = self.database["floor"]
        self.indexed = self.database["floor_indexed"]
        self.writes = self.database["floor_writes"]
        self.sessions = self.database["floor_sessions"]
        for collection in (self.indexed, self.writes):
            collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))

    def inserts(self, documents: list[Document], *, indexed: bool = False) -> float:
        collection = self.indexed if indexed else self.bare
        fresh = [dict(document) for document in documents]
        start = time.perf_counter()
        for document in fresh:
            collection.insert_one(document)
        return (time.perf_counter() - start) * 1000

    def manager_writes(self, documents: list[Document], session_update: Document, session_id: str) -> float:
        """What the manager sends for a plain turn: the user insert, then insert + session update."""
        user, assistant = (dict(document) for document in documents)
        self.sessions.update_one({"_id": session_id}, {"$setOnInsert": {"agents": {}}}, upsert=True)
        namespace = self.writes.full_name
        start = time.perf_counter()
        self.writes.insert_one(user)
        self.client.bulk_write(
            [
                InsertOne(assistant, namespace=namespace),
                UpdateOne({"_id": session_id}, session_update, namespace=self.sessions.full_name),
            ],
            ordered=True,
        )
        return (time.perf_counter() - start) * 1000


async def _one_run(
    factory: MongoDBSessionManagerFactory, floors: Floors, repeat: int, turns: int
) -> dict[str, float]:
    session_id = f"b3-{repeat}"
    manager = TimedManager(session_id, repository=factory.repository)
    persisted, bare = make_agent(manager), make_agent(None)
    await persisted.invoke_async("warm-up")
    await bare.invoke_async("warm-up")
    samples: dict[str, list[float]] = {
        name: [] for name in ("with", "without", "hooks", "floor", "indexed", "same_writes")
    }
    for turn in range(turns):
        prompt = f"question {turn}"
        manager.waited_ms = 0.0
        samples["with"].append(await _timed_turn(persisted, prompt))
        samples["hooks"].append(manager.waited_ms)
        samples["without"].append(await _timed_turn(bare, prompt))
        documents = _stored_turn(factory, session_id)
        samples["floor"].append(floors.inserts(documents))
        samples["indexed"].append(floors.inserts(documents, indexed=True))
        update = schema.session_update(
            agent=schema.agent_state(SessionAgent.from_agent(persisted)), totals=TOTALS, agent_id="assistant"
        )
        samples["same_writes"].append(floors.manager_writes(documents, update, session_id))
    differences = [w - b for w, b in zip(samples["with"], samples["without"], strict=True)]
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {**medians, "persistence": statistics.median(differences)}


# What a plain turn adds to the running totals (the shape the manager writes).
TOTALS = {
    "turns": 1,
    "failedTurns": 0,
    "inputTokens": 400,
    "outputTokens": 60,
    "totalTokens": 460,
    "latencyMs": 120,
    "toolCalls": 0,
}


async def _timed_turn(agent: Agent, prompt: str) -> float:
    start = time.perf_counter()
    await agent.invoke_async(prompt)
    return (time.perf_counter() - start) * 1000


def _stored_turn(factory: MongoDBSessionManagerFactory, session_id: str) -> list[Document]:
    """The two documents the last turn stored, without their ``_id`` (so they insert afresh)."""
    cursor = factory.repository.messages_collection.find(
        {"session_id": session_id}, {"_id": 0}, sort=[("message_id", -1)], limit=2
    )
    return list(reversed(list(cursor)))
