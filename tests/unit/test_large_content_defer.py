"""DeferredContent: what a deferred resume leaves where large bytes go, and how they come back (no server)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from bson.dbref import DBRef
from bson.objectid import ObjectId

from mongodb_session_manager import DeferredContent, InvalidSessionInputError, MongoDBSessionError
from mongodb_session_manager._large_content import defer_document, deferred_files, fill_deferred
from mongodb_session_manager._plans import DownloadFiles, drive_sync, hydrate_flow
from mongodb_session_manager._storable import check_storable

IMAGE, DOCUMENT = ObjectId(), ObjectId()
BUCKET = "sessions_files"


def _stored() -> dict[str, Any]:
    """A stored message document: an image at the top, a PDF inside a tool result, some text."""
    return {
        "session_id": "s",
        "message": {
            "role": "user",
            "content": [
                {"text": "look"},
                {"image": {"format": "png", "source": {"bytes": DBRef(BUCKET, IMAGE, length=5)}}},
                {
                    "toolResult": {
                        "toolUseId": "t1",
                        "content": [
                            {
                                "document": {
                                    "format": "pdf",
                                    "name": "a",
                                    "source": {"bytes": DBRef(BUCKET, DOCUMENT, length=3)},
                                }
                            }
                        ],
                    }
                },
            ],
        },
    }


def _image(message: Any) -> Any:
    return message["content"][1]["image"]["source"]["bytes"]


def _document(message: Any) -> Any:
    return message["content"][2]["toolResult"]["content"][0]["document"]["source"]["bytes"]


def test_a_deferred_document_holds_references_with_the_file_id_and_length() -> None:
    stored = _stored()
    deferred = defer_document(stored)["message"]
    assert _image(deferred) == DeferredContent(IMAGE, 5, BUCKET)
    assert _document(deferred) == DeferredContent(DOCUMENT, 3, BUCKET)
    assert isinstance(_image(stored["message"]), DBRef)  # the stored document is left as it was
    assert deferred_files([deferred, copy.deepcopy(deferred)]) == [IMAGE, DOCUMENT]  # once each
    plain = {"message": {"role": "user", "content": [{"text": "hi"}]}}
    assert defer_document(plain) is plain


def test_filling_puts_the_bytes_back_in_the_same_message_objects() -> None:
    message = defer_document(_stored())["message"]
    content = message["content"]
    assert fill_deferred([message], {IMAGE: b"12345", DOCUMENT: b"pdf"}) == 2
    assert message["content"] is content  # the manager tracks messages by identity
    assert (_image(message), _document(message)) == (b"12345", b"pdf")
    assert deferred_files([message]) == []
    assert fill_deferred([message], {}) == 0


def test_bytes_of_another_length_or_a_missing_file_raise_the_package_error() -> None:
    message = defer_document(_stored())["message"]
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{IMAGE}> .* incomplete: 4 of 5 bytes"):
        fill_deferred([message], {IMAGE: b"1234", DOCUMENT: b"pdf"})
    with pytest.raises(MongoDBSessionError, match=f"file_id=<{DOCUMENT}> .* missing"):
        fill_deferred([message], {IMAGE: b"12345"})


def test_a_reference_is_not_bytes_so_a_provider_fails_loudly_instead_of_sending_nothing() -> None:
    reference = DeferredContent(IMAGE, 5, BUCKET)
    with pytest.raises(TypeError):
        base64.b64encode(reference)  # type: ignore[arg-type]  # what OpenAI/Anthropic providers do
    with pytest.raises(TypeError):
        bytes(reference)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        memoryview(reference)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        len(reference)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        json.dumps({"bytes": reference})
    with pytest.raises(AttributeError):
        reference.length = 0  # type: ignore[misc]  # frozen
    assert copy.deepcopy(reference) == reference
    assert repr(reference) == (
        f"DeferredContent(file_id=ObjectId('{IMAGE}'), length=5, bucket='sessions_files')"
    )


def test_no_write_accepts_a_reference() -> None:
    message = defer_document(_stored())["message"]
    where = r"message\.content\.1\.image\.source\.bytes: large content not read yet"
    with pytest.raises(InvalidSessionInputError, match=where):
        check_storable(message, "message")


def test_hydrating_asks_once_for_every_file_and_not_at_all_without_references() -> None:
    messages = [defer_document(_stored())["message"], defer_document(_stored())["message"]]
    asked: list[DownloadFiles] = []

    def execute(step: Any) -> dict[ObjectId, bytes]:
        asked.append(step.request)
        return {IMAGE: b"12345", DOCUMENT: b"pdf"}

    assert drive_sync(hydrate_flow(messages), execute) == 4
    assert asked == [DownloadFiles((IMAGE, DOCUMENT))]
    assert [_image(message) for message in messages] == [b"12345", b"12345"]
    assert drive_sync(hydrate_flow(messages), execute) == 0
    assert len(asked) == 1
