"""B3: what persistence adds to a turn, in wall time and client CPU, against raw pymongo.

Method (see README): the same scripted turn runs on agents interleaved turn by turn: one with the
manager, one without a session manager, and the floor agents: bare agents whose hooks send the
writes the manager sent in that turn, raw (``b3_floor``). Every agent's persistence is the median
of (its turn - the turn without), wall time and this process's CPU (every thread; the server is
another process). Judged: the manager against the floor on ``AsyncMongoClient``. References: the
floor on the synchronous client (it blocks the loop), and the writes timed alone, inline (the
leased prompt insert, then the client ``bulkWrite`` of reply + session update + rollup; the
floor as issue 10 was filed; plain ``insert_one`` of the two documents). Experiment rows: the
manager with its hook writes awaited on the loop (``OnLoopManager``) in the same rotation. Then
the hand-off experiment (``b3_handoff``): the writes alone, outside a turn.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from strands import Agent
from strands.hooks import AfterInvocationEvent, MessageAddedEvent
from strands.types.session import SessionAgent

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    schema,
)

from . import b3_handoff
from ._common import (
    Context,
    Document,
    Result,
    Row,
    cpu_ms,
    floor_leased,
    floor_reply_writes,
    make_agent,
    ratio,
)
from .b3_floor import RecordingRepository, ReplayFloor, prepare_collections, requests_for

TARGET_TIME = 1.1
TARGET_CPU = 1.3


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


class OnLoopManager(TimedManager):
    """Experiment: the manager with its hook writes awaited on the loop, not handed to a thread.

    The same write flow (``_persist_flow``) the lane runs on an I/O thread, driven by an
    :class:`AsyncMongoDBSessionRepository` on the running loop. The benchmark's case only: one
    writer per session, so it leaves out what ``_in_turn`` adds around a write (waiting for
    another writer's lease, reading the window again, undoing a failed write, the renewal
    timer) and the lane's ordering against a cancelled turn's writes; its CPU is a little low.
    """

    def __init__(self, *args: Any, on_loop: AsyncMongoDBSessionRepository, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_loop = on_loop

    async def _in_turn(self, slot: Any, write: Callable[..., None], *args: Any) -> None:
        if write == self._persist_after_unsaved and not slot.unsaved and not slot.lease_contended:
            await self.on_loop._drive(self._persist_flow(slot, *args))
            return
        await super()._in_turn(slot, write, *args)


def run(ctx: Context) -> Result:
    result = Result(
        "B3",
        "Per-turn persistence time and client CPU vs raw pymongo",
        f"time <= {TARGET_TIME}x, client CPU <= {TARGET_CPU}x the raw-pymongo floor (the same writes)",
    )
    database = ctx.database("b3")
    floors = Floors(ctx.client, database)
    runs = [
        asyncio.run(_one_run(ctx, database, floors, repeat, ctx.size.turns))
        for repeat in range(ctx.size.repeats)
    ]
    columns = {name: [run[name] for run in runs] for name in runs[0]}

    def ratio_row(label: str, measured: str, against: str) -> Row:
        return result.add(label, ratio(columns[measured], columns[against]), "x")

    result.add("turn with the manager", columns["with"], "ms")
    result.add("same turn, no session manager", columns["without"], "ms")
    result.add("  writes the manager sent per turn", columns["writes"], "round trips")
    result.add("persistence time (with - without)", columns["persistence_with"], "ms")
    result.add("  awaited in the write hooks", columns["hooks"], "ms")
    result.add(
        "floor time: the same writes from a bare agent's hooks, AsyncMongoClient (with - without)",
        columns["persistence_async"],
        "ms",
    )
    result.add(
        "  reference: the same from the hooks, synchronous client (blocks the loop)",
        columns["persistence_blocking"],
        "ms",
    )
    result.add(
        "  reference: the writes alone, inline (leased insert; insert + session + rollup)",
        columns["same_writes"],
        "ms",
    )
    result.add(
        "  reference: the floor as filed, inline (insert; insert + session update)", columns["filed"], "ms"
    )
    result.add("  reference: raw insert_one x2, same docs, bare collection", columns["floor"], "ms")
    result.add("  reference: same, into a collection with the message indexes", columns["indexed"], "ms")
    by_time = ratio_row("ratio: persistence time / floor time", "persistence_with", "persistence_async")
    ratio_row("  reference: / the blocking floor", "persistence_with", "persistence_blocking")
    ratio_row("  reference: / the writes alone, inline", "persistence_with", "same_writes")
    result.add("client CPU of a turn with the manager", columns["cpu_with"], "ms")
    result.add("client CPU of the same turn, no session manager", columns["cpu_without"], "ms")
    result.add("persistence CPU (with - without)", columns["cpu_persistence_with"], "ms")
    result.add(
        "floor CPU: the same writes from the hooks, AsyncMongoClient", columns["cpu_persistence_async"], "ms"
    )
    result.add(
        "  reference: the same, synchronous client (blocks the loop)",
        columns["cpu_persistence_blocking"],
        "ms",
    )
    result.add("  reference: the writes alone, inline", columns["cpu_same_writes"], "ms")
    result.add("  reference: the floor as filed, inline", columns["cpu_filed"], "ms")
    by_cpu = ratio_row("ratio: persistence CPU / floor CPU", "cpu_persistence_with", "cpu_persistence_async")
    ratio_row("  reference: / the blocking floor", "cpu_persistence_with", "cpu_persistence_blocking")
    ratio_row("  reference: / the writes alone, inline", "cpu_persistence_with", "cpu_same_writes")
    result.notes.append(
        f"{ctx.size.turns} turns per run, medians per run; 2 messages per turn; CPU = "
        "time.process_time() of this process (all threads). The floor replays the writes the "
        "manager sent in that turn (recorded from its repository), with the same documents, from "
        "a bare agent's MessageAdded/AfterInvocation hooks into collections of its own"
    )
    result.add(
        "experiment: the manager's writes awaited on the loop (its write flow on AsyncMongoClient): "
        "persistence time",
        columns["persistence_onloop"],
        "ms",
    )
    result.add("  persistence CPU", columns["cpu_persistence_onloop"], "ms")
    ratio_row("  ratio: time / floor time", "persistence_onloop", "persistence_async")
    ratio_row("  ratio: CPU / floor CPU", "cpu_persistence_onloop", "cpu_persistence_async")
    ratio_row("  ratio: CPU / the manager's CPU (hand-off)", "cpu_persistence_onloop", "cpu_persistence_with")
    result.notes.append(
        "experiment rows: the manager's own write flow (_persist_flow) driven by "
        "AsyncMongoDBSessionRepository on the loop instead of the I/O threads, in the same "
        "rotation; the hand-off experiment below times the writes alone, outside a turn"
    )
    _handoff_rows(ctx, database, result)
    result.judge(
        by_time.median <= TARGET_TIME and by_cpu.median <= TARGET_CPU,
        f"persistence costs {by_time.median:.2f}x the floor's time and {by_cpu.median:.2f}x its client CPU",
    )
    return result


def _handoff_rows(ctx: Context, database: str, result: Result) -> None:
    writes, writers = max(4, 2 * ctx.size.turns), max(4, ctx.size.lag_turns)
    found = asyncio.run(
        b3_handoff.experiment(
            ctx.client, ctx.uri, database, writes=writes, writers=writers, repeats=ctx.size.repeats
        )
    )
    labels = {
        "lane": "thread hand-off (Lane + sync repository, today)",
        "loop": "async repository awaited on the loop",
        "blocking": "sync repository called on the loop (blocks it; reference)",
    }
    for mode, label in labels.items():
        result.add(f"hook write, one writer: {label}: wall", found[mode]["write_ms"], "ms/write")
        result.add(f"  CPU, {mode}", found[mode]["cpu_ms"], "ms/write")
    for mode, label in labels.items():
        result.add(
            f"hook writes, {writers} writers at once: {label}",
            found[mode]["concurrent_writes_per_s"],
            "writes/s",
        )
        result.add(f"  CPU, {mode}", found[mode]["concurrent_cpu_ms"], "ms/write")
        result.add(f"  max loop lag, {mode}", found[mode]["concurrent_max_lag_ms"], "ms")
    result.add(
        "ratio: one writer, wall lane / loop",
        ratio(found["lane"]["write_ms"], found["loop"]["write_ms"]),
        "x",
    )
    result.add(
        "ratio: one writer, CPU lane / loop", ratio(found["lane"]["cpu_ms"], found["loop"]["cpu_ms"]), "x"
    )
    result.add(
        f"ratio: {writers} writers, writes/s loop / lane",
        ratio(found["loop"]["concurrent_writes_per_s"], found["lane"]["concurrent_writes_per_s"]),
        "x",
    )
    result.notes.append(
        f"hand-off experiment (benchmarks/b3_handoff.py): the same turn writes (prompt; reply + "
        f"metrics + session update), {writes} sequential writes per run and {writers} sessions x "
        f"{writes // 2} writes concurrently, modes interleaved"
    )


class Floors:
    """Raw pymongo writes of a turn's documents on the manager's client, timed."""

    def __init__(self, client: MongoClient[Document], database: str) -> None:
        self.client = client
        self.database = client[database]
        self.bare = self.database["floor"]
        self.indexed = self.database["floor_indexed"]
        self.writes = self.database["floor_writes"]
        self.filed = self.database["floor_filed"]
        self.sessions = self.database["floor_sessions"]
        self.rollups = self.database["floor_rollups"]
        for collection in (self.indexed, self.writes, self.filed):
            collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))
        self.sessions.create_indexes(schema.index_models(schema.SESSION_INDEXES))
        self.rollups.create_indexes(schema.index_models(schema.ROLLUP_INDEXES))

    def inserts(self, documents: list[Document], *, indexed: bool = False) -> float:
        collection = self.indexed if indexed else self.bare
        fresh = [dict(document) for document in documents]
        start = time.perf_counter()
        for document in fresh:
            collection.insert_one(document)
        return (time.perf_counter() - start) * 1000

    def manager_writes(
        self, documents: list[Document], session_update: Document, session_id: str, state: Document
    ) -> tuple[float, float]:
        """What the manager sends for a plain turn: the leased prompt, then reply + session + rollup."""
        user, assistant = (dict(document) for document in documents)
        self.sessions.update_one({"_id": session_id}, {"$setOnInsert": {"agents": {}}}, upsert=True)
        messages, sessions = self.writes.full_name, self.sessions.full_name
        reply = floor_reply_writes(
            session_id,
            "assistant",
            assistant,
            session_update,
            messages=messages,
            sessions=sessions,
            rollups=self.rollups.full_name,
            state=state,
        )
        cpu, start = cpu_ms(), time.perf_counter()
        self.writes.insert_one(floor_leased(user))  # one op: an insert, as the manager's
        self.client.bulk_write(reply, ordered=True)
        return (time.perf_counter() - start) * 1000, cpu_ms() - cpu

    def filed_writes(
        self, documents: list[Document], session_update: Document, session_id: str
    ) -> tuple[float, float]:
        """The floor as issue 10 was filed: the user insert, then insert + session update."""
        user, assistant = (dict(document) for document in documents)
        self.sessions.update_one({"_id": session_id}, {"$setOnInsert": {"agents": {}}}, upsert=True)
        reply = floor_reply_writes(
            session_id,
            "assistant",
            assistant,
            session_update,
            messages=self.filed.full_name,
            sessions=self.sessions.full_name,
            rollups=None,
        )
        cpu, start = cpu_ms(), time.perf_counter()
        self.filed.insert_one(user)
        self.client.bulk_write(reply, ordered=True)
        return (time.perf_counter() - start) * 1000, cpu_ms() - cpu


async def _one_run(ctx: Context, database: str, floors: Floors, repeat: int, turns: int) -> dict[str, float]:
    session_id = f"b3-{repeat}"
    repository = RecordingRepository(database_name=database, client=ctx.client)
    manager = TimedManager(session_id, repository=repository)
    async_client: AsyncMongoClient[Document] = AsyncMongoClient(ctx.uri)
    replays = {
        "async": ReplayFloor(async_client, f"floor_async_{repeat}_"),
        "blocking": ReplayFloor(ctx.client, f"floor_blocking_{repeat}_"),
    }
    on_loop = OnLoopManager(
        f"b3-on-loop-{repeat}",
        repository=MongoDBSessionRepository(database_name=database, client=ctx.client),
        on_loop=AsyncMongoDBSessionRepository(database_name=database, client=async_client),
    )
    agents = {"with": make_agent(manager), "without": make_agent(None), "onloop": make_agent(on_loop)}
    for name, replay in replays.items():
        prepare_collections(ctx.client, database, replay)
        agents[name] = make_agent(None)
        agents[name].hooks.add_hook(replay)
    # The warm-up turn's writes (the first-time session's) are replayed too, so the floors'
    # collections hold what the manager's do before the measured turns.
    await agents["with"].invoke_async("warm-up")
    warm_up = repository.take()
    for name, replay in replays.items():
        replay.pending = requests_for(warm_up, replay.namespaces(database))
        await agents[name].invoke_async("warm-up")
    await agents["without"].invoke_async("warm-up")
    await agents["onloop"].invoke_async("warm-up")
    # Every agent goes first in turn, the manager's too: whoever runs right after the inline
    # references below pays for their garbage (an A/A run put a manager that always ran first
    # at 1.06x the CPU of the same manager in the rotation). So the floors replay the writes of
    # the manager's turn before: a plain turn of the same shape, one turn behind.
    for agent in agents.values():  # the floors send nothing in it: histories stay the same length
        await agent.invoke_async("warm-up, again")
    plans = repository.take()
    samples: dict[str, list[float]] = {name: [] for name in SAMPLES}
    rotation = ["with", "without", *replays, "onloop"]
    for turn in range(turns):
        prompt = f"question {turn}"
        for replay in replays.values():
            replay.pending = requests_for(plans, replay.namespaces(database))
        first = turn % len(rotation)
        for name in rotation[first:] + rotation[:first]:  # each goes first in turn
            if name == "with":
                manager.waited_ms = 0.0
            wall, cpu = await _timed_turn(agents[name], prompt)
            samples[name].append(wall)
            samples[f"cpu_{name}"].append(cpu)
        samples["hooks"].append(manager.waited_ms)
        plans = repository.take()
        samples["writes"].append(len(plans))
        documents = _stored_turn(repository, session_id)
        samples["floor"].append(floors.inserts(documents))
        samples["indexed"].append(floors.inserts(documents, indexed=True))
        state = schema.agent_state(SessionAgent.from_agent(agents["with"]))
        update = schema.session_update(agent=state, totals=TOTALS, agent_id="assistant")
        wall, cpu = floors.manager_writes(documents, update, session_id, state)
        samples["same_writes"].append(wall)
        samples["cpu_same_writes"].append(cpu)
        wall, cpu = floors.filed_writes(documents, update, session_id)
        samples["filed"].append(wall)
        samples["cpu_filed"].append(cpu)
    await async_client.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name in ("with", *replays, "onloop"):
        medians[f"persistence_{name}"] = _paired(samples[name], samples["without"])
        medians[f"cpu_persistence_{name}"] = _paired(samples[f"cpu_{name}"], samples["cpu_without"])
    return medians


SAMPLES = (
    "with",
    "without",
    "async",
    "blocking",
    "onloop",
    "hooks",
    "writes",
    "floor",
    "indexed",
    "same_writes",
    "filed",
    "cpu_with",
    "cpu_without",
    "cpu_async",
    "cpu_blocking",
    "cpu_onloop",
    "cpu_same_writes",
    "cpu_filed",
)


def _paired(measured: list[float], baseline: list[float]) -> float:
    """Median of (turn - the same turn with no session manager), turn by turn."""
    return statistics.median(m - b for m, b in zip(measured, baseline, strict=True))


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


async def _timed_turn(agent: Agent, prompt: str) -> tuple[float, float]:
    """Wall time and process CPU of one turn, in ms."""
    cpu, start = cpu_ms(), time.perf_counter()
    await agent.invoke_async(prompt)
    return (time.perf_counter() - start) * 1000, cpu_ms() - cpu


def _stored_turn(repository: MongoDBSessionRepository, session_id: str) -> list[Document]:
    """The two documents the last turn stored, without their ``_id`` (so they insert afresh)."""
    cursor = repository.messages_collection.find(
        {"session_id": session_id}, {"_id": 0}, sort=[("message_id", -1)], limit=2
    )
    return list(reversed(list(cursor)))
