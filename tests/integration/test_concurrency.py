"""Two app instances writing one session at once lose nothing and overwrite nothing."""

from __future__ import annotations

import threading
from typing import Any

import pymongo
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def test_two_managers_appending_to_one_agent_keep_all_400_messages(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    MongoDBSessionManager(session_id="shared", client=client, database_name=database_name)
    start = threading.Barrier(2)

    def instance(name: str) -> list[int]:
        with pymongo.MongoClient(mongodb_uri) as own_client:
            manager = MongoDBSessionManager(
                session_id="shared", client=own_client, database_name=database_name
            )
            agent = Agent(
                agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
            )
            start.wait()
            for index in range(200):
                manager.append_message({"role": "user", "content": f"{name}-{index}"}, agent)
                manager.sync_agent(agent)
            return [record.message_id for record in manager._slots["assistant"].records]

    results: dict[str, list[int]] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, instance(n))) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stored = list(client[database_name].sessions_messages.find({"session_id": "shared"}))
    texts = sorted(doc["message"]["content"][0]["text"] for doc in stored)
    assert len(stored) == 400
    assert texts == sorted(f"{name}-{index}" for name in ("a", "b") for index in range(200))
    assert len({doc["message_id"] for doc in stored}) == 400
    # Each manager's idea of where its messages live matches what was stored.
    by_id = {doc["message_id"]: doc["message"]["content"][0]["text"] for doc in stored}
    for name, ids in results.items():
        assert [by_id[i] for i in ids] == [f"{name}-{index}" for index in range(200)]


def test_a_session_resumes_in_order_after_concurrent_writers(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    """After a collision the ids have gaps; a resume must still read every message, in order."""
    first = MongoDBSessionManager(session_id="gaps", client=client, database_name=database_name)
    agent_a = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=first, callback_handler=None
    )
    with pymongo.MongoClient(mongodb_uri) as other_client:
        second = MongoDBSessionManager(session_id="gaps", client=other_client, database_name=database_name)
        agent_b = Agent(
            agent_id="assistant", model=ScriptedModel([]), session_manager=second, callback_handler=None
        )
        for index in range(3):
            first.append_message({"role": "user", "content": f"a{index}"}, agent_a)
            first.sync_agent(agent_a)
            second.append_message({"role": "user", "content": f"b{index}"}, agent_b)
            second.sync_agent(agent_b)

    resumed = Agent(
        agent_id="assistant",
        model=ScriptedModel([]),
        session_manager=MongoDBSessionManager(session_id="gaps", client=client, database_name=database_name),
        callback_handler=None,
    )
    assert [m["content"][0]["text"] for m in resumed.messages] == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_two_first_requests_create_the_session_once(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def first_request() -> None:
        try:
            start.wait()
            manager = MongoDBSessionManager(session_id="fresh", client=client, database_name=database_name)
            agent = Agent(
                agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
            )
            manager.append_message({"role": "user", "content": "first"}, agent)
            manager.close()  # the session is created with its first write
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert client[database_name].sessions.count_documents({"_id": "fresh"}) == 1
