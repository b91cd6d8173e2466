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
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    MongoDBConnectionPool,
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

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="this platform cannot fork"
)

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


def worker(answer: Connection, parent_client_id: int, reinitialize: Callable[[], Any] | None) -> None:
    """What a forked worker does: serve a request at once; any warning (pymongo's fork one) fails it."""
    try:
        warnings.simplefilter("error")
        cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
        assert cache is not None
        report: dict[str, Any] = {"cached_bytes_at_start": cache.size_bytes}
        if reinitialize is not None:
            reinitialize()
        report["texts"] = run_turn("child", "Hello from the worker", "Hello, worker.")
        report["own_client"] = id(get_global_factory().client) != parent_client_id
        report["parent_image_intact"] = resumed_image("parent") == IMAGE
        answer.send(report)
    except BaseException:
        answer.send({"error": traceback.format_exc()})
        raise


def fork_worker(reinitialize: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Fork a worker, wait for it (bounded), and return what it reported."""
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=worker, args=(send, id(get_global_factory().client), reinitialize)
    )
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
def preloaded_app(mongodb_uri: str, database_name: str) -> Iterator[MongoDBSessionManagerFactory]:
    """The parent as ``--preload`` leaves it: the global factory used, a turn with an image stored."""
    app_factory = initialize_global_factory(mongodb_uri, database_name)
    assert run_turn("parent", "Look at this", "A nice picture.", image=IMAGE) == [
        "Look at this",
        "A nice picture.",
    ]
    assert resumed_image("parent") == IMAGE
    cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
    assert cache is not None
    assert cache.size_bytes >= len(IMAGE)
    try:
        yield app_factory
    finally:
        close_global_factory()


def test_a_forked_worker_serves_a_turn_through_the_inherited_global_factory(
    preloaded_app: MongoDBSessionManagerFactory, mongo_client: Client, database_name: str
) -> None:
    report = fork_worker()

    assert report["cached_bytes_at_start"] == 0
    assert report["own_client"] is True
    assert report["texts"] == ["Hello from the worker", "Hello, worker."]
    assert report["parent_image_intact"] is True
    stored = mongo_client[database_name].sessions_messages.count_documents({"session_id": "child"})
    assert stored == 2
    # The parent's client still serves the parent, and so does its factory.
    assert run_turn("parent", "Again", "Still here.")[-2:] == ["Again", "Still here."]
    assert get_global_factory() is preloaded_app


def test_a_worker_may_initialize_its_own_global_factory(
    preloaded_app: MongoDBSessionManagerFactory, mongodb_uri: str, database_name: str
) -> None:
    def reinitialize() -> None:  # what a gunicorn post_fork or Celery worker_process_init hook does
        initialize_global_factory(mongodb_uri, database_name)

    report = fork_worker(reinitialize)

    assert report["texts"] == ["Hello from the worker", "Hello, worker."]
    assert report["own_client"] is True
    # Replacing the inherited factory in the child closed nothing of the parent's.
    assert resume("child") == ["Hello from the worker", "Hello, worker."]
    assert run_turn("parent", "Again", "Still here.")[-2:] == ["Again", "Still here."]


def package_locks() -> list[Any]:
    """The process-wide locks of the package a thread may hold while the process forks."""
    cache = shared_cache(DEFAULT_LARGE_CONTENT_CACHE_BYTES)
    assert cache is not None
    return [
        cache._lock,
        _content_cache._caches_lock,
        _io._executor_lock,
        MongoDBConnectionPool._default_lock,
        MongoDBConnectionPool.default()._lock,
        repository._indexes_lock,
        factory._global_lock,
        get_global_factory()._renew_lock,
    ]


@pytest.fixture
def locks_held_by_another_thread(preloaded_app: MongoDBSessionManagerFactory) -> Iterator[None]:
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
        yield
    finally:
        release.set()
        holder.join(5)


@pytest.mark.usefixtures("locks_held_by_another_thread")
def test_a_worker_forked_while_another_thread_holds_the_package_locks_does_not_deadlock(
    mongo_client: Client, database_name: str
) -> None:
    report = fork_worker()

    assert report["texts"] == ["Hello from the worker", "Hello, worker."]
    assert report["cached_bytes_at_start"] == 0
    assert mongo_client[database_name].sessions_messages.count_documents({"session_id": "child"}) == 2
