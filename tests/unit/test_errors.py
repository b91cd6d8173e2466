"""The error tree, and bad input at the public entry points raising errors of this package."""

from __future__ import annotations

import asyncio
from typing import Any

import mongomock
import pytest
from strands.types.exceptions import SessionException

import mongodb_session_manager
from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    ConcurrentWriteError,
    ConfigurationError,
    EmbeddedServerError,
    FactoryNotInitializedError,
    InvalidSessionInputError,
    MessageTooLargeError,
    MongoDBSessionError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    SessionBusyError,
    SessionDecryptionError,
    SessionNotFoundError,
    StoreUnavailableError,
    embedded,
    errors,
)
from mongodb_session_manager.codec import to_bson_datetime
from mongodb_session_manager.embedded import EmbeddedServer
from mongodb_session_manager.testing import ScriptedModel


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (MongoDBSessionError, (SessionException,)),
        (StoreUnavailableError, (MongoDBSessionError,)),
        (SessionBusyError, (MongoDBSessionError,)),
        (SessionNotFoundError, (MongoDBSessionError, LookupError)),
        (SessionDecryptionError, (MongoDBSessionError,)),
        (InvalidSessionInputError, (MongoDBSessionError, ValueError)),
        (MessageTooLargeError, (MongoDBSessionError, ValueError)),
        (ConcurrentWriteError, (MongoDBSessionError,)),
        (ConfigurationError, (MongoDBSessionError,)),
        (FactoryNotInitializedError, (ConfigurationError, RuntimeError)),
        (EmbeddedServerError, (ConfigurationError, RuntimeError)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_the_tree(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert error.__bases__ == bases
    assert error.__module__ == "mongodb_session_manager.errors"


def test_the_docstring_draws_every_error() -> None:
    drawn = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in drawn, name


def test_the_embedded_servers_error_is_the_one_of_the_tree() -> None:
    assert embedded.EmbeddedServerError is errors.EmbeddedServerError
    assert mongodb_session_manager.EmbeddedServerError is errors.EmbeddedServerError


# --- bad input raises InvalidSessionInputError (a ValueError), never a bare ValueError ---------


@pytest.mark.parametrize("value", ["yesterday", "2025-13-45", "", 1700000000, b"2025-01-01"], ids=repr)
def test_a_timestamp_that_is_not_iso_8601(value: Any) -> None:
    with pytest.raises(InvalidSessionInputError, match="timestamp"):
        to_bson_datetime(value)


def test_session_totals_need_their_agent() -> None:
    repository = MongoDBSessionRepository(client=mongomock.MongoClient(), database_name="db")
    with pytest.raises(InvalidSessionInputError, match="agent_id"):
        repository.write_session_update("s", totals={"turns": 1})


@pytest.mark.parametrize("chunk_delay", [-1, "1", None], ids=repr)
def test_a_scripted_models_chunk_delay(chunk_delay: Any) -> None:
    with pytest.raises(InvalidSessionInputError, match="chunk_delay"):
        ScriptedModel(chunk_delay=chunk_delay)


@pytest.mark.parametrize(
    "options",
    [{"port": -1}, {"port": 65536}, {"port": "27017"}, {"startup_timeout": 0}, {"startup_timeout": "5"}],
    ids=repr,
)
def test_embedded_server_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidSessionInputError):
        EmbeddedServer(**options)


# --- wrong connection settings raise ConfigurationError from every constructor ----------------

BAD_SETTINGS = [
    ("mongodb://", {}),  # pymongo: InvalidURI
    ("mongodb://127.0.0.1:99999/", {}),  # pymongo: ValueError
    ("mongodb://127.0.0.1:1/", {"maxPoolSize": -1}),  # pymongo: ValueError
    ("mongodb://127.0.0.1:1/", {"fooBar": 1}),  # pymongo: ConfigurationError
]


@pytest.mark.parametrize(("uri", "options"), BAD_SETTINGS, ids=repr)
def test_the_sync_repository_refuses_bad_settings(uri: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="create client"):
        MongoDBSessionRepository(uri, "db", **options).client  # noqa: B018


@pytest.mark.parametrize(("uri", "options"), BAD_SETTINGS, ids=repr)
def test_the_async_repository_refuses_them_the_same_way(uri: str, options: dict[str, Any]) -> None:
    repository = AsyncMongoDBSessionRepository(uri, "db", **options)  # the client is made on first use

    async def first_use() -> None:
        await repository.read_session("s")

    with pytest.raises(ConfigurationError, match="create client"):
        asyncio.run(first_use())


@pytest.mark.parametrize(("uri", "options"), BAD_SETTINGS, ids=repr)
def test_the_factory_and_the_manager_refuse_them_too(uri: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        MongoDBSessionManagerFactory(connection_string=uri, **options)
    with pytest.raises(ConfigurationError):
        MongoDBSessionManager("s", connection_string=uri, **options)
