"""Streaming a turn: text and SSE helpers, and what is kept when a stream breaks off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager
from mongodb_session_manager.manager import MongoDBSessionManager
from mongodb_session_manager.streaming import stream_sse, stream_text
from mongodb_session_manager.testing import ScriptedModel, ScriptedModelError, ScriptedResponse

Client = pymongo.MongoClient[dict[str, Any]]

REPLY = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def manager(mongodb_uri: str, database_name: str) -> MongoDBSessionManager:
    return create_mongodb_session_manager(
        "chat-1", connection_string=mongodb_uri, database_name=database_name
    )


def new_agent(manager: MongoDBSessionManager, model: ScriptedModel) -> Agent:
    return Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)


def stored(mongo_client: Client, database_name: str, session_id: str = "chat-1") -> list[dict[str, Any]]:
    return list(
        mongo_client[database_name].sessions_messages.find(
            {"session_id": session_id}, sort=[("message_id", 1)]
        )
    )


def texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], "".join(b.get("text", "") for b in m["message"]["content"])) for m in messages]


def parse_sse(frames: list[str]) -> list[dict[str, Any]]:
    assert all(frame.startswith("data: ") and frame.endswith("\n\n") for frame in frames)
    return [json.loads(frame[len("data: ") : -2]) for frame in frames]


async def collect(stream: AsyncIterator[str], *, into: list[str]) -> None:
    async for chunk in stream:
        into.append(chunk)


async def resume_and_ask(mongodb_uri: str, database_name: str, prompt: str) -> ScriptedModel:
    """A fresh manager and Agent on the same session (a new request) runs the next turn."""
    model = ScriptedModel(["Sure, go on."])
    async with create_mongodb_session_manager(
        "chat-1", connection_string=mongodb_uri, database_name=database_name
    ) as manager:
        agent = new_agent(manager, model)
        assert [piece async for piece in stream_text(agent, prompt, session_manager=manager)] == [
            "Sure, ",
            "go ",
            "on.",
        ]
    return model


async def test_stream_text_yields_chunks_and_stores_the_turn(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str
) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY]))

    chunks = [chunk async for chunk in stream_text(agent, "Hi", session_manager=manager)]

    assert "".join(chunks) == REPLY
    assert len(chunks) == len(ScriptedResponse(text=REPLY).chunks)
    messages = stored(mongo_client, database_name)
    assert texts(messages) == [("user", "Hi"), ("assistant", REPLY)]
    assert "incomplete" not in messages[-1]
    assert messages[-1]["event_loop_metrics"]["status"] == "completed"


async def test_stream_text_buffers_by_chunk_count(manager: MongoDBSessionManager) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY]))  # 9 word chunks

    pieces = [p async for p in stream_text(agent, "Hi", session_manager=manager, buffer_chunks=4)]

    assert pieces == ["The quick brown fox ", "jumps over the lazy ", "dog."]


async def test_stream_text_buffers_by_time(manager: MongoDBSessionManager) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY], chunk_delay=0.02))

    pieces = [p async for p in stream_text(agent, "Hi", session_manager=manager, buffer_ms=50)]

    assert "".join(pieces) == REPLY
    assert 1 < len(pieces) < 9  # joined, but still streamed in several pieces


async def test_stream_sse_frames_end_with_done_and_the_stored_metrics(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str
) -> None:
    model = ScriptedModel([REPLY])
    agent = new_agent(manager, model)

    events = parse_sse([frame async for frame in stream_sse(agent, "Hi", session_manager=manager)])

    assert [e["type"] for e in events] == ["token"] * 9 + ["done"]
    assert "".join(e["data"] for e in events[:-1]) == REPLY
    metrics = events[-1]["metrics"]
    record = stored(mongo_client, database_name)[-1]["event_loop_metrics"]
    assert metrics["accumulated_usage"] == record["accumulated_usage"] == dict(model.calls[0].usage)
    assert metrics["status"] == "completed"
    assert isinstance(metrics["started_at"], str)  # dates leave the server as ISO strings


async def test_model_error_stores_the_partial_reply_and_the_next_turn_runs(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str, mongodb_uri: str
) -> None:
    agent = new_agent(manager, ScriptedModel([ScriptedResponse(text=REPLY, error_after_chunks=3)]))

    received: list[str] = []
    with pytest.raises(ScriptedModelError):
        await collect(stream_text(agent, "Hi", session_manager=manager), into=received)

    assert "".join(received) == "The quick brown "
    last = stored(mongo_client, database_name)[-1]
    assert texts([last]) == [("assistant", "The quick brown ")]
    assert last["incomplete"] == {"reason": "error: ScriptedModelError"}
    assert agent.messages[-1]["role"] == "assistant"

    model = await resume_and_ask(mongodb_uri, database_name, "Go on")
    assert texts(stored(mongo_client, database_name))[-2:] == [
        ("user", "Go on"),
        ("assistant", "Sure, go on."),
    ]
    assert [m["role"] for m in model.calls[0].messages] == ["user", "assistant", "user"]


async def test_sse_reports_a_failure_in_an_error_frame(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str
) -> None:
    agent = new_agent(manager, ScriptedModel([ScriptedResponse(text=REPLY, error_after_chunks=2)]))

    events = parse_sse([frame async for frame in stream_sse(agent, "Hi", session_manager=manager)])

    assert [e["type"] for e in events] == ["token", "token", "error"]
    assert events[-1]["incomplete"] is True
    assert events[-1]["error"].startswith("ScriptedModelError")
    assert stored(mongo_client, database_name)[-1]["incomplete"]["reason"] == "error: ScriptedModelError"


async def test_cancelled_consumer_task_keeps_the_partial_reply(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str, mongodb_uri: str
) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY], chunk_delay=0.05))
    first_chunk = asyncio.Event()
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream_text(agent, "Hi", session_manager=manager):
            received.append(chunk)
            first_chunk.set()

    task = asyncio.create_task(consume())
    await first_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    last = stored(mongo_client, database_name)[-1]
    assert last["incomplete"] == {"reason": "cancelled"}
    assert texts([last])[0][1] == "".join(received)
    assert last["event_loop_metrics"]["status"] == "cancelled"  # the record closes the turn; not "failed"
    await resume_and_ask(mongodb_uri, database_name, "Still there?")


async def test_closing_the_stream_early_counts_as_a_disconnect(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str, mongodb_uri: str
) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY], chunk_delay=0.01))
    stream = stream_sse(agent, "Hi", session_manager=manager)

    first = parse_sse([await anext(stream)])
    await stream.aclose()  # what a server does when the client goes away

    assert first == [{"type": "token", "data": "The "}]
    last = stored(mongo_client, database_name)[-1]
    assert texts([last]) == [("assistant", "The ")]
    assert last["incomplete"] == {"reason": "disconnected"}
    assert last["event_loop_metrics"]["status"] == "cancelled"
    await resume_and_ask(mongodb_uri, database_name, "Hello again")


async def test_asyncio_timeout_around_the_consumer_keeps_the_partial_reply(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str
) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY], chunk_delay=0.05))
    received: list[str] = []

    async def consume_for_a_while() -> None:
        async with asyncio.timeout(0.12):
            await collect(stream_text(agent, "Hi", session_manager=manager), into=received)

    with pytest.raises(TimeoutError):
        await consume_for_a_while()

    assert 0 < len(received) < 9
    last = stored(mongo_client, database_name)[-1]
    assert last["incomplete"] == {"reason": "cancelled"}  # from outside, a timeout is a cancellation
    assert texts([last])[0][1] == "".join(received)


async def test_timeout_option_stores_the_reason_timeout(
    manager: MongoDBSessionManager, mongo_client: Client, database_name: str
) -> None:
    agent = new_agent(manager, ScriptedModel([REPLY], chunk_delay=0.05))

    events = parse_sse([f async for f in stream_sse(agent, "Hi", session_manager=manager, timeout=0.12)])

    assert events[-1]["type"] == "error"
    assert events[-1]["error"].startswith("TimeoutError")
    assert stored(mongo_client, database_name)[-1]["incomplete"] == {"reason": "timeout"}


async def test_session_manager_as_async_context_manager(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    async with create_mongodb_session_manager(
        "chat-1", connection_string=mongodb_uri, database_name=database_name
    ) as manager:
        agent = new_agent(manager, ScriptedModel(["Hello."]))
        manager.append_message({"role": "user", "content": "Hi"}, agent)  # the guide's manual append
        reply = "".join([c async for c in stream_text(agent, "Hi", session_manager=manager)])
        manager.append_message({"role": "assistant", "content": reply}, agent)

    assert texts(stored(mongo_client, database_name)) == [("user", "Hi"), ("assistant", "Hello.")]
    with pytest.raises(Exception, match="closed"):
        manager.append_message({"role": "user", "content": "late"}, agent)


async def test_buffer_options_are_validated(manager: MongoDBSessionManager) -> None:
    agent = new_agent(manager, ScriptedModel())
    with pytest.raises(ValueError, match="buffer_chunks"):
        await anext(stream_text(agent, "Hi", session_manager=manager, buffer_chunks=0))
    with pytest.raises(ValueError, match="buffer_ms"):
        await anext(stream_sse(agent, "Hi", session_manager=manager, buffer_ms=-1))
    assert agent.messages == []
