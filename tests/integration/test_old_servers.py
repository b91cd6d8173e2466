"""The driver-error edge against a server: what the unit tests cannot build by hand.

A server older than MongoDB 8.0 is played by the session's server with pymongo told, at the
handshake, that its ``maxWireVersion`` is 21 (MongoDB 7.0): pymongo then refuses
``MongoClient.bulk_write`` itself, exactly as it does against a real 7.0 server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo.hello import Hello
from strands import Agent

from mongodb_session_manager import AsyncMongoDBSessionRepository, MongoDBSessionManager
from mongodb_session_manager.testing import CommandCounter, ScriptedModel

MONGODB_7_WIRE_VERSION = 21


@pytest.fixture
def mongodb_7(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients connected from here on take the server for MongoDB 7.0."""
    monkeypatch.setattr(Hello, "max_wire_version", property(lambda self: MONGODB_7_WIRE_VERSION))


@pytest.fixture
def commands() -> CommandCounter:
    return CommandCounter()


@pytest.fixture
def old_client(
    mongodb_7: None, mongodb_uri: str, commands: CommandCounter
) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    with pymongo.MongoClient(mongodb_uri, event_listeners=[commands]) as client:
        yield client


def stored_texts(client: pymongo.MongoClient[dict[str, Any]], database_name: str) -> list[tuple[str, str]]:
    documents = client[database_name].sessions_messages.find({}, sort=[("message_id", 1)])
    return [(d["role"], d["message"]["content"][0]["text"]) for d in documents]


async def test_before_mongodb_8_a_turn_is_written_one_operation_at_a_time(
    old_client: pymongo.MongoClient[dict[str, Any]], commands: CommandCounter, database_name: str
) -> None:
    manager = MongoDBSessionManager(session_id="old", client=old_client, database_name=database_name)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Hello.", "Again."]),
        session_manager=manager,
        callback_handler=None,
    )
    await agent.invoke_async("hi")
    await agent.invoke_async("once more")
    assert "bulkWrite" not in commands.commands  # refused by pymongo before it was sent
    assert stored_texts(old_client, database_name) == [
        ("user", "hi"),
        ("assistant", "Hello."),
        ("user", "once more"),
        ("assistant", "Again."),
    ]
    session = old_client[database_name].sessions.find_one({"_id": "old"})
    assert session is not None
    assert session["totals"]["turns"] == 2  # the session-document update of each turn was written too


def test_the_async_repository_falls_back_the_same_way(
    mongodb_7: None, mongodb_uri: str, database_name: str, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> None:
    from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

    async def write() -> None:
        commands = CommandCounter()
        client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
            mongodb_uri, event_listeners=[commands]
        )
        repository = AsyncMongoDBSessionRepository(database_name=database_name, client=client)
        try:
            await repository.create_session(Session(session_id="old", session_type=SessionType.AGENT))
            await repository.create_agent(
                "old", SessionAgent(agent_id="assistant", state={}, conversation_manager_state={})
            )
            for message_id, (role, text) in enumerate([("user", "hi"), ("assistant", "Hello.")]):
                message = SessionMessage(
                    message={"role": role, "content": [{"text": text}]}, message_id=message_id
                )  # type: ignore[typeddict-item]
                await repository.write_message(
                    "old", "assistant", message, session_update={"$set": {"metadata.seen": message_id}}
                )
            assert "bulkWrite" not in commands.commands
        finally:
            await client.close()

    asyncio.run(write())
    assert stored_texts(mongo_client, database_name) == [("user", "hi"), ("assistant", "Hello.")]
    session = mongo_client[database_name].sessions.find_one({"_id": "old"})
    assert session is not None
    assert session["metadata"]["seen"] == 1
