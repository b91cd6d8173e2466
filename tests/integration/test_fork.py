"""A worker forked from a process that used the package (gunicorn ``--preload``, Celery prefork).

The parent builds managers through the global factory, stores turns and fills the content cache
with a large image; then it forks. The child builds its own manager through the same global
factory and stores and resumes a turn at once: on a client of its own, with no lock the parent
held at the fork left locked, and with an empty content cache. The parent reads back what the
child stored. Each child has a bounded time to finish: a deadlock fails the test, it does not
hang it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    MongoDBConnectionPool,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    _content_cache,
    _io,
    close_global_factory,
    factory,
    get_global_factory,
    initialize_global_factory,
    repository,
)
from mongodb_session_manager._content_cache import DEFAULT_LARGE_CONTENT_CACHE_BYTES, shared_cache
from mongodb_session_manager.testing import ScriptedModel

pytestmark = [
    pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here"),
    # Python 3.12+ warns on any fork of a process with threads: forking one is what these tests do.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

Client = pymongo.MongoClient[dict[str, Any]]
CHILD_DEADLINE = 10.0  # seconds; a healthy child takes about one
IMAGE = os.urandom(5 * 1024 * 1024)  # above the 4 MiB threshold: stored in GridFS, then cached


def run_turn(session_id: str, prompt: str, reply: str, *, image: bytes | None = None) -> list[str]:
    """One request of a web app: a manager from the global factory, one turn, close; the texts stored."""
    manager = get_global_factory().create_session_manager(session_id)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([reply]), session_manager=manager, callback_handler=None
    )
    content: list[Any] = [{"text": prompt}]
    if image is not None:
        content.append({"image": {"format": "png", "source": {"bytes": image}}})
    agent(content)
    manager.close()
    return resume(session_id)


def run_pooled_turn(uri: str, database_name: str, session_id: str) -> list[str]:
    """A request that builds its manager from a connection string (the pool's client)."""
    manager = MongoDBSessionManager(session_id, connection_string=uri, database_name=database_name)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["Pooled."]), session_manager=manager, callback_handler=None
    )
    agent("Hello, pool")
    manager.close()
    return [block["text"] for message in agent.messages for block in message["content"]]


def resume(session_id: str) -> list[str]:
    """The conversation a new manager of ``session_id`` reads back (its texts, in order)."""
    manager = get_global_factory().create_session_manager(session_id)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    texts = [block["text"] for message in agent.messages for block in message["content"] if "text" in block]
    manager.close()
    return texts


def resumed_image(session_id: str) -> bytes:
    manager = get_global_factory().create_session_manager(session_id)
    agent = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
    )
    manager.close()
    data: bytes = agent.messages[0]["content"][1]["image"]["source"]["bytes"]
    return data


@dataclass(frozen=True)
class Parent:
    """The preloaded app as its workers inherit it."""

    factory: MongoDBSessionManagerFactory
    uri: str
    database_name: str
    client_id: int  # the global factory's client
    pooled_client_id: int  # the pool's client for ``uri``


def worker(answer: Connection, parent: Parent, reinitialize: bool) -> None:
    """What a forked worker does: serve requests at once; any warning (pymongo's fork one) fails it."""
    try:
        warnings.simplefilter("error")
        cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
        assert cache is not None
        report: dict[str, Any] = {"cached_bytes_at_start": cache.size_bytes}
        if reinitialize:  # what a gunicorn post_fork or Celery worker_process_init hook does
            initialize_global_factory(parent.uri, parent.database_name)
        report["texts"] = run_turn("child", "Hello from the worker", "Hello, worker.")
        report["own_client"] = id(get_global_factory().client) != parent.client_id
        report["parent_image_intact"] = resumed_image("parent") == IMAGE
        report["pooled_texts"] = run_pooled_turn(parent.uri, parent.database_name, "child-pooled")
        report["own_pooled_client"] = id(MongoDBConnectionPool.default().client(parent.uri)) != (
            parent.pooled_client_id
        )
        answer.send(report)
    except BaseException:
        answer.send({"error": traceback.format_exc()})
        raise


def fork_worker(parent: Parent, *, reinitialize: bool = False) -> dict[str, Any]:
    """Fork a worker, wait for it (bounded), and return what it reported."""
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=worker, args=(send, parent, reinitialize))
    child.start()
    try:
        assert receive.poll(CHILD_DEADLINE), f"the forked worker did not finish in {CHILD_DEADLINE:g} s"
        report: dict[str, Any] = receive.recv()
        child.join(CHILD_DEADLINE)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert "error" not in report, report.get("error")
    assert child.exitcode == 0
    return report


@pytest.fixture
def preloaded_app(mongodb_uri: str, database_name: str) -> Iterator[Parent]:
    """The parent as ``--preload`` leaves it: the global factory and the pool used, an image cached."""
    app_factory = initialize_global_factory(mongodb_uri, database_name)
    assert run_turn("parent", "Look at this", "A nice picture.", image=IMAGE) == [
        "Look at this",
        "A nice picture.",
    ]
    assert resumed_image("parent") == IMAGE
    cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
    assert cache is not None
    assert cache.size_bytes >= len(IMAGE)
    assert run_pooled_turn(mongodb_uri, database_name, "parent-pooled") == ["Hello, pool", "Pooled."]
    pooled = MongoDBConnectionPool.default().client(mongodb_uri)
    try:
        yield Parent(app_factory, mongodb_uri, database_name, id(app_factory.client), id(pooled))
    finally:
        close_global_factory()


def assert_served(report: dict[str, Any], mongo_client: Client, database_name: str) -> None:
    """The worker stored and resumed its turns on clients of its own; the parent reads them back."""
    assert report["cached_bytes_at_start"] == 0
    assert report["texts"] == ["Hello from the worker", "Hello, worker."]
    assert report["own_client"] is True
    assert report["parent_image_intact"] is True
    assert report["pooled_texts"] == ["Hello, pool", "Pooled."]
    assert report["own_pooled_client"] is True
    messages = mongo_client[database_name].sessions_messages
    assert messages.count_documents({"session_id": "child"}) == 2
    assert messages.count_documents({"session_id": "child-pooled"}) == 2


def test_a_forked_worker_serves_turns_through_the_inherited_global_factory(
    preloaded_app: Parent, mongo_client: Client, database_name: str
) -> None:
    report = fork_worker(preloaded_app)

    assert_served(report, mongo_client, database_name)
    # The parent's clients still serve the parent, and so does its factory.
    assert get_global_factory() is preloaded_app.factory
    assert run_turn("parent", "Again", "Still here.")[-2:] == ["Again", "Still here."]
    assert run_pooled_turn(preloaded_app.uri, database_name, "parent-pooled")[-2:] == [
        "Hello, pool",
        "Pooled.",
    ]


def test_a_worker_may_initialize_its_own_global_factory(
    preloaded_app: Parent, mongo_client: Client, database_name: str
) -> None:
    report = fork_worker(preloaded_app, reinitialize=True)

    assert_served(report, mongo_client, database_name)
    # Replacing the inherited factory in the worker closed nothing of the parent's.
    assert resume("child") == ["Hello from the worker", "Hello, worker."]
    assert run_turn("parent", "Again", "Still here.")[-2:] == ["Again", "Still here."]


def package_locks() -> list[Any]:
    """The process-wide locks of the package a thread may hold while the process forks."""
    cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
    assert cache is not None
    return [
        cache._lock,
        _content_cache._caches_lock,
        _io._io_threads_lock,
        MongoDBConnectionPool._default_lock,
        MongoDBConnectionPool.default()._lock,
        repository._indexes_lock,
        factory._global_lock,
        get_global_factory()._renew_lock,
    ]


@pytest.fixture
def locks_held_by_another_thread(preloaded_app: Parent) -> Iterator[Parent]:
    """Another thread of the parent holds every package lock until the test is done forking."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        locks = package_locks()
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait()
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold, name="lock-holder")
    holder.start()
    assert held.wait(5)
    try:
        yield preloaded_app
    finally:
        release.set()
        holder.join(5)


@pytest.mark.parametrize("reinitialize", [False, True], ids=["inherited-factory", "reinitialized-factory"])
def test_a_worker_forked_while_another_thread_holds_the_package_locks_does_not_deadlock(
    locks_held_by_another_thread: Parent, mongo_client: Client, database_name: str, reinitialize: bool
) -> None:
    report = fork_worker(locks_held_by_another_thread, reinitialize=reinitialize)

    assert_served(report, mongo_client, database_name)
