"""One contract, three repositories: the sync one, the async one, and the in-memory fake (mongomock).

The same bad input raises the same package error from each, before any I/O; the same writes read
back the same way. Every operation is one flow in ``_repository_core``, so they cannot drift.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import mongomock
import pymongo
import pytest
from pymongo import AsyncMongoClient
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    InvalidSessionInputError,
    MongoDBSessionRepository,
    SessionNotFoundError,
)


class Repository:
    """Calls a repository the same way whether its methods are sync or async."""

    def __init__(self, repository: Any) -> None:
        self.repository = repository

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.repository, name)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result


@pytest.fixture(params=["sync", "async", "fake"])
async def repository(
    request: pytest.FixtureRequest, mongodb_uri: str, database_name: str
) -> AsyncIterator[Repository]:
    if request.param == "sync":
        with pymongo.MongoClient(mongodb_uri) as client:
            yield Repository(MongoDBSessionRepository(client=client, database_name=database_name))
    elif request.param == "async":
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
        yield Repository(AsyncMongoDBSessionRepository(client=client, database_name=database_name))
        await client.close()
    else:
        yield Repository(MongoDBSessionRepository(client=mongomock.MongoClient(), database_name="fake"))


def message(text: str, message_id: int) -> SessionMessage:
    return SessionMessage.from_message({"role": "user", "content": [{"text": text}]}, message_id)


HOSTILE_IDS = ["", "   ", "x" * 600, "a\x00b", 42, None, {"$gt": ""}]


@pytest.mark.parametrize("session_id", HOSTILE_IDS, ids=repr)
async def test_hostile_session_ids_are_refused_the_same_way(repository: Repository, session_id: Any) -> None:
    for name, args in [
        ("read_session", (session_id,)),
        ("load_session", (session_id, "a")),
        ("delete_session", (session_id,)),
        ("list_messages", (session_id, "a")),
        ("write_message", (session_id, "a", message("hi", 0))),
        ("read_message", (session_id, "a", 0)),
    ]:
        with pytest.raises(InvalidSessionInputError, match="session_id"):
            await repository(name, *args)


@pytest.mark.parametrize("agent_id", [i for i in HOSTILE_IDS if i is not None] + ["a.b", "$where"], ids=repr)
async def test_hostile_agent_ids_are_refused_the_same_way(repository: Repository, agent_id: Any) -> None:
    for name, args in [
        ("load_session", ("s", agent_id)),
        ("list_messages", ("s", agent_id)),
        ("write_message", ("s", agent_id, message("hi", 0))),
        ("read_agent", ("s", agent_id)),
    ]:
        with pytest.raises(InvalidSessionInputError, match="agent_id"):
            await repository(name, *args)


@pytest.mark.parametrize(
    "arguments",
    [
        {"limit": 0},
        {"limit": 10_000},
        {"skip": -1},
        {"metadata": {"$where": "1"}},
        {"metadata": {"a": {"$ne": 1}}},
    ],
    ids=repr,
)
async def test_bad_listing_arguments_are_refused_the_same_way(repository: Repository, arguments: Any) -> None:
    with pytest.raises(InvalidSessionInputError):
        await repository("list_sessions", **arguments)


async def test_bad_message_ids_and_offsets_are_refused_the_same_way(repository: Repository) -> None:
    with pytest.raises(InvalidSessionInputError, match="message_id"):
        await repository("write_message", "s", "a", message("hi", -1))
    with pytest.raises(InvalidSessionInputError, match="offset"):
        await repository("list_messages", "s", "a", offset=-3)


async def test_the_same_writes_read_back_the_same_way(repository: Repository) -> None:
    await repository(
        "create_session", Session(session_id="s", session_type=SessionType.AGENT), metadata={"k": 1}
    )
    await repository(
        "create_agent", "s", SessionAgent(agent_id="a", state={"x": 1}, conversation_manager_state={})
    )
    for number in range(3):
        assert await repository("write_message", "s", "a", message(f"m{number}", number)) == number
    assert await repository("write_message", "s", "a", message("taken", 1)) == 3  # the id moved on

    snapshot = await repository("load_session", "s", "a")
    assert [m.message["content"][0]["text"] for m in snapshot.window] == ["m0", "m1", "m2", "taken"]
    assert snapshot.document["metadata"] == {"k": 1}
    agent = await repository("read_agent", "s", "a")
    assert agent.state == {"x": 1}
    assert await repository("load_session", "nope", "a") is None
    with pytest.raises(SessionNotFoundError):
        await repository(
            "create_agent", "nope", SessionAgent(agent_id="a", state={}, conversation_manager_state={})
        )
    assert await repository("delete_session", "s") is True
    assert await repository("read_session", "s") is None
