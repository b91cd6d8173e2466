"""What a user of the session manager relies on: every message kept, exactly once, and resumable."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import (
    MessageTooLargeError,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    create_mongodb_session_manager,
)
from mongodb_session_manager.testing import (
    CommandCounter,
    ScriptedModel,
    ScriptedModelError,
    ScriptedResponse,
    ScriptedToolCall,
)

Client = pymongo.MongoClient[dict[str, Any]]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny and 21C in {city}"


def weather_script() -> list[ScriptedResponse | str]:
    return [
        "Hello! How can I help?",
        ScriptedResponse(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})]),
        "It is sunny and 21C in Paris.",
        "You are welcome, goodbye.",
    ]


async def stream(agent: Agent, prompt: str) -> str:
    return "".join([event["data"] async for event in agent.stream_async(prompt) if "data" in event])


def stored_messages(client: Client, database_name: str, session_id: str) -> list[dict[str, Any]]:
    return list(
        client[database_name].sessions_messages.find({"session_id": session_id}, sort=[("message_id", 1)])
    )


def comparable(messages: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


async def test_streamed_conversation_with_a_tool_is_stored_exactly_and_resumes(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    manager = create_mongodb_session_manager(
        session_id="user-123", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(weather_script()),
        tools=[get_weather],
        session_manager=manager,
        callback_handler=None,
    )
    assert await stream(agent, "Hi") == "Hello! How can I help?"
    assert await stream(agent, "Weather in Paris?") == "It is sunny and 21C in Paris."
    assert await stream(agent, "Thanks") == "You are welcome, goodbye."
    agent.state.set("favourite_city", "Paris")
    manager.sync_agent(agent)
    manager.close()  # on the event loop: handed to the I/O thread, not waited for
    await manager.flush()

    stored = stored_messages(client, database_name, "user-123")
    assert [doc["message_id"] for doc in stored] == list(range(len(agent.messages)))
    assert comparable([doc["message"] for doc in stored]) == comparable(agent.messages)

    # Another process: a fresh client, a new manager and agent on the same ids.
    with pymongo.MongoClient(mongodb_uri) as fresh_client:
        resumed_manager = MongoDBSessionManager(
            session_id="user-123", client=fresh_client, database_name=database_name
        )
        resumed = Agent(
            agent_id="assistant",
            model=ScriptedModel(["Welcome back."]),
            tools=[get_weather],
            session_manager=resumed_manager,
            callback_handler=None,
        )
        assert resumed.messages == []  # built on the event loop: the restore waits for the first turn...
        await resumed_manager.load(resumed)  # ...or for this
        assert comparable(resumed.messages) == comparable(agent.messages)
        assert resumed.state.get("favourite_city") == "Paris"
        assert await stream(resumed, "Remember me?") == "Welcome back."
        assert len(stored_messages(fresh_client, database_name, "user-123")) == len(agent.messages) + 2


async def test_the_guides_manual_append_pattern_stores_each_message_once(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    manager = create_mongodb_session_manager(
        session_id="manual", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["First answer.", "Second answer.", "Third answer."]),
        session_manager=manager,
        callback_handler=None,
    )
    for turn, prompt in enumerate(["one", "two", "three"], start=1):
        manager.append_message({"role": "user", "content": prompt}, agent)
        chunks = [event["data"] async for event in agent.stream_async(prompt) if "data" in event]
        manager.append_message({"role": "assistant", "content": "".join(chunks)}, agent)
        manager.sync_agent(agent)  # on the event loop: handed to the I/O thread, not waited for
        await manager.flush()
        assert len(stored_messages(client, database_name, "manual")) == 2 * turn
    manager.close()
    await manager.flush()

    stored = stored_messages(client, database_name, "manual")
    assert [(doc["role"], doc["message"]["content"]) for doc in stored] == [
        ("user", [{"text": "one"}]),
        ("assistant", [{"text": "First answer."}]),
        ("user", [{"text": "two"}]),
        ("assistant", [{"text": "Second answer."}]),
        ("user", [{"text": "three"}]),
        ("assistant", [{"text": "Third answer."}]),
    ]
    assert comparable([doc["message"] for doc in stored]) == comparable(agent.messages)


async def test_a_reply_the_agent_never_produced_is_kept_and_joins_the_conversation(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    """The guide's error handling appends a partial reply by hand after the model failed."""
    manager = create_mongodb_session_manager(
        session_id="partial", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel([ScriptedResponse(text="This will break off here", error_after_chunks=2)]),
        session_manager=manager,
        callback_handler=None,
    )
    chunks: list[str] = []

    async def consume() -> None:
        async for event in agent.stream_async("Tell me"):
            if "data" in event:
                chunks.append(event["data"])

    manager.append_message({"role": "user", "content": "Tell me"}, agent)
    with pytest.raises(ScriptedModelError):
        await consume()
    manager.append_message({"role": "assistant", "content": "".join(chunks) + "\n[Error]"}, agent)
    manager.sync_agent(agent)  # on the event loop: handed to the I/O thread, not waited for
    await manager.flush()

    stored = stored_messages(client, database_name, "partial")
    assert [doc["role"] for doc in stored] == ["user", "assistant"]
    assert stored[1]["message"]["content"] == [{"text": "This will \n[Error]"}]
    assert comparable([doc["message"] for doc in stored]) == comparable(agent.messages)


def test_sync_invocation_and_context_manager(mongodb_uri: str, database_name: str, client: Client) -> None:
    with create_mongodb_session_manager(
        session_id="sync", connection_string=mongodb_uri, database_name=database_name
    ) as manager:
        agent = Agent(
            agent_id="assistant",
            model=ScriptedModel(["Sync works."]),
            session_manager=manager,
            callback_handler=None,
        )
        assert str(agent("Does sync work?")).strip() == "Sync works."
    assert [doc["role"] for doc in stored_messages(client, database_name, "sync")] == ["user", "assistant"]


async def test_async_context_manager_closes_and_keeps_everything(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    async with create_mongodb_session_manager(
        session_id="async-ctx", connection_string=mongodb_uri, database_name=database_name
    ) as manager:
        agent = Agent(
            agent_id="assistant",
            model=ScriptedModel(["Async works."]),
            session_manager=manager,
            callback_handler=None,
        )
        assert await stream(agent, "Does async work?") == "Async works."
    assert len(stored_messages(client, database_name, "async-ctx")) == 2


async def test_images_are_stored_as_binary_and_come_back_byte_exact(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    # Four 3 MB images (12 MB in all), each under large_content_threshold: inline, as BSON binary.
    images = [bytes([index]) * 3 * 1024 * 1024 for index in range(4)]
    manager = MongoDBSessionManager(session_id="gallery", client=client, database_name=database_name)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel(["Nice picture."] * 4),
        session_manager=manager,
        callback_handler=None,
    )
    for image in images:
        prompt: Any = [{"text": "Look"}, {"image": {"format": "png", "source": {"bytes": image}}}]
        await agent.invoke_async(prompt)

    stored = stored_messages(client, database_name, "gallery")
    assert len(stored) == 8
    assert stored[0]["message"]["content"][1]["image"]["source"]["bytes"] == images[0]

    with pymongo.MongoClient(mongodb_uri) as fresh_client:
        resumed_manager = MongoDBSessionManager(
            session_id="gallery", client=fresh_client, database_name=database_name
        )
        resumed = Agent(
            agent_id="assistant",
            model=ScriptedModel(["Still here."]),
            session_manager=resumed_manager,
            callback_handler=None,
        )
        await resumed_manager.load(resumed)  # built on the event loop: the restore is deferred
        restored = [
            m["content"][1]["image"]["source"]["bytes"] for m in resumed.messages if m["role"] == "user"
        ]
        assert restored == images


def test_the_guides_repository_gives_the_sessions_collection(mongodb_uri: str, database_name: str) -> None:
    manager = create_mongodb_session_manager(
        session_id="repo", connection_string=mongodb_uri, database_name=database_name
    )
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    repo = MongoDBSessionRepository(
        connection_string=mongodb_uri, database_name=database_name, collection_name="sessions"
    )
    assert repo.collection.find_one({"_id": "repo"}) is None  # construction writes nothing...
    manager.append_message({"role": "user", "content": [{"text": "Hello"}]}, agent)
    manager.sync_agent(agent)  # ...the session document comes with the agent's first stored message
    document = repo.collection.find_one({"_id": "repo"})
    assert document is not None
    assert "assistant" in document["agents"]
    assert repo.delete_session("repo") is True
    assert repo.read_session("repo") is None


async def test_a_message_too_large_for_one_document_fails_clearly(database_name: str, client: Client) -> None:
    manager = MongoDBSessionManager(session_id="huge", client=client, database_name=database_name)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["ok"]), session_manager=manager, callback_handler=None
    )
    # Large binary blocks go to GridFS (test_large_content.py); 17 MB of text cannot.
    huge: Any = [{"text": "Look " * (17 * 1024 * 1024 // 5)}]
    with pytest.raises(MessageTooLargeError, match="16 MiB"):
        await agent.invoke_async(huge)
    assert client[database_name].sessions_messages.count_documents({"session_id": "huge"}) == 0


async def test_a_sliding_window_resume_reads_only_the_window(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    def windowed_agent(manager: MongoDBSessionManager, replies: list[str | ScriptedResponse]) -> Agent:
        return Agent(
            agent_id="assistant",
            model=ScriptedModel(replies),
            conversation_manager=SlidingWindowConversationManager(window_size=4),
            session_manager=manager,
            callback_handler=None,
        )

    manager = MongoDBSessionManager(session_id="window", client=client, database_name=database_name)
    agent = windowed_agent(manager, [f"reply {n}" for n in range(6)])
    for turn in range(6):
        await agent.invoke_async(f"prompt {turn}")
    manager.close()  # on the event loop: handed to the I/O thread, not waited for
    await manager.flush()
    assert client[database_name].sessions_messages.count_documents({"session_id": "window"}) == 12

    with pymongo.MongoClient(mongodb_uri) as fresh_client:
        resumed_manager = MongoDBSessionManager(
            session_id="window", client=fresh_client, database_name=database_name
        )
        resumed = windowed_agent(resumed_manager, [])
        await resumed_manager.load(resumed)  # built on the event loop: the restore is deferred
    assert comparable(resumed.messages) == comparable(agent.messages)
    assert [m["content"][0]["text"] for m in resumed.messages] == [
        "prompt 4",
        "reply 4",
        "prompt 5",
        "reply 5",
    ]


class SessionSets(CommandCounter):
    """The agent fields each write ``$set`` in the session document."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[set[str]] = []

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        for op in event.command.get("ops", []) if event.command_name == "bulkWrite" else []:
            update = op.get("updateMods") if isinstance(op, dict) else None
            if isinstance(update, dict) and "$set" in update:
                self.fields.append({key for key in update["$set"] if key.startswith("agents.assistant.")})


async def test_a_turn_writes_only_the_agent_fields_that_changed_and_a_resume_sees_them_all(
    mongodb_uri: str, database_name: str
) -> None:
    sets = SessionSets()
    with pymongo.MongoClient(mongodb_uri, event_listeners=[sets]) as client:
        manager = MongoDBSessionManager(session_id="fields", client=client, database_name=database_name)
        agent = Agent(
            agent_id="assistant",
            model=ScriptedModel(["One.", "Two.", "Three.", "Four."]),
            conversation_manager=SlidingWindowConversationManager(window_size=2),
            session_manager=manager,
            callback_handler=None,
        )
        agent.state.set("city", "Paris")
        await agent.invoke_async("first")
        await agent.invoke_async("second")  # then the window slides: its counters change
        sets.fields.clear()
        await agent.invoke_async("third")  # the agent's own state stays as it was
        assert {"agents.assistant.conversation_manager_state", "agents.assistant.updated_at"} in sets.fields
        assert not any("agents.assistant.state" in fields for fields in sets.fields)
        agent.state.set("city", "Lyon")
        await agent.invoke_async("fourth")
        assert any("agents.assistant.state" in fields for fields in sets.fields)
        await manager.aclose()

    later = MongoDBSessionManager(
        session_id="fields", connection_string=mongodb_uri, database_name=database_name
    )
    resumed = Agent(
        agent_id="assistant",
        model=ScriptedModel([]),
        conversation_manager=SlidingWindowConversationManager(window_size=2),
        session_manager=later,
        callback_handler=None,
    )
    await later.load(resumed)
    assert resumed.state.get() == {"city": "Lyon"}
    assert resumed.conversation_manager.get_state() == agent.conversation_manager.get_state()
    assert comparable(resumed.messages) == comparable(agent.messages)
