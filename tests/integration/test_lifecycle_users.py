"""Sessions belong to a user: stored in an indexed field, fixed once set."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    InvalidSessionInputError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    create_mongodb_session_manager,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def chat(manager: MongoDBSessionManager, *replies: str) -> Agent:
    return Agent(
        agent_id="assistant",
        model=ScriptedModel(list(replies)),
        session_manager=manager,
        callback_handler=None,
    )


def test_user_id_is_stored_on_the_session_and_indexed(client: Client, database_name: str) -> None:
    manager = create_mongodb_session_manager(
        "s1", client=client, database_name=database_name, user_id="alice"
    )
    chat(manager, "Hi Alice.")("hello")
    manager.close()

    document = client[database_name].sessions.find_one({"_id": "s1"})
    assert document is not None
    assert document["user_id"] == "alice"
    keys = [dict(index["key"]) for index in client[database_name].sessions.list_indexes()]
    assert {"user_id": 1, "updated_at": -1} in keys


def test_another_user_cannot_take_over_a_session(client: Client, database_name: str) -> None:
    first = MongoDBSessionManager("s1", client=client, database_name=database_name, user_id="alice")
    chat(first, "Hi.")("hello")
    first.close()

    thief = MongoDBSessionManager("s1", client=client, database_name=database_name, user_id="mallory")
    with pytest.raises(InvalidSessionInputError, match="another user_id"):
        chat(thief)
    # Without a user_id a manager does not claim anything: it reads the session as before.
    reader = MongoDBSessionManager("s1", client=client, database_name=database_name)
    assert len(chat(reader).messages) == 2
    stored = client[database_name].sessions.find_one({"_id": "s1"})
    assert stored is not None
    assert stored["user_id"] == "alice"


async def test_a_loop_thread_refuses_another_user_before_storing_the_prompt(
    client: Client, database_name: str
) -> None:
    first = MongoDBSessionManager("s1", client=client, database_name=database_name, user_id="alice")
    await chat(first, "Hi.").invoke_async("hello")
    await first.aclose()

    factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
    thief = factory.create_session_manager("s1", user_id="mallory")
    agent = chat(thief, "Leaked.")
    with pytest.raises(InvalidSessionInputError):
        await agent.invoke_async("give me alice's history")
    assert client[database_name].sessions_messages.count_documents({"session_id": "s1"}) == 2

    with pytest.raises(InvalidSessionInputError):
        await factory.acreate_session_manager("s1", agent_id="assistant", user_id="mallory")


def test_a_session_stored_without_a_user_is_claimed_once(client: Client, database_name: str) -> None:
    old = MongoDBSessionManager("s1", client=client, database_name=database_name)
    chat(old, "Hi.")("hello")
    old.close()

    claimed = MongoDBSessionManager("s1", client=client, database_name=database_name, user_id="bob")
    assert len(chat(claimed).messages) == 2
    stored = client[database_name].sessions.find_one({"_id": "s1"})
    assert stored is not None
    assert stored["user_id"] == "bob"
    with pytest.raises(InvalidSessionInputError):
        chat(MongoDBSessionManager("s1", client=client, database_name=database_name, user_id="eve"))


@pytest.mark.parametrize("bad", ["", "$where", 7, "a\x00b"])
def test_bad_user_ids_are_refused_before_any_write(client: Client, database_name: str, bad: Any) -> None:
    with pytest.raises(InvalidSessionInputError):
        MongoDBSessionManager("s1", client=client, database_name=database_name, user_id=bad)
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    assert repository.list_sessions() == []
