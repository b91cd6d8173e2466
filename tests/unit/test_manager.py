"""The manager's own rules, on an in-memory MongoDB (mongomock): fast, no server needed."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest
from strands import Agent

from mongodb_session_manager import (
    ConfigurationError,
    FactoryNotInitializedError,
    MongoDBSessionError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    close_global_factory,
    get_global_factory,
    initialize_global_factory,
)
from mongodb_session_manager.manager import normalise_message
from mongodb_session_manager.testing import ScriptedModel


@pytest.fixture
def client() -> Any:
    return mongomock.MongoClient()


def stored(client: Any, session_id: str = "s") -> list[dict[str, Any]]:
    return list(client.db.sessions_messages.find({"session_id": session_id}, sort=[("message_id", 1)]))


def test_string_content_becomes_a_text_block() -> None:
    assert normalise_message({"role": "user", "content": "hi"})["content"] == [{"text": "hi"}]


async def test_manual_appends_around_a_turn_store_each_message_once(client: Any) -> None:
    manager = MongoDBSessionManager("s", client=client, database_name="db")
    agent = Agent(
        agent_id="a", model=ScriptedModel(["Hello you."]), session_manager=manager, callback_handler=None
    )
    manager.append_message({"role": "user", "content": "Hi"}, agent)
    reply = "".join([e["data"] async for e in agent.stream_async("Hi") if "data" in e])
    manager.append_message({"role": "assistant", "content": reply}, agent)
    manager.sync_agent(agent)
    assert [(d["role"], d["message"]["content"]) for d in stored(client)] == [
        ("user", [{"text": "Hi"}]),
        ("assistant", [{"text": "Hello you."}]),
    ]


def test_a_manual_message_is_stored_when_append_returns_and_joins_the_agent(client: Any) -> None:
    manager = MongoDBSessionManager("s", client=client, database_name="db")
    agent = Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    manager.append_message({"role": "user", "content": "note to self"}, agent)
    assert [d["message"]["content"] for d in stored(client)] == [[{"text": "note to self"}]]
    manager.sync_agent(agent)
    assert len(stored(client)) == 1
    assert agent.messages[-1]["content"] == [{"text": "note to self"}]


def test_close_stores_what_is_pending_and_then_refuses_work(client: Any) -> None:
    manager = MongoDBSessionManager("s", client=client, database_name="db")
    agent = Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    manager.append_message({"role": "user", "content": "last words"}, agent)
    manager.close()
    manager.close()  # closing twice is fine
    assert len(stored(client)) == 1
    with pytest.raises(MongoDBSessionError, match="closed"):
        manager.append_message({"role": "user", "content": "too late"}, agent)


def test_the_global_factory_must_be_initialised_first(client: Any) -> None:
    close_global_factory()
    with pytest.raises(FactoryNotInitializedError, match="initialize_global_factory"):
        get_global_factory()
    factory = initialize_global_factory(client=client, database_name="db")
    try:
        assert get_global_factory() is factory
        manager = factory.create_session_manager("s")
        assert manager.repository is factory.repository
    finally:
        close_global_factory()
    with pytest.raises(FactoryNotInitializedError):
        get_global_factory()


def test_options_are_used_or_refused_never_dropped(client: Any) -> None:
    with pytest.raises(ConfigurationError, match="fooBar"):
        MongoDBSessionManager("s", connection_string="mongodb://127.0.0.1:1/", fooBar=1)
    with pytest.raises(ConfigurationError, match="not both"):
        MongoDBSessionManager("s", connection_string="mongodb://127.0.0.1:1/", client=client)
    factory = MongoDBSessionManagerFactory(client=client, database_name="db")
    with pytest.raises(ConfigurationError, match="maxPoolSize"):
        factory.create_session_manager("s", maxPoolSize=5)  # the factory's client is already built
    assert client.db.sessions.count_documents({}) == 0
