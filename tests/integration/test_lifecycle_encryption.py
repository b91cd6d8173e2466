"""encryption=ContentEncryption(...): content and state are ciphertext at rest, keys are per user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson.binary import Binary
from pymongo import monitoring
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository, SessionDecryptionError
from mongodb_session_manager.encryption import ContentEncryption
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "master.key"


def encryption_for(key_file: Path, database_name: str) -> ContentEncryption:
    return ContentEncryption.local(key_file, key_vault_namespace=f"{database_name}.__keyVault")


def converse(
    client: Client, database_name: str, encryption: ContentEncryption, session_id: str, user_id: str
) -> Agent:
    manager = MongoDBSessionManager(
        session_id, client=client, database_name=database_name, user_id=user_id, encryption=encryption
    )
    agent = Agent(agent_id="assistant", model=ScriptedModel(), session_manager=manager, callback_handler=None)
    agent.state.set("note", f"{user_id} state value")
    agent(f"{user_id} confides a secret in {session_id}")
    agent(f"{user_id} adds another secret")
    manager.close()
    return agent


def resume(client: Client, database_name: str, encryption: ContentEncryption, session_id: str) -> Agent:
    manager = MongoDBSessionManager(
        session_id, client=client, database_name=database_name, encryption=encryption
    )
    return Agent(agent_id="assistant", model=ScriptedModel(), session_manager=manager, callback_handler=None)


def raw_scan(client: Client, database_name: str) -> list[dict[str, Any]]:
    database = client[database_name]
    return [document for name in database.list_collection_names() for document in database[name].find()]


@pytest.fixture
def two_users(client: Client, database_name: str, key_file: Path) -> dict[str, Agent]:
    encryption = encryption_for(key_file, database_name)
    return {
        session_id: converse(client, database_name, encryption, session_id, session_id.split("-")[0])
        for session_id in ("alice-1", "alice-2", "bob-1")
    }


def test_nothing_readable_is_stored_and_a_resume_decrypts(
    client: Client, database_name: str, key_file: Path, two_users: dict[str, Agent]
) -> None:
    scanned = raw_scan(client, database_name)
    text = repr(scanned)
    for secret in ("confides a secret", "adds another secret", "state value", "You said"):
        assert secret not in text
    messages = list(client[database_name].sessions_messages.find())
    assert len(messages) == 12
    assert all(isinstance(m["message"], Binary) and m["message"].subtype == 6 for m in messages)
    assert {m["role"] for m in messages} == {"user", "assistant"}  # ids, roles and metrics stay in clear
    assert sum("event_loop_metrics" in m for m in messages) == 6
    session = client[database_name].sessions.find_one({"_id": "alice-1"})
    assert session is not None
    assert session["agents"]["assistant"]["state"].subtype == 6
    keys = list(client[database_name]["__keyVault"].find())
    assert sorted(name for key in keys for name in key["keyAltNames"]) == ["msm:user:alice", "msm:user:bob"]

    resumed = resume(client, database_name, encryption_for(key_file, database_name), "alice-1")
    assert resumed.messages == two_users["alice-1"].messages
    assert resumed.state.get("note") == "alice state value"


def test_after_erasure_a_backup_of_the_user_cannot_be_decrypted(
    client: Client, database_name: str, key_file: Path, two_users: dict[str, Agent]
) -> None:
    database = client[database_name]
    backup = {
        "sessions": list(database.sessions.find({"user_id": "alice"})),
        "sessions_messages": list(
            database.sessions_messages.find({"session_id": {"$in": ["alice-1", "alice-2"]}})
        ),
    }
    receipt = MongoDBSessionRepository(client=client, database_name=database_name).erase_user(
        "alice", key_vault_namespace=f"{database_name}.__keyVault"
    )
    assert (receipt.sessions, receipt.messages, receipt.keys) == (2, 8, 1)

    for name, documents in backup.items():  # the backup is restored, keys and all else as they are now
        database[name].insert_many(documents)
    fresh = encryption_for(key_file, database_name)  # another process: no key held in memory
    with pytest.raises(SessionDecryptionError):
        resume(client, database_name, fresh, "alice-1")
    bob = resume(client, database_name, fresh, "bob-1")
    assert bob.messages == two_users["bob-1"].messages


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
async def test_a_plain_turn_costs_two_round_trips_either_way(
    mongodb_uri: str, database_name: str, key_file: Path, encrypted: bool
) -> None:
    counter = CommandCounter()
    with pymongo.MongoClient(mongodb_uri, event_listeners=[counter]) as counted:
        encryption = encryption_for(key_file, database_name) if encrypted else None
        manager = MongoDBSessionManager(
            "rt", client=counted, database_name=database_name, user_id="u", encryption=encryption
        )
        agent = Agent(
            agent_id="assistant", model=ScriptedModel(), session_manager=manager, callback_handler=None
        )
        await agent.invoke_async("warm up: indexes, the data key")
        counter.commands.clear()
        await agent.invoke_async("hi")
        assert len(counter.commands) == 2
        await manager.aclose()
