"""AsyncMongoDBSessionRepository against the real server, with pymongo's async client and motor.

The contract tests write with one repository and read with the other: the on-disk layout is the
same whichever side of an app (hooks on threads, endpoints on the loop) wrote it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pymongo
import pytest
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient
from pymongo.errors import InvalidOperation
from strands import Agent
from strands.multiagent.base import MultiAgentBase
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMetricsQuery,
    AsyncMongoDBSessionRepository,
    ConfigurationError,
    InvalidSessionInputError,
    MongoDBSessionRepository,
    SessionNotFoundError,
    create_mongodb_session_manager,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


@pytest.fixture(params=["pymongo", "motor"])
async def repository(
    request: pytest.FixtureRequest, mongodb_uri: str, database_name: str
) -> AsyncIterator[AsyncMongoDBSessionRepository]:
    client: Any = (
        AsyncMongoClient(mongodb_uri) if request.param == "pymongo" else AsyncIOMotorClient(mongodb_uri)
    )
    yield AsyncMongoDBSessionRepository(database_name=database_name, client=client)
    closed = client.close()
    if closed is not None:  # AsyncMongoClient.close is a coroutine, motor's is not
        await closed


@pytest.fixture
def sync_repository(mongo_client: Client, database_name: str) -> MongoDBSessionRepository:
    return MongoDBSessionRepository(database_name=database_name, client=mongo_client)


def message(role: str, text: str, message_id: int) -> SessionMessage:
    return SessionMessage(message={"role": role, "content": [{"text": text}]}, message_id=message_id)  # type: ignore[typeddict-item]


def session(session_id: str) -> Session:
    return Session(session_id=session_id, session_type=SessionType.AGENT)


def agent(agent_id: str = "assistant", **state: Any) -> SessionAgent:
    return SessionAgent(agent_id=agent_id, state=state, conversation_manager_state={})


class Workflow:
    """The two attributes a repository reads from a Graph or Swarm."""

    def __init__(self, id: str, state: dict[str, Any]) -> None:
        self.id = id
        self.state = state

    def serialize_state(self) -> dict[str, Any]:
        return self.state


async def test_session_agent_and_messages_round_trip(repository: AsyncMongoDBSessionRepository) -> None:
    await repository.create_session(session("s1"), metadata={"user": "ana"})
    await repository.create_session(session("s1"), metadata={"user": "someone else"})  # no-op
    await repository.create_agent("s1", agent(mood="happy"))
    await repository.write_message("s1", "assistant", message("user", "Hi", 0))
    await repository.write_message("s1", "assistant", message("assistant", "Hello!", 1))

    assert (await repository.read_session("s1")) is not None
    assert (await repository.read_session("missing")) is None
    assert (await repository.load_session_document("s1") or {})["metadata"] == {"user": "ana"}
    stored_agent = await repository.read_agent("s1", "assistant")
    assert stored_agent is not None
    assert stored_agent.state == {"mood": "happy"}
    assert [m.message["content"][0]["text"] for m in await repository.list_messages("s1", "assistant")] == [
        "Hi",
        "Hello!",
    ]
    assert [m.message_id for m in await repository.list_messages("s1", "assistant", offset=1)] == [1]
    read = await repository.read_message("s1", "assistant", 1)
    assert read is not None
    assert read.message["role"] == "assistant"


async def test_updates_change_what_is_stored(repository: AsyncMongoDBSessionRepository) -> None:
    await repository.create_session(session("s1"))
    await repository.create_agent("s1", agent(step=1))
    await repository.write_message("s1", "assistant", message("user", "Hi", 0))

    await repository.update_agent("s1", agent(step=2))
    await repository.update_message("s1", "assistant", message("user", "[redacted]", 0))

    stored_agent = await repository.read_agent("s1", "assistant")
    assert stored_agent is not None
    assert stored_agent.state == {"step": 2}
    updated = await repository.read_message("s1", "assistant", 0)
    assert updated is not None
    assert updated.message["content"] == [{"text": "[redacted]"}]
    with pytest.raises(SessionNotFoundError):
        await repository.update_message("s1", "assistant", message("user", "x", 99))
    with pytest.raises(SessionNotFoundError):
        await repository.create_agent("missing", agent())


async def test_a_taken_message_id_moves_to_the_next_free_one(
    repository: AsyncMongoDBSessionRepository,
) -> None:
    await repository.create_session(session("s1"))
    await repository.create_agent("s1", agent())
    assert await repository.write_message("s1", "assistant", message("user", "first", 0)) == 0

    second = message("user", "second writer, same id", 0)
    assert await repository.write_message("s1", "assistant", second) == 1
    assert second.message_id == 1
    assert [m.message_id for m in await repository.list_messages("s1", "assistant")] == [0, 1]


async def test_message_and_session_update_are_written_together(
    repository: AsyncMongoDBSessionRepository,
) -> None:
    await repository.create_session(session("s1"))
    await repository.create_agent("s1", agent())
    totals = {"turns": 1, "inputTokens": 12}
    await repository.write_message(
        "s1",
        "assistant",
        message("assistant", "Done.", 0),
        session_update={"$inc": {"totals.turns": 1}},
        event_loop_metrics={"status": "completed"},
    )
    await repository.write_session_update(
        "s1", agent=agent(step=3), totals=totals, turn_record=(0, {"status": "completed", "model_calls": 1})
    )

    document = await repository.load_session_document("s1") or {}
    assert document["totals"] == {"turns": 2, "inputTokens": 12}
    assert document["agents"]["assistant"]["totals"] == totals
    assert document["agents"]["assistant"]["state"] == {"step": 3}
    turn = await repository.messages_collection.find_one({"session_id": "s1", "message_id": 0})
    assert turn["event_loop_metrics"] == {"status": "completed", "model_calls": 1}


async def test_delete_session_removes_its_messages(repository: AsyncMongoDBSessionRepository) -> None:
    await repository.create_session(session("s1"))
    await repository.create_agent("s1", agent())
    await repository.write_message("s1", "assistant", message("user", "Hi", 0))

    assert await repository.delete_session("s1") is True
    assert await repository.delete_session("s1") is False
    assert await repository.list_messages("s1", "assistant") == []


async def test_multi_agent_state(repository: AsyncMongoDBSessionRepository) -> None:
    await repository.create_session(session("s1"))
    workflow = Workflow("research-graph", {"status": "running", "completed_nodes": ["a"]})

    await repository.create_multi_agent("s1", cast(MultiAgentBase, workflow))
    workflow.state = {"status": "completed", "completed_nodes": ["a", "b"]}
    await repository.update_multi_agent("s1", cast(MultiAgentBase, workflow))

    assert await repository.read_multi_agent("s1", "research-graph") == workflow.state
    assert await repository.read_multi_agent("s1", "other") is None
    with pytest.raises(SessionNotFoundError):
        await repository.update_multi_agent("missing", cast(MultiAgentBase, workflow))


async def test_list_sessions_pages_newest_first_and_filters(
    repository: AsyncMongoDBSessionRepository, sync_repository: MongoDBSessionRepository
) -> None:
    for number in range(5):
        await repository.create_session(session(f"s{number}"), metadata={"team": "a" if number % 2 else "b"})
        await repository.write_session_update(f"s{number}")  # touches updated_at, in order
    await repository.create_agent("s3", agent("researcher"))

    newest_first = [s["session_id"] for s in await repository.list_sessions()]
    assert newest_first == ["s3", "s4", "s2", "s1", "s0"]  # s3 was touched last, by create_agent
    assert [s["session_id"] for s in await repository.list_sessions(skip=1, limit=2)] == ["s4", "s2"]
    assert [s["session_id"] for s in await repository.list_sessions(metadata={"team": "a"})] == ["s3", "s1"]
    assert [s["session_id"] for s in await repository.list_sessions(agent_id="researcher")] == ["s3"]
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert await repository.list_sessions(since=future) == []
    assert len(await repository.list_sessions(until=future)) == 5
    assert sync_repository.list_sessions(skip=1, limit=2) == await repository.list_sessions(skip=1, limit=2)


@pytest.mark.parametrize(
    "metadata", [{"$where": "1"}, {"team": {"$ne": None}}, {"team": {"$in": [{"$gt": ""}]}}, {"": 1}]
)
async def test_list_sessions_refuses_operator_injection(
    repository: AsyncMongoDBSessionRepository, sync_repository: MongoDBSessionRepository, metadata: Any
) -> None:
    with pytest.raises(InvalidSessionInputError):
        await repository.list_sessions(metadata=metadata)
    with pytest.raises(InvalidSessionInputError):
        sync_repository.list_sessions(metadata=metadata)


async def test_hostile_ids_are_refused_before_any_write(repository: AsyncMongoDBSessionRepository) -> None:
    with pytest.raises(InvalidSessionInputError):
        await repository.create_session(session(""))
    with pytest.raises(InvalidSessionInputError):
        await repository.write_message("s1", "a.b", message("user", "x", 0))
    with pytest.raises(InvalidSessionInputError):
        await repository.read_session({"$ne": None})  # type: ignore[arg-type]
    assert await repository.list_sessions() == []


async def test_session_metrics_of_a_turn_stored_by_the_manager(
    repository: AsyncMongoDBSessionRepository, mongodb_uri: str, database_name: str
) -> None:
    model = ScriptedModel(["Hello there."])
    async with create_mongodb_session_manager(
        "s1", connection_string=mongodb_uri, database_name=database_name
    ) as manager:
        chat = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
        await chat.invoke_async("Hi")

    metrics = await AsyncMetricsQuery(repository).session_metrics("s1")

    assert metrics.totals.turns == 1
    assert metrics.totals.input_tokens == model.calls[0].usage["inputTokens"]
    assert [turn.status for turn in metrics.turns] == ["completed"]


async def test_async_writes_read_back_by_the_sync_repository(
    repository: AsyncMongoDBSessionRepository, sync_repository: MongoDBSessionRepository
) -> None:
    await repository.create_session(session("s1"), metadata={"user": "ana"})
    await repository.create_agent("s1", agent(step=1))
    for number, (role, text) in enumerate([("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye")]):
        await repository.write_message("s1", "assistant", message(role, text, number))

    assert sync_repository.read_session("s1") == await repository.read_session("s1")
    assert sync_repository.read_agent("s1", "assistant") == await repository.read_agent("s1", "assistant")
    assert sync_repository.list_messages("s1", "assistant") == await repository.list_messages(
        "s1", "assistant"
    )
    assert sync_repository.load_session_document("s1") == await repository.load_session_document("s1")


async def test_sync_and_async_writes_make_the_same_documents(
    repository: AsyncMongoDBSessionRepository, sync_repository: MongoDBSessionRepository
) -> None:
    for repo_session, write in (("by-sync", False), ("by-async", True)):
        if write:
            await repository.create_session(session(repo_session), metadata={"k": 1})
            await repository.create_agent(repo_session, agent(step=1))
            await repository.write_message(repo_session, "assistant", message("user", "Hi", 0))
            await repository.write_session_update(repo_session, agent=agent(step=2), totals={"turns": 1})
        else:
            sync_repository.create_session(session(repo_session), metadata={"k": 1})
            sync_repository.create_agent(repo_session, agent(step=1))
            sync_repository.write_message(repo_session, "assistant", message("user", "Hi", 0))
            sync_repository.write_session_update(repo_session, agent=agent(step=2), totals={"turns": 1})

    def shape(document: dict[str, Any] | None) -> Any:
        """The document with ids and clocks blanked: what is left is the layout and the data."""
        if isinstance(document, dict):
            return {
                key: "<varies>" if key in ("_id", "session_id") or key.endswith("_at") else shape(value)
                for key, value in document.items()
            }
        return document

    by_sync = sync_repository.load_session_document("by-sync")
    by_async = await repository.load_session_document("by-async")
    assert by_sync is not None
    assert shape(by_sync) == shape(by_async)
    sync_message = sync_repository.messages_collection.find_one({"session_id": "by-sync"})
    async_message = await repository.messages_collection.find_one({"session_id": "by-async"})
    assert shape(sync_message) == shape(async_message)
    assert sync_repository.list_messages("by-async", "assistant")[0].message == {
        "role": "user",
        "content": [{"text": "Hi"}],
    }


def test_constructed_outside_a_loop_and_closes_only_its_own_client(
    mongodb_uri: str, database_name: str
) -> None:
    owned = AsyncMongoDBSessionRepository(mongodb_uri, database_name, maxPoolSize=5)  # no loop runs here

    async def use() -> None:
        await owned.create_session(session("s1"))
        created = owned.client
        assert created.options.pool_options.max_pool_size == 5
        borrowed_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
        borrowed = AsyncMongoDBSessionRepository(database_name=database_name, client=borrowed_client)
        await borrowed.close()
        assert await borrowed.read_session("s1") is not None  # the client passed in is still open
        await owned.close()
        with pytest.raises(InvalidOperation):
            await created.admin.command("ping")  # the one it created is closed
        await borrowed_client.close()

    asyncio.run(use())


def test_options_for_a_borrowed_client_are_refused(mongo_client: Client) -> None:
    with pytest.raises(ConfigurationError, match="cannot apply"):
        AsyncMongoDBSessionRepository(client=mongo_client, maxPoolSize=5)
    with pytest.raises(ConfigurationError):
        AsyncMongoDBSessionRepository()
