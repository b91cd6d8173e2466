"""AsyncMongoDBSessionRepository on mongomock-motor: the fast tier, no server.

Only behaviour that does not depend on a real server's semantics is checked here; the same
behaviours run against a real server in ``tests/integration/test_async_repository.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    ConfigurationError,
    InvalidSessionInputError,
    SessionNotFoundError,
)


@pytest.fixture
def repository() -> AsyncMongoDBSessionRepository:
    return AsyncMongoDBSessionRepository(database_name="unit", client=AsyncMongoMockClient())


def message(text: str, message_id: int, role: str = "user") -> SessionMessage:
    return SessionMessage(message={"role": role, "content": [{"text": text}]}, message_id=message_id)  # type: ignore[typeddict-item]


async def start(repository: AsyncMongoDBSessionRepository, session_id: str = "s1", **metadata: Any) -> None:
    await repository.create_session(
        Session(session_id=session_id, session_type=SessionType.AGENT), metadata=metadata
    )
    await repository.create_agent(
        session_id, SessionAgent(agent_id="assistant", state={}, conversation_manager_state={})
    )


async def test_a_conversation_round_trips(repository: AsyncMongoDBSessionRepository) -> None:
    await start(repository)
    await repository.write_message("s1", "assistant", message("Hi", 0))
    await repository.write_message("s1", "assistant", message("Hello!", 1, role="assistant"))

    stored = await repository.list_messages("s1", "assistant")

    assert [(m.message_id, m.message["content"][0]["text"]) for m in stored] == [(0, "Hi"), (1, "Hello!")]
    assert await repository.read_agent("s1", "assistant") is not None


async def test_without_client_bulk_write_a_plan_runs_one_write_at_a_time(
    repository: AsyncMongoDBSessionRepository,
) -> None:
    await start(repository)

    await repository.write_message(
        "s1", "assistant", message("Done.", 0, role="assistant"), session_update={"$set": {"totals.turns": 1}}
    )

    document = await repository.load_session_document("s1")
    assert document is not None
    assert document["totals"] == {"turns": 1}
    assert (await repository.read_message("s1", "assistant", 0)) is not None


async def test_a_taken_id_moves_to_the_next_free_one(repository: AsyncMongoDBSessionRepository) -> None:
    await start(repository)
    await repository.write_message("s1", "assistant", message("first", 0))

    assert await repository.write_message("s1", "assistant", message("second", 0)) == 1


async def test_writing_to_a_missing_session_is_refused(repository: AsyncMongoDBSessionRepository) -> None:
    with pytest.raises(SessionNotFoundError):
        await repository.create_agent(
            "nope", SessionAgent(agent_id="a", state={}, conversation_manager_state={})
        )


async def test_list_sessions_filters_by_metadata_and_refuses_operators(
    repository: AsyncMongoDBSessionRepository,
) -> None:
    await start(repository, "s1", team="a")
    await start(repository, "s2", team="b")

    assert [s["session_id"] for s in await repository.list_sessions(metadata={"team": "b"})] == ["s2"]
    with pytest.raises(InvalidSessionInputError):
        await repository.list_sessions(metadata={"team": {"$regex": ".*"}})
    with pytest.raises(InvalidSessionInputError):
        await repository.list_sessions(limit=0)


@pytest.mark.parametrize("session_id", ["", "x" * 600, "a\x00b", 42])
async def test_hostile_session_ids_are_refused(
    repository: AsyncMongoDBSessionRepository, session_id: Any
) -> None:
    with pytest.raises(InvalidSessionInputError):
        await repository.load_session_document(session_id)


def test_needs_a_connection_string_or_a_client() -> None:
    with pytest.raises(ConfigurationError):
        AsyncMongoDBSessionRepository()
    with pytest.raises(ConfigurationError, match="cannot apply"):
        AsyncMongoDBSessionRepository(client=AsyncMongoMockClient(), maxPoolSize=10)


def test_repr_never_shows_the_connection_string() -> None:
    repository = AsyncMongoDBSessionRepository("mongodb://user:secret@db.example:27017", "app")

    assert "secret" not in repr(repository)
    assert (
        repr(repository) == "AsyncMongoDBSessionRepository(database_name='app', collection_name='sessions')"
    )
