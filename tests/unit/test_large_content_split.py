"""Splitting large binary blocks out of a message and putting them back (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from bson.dbref import DBRef

from mongodb_session_manager._large_content import (
    LargeContent,
    document_references,
    offload,
    offload_document,
    references,
    restore,
    restore_document,
    validate_threshold,
)
from mongodb_session_manager.errors import ConfigurationError

POLICY = LargeContent("sessions_files", threshold=10)
META = {"session_id": "s", "agent_id": "a"}


def _image(data: bytes) -> dict[str, Any]:
    return {"image": {"format": "png", "source": {"bytes": data}}}


def test_a_message_without_large_blocks_comes_back_as_it_is() -> None:
    message = {"role": "user", "content": [{"text": "hi"}, _image(b"small")]}
    stored, uploads = offload(message, POLICY, META)
    assert stored is message
    assert uploads == []
    assert references(message) == []


def test_large_blocks_anywhere_become_references_and_come_back_byte_exact() -> None:
    big, other = b"x" * 11, b"y" * 50
    document = {"document": {"format": "pdf", "name": "r", "source": {"bytes": other}}}
    tool = {"toolResult": {"toolUseId": "t", "status": "success", "content": [document]}}
    message = {"role": "user", "content": [{"text": "look"}, _image(big), tool, _image(b"tiny")]}

    stored, uploads = offload(message, POLICY, META)

    assert [upload.data for upload in uploads] == [big, other]
    assert [upload.metadata["kind"] for upload in uploads] == ["image", "document"]
    reference = stored["content"][1]["image"]["source"]["bytes"]
    assert reference == DBRef("sessions_files", uploads[0].file_id, length=11)
    assert stored["content"][3] == _image(b"tiny")
    assert message["content"][1]["image"]["source"]["bytes"] is big  # the caller's message is untouched
    assert references(stored) == [upload.file_id for upload in uploads]
    assert restore(stored, {upload.file_id: upload.data for upload in uploads}) == message


def test_stored_documents_are_split_and_restored_in_message_and_redact_message() -> None:
    message = {"role": "user", "content": [_image(b"z" * 20)]}
    document = {"session_id": "s", "agent_id": "a", "message": message, "redact_message": message}
    stored, uploads = offload_document(document, POLICY)
    assert len(uploads) == 2
    assert uploads[0].metadata == {"session_id": "s", "agent_id": "a", "kind": "image"}
    assert document_references([dict(stored)]) == [upload.file_id for upload in uploads]
    files = {upload.file_id: upload.data for upload in uploads}
    assert restore_document(stored, files) == document
    sealed = {"session_id": "s", "agent_id": "a", "message": b"ciphertext", "redact_message": None}
    assert offload_document(sealed, POLICY) == (sealed, [])


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "4MiB", None])
def test_the_threshold_is_a_positive_number_of_bytes(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="large_content_threshold"):
        validate_threshold(value)
