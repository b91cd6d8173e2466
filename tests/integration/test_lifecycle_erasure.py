"""erase_user: nothing of the user remains in any collection; everyone else is untouched."""

from __future__ import annotations

import json
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    InvalidSessionInputError,
    MongoDBSessionManager,
    MongoDBSessionRepository,
)
from mongodb_session_manager.cli import main
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def converse(client: Client, database_name: str, session_id: str, user_id: str, turns: int) -> list[Any]:
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, user_id=user_id)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel([f"{user_id} reply {n}." for n in range(turns)]),
        session_manager=manager,
        callback_handler=None,
    )
    for n in range(turns):
        agent(f"{user_id} secret {n}")
    manager.close()
    return list(agent.messages)


def everything_stored(client: Client, database_name: str) -> str:
    """Every document of every collection of the database, as one text (a raw scan)."""
    database = client[database_name]
    return "\n".join(
        repr(document) for name in database.list_collection_names() for document in database[name].find()
    )


@pytest.fixture
def two_users(client: Client, database_name: str) -> dict[str, list[Any]]:
    conversations = {}
    for index in range(3):
        converse(client, database_name, f"alice-{index}", "alice", index + 1)
        conversations[f"bob-{index}"] = converse(client, database_name, f"bob-{index}", "bob", 2)
    return conversations


def test_erasing_a_user_removes_all_of_theirs_and_only_theirs(
    client: Client, database_name: str, two_users: dict[str, list[Any]]
) -> None:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    receipt = repository.erase_user("alice")

    assert receipt.user_id == "alice"
    assert receipt.session_ids == ("alice-0", "alice-1", "alice-2")
    assert (receipt.sessions, receipt.messages, receipt.keys) == (3, 2 + 4 + 6, 0)
    stored = everything_stored(client, database_name)
    assert "alice" not in stored
    assert "bob secret 1" in stored

    for session_id, messages in two_users.items():
        manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, user_id="bob")
        resumed = Agent(
            agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
        )
        assert resumed.messages == messages

    assert repository.erase_user("alice").sessions == 0  # erasing again finds nothing, and says so


async def test_the_async_repository_erases_the_same(
    mongodb_uri: str, client: Client, database_name: str, two_users: dict[str, list[Any]]
) -> None:
    repository = AsyncMongoDBSessionRepository(mongodb_uri, database_name=database_name)
    try:
        receipt = await repository.erase_user("bob")
    finally:
        await repository.close()
    assert (receipt.sessions, receipt.messages) == (3, 12)
    assert "bob" not in everything_stored(client, database_name)


def test_the_cli_erases_with_yes_and_prints_the_receipt(
    mongodb_uri: str,
    client: Client,
    database_name: str,
    two_users: dict[str, list[Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = ["--uri", mongodb_uri, "--database", database_name]
    assert main([*options, "users", "erase", "alice"]) == 2  # no --yes: refused, nothing erased
    assert "--yes" in capsys.readouterr().err
    assert client[database_name].sessions.count_documents({"user_id": "alice"}) == 3

    assert main([*options, "users", "erase", "alice", "--yes", "--json"]) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["session_ids"] == ["alice-0", "alice-1", "alice-2"]
    assert (receipt["sessions"], receipt["messages"], receipt["keys"]) == (3, 12, 0)
    assert "alice" not in everything_stored(client, database_name)


def test_a_bad_user_id_is_refused(client: Client, database_name: str) -> None:
    with pytest.raises(InvalidSessionInputError):
        MongoDBSessionRepository(client=client, database_name=database_name).erase_user({"$ne": None})  # type: ignore[arg-type]
