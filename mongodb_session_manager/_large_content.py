"""Large binary content blocks, split out of messages into GridFS and put back on read (pure).

A Strands content block carries binary content as ``{"image"|"document"|"video": {...,
"source": {"bytes": b"..."}}}``, at the top of ``message.content`` or inside a
``toolResult``'s ``content``. Bytes longer than the threshold leave the message document (one
document may not exceed 16 MiB) for a GridFS file; the block keeps a reference in their place::

    {"image": {"format": "png", "source": {"bytes": DBRef("<collection>_files", <ObjectId>, length=n)}}}

A DBRef (``{"$ref", "$id", "length"}``) is what no user content can hold: the storability check
refuses a ``$ref`` key in messages (:mod:`._storable`), so a reference is never mistaken for
content. Nothing here does I/O: :func:`offload` returns the files to upload, :func:`references`
the files to download, :func:`chunks_query` the one query that reads all their chunks,
:func:`assemble_files` checks and joins them, :func:`restore` puts their bytes back.

A deferred read (the manager's ``defer_large_content``) does not download at resume:
:func:`defer_document` puts a :class:`DeferredContent` where the bytes go, and
:func:`fill_deferred` replaces it with the bytes later, in place, before the model needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bson.dbref import DBRef
from bson.objectid import ObjectId

from .errors import ConfigurationError, MongoDBSessionError

__all__ = [
    "BINARY_BLOCKS",
    "CHUNK_PROJECTION",
    "CHUNK_SORT",
    "DEFAULT_LARGE_CONTENT_THRESHOLD",
    "FILE_PROJECTION",
    "DeferredContent",
    "FileUpload",
    "LargeContent",
    "assemble_files",
    "chunks_query",
    "corrupt_file",
    "defer_document",
    "deferred_files",
    "document_references",
    "download_batches",
    "files_filter",
    "fill_deferred",
    "missing_file",
    "offload",
    "offload_document",
    "references",
    "restore",
    "restore_document",
    "validate_threshold",
]

DEFAULT_LARGE_CONTENT_THRESHOLD = 4 * 1024 * 1024
BINARY_BLOCKS = ("image", "document", "video")
# The message fields of a stored message document that hold content (unless sealed: ciphertext).
_CONTENT_FIELDS = ("message", "redact_message")

Document = dict[str, Any]


@dataclass(frozen=True)
class LargeContent:
    """Where large blocks go: bytes longer than ``threshold`` into the GridFS bucket ``bucket``."""

    bucket: str
    threshold: int = DEFAULT_LARGE_CONTENT_THRESHOLD


@dataclass(frozen=True)
class FileUpload:
    """One GridFS file to write before the message that references it."""

    file_id: ObjectId
    data: bytes
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeferredContent:
    """Large content not read yet: what ``source["bytes"]`` holds until its GridFS file is read.

    With ``defer_large_content=True`` a resume leaves the bytes in GridFS and puts this in their
    place in ``agent.messages``; the manager swaps in the stored bytes before the model is called
    (or at ``await manager.load(agent)``). It is deliberately not bytes-like (no buffer protocol,
    no ``__bytes__``, no ``__len__``): a provider handed one unread fails loudly (``base64``,
    boto3's parameter check and ``json`` all raise ``TypeError``) instead of sending empty or
    truncated content, and no write stores one (:mod:`._storable` refuses it before any I/O).
    ``length`` is the size of the stored bytes; ``bucket`` the GridFS bucket holding them.
    """

    file_id: ObjectId
    length: int
    bucket: str


def validate_threshold(value: Any) -> int:
    """The threshold in bytes: an int of at least 1 (a ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"large_content_threshold must be a positive int (bytes), got {value!r}")
    return value


def _blocks(content: Any) -> list[tuple[list[Any], int, str]]:
    """Every (list, index, kind) of a binary block in ``content`` and its tool results."""
    found: list[tuple[list[Any], int, str]] = []
    if not isinstance(content, list):
        return found
    for index, block in enumerate(content):
        if not isinstance(block, Mapping):
            continue
        for kind in BINARY_BLOCKS:
            if isinstance(block.get(kind), Mapping):
                found.append((content, index, kind))
        result = block.get("toolResult")
        if isinstance(result, Mapping):
            found.extend(_blocks(result.get("content")))
    return found


def _source_bytes(block: Mapping[str, Any], kind: str) -> Any:
    source = block[kind].get("source")
    return source.get("bytes") if isinstance(source, Mapping) else None


def _with_bytes(block: Mapping[str, Any], kind: str, value: Any) -> Document:
    inner = dict(block[kind])
    inner["source"] = {**inner["source"], "bytes": value}
    return {**block, kind: inner}


def _copy_content(message: Mapping[str, Any]) -> Document:
    """A copy deep enough to replace blocks: the content lists and tool results, not the bytes."""

    def copy_list(content: Any) -> Any:
        if not isinstance(content, list):
            return content
        copied: list[Any] = []
        for block in content:
            if isinstance(block, Mapping) and isinstance(block.get("toolResult"), Mapping):
                result = dict(block["toolResult"])
                result["content"] = copy_list(result.get("content"))
                block = {**block, "toolResult": result}
            copied.append(block)
        return copied

    return {**message, "content": copy_list(message.get("content"))}


def offload(
    message: Mapping[str, Any], policy: LargeContent, metadata: Mapping[str, Any]
) -> tuple[Mapping[str, Any], list[FileUpload]]:
    """``message`` with its large blocks replaced by references, and the files to upload.

    Without a large block (the common case: one scan, no copy) the message itself comes back.
    """
    if not any(
        isinstance(data := _source_bytes(block_list[index], kind), bytes | bytearray)
        and len(data) > policy.threshold
        for block_list, index, kind in _blocks(message.get("content"))
    ):
        return message, []
    copied = _copy_content(message)
    uploads: list[FileUpload] = []
    for block_list, index, kind in _blocks(copied["content"]):
        data = _source_bytes(block_list[index], kind)
        if isinstance(data, bytes | bytearray) and len(data) > policy.threshold:
            upload = FileUpload(ObjectId(), bytes(data), {**metadata, "kind": kind})
            reference = DBRef(policy.bucket, upload.file_id, length=len(data))
            block_list[index] = _with_bytes(block_list[index], kind, reference)
            uploads.append(upload)
    return copied, uploads


def references(message: Any) -> list[ObjectId]:
    """The GridFS file ids ``message`` refers to, in order."""
    if not isinstance(message, Mapping):
        return []
    return [
        data.id
        for block_list, index, kind in _blocks(message.get("content"))
        if isinstance(data := _source_bytes(block_list[index], kind), DBRef)
    ]


def _replace_references(message: Mapping[str, Any], replace: Callable[[DBRef], Any]) -> Mapping[str, Any]:
    """``message`` with each stored reference replaced by ``replace(it)`` (a copy, if it has any)."""
    if not references(message):
        return message
    copied = _copy_content(message)
    for block_list, index, kind in _blocks(copied["content"]):
        data = _source_bytes(block_list[index], kind)
        if isinstance(data, DBRef):
            block_list[index] = _with_bytes(block_list[index], kind, replace(data))
    return copied


def restore(message: Mapping[str, Any], files: Mapping[ObjectId, bytes]) -> Mapping[str, Any]:
    """``message`` with every reference replaced by its file's bytes."""
    return _replace_references(message, lambda reference: files[reference.id])


def _defer(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """``message`` with every stored reference replaced by a :class:`DeferredContent`."""
    return _replace_references(
        message,
        lambda reference: DeferredContent(
            reference.id, int(getattr(reference, "length", 0) or 0), reference.collection
        ),
    )


def defer_document(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stored message document with :class:`DeferredContent` where its GridFS bytes would go."""
    result: Document | None = None
    for name in _CONTENT_FIELDS:
        value = document.get(name)
        if isinstance(value, Mapping) and references(value):
            result = result if result is not None else dict(document)
            result[name] = _defer(value)
    return document if result is None else result


def deferred_files(messages: Sequence[Any]) -> list[ObjectId]:
    """The file ids of every :class:`DeferredContent` in ``messages``, in order, once each."""
    found: dict[ObjectId, None] = {}
    for message in messages:
        if isinstance(message, Mapping):
            for block_list, index, kind in _blocks(message.get("content")):
                data = _source_bytes(block_list[index], kind)
                if isinstance(data, DeferredContent):
                    found[data.file_id] = None
    return list(found)


def fill_deferred(messages: Sequence[Any], files: Mapping[ObjectId, bytes]) -> int:
    """Replace each :class:`DeferredContent` in ``messages`` with its file's bytes, in place.

    In place: the message dicts stay the same objects (the manager tracks them by identity);
    only the blocks inside their content lists are replaced. Bytes whose length differs from
    the reference raise :func:`corrupt_file`. Returns how many blocks were filled.
    """
    filled = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        for block_list, index, kind in _blocks(message.get("content")):
            data = _source_bytes(block_list[index], kind)
            if not isinstance(data, DeferredContent):
                continue
            if data.file_id not in files:
                raise missing_file(data.file_id)
            content = files[data.file_id]
            if len(content) != data.length:
                raise corrupt_file(data.file_id, f"{len(content)} of {data.length} bytes")
            block_list[index] = _with_bytes(block_list[index], kind, content)
            filled += 1
    return filled


def offload_document(
    document: Mapping[str, Any], policy: LargeContent
) -> tuple[Mapping[str, Any], list[FileUpload]]:
    """A stored message document (an import) with its large blocks replaced by references."""
    metadata = {"session_id": document.get("session_id"), "agent_id": document.get("agent_id")}
    result: Document | None = None
    uploads: list[FileUpload] = []
    for name in _CONTENT_FIELDS:
        value = document.get(name)
        if isinstance(value, Mapping):
            replaced, more = offload(value, policy, metadata)
            if more:
                result = result if result is not None else dict(document)
                result[name] = replaced
                uploads += more
    return (document if result is None else result), uploads


def document_references(documents: Sequence[Mapping[str, Any]]) -> list[ObjectId]:
    """The file ids the content of stored message documents refers to."""
    return [
        file_id
        for document in documents
        for name in _CONTENT_FIELDS
        for file_id in references(document.get(name))
    ]


def restore_document(document: Mapping[str, Any], files: Mapping[ObjectId, bytes]) -> Mapping[str, Any]:
    """A stored message document with its referenced bytes back in place."""
    result: Document | None = None
    for name in _CONTENT_FIELDS:
        value = document.get(name)
        if isinstance(value, Mapping) and references(value):
            result = result if result is not None else dict(document)
            result[name] = restore(value, files)
    return document if result is None else result


def missing_file(file_id: Any) -> MongoDBSessionError:
    """The error for a reference whose GridFS file is gone (deleted outside this package)."""
    return MongoDBSessionError(
        f"file_id=<{file_id}> | a stored message refers to a content file that is missing"
    )


def corrupt_file(file_id: Any, detail: str) -> MongoDBSessionError:
    """The error for a content file whose chunks do not add up to its length (damaged outside)."""
    return MongoDBSessionError(
        f"file_id=<{file_id}> | a stored message refers to a content file that is incomplete: {detail}"
    )


# What a read needs of a GridFS file document and of its chunks.
FILE_PROJECTION: Mapping[str, int] = {"length": 1, "chunkSize": 1}
CHUNK_PROJECTION: Mapping[str, int] = {"_id": 0, "files_id": 1, "n": 1, "data": 1}
CHUNK_SORT = (("files_id", 1), ("n", 1))  # the GridFS chunks index serves it


def chunks_query(file_ids: Sequence[ObjectId]) -> Document:
    """The chunks of every file in ``file_ids``: one query (sorted by :data:`CHUNK_SORT`) for all."""
    return {"files_id": {"$in": list(file_ids)}}


def download_batches(
    file_ids: Sequence[ObjectId], files: Sequence[Mapping[str, Any]], max_bytes: int
) -> list[list[ObjectId]]:
    """``file_ids`` in groups of at most ``max_bytes`` of content (a larger file alone), a query each.

    A bound on what one query holds in memory beside the bytes already joined; files missing
    their document raise :func:`missing_file` here, before any chunk is read.
    """
    lengths = {document["_id"]: int(document["length"]) for document in files}
    batches: list[list[ObjectId]] = []
    size = max_bytes
    for file_id in file_ids:
        if file_id not in lengths:
            raise missing_file(file_id)
        if size + lengths[file_id] > max_bytes or not batches:
            batches.append([])
            size = 0
        batches[-1].append(file_id)
        size += lengths[file_id]
    return batches


def assemble_files(
    file_ids: Sequence[ObjectId], files: Sequence[Mapping[str, Any]], chunks: Sequence[Mapping[str, Any]]
) -> dict[ObjectId, bytes]:
    """Each file's bytes from its chunks, checked against its file document.

    Raises :func:`missing_file` for a file without its document, :func:`corrupt_file` when its
    chunks are not exactly ``n = 0..k`` (k from ``length`` and ``chunkSize``) or do not add up
    to ``length``: a read never returns bytes other than those stored.
    """
    documents = {document["_id"]: document for document in files}
    parts: dict[ObjectId, list[bytes]] = {file_id: [] for file_id in file_ids}
    for chunk in chunks:
        pieces = parts.get(chunk["files_id"])
        if pieces is None:
            continue
        if chunk["n"] != len(pieces):
            raise corrupt_file(chunk["files_id"], f"chunk n={len(pieces)} is missing")
        pieces.append(chunk["data"])
    assembled: dict[ObjectId, bytes] = {}
    for file_id, pieces in parts.items():
        document = documents.get(file_id)
        if document is None:
            raise missing_file(file_id)
        length, chunk_size = int(document["length"]), int(document["chunkSize"])
        expected = -(-length // chunk_size) if chunk_size > 0 else 0
        if len(pieces) != expected:
            raise corrupt_file(file_id, f"{len(pieces)} of {expected} chunks")
        data = b"".join(pieces)
        if len(data) != length:
            raise corrupt_file(file_id, f"{len(data)} of {length} bytes")
        assembled[file_id] = data
    return assembled


def files_filter(session_ids: Sequence[str], before: Any = None) -> Document:
    """The GridFS files of ``session_ids`` (``metadata.session_id``), uploaded before ``before``."""
    query: Document = {"metadata.session_id": {"$in": list(session_ids)}}
    if before is not None:
        query["uploadDate"] = {"$lt": before}
    return query
