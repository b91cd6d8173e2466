"""A failed or cancelled turn's stored error is its type and message, never paths or reprs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import pymongo
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]
SECRET_PATH = "/srv/internal/app/secrets.yaml"


class MisconfiguredModel(ScriptedModel):
    """A provider whose failure message holds a server-side file path and an object repr."""

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        raise OSError(f"[Errno 13] Permission denied: '{SECRET_PATH}' (loader {object()!r})")
        yield  # pragma: no cover


def turn_error(client: Client, database_name: str) -> dict[str, Any]:
    record = client[database_name]["sessions_messages"].find_one(
        {"event_loop_metrics.error": {"$exists": True}}
    )
    assert record is not None
    error: dict[str, Any] = record["event_loop_metrics"]["error"]
    return error


def assert_nothing_of_the_process(error: dict[str, Any]) -> None:
    text = repr(error)
    for leak in ("/srv", "0x", "<Task ", "coro=", "Traceback", 'File "'):
        assert leak not in text, f"{leak!r} in {text}"


async def test_a_failed_turn_stores_the_error_without_its_file_path(
    client: Client, database_name: str
) -> None:
    manager = MongoDBSessionManager("failing", client=client, database_name=database_name)
    agent = Agent(
        agent_id="a", model=MisconfiguredModel(["never"]), session_manager=manager, callback_handler=None
    )
    with contextlib.suppress(OSError):
        await agent.invoke_async("hi")
    await manager.aclose()
    error = turn_error(client, database_name)
    assert error == {"type": "OSError", "message": "[Errno 13] Permission denied: '[path]' (loader <object>)"}


async def test_a_cancelled_turn_stores_no_task_repr(client: Client, database_name: str) -> None:
    manager = MongoDBSessionManager("cancelled", client=client, database_name=database_name)
    agent = Agent(
        agent_id="a",
        model=ScriptedModel(["a long reply " * 20], chunk_delay=0.02),
        session_manager=manager,
        callback_handler=None,
    )
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in agent.stream_async("hi"):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel(msg=f"shutdown of {task!r} from {__file__}")  # what a server's shutdown may say
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await manager.aclose()
    error = turn_error(client, database_name)
    assert error["type"] == "CancelledError"
    assert_nothing_of_the_process(error)
    assert error["message"].startswith("shutdown of <Task> from [path]")
