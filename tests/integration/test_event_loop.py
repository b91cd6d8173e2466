"""Persistence never stalls the event loop, even when every database write is slow."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import pymongo
import pytest
from pymongo import monitoring
from strands import Agent
from strands.session.repository_session_manager import RepositorySessionManager

from mongodb_session_manager import (
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]
WRITE_DELAY = 0.1


def slow(method: Callable[..., Any]) -> Callable[..., Any]:
    def slowed(*args: Any, **kwargs: Any) -> Any:
        time.sleep(WRITE_DELAY)  # a slow network or an overloaded primary
        return method(*args, **kwargs)

    return slowed


@pytest.fixture
def slow_repository(
    client: Client, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> MongoDBSessionRepository:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    for name in (
        "_run_plan",  # every write the manager sends
        "load_session",
        "write_message",
        "write_session_update",
        "create_message",
        "update_agent",
    ):
        monkeypatch.setattr(repository, name, slow(getattr(repository, name)))
    return repository


async def longest_tick_gap_during(work: Callable[[], Any]) -> float:
    """Run ``work`` beside a 5 ms ticker; return the longest time the ticker waited beyond its period."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last - 0.005)
            last = now
            if done.is_set():
                return

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.006)  # let the ticker start before the work does
    try:
        await work()
    finally:
        done.set()
        await task
    return max(gaps)


async def three_streamed_turns(agent: Agent) -> None:
    for prompt in ("one", "two", "three"):
        async for _ in agent.stream_async(prompt):
            pass


async def test_slow_writes_do_not_block_the_loop(slow_repository: MongoDBSessionRepository) -> None:
    manager = MongoDBSessionManager(session_id="slow", repository=slow_repository)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["First.", "Second.", "Third."], chunk_delay=0.001),
        session_manager=manager,
        callback_handler=None,
    )
    started = time.perf_counter()
    longest = await longest_tick_gap_during(lambda: three_streamed_turns(agent))
    elapsed = time.perf_counter() - started

    assert elapsed >= 6 * WRITE_DELAY  # the writes really were slow (one per message)...
    assert longest < WRITE_DELAY / 2  # ...and the loop kept ticking through every one of them
    assert slow_repository.messages_collection.count_documents({"session_id": "slow"}) == 6


async def test_the_same_slow_writes_do_block_a_plain_repository_session_manager(
    slow_repository: MongoDBSessionRepository,
) -> None:
    """The control: Strands' stock manager calls the repository on the loop, so the ticker stalls."""
    manager = RepositorySessionManager(session_id="blocking", session_repository=slow_repository)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Only."], chunk_delay=0.001),
        session_manager=manager,
        callback_handler=None,
    )
    longest = await longest_tick_gap_during(lambda: three_streamed_turns(agent))
    assert longest >= WRITE_DELAY * 0.9


class EveryCommandSlowed(monitoring.CommandListener):
    """Delays every command by 100 ms on the thread that sends it: a far-away, busy server."""

    def __init__(self) -> None:
        self.commands = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands += 1
        time.sleep(WRITE_DELAY)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def web_request(factory: MongoDBSessionManagerFactory, session_id: str, api: str) -> None:
    """A web handler: build the manager and the agent, stream one turn, close."""
    if api == "guide":
        manager = factory.create_session_manager(session_id)
    else:
        manager = await factory.acreate_session_manager(session_id, agent_id="assistant")
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Reply."]),
        session_manager=manager,
        callback_handler=None,
    )
    async for _ in agent.stream_async("hello"):
        pass
    if api == "guide":
        manager.close()
        await manager.flush()
    else:
        await manager.aclose()


@pytest.mark.parametrize("api", ["guide", "async"])
@pytest.mark.parametrize("sessions", ["first-time", "resumed"])
async def test_requests_that_build_stream_and_close_never_stall_the_loop(
    mongodb_uri: str, database_name: str, api: str, sessions: str
) -> None:
    slowed = EveryCommandSlowed()
    with pymongo.MongoClient(mongodb_uri, event_listeners=[slowed]) as client:
        factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
        await asyncio.to_thread(factory.ensure_indexes)  # the app's startup, before the clock
        if sessions == "resumed":
            for number in range(5):
                seeded = factory.create_session_manager(f"s{number}")
                agent = Agent(
                    agent_id="assistant",
                    model=ScriptedModel(["Earlier."]),
                    session_manager=seeded,
                    callback_handler=None,
                )
                await agent.invoke_async("before")
                await seeded.aclose()

        # A process's first request pays for imports and thread start-up.
        await web_request(factory, "warm-up", api)
        gc.collect()  # earlier tests' agents are garbage: collect them before the clock, not during
        before = slowed.commands
        longest = await longest_tick_gap_during(
            lambda: asyncio.gather(*(web_request(factory, f"s{number}", api) for number in range(5)))
        )
        assert slowed.commands - before >= 15  # every request really waited on slow commands...
        assert longest < 0.020  # ...and the loop never waited with it
        stored = client[database_name].sessions_messages.count_documents({})
        assert stored == (20 if sessions == "resumed" else 10) + 2


class CommandStarts(monitoring.CommandListener):
    """When each command started (``perf_counter``), by name."""

    def __init__(self) -> None:
        self.started_at: list[tuple[str, float]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.started_at.append((event.command_name, time.perf_counter()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_requests_that_arrive_together_read_their_sessions_after_the_loop_built_their_agents(
    mongodb_uri: str, database_name: str
) -> None:
    # A burst of requests builds its agents in one pass of the loop. A read handed to an I/O
    # thread during that pass takes the GIL at every syscall of the agents built after it
    # (Strands' uuid4, a stat of the tools directory), and the loop's pass grows by that much.
    starts = CommandStarts()
    with pymongo.MongoClient(mongodb_uri, event_listeners=[starts]) as client:
        factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
        await asyncio.to_thread(factory.ensure_indexes)

        await web_request(factory, "warm-up", "guide")
        starts.started_at.clear()
        pass_over: list[float] = []
        requests = [asyncio.create_task(web_request(factory, f"s{number}", "guide")) for number in range(20)]
        asyncio.get_running_loop().call_soon(lambda: pass_over.append(time.perf_counter()))
        await asyncio.gather(*requests)

    reads = [at for name, at in starts.started_at if name == "aggregate"]
    assert len(reads) == 20  # every request read its session...
    assert min(reads) > pass_over[0]  # ...once the pass that built all twenty agents was over
