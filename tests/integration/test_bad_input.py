"""Bad ids are refused before anything is written; an unreachable server fails fast and quietly."""

from __future__ import annotations

import logging
import time
from typing import Any

import pymongo
import pytest
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionType

from mongodb_session_manager import (
    InvalidSessionInputError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    StoreUnavailableError,
    create_mongodb_session_manager,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]

HOSTILE_IDS: list[Any] = [
    {"$gt": ""},
    "",
    "   ",
    "a" * 10_000,
    "nul\x00byte",
    42,
    None,
]


@pytest.mark.parametrize("session_id", HOSTILE_IDS, ids=repr)
def test_hostile_session_ids_raise_value_error_and_write_nothing(
    session_id: Any, database_name: str, client: Client
) -> None:
    with pytest.raises(ValueError, match="session_id"):
        MongoDBSessionManager(session_id=session_id, client=client, database_name=database_name)
    assert client[database_name].list_collection_names() == []


@pytest.mark.parametrize("agent_id", ["   ", "a" * 10_000, "nul\x00byte", "dotted.agent", "$where"], ids=repr)
def test_hostile_agent_ids_raise_value_error_and_write_no_agent(
    agent_id: Any, database_name: str, client: Client
) -> None:
    manager = MongoDBSessionManager(session_id="s", client=client, database_name=database_name)
    with pytest.raises(ValueError, match="agent_id"):
        Agent(agent_id=agent_id, model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    # Construction writes nothing, and a refused agent never gets to write.
    assert client[database_name].sessions.find_one({"_id": "s"}) is None
    assert client[database_name].sessions_messages.count_documents({}) == 0


@pytest.mark.parametrize("agent_id", [{"$gt": ""}, "", None, "a.b"], ids=repr)
def test_the_repository_refuses_hostile_agent_ids_too(
    agent_id: Any, database_name: str, client: Client
) -> None:
    """Strands itself turns "" into "default" and chokes on a dict; the repository checks on its own."""
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    repository.create_session(Session(session_id="s", session_type=SessionType.AGENT))
    with pytest.raises(ValueError, match="agent_id"):
        repository.create_agent("s", SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={}))
    with pytest.raises(ValueError, match="agent_id"):
        repository.list_messages("s", agent_id)
    document = client[database_name].sessions.find_one({"_id": "s"})
    assert document is not None
    assert document["agents"] == {}


def test_bad_message_is_refused_before_anything_is_written(database_name: str, client: Client) -> None:
    manager = MongoDBSessionManager(session_id="s", client=client, database_name=database_name)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    with pytest.raises(InvalidSessionInputError):
        manager.append_message({"role": "system", "content": "hi"}, agent)
    with pytest.raises(InvalidSessionInputError):
        manager.append_message({"role": "user", "content": 12}, agent)
    manager.sync_agent(agent)
    assert client[database_name].sessions_messages.count_documents({}) == 0


def test_unreachable_server_raises_the_packages_error_within_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    manager = create_mongodb_session_manager(  # construction does no I/O: the restore does
        session_id="s",
        connection_string="mongodb://admin:s3cr3t-pw@127.0.0.1:1/?serverSelectionTimeoutMS=300",
        database_name="nowhere",
    )
    with pytest.raises(StoreUnavailableError) as raised:
        Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    assert time.monotonic() - started < 5
    assert "s3cr3t-pw" not in str(raised.value)
    assert "s3cr3t-pw" not in caplog.text


def test_reprs_and_logs_never_show_the_password(caplog: pytest.LogCaptureFixture, mongodb_uri: str) -> None:
    caplog.set_level(logging.DEBUG)
    uri = "mongodb://admin:s3cr3t-pw@127.0.0.1:1/?serverSelectionTimeoutMS=300"
    factory = MongoDBSessionManagerFactory(connection_string=uri, database_name="nowhere")
    assert "s3cr3t-pw" not in repr(factory)
    manager = factory.create_session_manager("s")
    with pytest.raises(StoreUnavailableError) as raised:
        Agent(agent_id="a", model=ScriptedModel([]), session_manager=manager, callback_handler=None)
    factory.close()
    assert "s3cr3t-pw" not in str(raised.value)
    assert "s3cr3t-pw" not in caplog.text
