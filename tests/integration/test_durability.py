"""What a caller is told is stored, is stored: manual appends, vanished sessions, write concern."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    StoreUnavailableError,
    create_mongodb_session_manager,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def stored(client: Client, database_name: str, session_id: str) -> list[dict[str, Any]]:
    found = client[database_name].sessions_messages.find({"session_id": session_id}, sort=[("message_id", 1)])
    return list(found)


def text_of(document: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in document["message"]["content"])


async def test_two_managers_appending_on_the_loop_store_400_messages_without_a_close(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    try:
        managers = [await factory.acreate_session_manager("notes", agent_id="assistant") for _ in range(2)]
        agents = [
            Agent(agent_id="assistant", model=ScriptedModel([]), session_manager=m, callback_handler=None)
            for m in managers
        ]
        started = time.monotonic()
        for index in range(200):  # on the loop's thread: each call returns at once
            for name, (manager, agent) in zip("ab", zip(managers, agents, strict=True), strict=True):
                manager.append_message({"role": "user", "content": f"{name}-{index}"}, agent)

        # Stored in the background, without a close or a flush (a bound only against a hang: how
        # fast is a benchmark's question, not a test's).
        while len(stored(mongo_client, database_name, "notes")) < 400 and time.monotonic() - started < 30:
            await asyncio.sleep(0.02)
        documents = stored(mongo_client, database_name, "notes")
        assert len(documents) == 400
        assert len({d["message_id"] for d in documents}) == 400
        for name in "ab":  # each writer's order is kept
            mine = [text_of(d) for d in documents if text_of(d).startswith(f"{name}-")]
            assert mine == [f"{name}-{index}" for index in range(200)]
    finally:
        factory.close()


async def test_a_failed_flush_keeps_every_message_and_raises(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    manager = create_mongodb_session_manager(
        "fail", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    await manager.load(agent)
    repository = manager.repository
    outage = {"on": True}

    def failing(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if outage["on"]:
                raise StoreUnavailableError("server unreachable (simulated)")
            return real(*args, **kwargs)

        return call

    repository._run_plan = failing(repository._run_plan)  # type: ignore[method-assign]
    for n in range(3):
        manager.append_message({"role": "user", "content": f"note {n}"}, agent)
    with pytest.raises(StoreUnavailableError):
        await manager.flush()
    assert [m["content"][0]["text"] for m in agent.messages] == [
        "note 0",
        "note 1",
        "note 2",
    ]  # nothing dropped

    outage["on"] = False
    await manager.flush()
    assert [text_of(d) for d in stored(mongo_client, database_name, "fail")] == ["note 0", "note 1", "note 2"]
    await manager.aclose()


def test_append_message_in_sync_code_is_stored_when_it_returns(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    manager = create_mongodb_session_manager(
        "sync", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    manager.append_message({"role": "user", "content": "remember this"}, agent)
    assert [text_of(d) for d in stored(mongo_client, database_name, "sync")] == ["remember this"]


async def test_a_session_document_deleted_under_a_live_manager_is_recreated(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    manager = create_mongodb_session_manager(
        "gone", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["One.", "Two."]),
        session_manager=manager,
        callback_handler=None,
    )
    await agent.invoke_async("first")
    mongo_client[database_name].sessions.delete_one({"_id": "gone"})  # an operator's mistake

    await agent.invoke_async("second")
    await manager.aclose()

    document = mongo_client[database_name].sessions.find_one({"_id": "gone"})
    assert document is not None
    assert "assistant" in document["agents"]
    resumed = create_mongodb_session_manager(
        "gone", connection_string=mongodb_uri, database_name=database_name
    )
    again = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Three."], strict=True),
        session_manager=resumed,
        callback_handler=None,
    )
    await resumed.load(again)
    assert [m["content"][0]["text"] for m in again.messages] == ["first", "One.", "second", "Two."]
    await again.invoke_async("third")
    await resumed.aclose()


def test_write_concern_is_passed_to_the_client(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    manager = MongoDBSessionManager(
        "durable", connection_string=mongodb_uri, database_name=database_name, w="majority", journal=True
    )
    assert manager.repository.client.write_concern.document == {"w": "majority", "j": True}
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["Kept."]), session_manager=manager, callback_handler=None
    )
    agent("keep it")
    manager.close()
    assert len(stored(mongo_client, database_name, "durable")) == 2


async def test_closing_the_factory_waits_for_handed_off_appends(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    manager = await factory.acreate_session_manager("handed-off", agent_id="assistant")
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    for index in range(50):
        manager.append_message({"role": "user", "content": f"note {index}"}, agent)  # returns at once

    await factory.aclose()  # the app's shutdown: no manager was closed

    assert len(stored(mongo_client, database_name, "handed-off")) == 50
