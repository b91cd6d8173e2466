"""Shared fixtures: one MongoDB-compatible server per test session, one database per test.

Where the server comes from, first match wins:

1. ``MONGODB_URI`` is set: that server (a real mongod; the only way to run ``requires_mongodb``).
2. ``MSM_TEST_SERVER=testcontainers``: a ``mongo:8`` container (Docker must answer; no skip).
3. Otherwise: an embedded SecantusDB child process for the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pymongo
import pytest

from mongodb_session_manager.embedded import EmbeddedServer
from mongodb_session_manager.factory import close_global_factory
from mongodb_session_manager.pool import MongoDBConnectionPool
from mongodb_session_manager.testing import CommandCounter

_INTEGRATION_DIR = Path(__file__).parent / "integration"

# What the suite writes (20 MB images among it) passes through SecantusDB's oplog, which lives in
# the WiredTiger cache with an in-memory store: a larger cache and a short oplog retention keep
# it from filling (WT_CACHE_FULL). .ci/run starts its server with the same flags.
TEST_SERVER_ARGS = ("--cache-size", "4G", "--oplog-retention-seconds", "30", "--oplog-max-entries", "20000")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/integration/`` as ``integration``."""
    for item in items:
        if _INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    """A connection string for the session's server (see the module docstring)."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
    elif os.environ.get("MSM_TEST_SERVER") == "testcontainers":
        yield from _testcontainers_uri()
    else:
        with EmbeddedServer(server_args=TEST_SERVER_ARGS) as server:
            try:
                yield server.uri
            finally:  # while the server still answers, so closing them does not wait for it
                close_global_factory()
                MongoDBConnectionPool.default().close()


def _testcontainers_uri() -> Iterator[str]:
    """Run ``mongo:8`` in Docker for the session; fail loudly when Docker is unreachable."""
    try:
        import docker  # type: ignore[import-untyped]

        try:  # testcontainers >= 4.15 deprecates the old path with a warning (an error here)
            from testcontainers.community.mongodb import MongoDbContainer
        except ImportError:
            from testcontainers.mongodb import MongoDbContainer
    except ImportError as exc:
        pytest.fail(f"MSM_TEST_SERVER=testcontainers needs 'testcontainers[mongodb]': {exc}", pytrace=False)
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(
            f"MSM_TEST_SERVER=testcontainers but no Docker engine answers ({exc}); start Docker or unset it",
            pytrace=False,
        )
    with MongoDbContainer("mongo:8") as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def mongo_client(mongodb_uri: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """A client for the session's server, shared by all tests and closed at the end."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongodb_uri)
    yield client
    client.close()


@pytest.fixture
def database_name(mongodb_uri: str) -> Iterator[str]:
    """A fresh database name per test, dropped at teardown once the test's writers are done."""
    name = f"msm_test_{uuid4().hex[:12]}"
    yield name
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000
    )
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def client(mongodb_uri: str) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """A client of the test's own, as an app process would hold one."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongodb_uri)
    yield client
    client.close()


@pytest.fixture
def counter() -> CommandCounter:
    """Counts the commands ``counted_client`` sends: round trips, asserted as a user would."""
    return CommandCounter()


@pytest.fixture
def counted_client(
    mongodb_uri: str, counter: CommandCounter
) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """A client of the test's own whose every command ``counter`` sees."""
    with pymongo.MongoClient(mongodb_uri, event_listeners=[counter]) as client:
        yield client
