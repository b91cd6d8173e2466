"""The download and delete flows of large content files, driven by a fake store (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from bson.objectid import ObjectId

from mongodb_session_manager._content_cache import ContentCache, shared_cache
from mongodb_session_manager._plans import (
    Delete,
    DeleteFiles,
    Find,
    Step,
    delete_files_flow,
    download_flow,
    drive_sync,
)

BUCKET = ("chat", "sessions_files")
CHUNK = 4


class FakeFiles:
    """GridFS files as their file documents and chunks; records every request."""

    def __init__(self, files: dict[ObjectId, bytes]) -> None:
        self.files = files
        self.requests: list[Any] = []

    def execute(self, step: Step) -> Any:
        request = step.request
        self.requests.append(request)
        if isinstance(request, Find) and request.target == "files":
            wanted = request.filter["_id"]["$in"] if "_id" in request.filter else list(self.files)
            return [{"_id": i, "length": len(self.files[i]), "chunkSize": CHUNK} for i in wanted]
        if isinstance(request, Find) and request.target == "chunks":
            assert list(request.sort or []) == [("files_id", 1), ("n", 1)]
            return [
                {"files_id": i, "n": n, "data": self.files[i][start : start + CHUNK]}
                for i in sorted(request.filter["files_id"]["$in"])
                for n, start in enumerate(range(0, len(self.files[i]), CHUNK))
            ]
        if isinstance(request, Delete):
            return len(self.files)
        raise AssertionError(request)


def test_cached_files_cost_no_request_and_the_rest_come_in_two() -> None:
    cached, first, second = ObjectId(), ObjectId(), ObjectId()
    store = FakeFiles({first: b"0123456789", second: b"abcdef"})
    cache = ContentCache(1000)
    cache.put_many({(*BUCKET, cached): b"from memory"})

    files = drive_sync(download_flow([cached, first, second], cache, BUCKET, "resume"), store.execute)

    assert files == {cached: b"from memory", first: b"0123456789", second: b"abcdef"}
    assert [(request.target, request.filter) for request in store.requests] == [
        ("files", {"_id": {"$in": [first, second]}}),
        ("chunks", {"files_id": {"$in": [first, second]}}),
    ]
    store.requests.clear()
    assert drive_sync(download_flow([first, second], cache, BUCKET, "resume"), store.execute) == {
        first: b"0123456789",
        second: b"abcdef",
    }
    assert store.requests == []  # the download filled the cache


def test_without_a_cache_every_read_downloads() -> None:
    file_id = ObjectId()
    store = FakeFiles({file_id: b"abc"})
    for _ in range(2):
        assert drive_sync(download_flow([file_id], None, BUCKET, "resume"), store.execute) == {
            file_id: b"abc"
        }
    assert len(store.requests) == 4


def test_a_delete_drops_the_files_from_the_cache_even_when_it_fails() -> None:
    file_id = ObjectId()
    cache = shared_cache(12345)
    assert cache is not None
    cache.put_many({(*BUCKET, file_id): b"abc"})

    class Failing(FakeFiles):
        def execute(self, step: Step) -> Any:
            if isinstance(step.request, Delete):
                raise ConnectionError("lost")
            return super().execute(step)

    with pytest.raises(ConnectionError):
        drive_sync(
            delete_files_flow(DeleteFiles(("s",)), BUCKET, "delete"), Failing({file_id: b"abc"}).execute
        )
    assert cache.get_many([(*BUCKET, file_id)]) == {}
