"""Hook writes: the thread hand-off the manager uses against awaiting the async repository.

A standalone experiment behind B3 (issue 10: "measure the thread hand-off against awaiting the
async repository on the running loop ... keep whichever is faster"). The same writes (a turn's
two messages: the prompt alone, the reply with its metrics record and the session update;
the first carries the session and agent upserts) go three ways from coroutines on one loop:

- ``lane``: ``await Lane().run(MongoDBSessionRepository.write, ...)``, the steps the manager's
  write runs today (sync pymongo on the package's I/O threads);
- ``loop``: ``await AsyncMongoDBSessionRepository.write(...)`` with ``pymongo.AsyncMongoClient``
  on the running loop;
- ``blocking``: ``MongoDBSessionRepository.write(...)`` called on the loop (the floor for one
  writer; it stalls every other coroutine, so it is a reference, not an option).

Measured sequentially (one writer: wall and process CPU per write) and concurrently (``writers``
sessions writing at once: writes/s, CPU per write, the loop's max lag).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from strands.types.content import Message
from strands.types.session import Session, SessionMessage, SessionType

from mongodb_session_manager import AsyncMongoDBSessionRepository, MongoDBSessionRepository, schema
from mongodb_session_manager._io import Lane
from mongodb_session_manager._plans import MessageWrite, NewAgent, SessionWrite

from ._common import REPLY, Document, cpu_ms

MODES = ("lane", "loop", "blocking")
AGENT_ID = "assistant"
TICK_S = 0.005

Write = Callable[[str, MessageWrite, SessionWrite | None], Awaitable[Any]]

RECORD = {
    "status": "completed",
    "model_id": "scripted",
    "stop_reason": "end_turn",
    "model_calls": 1,
    "accumulated_usage": {"inputTokens": 400, "outputTokens": 60, "totalTokens": 460},
    "accumulated_metrics": {"latencyMs": 120, "timeToFirstByteMs": 20},
    "cycles": {"count": 1, "durations_ms": [120.0]},
    "tool_calls": 0,
    "tools": {},
}
TOTALS = {"turns": 1, "failedTurns": 0, "inputTokens": 400, "outputTokens": 60, "totalTokens": 460}


def turn_writes(session_id: str, turn: int) -> list[tuple[MessageWrite, SessionWrite | None]]:
    """The two writes of a plain turn, as the manager hands them to the repository."""
    user: Message = {"role": "user", "content": [{"text": f"question {turn}"}]}
    reply: Message = {"role": "assistant", "content": [{"text": REPLY}]}
    create = None
    if turn == 0:
        state = {
            "state": {},
            "conversation_manager_state": {"removed_message_count": 0},
            "internal_state": {},
        }
        session = Session(session_id=session_id, session_type=SessionType.AGENT)
        create = NewAgent(schema.session_document(session), schema.agent_entry(state))
    first = SessionWrite(AGENT_ID, create=create) if create else None
    last = SessionWrite(AGENT_ID, totals=TOTALS)
    return [
        (MessageWrite(SessionMessage.from_message(user, 2 * turn)), first),
        (
            MessageWrite(
                SessionMessage.from_message(reply, 2 * turn + 1), {**RECORD, "ended_at": schema.utcnow()}
            ),
            last,
        ),
    ]


async def experiment(
    client: MongoClient[Document], uri: str, database: str, *, writes: int, writers: int, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Per mode: ``write_ms``/``cpu_ms`` (sequential medians), ``concurrent_*`` per repeat."""
    sync_repository = MongoDBSessionRepository(
        database_name=database, collection_name="handoff", client=client
    )
    async_client: AsyncMongoClient[Document] = AsyncMongoClient(uri)
    async_repository = AsyncMongoDBSessionRepository(
        database_name=database, collection_name="handoff", client=async_client
    )
    lane_of: dict[str, Lane] = {}

    async def lane(session_id: str, message: MessageWrite, write: SessionWrite | None) -> Any:
        chosen = lane_of.setdefault(session_id, Lane())
        return await chosen.run(sync_repository.write, session_id, AGENT_ID, message, write)

    async def loop(session_id: str, message: MessageWrite, write: SessionWrite | None) -> Any:
        return await async_repository.write(session_id, AGENT_ID, message, write)

    async def blocking(session_id: str, message: MessageWrite, write: SessionWrite | None) -> Any:
        return sync_repository.write(session_id, AGENT_ID, message, write)

    chosen_write: dict[str, Write] = {"lane": lane, "loop": loop, "blocking": blocking}
    results: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    try:
        for mode in MODES:  # warm-up: indexes, I/O threads, connections
            await _sequential(chosen_write[mode], f"warm-{mode}", 2)
            await _concurrent(chosen_write[mode], f"warm-{mode}", 2, writers)
        for repeat in range(repeats):
            order = MODES[repeat % 3 :] + MODES[: repeat % 3]
            for mode in order:
                wall, cpu = await _sequential(chosen_write[mode], f"{mode}-{repeat}", writes)
                results[mode].setdefault("write_ms", []).append(wall)
                results[mode].setdefault("cpu_ms", []).append(cpu)
            for mode in order:
                rate, cpu, lag = await _concurrent(
                    chosen_write[mode], f"{mode}-{repeat}", writes // 2, writers
                )
                results[mode].setdefault("concurrent_writes_per_s", []).append(rate)
                results[mode].setdefault("concurrent_cpu_ms", []).append(cpu)
                results[mode].setdefault("concurrent_max_lag_ms", []).append(lag)
    finally:
        await async_client.close()
    return results


async def _sequential(write: Write, tag: str, writes: int) -> tuple[float, float]:
    """Median wall time and process CPU of one write (one writer, ``writes`` writes)."""
    session_id = f"seq-{tag}"
    walls: list[float] = []
    cpus: list[float] = []
    for turn in range(writes // 2):
        for message, session_write in turn_writes(session_id, turn):
            cpu, start = cpu_ms(), time.perf_counter()
            await write(session_id, message, session_write)
            walls.append((time.perf_counter() - start) * 1000)
            cpus.append(cpu_ms() - cpu)
    return statistics.median(walls), statistics.median(cpus)


async def _concurrent(write: Write, tag: str, turns: int, writers: int) -> tuple[float, float, float]:
    """Writes/s, CPU per write and the loop's max lag while ``writers`` sessions write at once."""

    async def writer(session_id: str) -> None:
        for turn in range(turns):
            for message, session_write in turn_writes(session_id, turn):
                await write(session_id, message, session_write)

    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_tick(stop, lags))
    await asyncio.sleep(TICK_S * 2)
    cpu, start = cpu_ms(), time.perf_counter()
    await asyncio.gather(*(writer(f"con-{tag}-{n}") for n in range(writers)))
    elapsed, used = time.perf_counter() - start, cpu_ms() - cpu
    stop.set()
    await ticker
    total = writers * turns * 2
    return total / elapsed, used / total, max(lags, default=0.0)


async def _tick(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        due = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, (time.perf_counter() - due) * 1000))
