"""Joining downloaded GridFS chunks into files, checked against their file documents (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from bson.objectid import ObjectId

from mongodb_session_manager._large_content import assemble_files, chunks_query, download_batches
from mongodb_session_manager.errors import MongoDBSessionError

FIRST, SECOND = ObjectId(), ObjectId()


def _file(file_id: ObjectId, length: int, chunk_size: int = 4) -> dict[str, Any]:
    return {"_id": file_id, "length": length, "chunkSize": chunk_size}


def _chunks(file_id: ObjectId, data: bytes, chunk_size: int = 4) -> list[dict[str, Any]]:
    return [
        {"files_id": file_id, "n": n, "data": data[start : start + chunk_size]}
        for n, start in enumerate(range(0, len(data), chunk_size))
    ]


def test_the_chunks_of_several_files_come_back_as_their_bytes() -> None:
    assert chunks_query([FIRST, SECOND]) == {"files_id": {"$in": [FIRST, SECOND]}}
    chunks = _chunks(FIRST, b"0123456789") + _chunks(SECOND, b"abcd")
    files = [_file(SECOND, 4), _file(FIRST, 10)]
    assert assemble_files([FIRST, SECOND], files, chunks) == {FIRST: b"0123456789", SECOND: b"abcd"}
    assert assemble_files([FIRST], [_file(FIRST, 0)], []) == {FIRST: b""}  # an empty file has no chunk


def test_a_missing_file_document_raises_the_missing_file_error() -> None:
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{SECOND}> .* is missing"):
        assemble_files([FIRST, SECOND], [_file(FIRST, 4)], _chunks(FIRST, b"abcd"))


@pytest.mark.parametrize(
    ("chunks", "detail"),
    [
        (_chunks(FIRST, b"0123456789")[::2], "chunk n=1 is missing"),
        (_chunks(FIRST, b"0123456789")[:2], "2 of 3 chunks"),
        ([*_chunks(FIRST, b"0123456789"), {"files_id": FIRST, "n": 3, "data": b"x"}], "4 of 3 chunks"),
        (_chunks(FIRST, b"012345678"), "9 of 10 bytes"),
    ],
)
def test_chunks_that_do_not_add_up_to_the_file_raise_instead_of_returning_other_bytes(
    chunks: list[dict[str, Any]], detail: str
) -> None:
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{FIRST}> .* incomplete: {detail}"):
        assemble_files([FIRST], [_file(FIRST, 10)], chunks)


def test_downloads_are_grouped_by_bytes_and_a_missing_file_stops_them_before_any_chunk() -> None:
    third = ObjectId()
    files = [_file(FIRST, 40), _file(SECOND, 70), _file(third, 30)]
    assert download_batches([FIRST, SECOND, third], files, 100) == [[FIRST], [SECOND, third]]
    assert download_batches([FIRST, SECOND, third], files, 1000) == [[FIRST, SECOND, third]]
    assert download_batches([SECOND], files, 10) == [[SECOND]]  # larger than the bound: alone
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{third}> .* is missing"):
        download_batches([FIRST, third], files[:1], 100)
