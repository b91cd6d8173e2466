"""``defer_large_content=True``: a resume reads no GridFS bytes; the model still gets them byte-exact.

With the option on, resuming a session whose messages hold large images sends the one
aggregate and nothing else: ``agent.messages`` holds a ``DeferredContent`` (file id and
length) where each image's bytes go. Before the agent's next model call the manager reads
them all (the content cache, then two finds) and puts the stored bytes back in place, so the
model receives exactly what was stored; ``await manager.load(agent)`` does it on request. No
write ever stores a ``DeferredContent``, and with the option off a resume reads the bytes as
before.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pymongo
import pytest
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    DeferredContent,
    InvalidSessionInputError,
    MongoDBSessionError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
)
from mongodb_session_manager.errors import ConfigurationError
from mongodb_session_manager.testing import CommandCounter, ScriptedModel

THRESHOLD = 64 * 1024
IMAGES = [os.urandom(700 * 1024 + index) for index in range(3)]  # three GridFS chunks each
IGNORED = {"listIndexes", "createIndexes"}

Client = pymongo.MongoClient[dict[str, Any]]


def _message(data: bytes) -> dict[str, Any]:
    return {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": data}}}]}


def _source(message: Any) -> Any:
    return message["content"][0]["image"]["source"]["bytes"]


def _sources(messages: Any) -> list[Any]:
    """What every image block of ``messages`` holds, in order (bytes, or a DeferredContent unread)."""
    return [_source(message) for message in messages if "image" in message["content"][0]]


def _store(client: Client, database_name: str, session_id: str) -> None:
    """A session of three image prompts, each answered, written as earlier requests did."""
    writer = MongoDBSessionRepository(
        client=client, database_name=database_name, large_content_threshold=THRESHOLD
    )
    writer.create_session(Session(session_id, SessionType.AGENT))
    window = {"__name__": "SlidingWindowConversationManager", "removed_message_count": 0}
    writer.create_agent(session_id, SessionAgent("assistant", {}, window))
    for index, data in enumerate(IMAGES):
        reply = {"role": "assistant", "content": [{"text": f"Picture {index}."}]}
        writer.write_message(session_id, "assistant", SessionMessage(_message(data), 2 * index))  # type: ignore[arg-type]
        writer.write_message(session_id, "assistant", SessionMessage(reply, 2 * index + 1))  # type: ignore[arg-type]
    assert writer.large_content_cache is not None
    writer.large_content_cache.clear()  # as a freshly started worker: nothing cached


def _agent(manager: MongoDBSessionManager, model: ScriptedModel) -> Agent:
    return Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)


def _sent(counter: CommandCounter) -> list[str]:
    return [name for name in counter.take() if name not in IGNORED]


@pytest.fixture
async def factory(counted_client: Client, database_name: str) -> AsyncIterator[MongoDBSessionManagerFactory]:
    """A web app's factory with the option on and no content cache (every read is cold)."""
    factory = MongoDBSessionManagerFactory(
        client=counted_client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=0,
        defer_large_content=True,
    )
    await asyncio.to_thread(factory.ensure_indexes)  # the app's startup, before anything is counted
    yield factory
    await factory.aclose()


async def test_a_deferred_resume_sends_only_the_aggregate_and_the_model_gets_the_stored_bytes(
    factory: MongoDBSessionManagerFactory, client: Client, database_name: str, counter: CommandCounter
) -> None:
    _store(client, database_name, "album")
    counter.take()

    manager = await factory.acreate_session_manager("album", agent_id="assistant")
    model = ScriptedModel(["They are lovely."], strict=True)
    agent = _agent(manager, model)
    assert _sent(counter) == ["aggregate"]  # no find of sessions_files.files or .chunks
    deferred = _sources(agent.messages)
    assert all(isinstance(reference, DeferredContent) for reference in deferred)
    assert [reference.length for reference in deferred] == [len(data) for data in IMAGES]

    await agent.invoke_async("What is in them?")

    assert _sources(model.calls[0].messages) == IMAGES
    assert _sources(agent.messages) == IMAGES
    # The prompt stored; the three files in a find of their documents and one of their chunks
    # (before the model call); the reply stored.
    assert _sent(counter) == ["insert", "find", "find", "bulkWrite"]
    await manager.aclose()

    stored = factory.repository.list_messages("album", "assistant")
    assert _sources([record.message for record in stored]) == IMAGES
    assert stored[-1].message["content"][0]["text"] == "They are lovely."


async def test_load_reads_the_deferred_bytes_in_two_finds(
    factory: MongoDBSessionManagerFactory, client: Client, database_name: str, counter: CommandCounter
) -> None:
    _store(client, database_name, "loaded")
    counter.take()
    manager = await factory.acreate_session_manager("loaded", agent_id="assistant")
    agent = _agent(manager, ScriptedModel())
    assert _sent(counter) == ["aggregate"]

    await manager.load(agent)
    assert _sources(agent.messages) == IMAGES
    assert _sent(counter) == ["find", "find"]
    await manager.load(agent)  # nothing deferred any more: nothing sent
    assert _sent(counter) == []

    # Built on the loop without a preload: load() restores and reads the bytes in one go.
    other = factory.create_session_manager("loaded")
    second = _agent(other, ScriptedModel())
    assert _sent(counter) == []
    await other.load(second)
    assert _sources(second.messages) == IMAGES
    assert _sent(counter) == ["aggregate", "find", "find"]


async def test_a_missing_file_fails_with_the_package_error_before_the_model_is_called(
    factory: MongoDBSessionManagerFactory, client: Client, database_name: str
) -> None:
    _store(client, database_name, "damaged")
    manager = await factory.acreate_session_manager("damaged", agent_id="assistant")
    model = ScriptedModel(["Never sent."])
    agent = _agent(manager, model)
    gone = _source(agent.messages[2])
    assert isinstance(gone, DeferredContent)
    client[database_name]["sessions_files.files"].delete_one({"_id": gone.file_id})

    with pytest.raises(MongoDBSessionError, match=rf"file_id=<{gone.file_id}> .* is missing"):
        await agent.invoke_async("Look again.")
    assert model.calls == []
    # The turn is closed as failed (its prompt answered by an incomplete reply), as for a model error.
    assert agent.messages[-1]["role"] == "assistant"
    await manager.aclose()


async def test_no_write_stores_a_deferred_reference(
    factory: MongoDBSessionManagerFactory,
    client: Client,
    database_name: str,
    counter: CommandCounter,
) -> None:
    _store(client, database_name, "guarded")
    drawn = {"role": "assistant", "content": [{"image": {"format": "png", "source": {"bytes": IMAGES[1]}}}]}
    factory.repository.write_message("guarded", "assistant", SessionMessage(drawn, 6))  # type: ignore[arg-type]
    manager = await factory.acreate_session_manager("guarded", agent_id="assistant")
    agent = _agent(manager, ScriptedModel())
    first, last = agent.messages[0], agent.messages[-1]
    assert isinstance(_source(first), DeferredContent)
    assert isinstance(_source(last), DeferredContent)
    counter.take()

    # A copy of an unread message written as a new one: refused before anything is sent.
    with pytest.raises(InvalidSessionInputError, match=r"message\.content\.0\.image\.source\.bytes"):
        factory.repository.write_message("guarded", "assistant", SessionMessage(first, 9))
    assert _sent(counter) == []

    # Redacting the latest message while it is unread (a moderation step right after the
    # resume): its bytes are read first, so the stored message keeps its content.
    redacted = {"role": "assistant", "content": [{"text": "[image removed]"}]}
    manager.redact_latest_message(redacted, agent)  # type: ignore[arg-type]
    await manager.flush()
    assert _source(last) == IMAGES[1]
    assert isinstance(_source(first), DeferredContent)  # only the message written was read

    stored = factory.repository.read_message("guarded", "assistant", 6)
    assert stored is not None
    assert _source(stored.message) == IMAGES[1]
    assert stored.redact_message == redacted
    await manager.aclose()


async def test_with_the_option_off_a_resume_reads_the_bytes_as_before(
    counted_client: Client, client: Client, database_name: str, counter: CommandCounter
) -> None:
    _store(client, database_name, "eager")
    factory = MongoDBSessionManagerFactory(
        client=counted_client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=0,
    )
    try:
        counter.take()
        manager = await factory.acreate_session_manager("eager", agent_id="assistant")
        agent = _agent(manager, ScriptedModel())
        assert _sent(counter) == ["aggregate", "find", "find"]
        assert _sources(agent.messages) == IMAGES
    finally:
        await factory.aclose()


def test_the_sync_constructor_off_the_loop_reads_the_bytes_at_once(
    counted_client: Client, client: Client, database_name: str, counter: CommandCounter
) -> None:
    _store(client, database_name, "sync")
    counter.take()
    manager = MongoDBSessionManager(
        "sync",
        client=counted_client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=0,
        defer_large_content=True,
    )
    agent = _agent(manager, ScriptedModel())
    assert _sources(agent.messages) == IMAGES
    assert _sent(counter) == ["aggregate", "find", "find"]
    manager.close()


def test_the_option_must_be_a_bool(client: Client) -> None:
    bad: Any
    for bad in (1, "yes", None):
        with pytest.raises(ConfigurationError, match="defer_large_content must be a bool"):
            MongoDBSessionManager("s", client=client, defer_large_content=bad)


async def test_both_repositories_defer_and_hydrate_the_same_way(
    mongodb_uri: str, client: Client, database_name: str
) -> None:
    _store(client, database_name, "repositories")
    sync = MongoDBSessionRepository(
        client=client, database_name=database_name, large_content_threshold=THRESHOLD
    )
    async_client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(mongodb_uri)
    try:
        asynchronous = AsyncMongoDBSessionRepository(
            client=async_client, database_name=database_name, large_content_threshold=THRESHOLD
        )
        snapshots = [
            sync.load_session("repositories", "assistant", defer_large_content=True),
            await asynchronous.load_session("repositories", "assistant", defer_large_content=True),
        ]
        windows = [[record.message for record in snapshot.window] for snapshot in snapshots if snapshot]
        assert len(windows) == 2
        for window in windows:
            assert all(isinstance(source, DeferredContent) for source in _sources(window))
        assert sync.hydrate_messages(windows[0]) == len(IMAGES)
        assert await asynchronous.hydrate_messages(windows[1]) == len(IMAGES)
        assert _sources(windows[0]) == _sources(windows[1]) == IMAGES
        with pytest.raises(InvalidSessionInputError, match="messages must be a list"):
            sync.hydrate_messages("not messages")
    finally:
        await async_client.close()
