"""The write path's cost in round trips, counted with a pymongo CommandListener."""

from __future__ import annotations

import asyncio
from typing import Any

import pymongo
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory
from mongodb_session_manager.testing import CommandCounter, ScriptedModel, ScriptedResponse, ScriptedToolCall


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_a_plain_turn_costs_two_round_trips_and_a_resume_one(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    manager = MongoDBSessionManager(session_id="rt", client=counted_client, database_name=database_name)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Hello.", "Again."]),
        session_manager=manager,
        callback_handler=None,
    )
    await agent.invoke_async("warm up")  # the first write in a process also creates the indexes
    counter.take()

    await agent.invoke_async("hi")
    assert len(counter.take()) == 2  # the user message; the reply with the turn's metrics and totals
    await manager.aclose()
    assert counter.take() == []  # nothing left to store after a turn

    def resume() -> None:  # outside a running loop, construction restores at once
        resumed = MongoDBSessionManager(session_id="rt", client=counted_client, database_name=database_name)
        agent = Agent(
            agent_id="assistant", model=ScriptedModel([]), session_manager=resumed, callback_handler=None
        )
        assert len(agent.messages) == 4

    await asyncio.to_thread(resume)
    assert counter.take() == ["aggregate"]  # the session document joined with its message window


async def test_a_first_time_session_writes_only_with_its_first_turn(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    factory = MongoDBSessionManagerFactory(client=counted_client, database_name=database_name)
    factory.ensure_indexes()  # the app's startup
    counter.take()

    manager = factory.create_session_manager("new")
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["Hi."]), session_manager=manager, callback_handler=None
    )
    assert counter.take() == []  # construction on the event loop: no I/O at all

    await agent.invoke_async("hello")
    # The deferred restore finds nothing; the prompt creates the session and the agent with its
    # insert (one bulkWrite); the reply carries the turn's metrics and totals.
    assert counter.take() == ["aggregate", "bulkWrite", "bulkWrite"]
    manager.close()
    await manager.flush()
    assert counter.take() == []

    unused = factory.create_session_manager("unused")
    Agent(agent_id="assistant", model=ScriptedModel([]), session_manager=unused, callback_handler=None)
    unused.close()
    await unused.flush()
    assert counter.take() == []
    assert counted_client[database_name].sessions.count_documents({"_id": "unused"}) == 0


async def test_a_tool_turn_costs_one_round_trip_per_message(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    manager = MongoDBSessionManager(session_id="tools", client=counted_client, database_name=database_name)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(
            ["ok", ScriptedResponse(tool_calls=[ScriptedToolCall("add", {"a": 2, "b": 3})]), "It is 5."]
        ),
        tools=[add],
        session_manager=manager,
        callback_handler=None,
    )
    await agent.invoke_async("warm up")
    counter.take()

    await agent.invoke_async("2 + 3?")
    assert len(agent.messages) == 6
    assert len(counter.take()) == 4  # user, tool use, tool result, final reply


async def test_async_construction_preloads_so_building_the_agent_does_no_io(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    factory = MongoDBSessionManagerFactory(client=counted_client, database_name=database_name)
    first = factory.create_session_manager("pre")
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["One."]), session_manager=first, callback_handler=None
    )
    await agent.invoke_async("hello")
    counter.take()

    manager = await factory.acreate_session_manager("pre", agent_id="assistant")
    assert counter.take() == ["aggregate"]  # one round trip, on an I/O thread
    resumed = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    assert counter.take() == []
    assert [m["role"] for m in resumed.messages] == ["user", "assistant"]


async def test_a_full_sliding_window_keeps_a_turn_at_two_round_trips(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    """Trimming the window after the reply changes state; that change rides with the next write."""
    manager = MongoDBSessionManager(session_id="window", client=counted_client, database_name=database_name)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Noted."], loop=True),
        conversation_manager=SlidingWindowConversationManager(window_size=4),
        session_manager=manager,
        callback_handler=None,
    )
    for turn in range(4):
        await agent.invoke_async(f"fact {turn}")
    counter.take()

    await agent.invoke_async("one more")
    assert len(counter.take()) == 2

    manager.close()  # stores the last trim (handed to the I/O thread: we are on the loop)
    await manager.flush()
    stored = counted_client[database_name].sessions.find_one({"_id": "window"})
    assert stored is not None
    state = stored["agents"]["assistant"]["conversation_manager_state"]
    assert state == agent.conversation_manager.get_state()
