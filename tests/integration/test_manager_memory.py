"""A closed manager and its agent are freed by reference counting alone, with no collector pass.

A web app builds a manager and an Agent per request. Whatever a request leaves in a reference
cycle waits for the garbage collector, is promoted to its old generation, and makes the full
collections that stall the event loop walk more of the heap. These tests run with the collector
off: the manager and the agent must be gone as soon as the request drops them. A manager that
lives on does not hold a failed turn's error (and its traceback) past that turn.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory
from mongodb_session_manager.errors import StoreUnavailableError
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]
PROMPTS = ("What is MongoDB?", "And a replica set?")
Refs = tuple["weakref.ReferenceType[MongoDBSessionManager]", "weakref.ReferenceType[Agent]"]


@pytest.fixture
def factory(client: Client, database_name: str) -> Iterator[MongoDBSessionManagerFactory]:
    factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
    yield factory
    factory.close()


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The garbage collector disabled for the test (what is freed is freed by refcounting)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def build_agent(manager: MongoDBSessionManager) -> Agent:
    return Agent(
        model=ScriptedModel(["MongoDB stores documents."], loop=True, chunk_delay=0),
        agent_id="assistant",
        session_manager=manager,
        callback_handler=None,
    )


async def stream_turns(agent: Agent) -> None:
    for prompt in PROMPTS:
        async for _event in agent.stream_async(prompt):
            pass


async def guide_request(factory: MongoDBSessionManagerFactory, session_id: str) -> Refs:
    """The guide's handler: build, stream, ``close()`` on the loop, drop everything."""
    manager = factory.create_session_manager(session_id)
    agent = build_agent(manager)
    await stream_turns(agent)
    manager.close()  # hands the last writes to the I/O threads and returns
    pending = manager.pending_writes()
    refs = weakref.ref(manager), weakref.ref(agent)
    del manager, agent
    for future in pending:
        await asyncio.wrap_future(future)
    return refs


async def async_request(factory: MongoDBSessionManagerFactory, session_id: str) -> Refs:
    """The async API's handler: ``acreate_session_manager``, stream, ``aclose()``."""
    manager = await factory.acreate_session_manager(session_id, agent_id="assistant")
    agent = build_agent(manager)
    await stream_turns(agent)
    await manager.aclose()
    return weakref.ref(manager), weakref.ref(agent)


REQUESTS = {"guide": guide_request, "async": async_request}


def stored_count(client: Client, database_name: str, session_id: str) -> int:
    return client[database_name].sessions_messages.count_documents({"session_id": session_id})


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("api", sorted(REQUESTS))
async def test_a_first_time_session_frees_its_manager_and_agent_without_the_collector(
    api: str, factory: MongoDBSessionManagerFactory, client: Client, database_name: str
) -> None:
    manager, agent = await REQUESTS[api](factory, "first-visit")

    assert manager() is None
    assert agent() is None
    assert stored_count(client, database_name, "first-visit") == 2 * len(PROMPTS)


@pytest.mark.usefixtures("collector_off")
@pytest.mark.parametrize("api", sorted(REQUESTS))
async def test_a_resumed_session_frees_its_manager_and_agent_without_the_collector(
    api: str, factory: MongoDBSessionManagerFactory, client: Client, database_name: str
) -> None:
    await async_request(factory, "returning")  # an earlier request of the same session

    manager, agent = await REQUESTS[api](factory, "returning")

    assert manager() is None
    assert agent() is None
    assert stored_count(client, database_name, "returning") == 4 * len(PROMPTS)


@pytest.mark.usefixtures("collector_off")
async def test_nothing_of_a_closed_request_is_left_for_the_collector(
    factory: MongoDBSessionManagerFactory,
) -> None:
    await async_request(factory, "warm-up")  # first of its kind: imports, I/O threads, indexes
    gc.collect()

    for api, request in sorted(REQUESTS.items()):
        await request(factory, f"{api}-new")
        await request(factory, f"{api}-new")  # resumed

    assert gc.collect() == 0


async def test_a_failed_write_is_let_go_of_when_its_turn_ends(client: Client, database_name: str) -> None:
    """A long-lived agent whose turn failed to store keeps no error (nor its traceback's frames)."""
    factory = MongoDBSessionManagerFactory(client=client, database_name=database_name)
    manager = await factory.acreate_session_manager("outage", agent_id="assistant")
    agent = build_agent(manager)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("server unreachable (simulated)")

    manager.repository._run_plan = unreachable  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError) as failed:
        await agent.invoke_async("What is MongoDB?")
    error = weakref.ref(failed.value)
    del failed  # the app answered 503 and let go of the error; the agent serves the next request
    await asyncio.sleep(0)  # the loop runs the callbacks the failed write's futures scheduled
    gc.collect()

    assert error() is None
    del manager.repository._run_plan
    await agent.invoke_async("What is MongoDB?")  # the next turn stores as usual
    await manager.aclose()
    assert stored_count(client, database_name, "outage") == 2
    factory.close()
