"""Reading large content back: every file of a read in two queries, and a cache of their bytes.

A resume downloads all the GridFS files its window refers to with one ``find`` of their file
documents and one of all their chunks (not a stream per file), and checks what came back: a
file whose chunks are gone fails with this package's error instead of returning other bytes.
The bytes are kept in a process-wide cache (``large_content_cache_bytes``), so a web app that
builds a manager per request resumes the session without downloading its images again.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
    MongoDBSessionRepository,
    _plans,
)
from mongodb_session_manager.errors import ConfigurationError, MongoDBSessionError
from mongodb_session_manager.testing import CommandCounter

THRESHOLD = 64 * 1024
# Three chunks each (GridFS chunks are 255 KiB): enough to lose one in the middle.
IMAGES = [os.urandom(700 * 1024 + index) for index in range(3)]
SIZE = len(IMAGES[0])

Client = pymongo.MongoClient[dict[str, Any]]


def _message(data: bytes) -> dict[str, Any]:
    return {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": data}}}]}


def _image_bytes(message: Any) -> bytes:
    return message["content"][0]["image"]["source"]["bytes"]  # type: ignore[no-any-return]


def _store(repository: MongoDBSessionRepository, session_id: str, images: list[bytes] = IMAGES) -> None:
    repository.create_session(Session(session_id, SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent("assistant", {}, {}))
    for message_id, data in enumerate(images):
        repository.write_message(session_id, "assistant", SessionMessage(_message(data), message_id))  # type: ignore[arg-type]


def _resumed_images(repository: MongoDBSessionRepository, session_id: str) -> list[bytes]:
    snapshot = repository.load_session(session_id, "assistant")
    assert snapshot is not None
    return [_image_bytes(stored.message) for stored in snapshot.window]


@pytest.fixture
def writer(client: Client, database_name: str) -> MongoDBSessionRepository:
    """The repository that stores the images (its uploads fill the cache)."""
    return MongoDBSessionRepository(
        client=client, database_name=database_name, large_content_threshold=THRESHOLD
    )


@pytest.fixture
def cold_reader(counted_client: Client, database_name: str) -> MongoDBSessionRepository:
    """A reader without a cache: every read downloads."""
    return MongoDBSessionRepository(
        client=counted_client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=0,
    )


@pytest.fixture
def empty_cache(writer: MongoDBSessionRepository) -> None:
    """The process's default cache, emptied: this test's reads start cold."""
    assert writer.large_content_cache is not None
    writer.large_content_cache.clear()


def test_a_resume_reads_all_its_files_in_one_find_of_files_and_one_of_chunks(
    writer: MongoDBSessionRepository, cold_reader: MongoDBSessionRepository, counter: CommandCounter
) -> None:
    _store(writer, "album")
    counter.take()

    assert _resumed_images(cold_reader, "album") == IMAGES
    commands = counter.take()
    assert commands.count("find") == 2  # the three file documents, then their nine chunks
    assert "getMore" not in commands
    assert len(commands) == 3  # with the resume's own aggregate ($lookup)

    assert [
        _image_bytes(stored.message) for stored in cold_reader.list_messages("album", "assistant")
    ] == IMAGES
    assert counter.take().count("find") == 4  # the live session and its messages, the files in two


def test_a_read_past_the_batch_bound_queries_the_chunks_in_groups_of_files(
    writer: MongoDBSessionRepository,
    cold_reader: MongoDBSessionRepository,
    counter: CommandCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What one chunks query may hold in memory (64 MiB): here two images' worth.
    monkeypatch.setattr(_plans, "DOWNLOAD_BATCH_BYTES", 2 * SIZE + 10)
    _store(writer, "batched")
    counter.take()
    assert _resumed_images(cold_reader, "batched") == IMAGES
    assert counter.take().count("find") == 3  # the file documents, then images 1-2 and image 3


def test_a_missing_chunk_or_file_fails_with_the_package_error_instead_of_other_bytes(
    writer: MongoDBSessionRepository, cold_reader: MongoDBSessionRepository, mongo_client: Client
) -> None:
    _store(writer, "damaged")
    database = mongo_client[writer.database.name]
    first = database["sessions_files.files"].find_one({"length": SIZE}, {"_id": 1})
    assert first is not None

    database["sessions_files.chunks"].delete_one({"files_id": first["_id"], "n": 1})
    with pytest.raises(MongoDBSessionError, match="incomplete: chunk n=1 is missing"):
        cold_reader.load_session("damaged", "assistant")

    database["sessions_files.chunks"].delete_one({"files_id": first["_id"], "n": 2})
    with pytest.raises(MongoDBSessionError, match="incomplete: 1 of 3 chunks"):
        cold_reader.list_messages("damaged", "assistant")

    database["sessions_files.files"].delete_one({"_id": first["_id"]})
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{first['_id']}> .* is missing"):
        cold_reader.read_message("damaged", "assistant", 0)


def test_a_manager_per_request_resumes_from_the_cache_without_downloading(
    writer: MongoDBSessionRepository,
    counted_client: Client,
    counter: CommandCounter,
    database_name: str,
    empty_cache: None,
) -> None:
    _store(writer, "per-request")
    assert writer.large_content_cache is not None
    writer.large_content_cache.clear()  # as a freshly started worker process
    counter.take()

    def request() -> list[str]:
        """One web request: a new manager resumes the session (then the agent would run)."""
        manager = MongoDBSessionManager(
            "per-request",
            client=counted_client,
            database_name=database_name,
            large_content_threshold=THRESHOLD,
        )
        snapshot = manager.repository.load_session("per-request", "assistant")
        assert snapshot is not None
        assert [_image_bytes(stored.message) for stored in snapshot.window] == IMAGES
        manager.close()
        return [name for name in counter.take() if name not in {"listIndexes", "createIndexes"}]

    assert request().count("find") == 2  # the first request downloads the images
    assert request() == ["aggregate"]  # every later one reads only the session and its window
    assert request() == ["aggregate"]


def test_the_bytes_uploaded_serve_the_next_resume_in_the_same_process(
    writer: MongoDBSessionRepository,
    counted_client: Client,
    counter: CommandCounter,
    database_name: str,
    empty_cache: None,
) -> None:
    _store(writer, "fresh")
    reader = MongoDBSessionRepository(
        client=counted_client, database_name=database_name, large_content_threshold=THRESHOLD
    )
    counter.take()
    assert _resumed_images(reader, "fresh") == IMAGES
    assert counter.take() == ["aggregate"]


def test_the_cache_evicts_the_least_recently_used_files_by_bytes(
    client: Client, counted_client: Client, counter: CommandCounter, database_name: str
) -> None:
    bound = 2 * SIZE + SIZE // 2  # room for two of the three images
    writer = MongoDBSessionRepository(
        client=client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=bound,
    )
    cache = writer.large_content_cache
    assert cache is not None
    cache.clear()
    _store(writer, "evicting")
    assert len(cache) == 2
    assert SIZE * 2 <= cache.size_bytes <= bound

    reader = MongoDBSessionRepository(
        client=counted_client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=bound,
    )
    assert reader.large_content_cache is cache  # one cache per bound, in the whole process
    counter.take()
    first = reader.read_message("evicting", "assistant", 0)  # evicted: downloaded, then cached
    assert first is not None
    assert _image_bytes(first.message) == IMAGES[0]
    assert counter.take().count("find") == 4  # the session, the message, its file in two
    assert len(cache) == 2
    assert cache.size_bytes <= bound

    last = reader.read_message("evicting", "assistant", 0)
    assert last is not None
    assert _image_bytes(last.message) == IMAGES[0]
    assert counter.take() == ["find", "find"]  # the session and the message: its image is cached now


def test_a_cache_of_zero_bytes_is_off_and_a_negative_one_is_refused(
    writer: MongoDBSessionRepository, cold_reader: MongoDBSessionRepository, counter: CommandCounter
) -> None:
    assert cold_reader.large_content_cache is None
    assert cold_reader.large_content_cache_bytes == 0
    _store(writer, "uncached")
    counter.take()
    for _ in range(2):
        assert _resumed_images(cold_reader, "uncached") == IMAGES
        assert counter.take().count("find") == 2  # downloaded every time

    bad: Any
    for bad in (-1, True, 1.5, "256MB"):
        with pytest.raises(ConfigurationError, match="large_content_cache_bytes"):
            MongoDBSessionRepository(client=writer.client, large_content_cache_bytes=bad)
        with pytest.raises(ConfigurationError, match="large_content_cache_bytes"):
            MongoDBSessionManager("s", client=writer.client, large_content_cache_bytes=bad)


def test_deleting_a_session_drops_its_files_from_every_cache_of_the_process(
    writer: MongoDBSessionRepository, client: Client, database_name: str, empty_cache: None
) -> None:
    other = MongoDBSessionRepository(
        client=client,
        database_name=database_name,
        large_content_threshold=THRESHOLD,
        large_content_cache_bytes=8 * SIZE,
    )
    _store(writer, "gone", IMAGES[:2])
    _store(writer, "kept", IMAGES[2:])
    assert other.large_content_cache is not None
    other.large_content_cache.clear()
    assert _resumed_images(other, "gone") == IMAGES[:2]
    default_cache = writer.large_content_cache
    assert default_cache is not None
    assert (len(default_cache), len(other.large_content_cache)) == (3, 2)

    assert writer.delete_session("gone")
    assert (len(default_cache), len(other.large_content_cache)) == (1, 0)
    assert _resumed_images(writer, "kept") == IMAGES[2:]

    # What the TTL monitor does (the documents go, not the files), then the sweep.
    database = writer.database
    database["sessions"].delete_one({"_id": "kept"})
    database["sessions_messages"].delete_many({"session_id": "kept"})
    assert writer.sweep_files(older_than=timedelta(microseconds=1)) == 1
    assert len(default_cache) == 0


def test_the_factory_gives_its_cache_bound_to_every_repository_it_makes(
    mongodb_uri: str, database_name: str
) -> None:
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name, large_content_cache_bytes=0)
    try:
        assert factory.repository.large_content_cache is None
        elsewhere = factory.create_session_manager("s", collection_name="other_sessions")
        assert elsewhere.repository is not factory.repository
        assert elsewhere.repository.large_content_cache is None
    finally:
        factory.close()
    default = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    try:
        assert default.repository.large_content_cache_bytes == 256 * 1024 * 1024
    finally:
        default.close()


async def test_the_async_repository_reads_in_two_finds_and_then_from_the_cache(
    mongodb_uri: str, database_name: str, empty_cache: None
) -> None:
    counter = CommandCounter()
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
        mongodb_uri, event_listeners=[counter]
    )
    repository = AsyncMongoDBSessionRepository(
        client=client, database_name=database_name, large_content_threshold=THRESHOLD
    )
    try:
        await repository.create_session(Session("async-album", SessionType.AGENT))
        await repository.create_agent("async-album", SessionAgent("assistant", {}, {}))
        for message_id, data in enumerate(IMAGES):
            message = SessionMessage(_message(data), message_id)  # type: ignore[arg-type]
            await repository.write_message("async-album", "assistant", message)
        assert repository.large_content_cache is not None
        repository.large_content_cache.clear()
        counter.take()

        for downloads in (2, 0):  # cold, then warm
            snapshot = await repository.load_session("async-album", "assistant")
            assert snapshot is not None
            assert [_image_bytes(stored.message) for stored in snapshot.window] == IMAGES
            assert counter.take().count("find") == downloads

        assert await repository.delete_session("async-album")
        assert len(repository.large_content_cache) == 0
    finally:
        await client.close()
