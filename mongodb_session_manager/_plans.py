"""What the repositories send, as values: requests, write plans and the flows that chain them.

Nothing here does I/O. A *request* names one driver call (find, aggregate, an update, a plan of
writes). A *flow* is a generator that yields requests and receives each one's answer; the sync
and the async repository drive the same flows, each with its own I/O, so every multi-step
operation (insert a message, re-allocate its id on a conflict, read a session and its window)
is written once.

A *plan* is a short list of writes that belong together: a message insert plus the session
document's update, and on a session's first write the upserts that create the session and the
agent. Repositories run a plan in one round trip with MongoDB 8's client-level ``bulkWrite``
(ordered), else one operation after another.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pymongo import DeleteMany, InsertOne, UpdateMany, UpdateOne
from strands.types.session import SessionMessage

from . import schema
from ._content_cache import ContentCache, forget
from ._fork import in_forked_child
from ._large_content import (
    CHUNK_PROJECTION,
    CHUNK_SORT,
    FILE_PROJECTION,
    FileUpload,
    LargeContent,
    assemble_files,
    chunks_query,
    defer_document,
    deferred_files,
    document_references,
    download_batches,
    files_filter,
    fill_deferred,
    offload,
    restore_document,
)
from .errors import ConcurrentWriteError, MessageTooLargeError, SessionNotFoundError

logger = logging.getLogger(__name__)

# files, chunks: the GridFS bucket's ``.files`` and ``.chunks``
Target = Literal["sessions", "messages", "rollups", "files", "chunks"]
Document = dict[str, Any]
T = TypeVar("T")

MAX_ID_ATTEMPTS = 64
LEFTOVER_AGE = timedelta(seconds=1)
"""How much older than the read that found no agent entry a message must be to count as no session's.

Another first writer stores its messages as it creates the entry, so a message of its that this
read did not see was stamped at most moments before it; only a clock more than this far behind
ours could make it look older.
"""


# --- writes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InsertOp:
    target: Target
    document: Document


@dataclass(frozen=True)
class UpdateOp:
    target: Target
    filter: Mapping[str, Any]
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    upsert: bool = False
    many: bool = False


@dataclass(frozen=True)
class DeleteOp:
    """``deleteMany``: messages that ride out of a session with one of its writes."""

    target: Target
    filter: Mapping[str, Any]


Op = InsertOp | UpdateOp | DeleteOp


@dataclass(frozen=True)
class Plan:
    """Writes that belong together, run in order; ``message_index`` marks the (first) message insert."""

    ops: tuple[Op, ...]
    message_index: int | None = None
    message_count: int = 0


@dataclass
class MessageWrite:
    """One message to insert, with what rides on its document."""

    session_message: SessionMessage
    event_loop_metrics: Mapping[str, Any] | None = None
    incomplete_reason: str | None = None
    expires_at: datetime | None = None  # the session's message expiry horizon (see _lifecycle)
    mask: Sequence[Callable[[str], str]] = ()  # applied to its text before it is stored
    seal: Callable[[Any], Any] | None = None  # encrypts its content (after masking), see _encryption
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Lease:
    """The turn lease in a write (see :func:`schema.lease_field`).

    Every message the write stores carries it. ``take``: the write starts the turn, so a writer
    that finds the next id taken learns whether another turn is running (the flow raises
    :class:`LeaseHeld`) or only came first (:class:`StaleWindow`). With ``message_id`` (the
    turn's first stored message) the write only renews (``until``) or gives back (``release``)
    the lease on the turn's messages, matched by owner. A turn's record closes its lease by
    itself: a plain turn never writes a release.
    """

    owner: str
    until: datetime
    take: bool = False
    message_id: int | None = None
    release: bool = False


# Lease owners: a random per-process prefix and a counter. Made on the loop's thread for every
# agent, so without a syscall: ``uuid4`` reads ``os.urandom``, which releases the GIL, and getting
# it back from a busy I/O thread can take the interpreter's whole switch interval (5 ms).
_owner_prefix = os.urandom(8).hex()
_owner_numbers = itertools.count()


def new_lease_owner() -> str:
    """A token no other manager, in this process or another, uses as its lease owner."""
    return f"{_owner_prefix}{next(_owner_numbers):x}"


@in_forked_child
def _new_owner_prefix() -> None:
    # A child continues the parent's counter: only a prefix of its own keeps the tokens apart.
    global _owner_prefix
    _owner_prefix = os.urandom(8).hex()


class LeaseHeld(Exception):
    """Internal: another writer holds the agent's turn lease until ``until``."""

    def __init__(self, until: datetime | None) -> None:
        super().__init__(f"the turn lease is held until {until}")
        self.until = until


class StaleWindow(Exception):
    """Internal: taking the lease, the write found messages of another writer it has not seen."""


@dataclass(frozen=True)
class SessionWrite:
    """What changes in the session document with a write (all optional).

    ``agent``: the agent's state fields to ``$set`` (``schema.agent_state``), when they changed.
    ``totals``: a finished turn's increments. ``turn_record``: ``(message_id, metrics)`` to
    attach a turn's metrics to a message stored earlier. ``create``: the session and agent
    documents to upsert when this may be the session's (or the agent's) first write.
    """

    agent_id: str
    agent: Mapping[str, Any] | None = None
    totals: Mapping[str, int | float] | None = None
    turn_record: tuple[int, Mapping[str, Any]] | None = None
    create: NewAgent | None = None
    update: Mapping[str, Any] | None = None  # a prepared update of the session document instead
    extra: tuple[Op, ...] = ()  # lifecycle writes riding along (expiry renewal, trimming)
    lease: Lease | None = None
    # The session fields and agent entry that recreate a session document deleted under a live
    # manager: the session update becomes an upsert carrying them (``schema.with_recreation``).
    recreate: NewAgent | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.agent
            or self.totals
            or self.turn_record
            or self.create
            or self.update
            or self.lease
            or self.extra
        )


@dataclass(frozen=True)
class NewAgent:
    """The session document's fields and the agent entry, written only if they do not exist yet.

    ``leftovers_before``: when the read that found no entry started. The agent's messages stored
    before then (less :data:`LEFTOVER_AGE`) belong to no session: an expired one's, whose
    document the TTL monitor removed first. The write deletes them instead of taking them up.
    """

    session: Mapping[str, Any]
    agent: Mapping[str, Any]
    leftovers_before: datetime | None = None


def write_plan(
    session_id: str, message: Document | Sequence[Document] | None, write: SessionWrite | None
) -> Plan:
    """The ordered writes for one message and/or one session change.

    A taken lease is in the first message document already (the flow puts it there).
    """
    ops: list[Op] = []
    lease = None if write is None else write.lease
    if write is not None and write.create is not None:
        ops.append(
            UpdateOp(
                "sessions", {"_id": session_id}, schema.create_session_update(write.create.session), True
            )
        )
        ops.append(
            UpdateOp(
                "sessions",
                schema.create_agent_filter(session_id, write.agent_id),
                schema.create_agent_update(write.agent_id, write.create.agent),
            )
        )
        if write.create.leftovers_before is not None:
            before = write.create.leftovers_before - LEFTOVER_AGE
            ops.append(
                DeleteOp("messages", schema.leftover_messages_filter(session_id, write.agent_id, before))
            )
    messages = [] if message is None else [message] if isinstance(message, Mapping) else list(message)
    message_index = len(ops) if messages else None
    ops.extend(InsertOp("messages", document) for document in messages)
    message = messages[-1] if messages else None
    update: Mapping[str, Any] | None = None
    if write is not None and write.update is not None:
        update = write.update
    elif write is not None and (write.agent or write.totals or (message is None and lease is None)):
        update = schema.session_update(agent_id=write.agent_id, agent=write.agent, totals=write.totals)
    if update is not None:
        assert write is not None
        recreate = write.recreate
        if recreate is not None and write.create is None:
            update = schema.with_recreation(update, write.agent_id, recreate.session, recreate.agent)
        ops.append(UpdateOp("sessions", {"_id": session_id}, update, recreate is not None))
    if write is not None and write.turn_record is not None:
        message_id, metrics = write.turn_record
        ops.append(
            UpdateOp(
                "messages",
                schema.message_filter(session_id, write.agent_id, message_id),
                schema.turn_record_update(metrics),
            )
        )
    if write is not None:
        ops.extend(write.extra)
    if write is not None and lease is not None and lease.message_id is not None:
        ops.append(
            UpdateOp(
                "messages",
                schema.lease_messages_filter(session_id, write.agent_id, lease.message_id, lease.owner),
                schema.lease_release_update() if lease.release else schema.lease_renew_update(lease.until),
                many=True,
            )
        )
    ops.extend(rollup_ops(messages, write))
    return Plan(tuple(ops), message_index, len(messages))


def rollup_ops(messages: Sequence[Document], write: SessionWrite | None) -> list[Op]:
    """The ``$inc`` of the turn's hour rollup, riding on the write that stores its record.

    A turn's record is either on the message inserted now (``event_loop_metrics``) or attached
    to an earlier one (``turn_record``). The op comes after those writes in the ordered plan, so
    a plan stopped by a conflict (retried with another id) never counts a turn twice.
    """
    ops: list[Op] = []
    records: list[tuple[str, Mapping[str, Any]]] = []
    for message in messages:
        if message.get("event_loop_metrics") is not None:
            records.append((message["agent_id"], message["event_loop_metrics"]))
    if write is not None and write.turn_record is not None:
        records.append((write.agent_id, write.turn_record[1]))
    for agent_id, record in records:
        rollup = schema.rollup_update(agent_id, record)
        if rollup is not None:
            ops.append(UpdateOp("rollups", rollup[0], rollup[1], upsert=True))
    return ops


ClientModel = InsertOne[Any] | UpdateOne | UpdateMany | DeleteMany


def client_models(plan: Plan, namespaces: Mapping[str, str]) -> list[ClientModel]:
    """The plan as client-level ``bulk_write`` models (``namespaces``: target -> "db.collection")."""
    models: list[ClientModel] = []
    for op in plan.ops:
        namespace = namespaces[op.target]
        if isinstance(op, InsertOp):
            models.append(InsertOne(op.document, namespace=namespace))
        elif isinstance(op, DeleteOp):
            models.append(DeleteMany(op.filter, namespace=namespace))
        elif op.many:
            models.append(UpdateMany(op.filter, op.update, upsert=op.upsert, namespace=namespace))
        else:
            models.append(UpdateOne(op.filter, op.update, upsert=op.upsert, namespace=namespace))
    return models


# --- requests: one driver call each -------------------------------------------------------------


@dataclass(frozen=True)
class FindOne:
    target: Target
    filter: Mapping[str, Any]
    projection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Find:
    target: Target
    filter: Mapping[str, Any]
    sort: Sequence[tuple[str, int]] | None = None
    skip: int = 0
    limit: int = 0
    projection: Mapping[str, Any] | None = None
    max_time_ms: int | None = None  # a server-side bound on a scan (search)


@dataclass(frozen=True)
class Aggregate:
    target: Target
    pipeline: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Update:
    """``update_one``; answered with the matched count."""

    target: Target
    filter: Mapping[str, Any]
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    upsert: bool = False


@dataclass(frozen=True)
class FindAndUpdate:
    """``find_one_and_update`` returning the document after the update (projected)."""

    target: Target
    filter: Mapping[str, Any]
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    projection: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Delete:
    """``delete_many`` (or ``delete_one``); answered with the deleted count."""

    target: Target
    filter: Mapping[str, Any]
    many: bool = True


@dataclass(frozen=True)
class Count:
    target: Target
    filter: Mapping[str, Any]
    limit: int = 0


@dataclass(frozen=True)
class RunPlan:
    """Run a plan; answered with the index of the op that hit a unique index, or None."""

    plan: Plan


@dataclass(frozen=True)
class EnsureIndexes:
    """Create the package's indexes once per process (the shells keep the registry)."""


@dataclass(frozen=True)
class WriteArchive:
    """Write one session's export file into ``directory`` (local disk; off the loop in the async shell).

    Answered with the path written.
    """

    directory: Path
    session: Document
    messages: list[Document]


@dataclass(frozen=True)
class DeleteKeys:
    """Delete data keys by alt name from the key vault ``namespace`` ("db.collection"); answers the count."""

    namespace: str
    key_alt_names: tuple[str, ...]


@dataclass(frozen=True)
class ListIndexes:
    """``listIndexes`` of a collection; answered with the index documents (none if it is missing)."""

    target: Target


@dataclass(frozen=True)
class UploadFiles:
    """Write GridFS files (large content blocks) before the messages that reference them."""

    files: tuple[FileUpload, ...]


@dataclass(frozen=True)
class DownloadFiles:
    """Read GridFS files whole; answered with ``{file_id: bytes}`` (the shells run :func:`download_flow`)."""

    file_ids: tuple[Any, ...]


@dataclass(frozen=True)
class DeleteFiles:
    """Delete the GridFS files (and their chunks) of sessions; answered with the count of files.

    ``before``: only files uploaded before then (a session started afresh under an expired id
    keeps its own).
    """

    session_ids: tuple[str, ...]
    before: datetime | None = None


Request = (
    DeleteKeys
    | ListIndexes
    | UploadFiles
    | DownloadFiles
    | DeleteFiles
    | FindOne
    | Find
    | Aggregate
    | Update
    | FindAndUpdate
    | Delete
    | Count
    | RunPlan
    | EnsureIndexes
    | WriteArchive
)


@dataclass(frozen=True)
class Step:
    """A request with the operation it serves, for error messages."""

    request: Request
    operation: str = field(default="")


Flow = Generator[Step, Any, T]


def ask(request: Request, operation: str) -> Step:
    return Step(request, operation)


# --- flows ------------------------------------------------------------------------------------


def write_flow(
    session_id: str,
    agent_id: str,
    message: MessageWrite | None,
    write: SessionWrite | None,
    *,
    allocate_first: bool = False,
    large_content: LargeContent | None = None,
    ensure_indexes: bool = True,
) -> Flow[int | None]:
    """One message (or none) and the session change riding with it; returns the stored id."""
    ids = yield from batch_write_flow(
        session_id,
        agent_id,
        [] if message is None else [message],
        write,
        allocate_first=allocate_first,
        large_content=large_content,
        ensure_indexes=ensure_indexes,
    )
    return ids[0] if ids else None


def batch_write_flow(
    session_id: str,
    agent_id: str,
    messages: Sequence[MessageWrite],
    write: SessionWrite | None,
    *,
    allocate_first: bool = False,
    large_content: LargeContent | None = None,
    ensure_indexes: bool = True,
) -> Flow[list[int]]:
    """Insert with the ids Strands chose; on a conflict move past the stored tail and retry.

    The common case (one writer per agent) costs one round trip, however many messages. After a
    conflict, ids come from an atomic counter in the session document, so writers that collide
    get distinct ids; ``allocate_first`` keeps a writer that has seen contention on the counter
    from then on. Returns the ids the messages were stored under (also written back into each
    ``SessionMessage``), in order. ``ensure_indexes=False``: the caller knows they exist.
    """
    if ensure_indexes:
        yield ask(EnsureIndexes(), "create indexes")
    lease = None if write is None else write.lease
    taking = lease is not None and lease.take
    if not messages:
        plan = write_plan(session_id, None, write)
        for _ in range(2):  # an upsert may race another writer's: the retry matches
            if not plan.ops:
                break
            conflict = yield ask(RunPlan(plan), "update session")
            if conflict is None:
                break
            plan = Plan(plan.ops[conflict:], None, 0)  # what came before it is applied
        return []
    stored: list[int] = []
    waiting = list(messages)
    contents = yield from offload_flow(session_id, agent_id, waiting, large_content)
    first_id = waiting[0].session_message.message_id
    if allocate_first and lease is None:
        first_id = yield from _allocate(session_id, agent_id, floor=first_id - 1, count=len(waiting))
    elif allocate_first and lease is not None and taking:
        # Ids have gaps here (writers collided without the lease): a running turn may sit above
        # a free id, where no insert of ours would meet it. Look before taking.
        yield from _refuse_running_lease(session_id, agent_id, first_id, lease.owner)
    carried = None if lease is None else schema.lease_field(lease.owner, lease.until)
    for attempt in range(MAX_ID_ATTEMPTS):
        documents = []
        contents = contents[len(contents) - len(waiting) :]
        for offset, message in enumerate(waiting):
            message.session_message.message_id = first_id + offset
            contents[offset].message_id = first_id + offset
            documents.append(
                schema.message_document(
                    session_id,
                    agent_id,
                    contents[offset],
                    event_loop_metrics=message.event_loop_metrics,
                    incomplete_reason=message.incomplete_reason,
                    expires_at=message.expires_at,
                    mask=message.mask,
                    seal=message.seal,
                    idempotency_key=message.idempotency_key,
                    lease=carried,
                )
            )
        plan = write_plan(session_id, documents, write)
        conflict = yield ask(RunPlan(plan), "write message")
        if conflict is None:
            return stored + [first_id + offset for offset in range(len(waiting))]
        assert plan.message_index is not None
        if conflict < plan.message_index:
            continue  # the session upsert raced another first write; it exists now
        if conflict >= plan.message_index + len(documents):
            # Every message landed; an op after them lost a race (two writers recreating a
            # session document deleted under them, or two first turns of an hour creating its
            # rollup): the rest of the plan, once more.
            rest = Plan(plan.ops[conflict:], None, 0)
            if (yield ask(RunPlan(rest), "write message")) is not None:
                raise ConcurrentWriteError(
                    f"session_id=<{session_id}> | agent_id=<{agent_id}> | a write raced twice"
                )
            return stored + [first_id + offset for offset in range(len(waiting))]
        if taking and conflict == plan.message_index:
            # Nothing landed: another writer took this id. A turn of its own still running holds
            # the lease (wait for it); else only the window is stale (read it again).
            assert lease is not None
            yield from _refuse_running_lease(session_id, agent_id, first_id, lease.owner)
            raise StaleWindow()
        if taking:
            # The lease landed with the first message; the rest go after the stored tail.
            assert write is not None
            assert lease is not None
            write = replace(write, lease=replace(lease, take=False))
            taking = False
        landed = conflict - plan.message_index  # the inserts before the conflict are stored
        stored += [first_id + offset for offset in range(landed)]
        waiting = waiting[landed:]
        taken = first_id + landed
        tail = yield from _read_tail(session_id, agent_id, taken)
        # First retry: right after the tail, which keeps the order of writers taking turns. If
        # that loses too, a writer still inserting optimistically is racing for tail + 1 and wins
        # every time; skip a growing gap so it meets our id later and moves to the counter as well.
        gap = 0 if attempt == 0 else min(2**attempt, 64)
        first_id = yield from _allocate(session_id, agent_id, floor=tail + gap, count=len(waiting))
    raise ConcurrentWriteError(
        f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
        f"no free message id after {MAX_ID_ATTEMPTS} attempts"
    )


def offload_flow(
    session_id: str, agent_id: str, messages: Sequence[MessageWrite], policy: LargeContent | None
) -> Flow[list[SessionMessage]]:
    """What to store of each message: large blocks uploaded to GridFS and replaced by references.

    Messages without a large block (the common case) are returned as they are, at the cost of a
    scan; the caller's messages are never changed. Sealed (encrypted) messages stay whole: their
    content must not leave the ciphertext.
    """
    if policy is None:
        return [message.session_message for message in messages]
    contents: list[SessionMessage] = []
    uploads: list[FileUpload] = []
    for message in messages:
        original = message.session_message
        if message.seal is not None:
            contents.append(original)
            continue
        metadata = {"session_id": session_id, "agent_id": agent_id}
        content, found = offload(original.message, policy, metadata)
        redacted, more = (
            (None, [])
            if original.redact_message is None
            else offload(original.redact_message, policy, metadata)
        )
        if not found and not more:
            contents.append(original)
            continue
        uploads += found + more
        contents.append(
            SessionMessage(
                message=content,  # type: ignore[arg-type]
                message_id=original.message_id,
                redact_message=redacted,  # type: ignore[arg-type]
                created_at=original.created_at,
                updated_at=original.updated_at,
            )
        )
    if uploads:
        yield ask(UploadFiles(tuple(uploads)), "upload content")
    return contents


def restore_flow(documents: Sequence[Document]) -> Flow[list[Document]]:
    """Stored message documents with the bytes of their GridFS references put back.

    Documents without a reference cost a scan; those with some, one download request.
    """
    file_ids = document_references(documents)
    if not file_ids:
        return list(documents)
    files = yield ask(DownloadFiles(tuple(dict.fromkeys(file_ids))), "read content")
    return [dict(restore_document(document, files)) for document in documents]


def read_content_flow(documents: Sequence[Document], defer: bool) -> Flow[list[Document]]:
    """:func:`restore_flow`, or with ``defer`` no download: :class:`DeferredContent` in the bytes' place."""
    if defer:
        return [dict(defer_document(document)) for document in documents]
    restored = yield from restore_flow(documents)
    return restored


def hydrate_flow(messages: Sequence[Any]) -> Flow[int]:
    """Put the stored bytes in place of every :class:`DeferredContent` in ``messages`` (in place).

    All their files in one download request (the cache first, then two finds for the rest);
    returns how many blocks were filled (0 without a request when none is deferred).
    """
    file_ids = deferred_files(messages)
    if not file_ids:
        return 0
    files = yield ask(DownloadFiles(tuple(file_ids)), "read content")
    return fill_deferred(messages, files)


# What one chunks query of a download may bring (its answer is held until joined into files).
DOWNLOAD_BATCH_BYTES = 64 * 1024 * 1024


def download_flow(
    file_ids: Sequence[Any], cache: ContentCache | None, bucket: tuple[str, str], operation: str
) -> Flow[dict[Any, bytes]]:
    """The bytes of GridFS files: from ``cache`` where it holds them, the rest in few queries.

    One ``find`` of the file documents (length, chunk size), then one of all their chunks
    (``files_id $in``, sorted by ``(files_id, n)``) per :data:`DOWNLOAD_BATCH_BYTES` of content,
    instead of a stream per file; checked by :func:`assemble_files`. ``bucket``: (database,
    bucket name), the cache's key prefix; ``operation``: what the read is for, in errors.
    """
    keys = {file_id: (*bucket, file_id) for file_id in file_ids}
    cached = cache.get_many(keys.values()) if cache is not None else {}
    files = {file_id: cached[key] for file_id, key in keys.items() if key in cached}
    wanted = [file_id for file_id in keys if file_id not in files]
    if not wanted:
        return files
    documents = yield ask(Find("files", {"_id": {"$in": wanted}}, projection=FILE_PROJECTION), operation)
    downloaded: dict[Any, bytes] = {}
    for batch in download_batches(wanted, documents, DOWNLOAD_BATCH_BYTES):
        chunks = yield ask(
            Find("chunks", chunks_query(batch), sort=CHUNK_SORT, projection=CHUNK_PROJECTION), operation
        )
        downloaded |= assemble_files(batch, documents, chunks)
        del chunks  # before the next batch arrives
    if cache is not None:
        cache.put_many({keys[file_id]: data for file_id, data in downloaded.items()})
    return files | downloaded


def delete_files_flow(request: DeleteFiles, bucket: tuple[str, str], operation: str) -> Flow[int]:
    """Delete the GridFS files (chunks first) of ``request``'s sessions; returns the count of files.

    Their bytes leave every content cache of the process too (even when a delete fails midway).
    """
    found = yield ask(
        Find("files", files_filter(request.session_ids, request.before), projection={"_id": 1}), operation
    )
    ids = [document["_id"] for document in found]
    if not ids:
        return 0
    try:
        yield ask(Delete("chunks", {"files_id": {"$in": ids}}), operation)
        deleted: int = yield ask(Delete("files", {"_id": {"$in": ids}}), operation)
    finally:
        forget((*bucket, file_id) for file_id in ids)
    return deleted


SWEEP_BATCH = 500


def sweep_files_flow(uploaded_before: datetime) -> Flow[int]:
    """Delete GridFS files whose session is gone (the TTL monitor removed it); returns the count.

    Only files uploaded before ``uploaded_before``: a message's files are uploaded just before
    the write that may create its session, so a grace period keeps those of a first write.
    """
    deleted = 0
    after: Any = None
    while True:
        query: Document = {"uploadDate": {"$lt": uploaded_before}}
        if after is not None:
            query["_id"] = {"$gt": after}
        files = yield ask(
            Find("files", query, sort=[("_id", 1)], limit=SWEEP_BATCH, projection={"metadata.session_id": 1}),
            "sweep content files",
        )
        if not files:
            return deleted
        after = files[-1]["_id"]
        session_ids = sorted({str((file.get("metadata") or {}).get("session_id")) for file in files})
        found = yield ask(
            Find("sessions", {"_id": {"$in": session_ids}}, projection={"_id": 1}), "sweep content files"
        )
        gone = set(session_ids) - {str(document["_id"]) for document in found}
        if gone:
            deleted += yield ask(
                DeleteFiles(tuple(sorted(gone)), before=uploaded_before), "sweep content files"
            )


def open_lease_flow(session_id: str, agent_id: str, from_message_id: int) -> Flow[Mapping[str, Any] | None]:
    """The lease of a turn still open among the agent's messages from ``from_message_id`` on."""
    documents = yield ask(
        Find(
            "messages",
            schema.message_window_filter(session_id, agent_id, from_message_id),
            projection=schema.LEASE_PROJECTION,
            sort=schema.MESSAGE_SORT,
        ),
        "read turn lease",
    )
    return schema.open_turn_lease(documents)


def _refuse_running_lease(session_id: str, agent_id: str, from_message_id: int, owner: str) -> Flow[None]:
    """Raise :class:`LeaseHeld` if another writer's turn is running from ``from_message_id`` on."""
    held = yield from open_lease_flow(session_id, agent_id, from_message_id)
    if held is not None and schema.lease_running(held, owner):
        raise LeaseHeld(held["until"])


def find_turn_flow(
    session_id: str, agent_id: str, idempotency_key: str
) -> Flow[tuple[SessionMessage, ...] | None]:
    """The turn stored with ``idempotency_key``: its prompt and the messages up to the next prompt."""
    documents = yield ask(
        Find("messages", schema.turn_key_filter(session_id, agent_id, idempotency_key), limit=1),
        "find stored turn",
    )
    if not documents:
        return None
    documents = yield from restore_flow(documents)
    prompt = schema.message_from_document(documents[0])
    following = yield ask(
        Find(
            "messages",
            schema.message_window_filter(session_id, agent_id, prompt.message_id + 1),
            sort=schema.MESSAGE_SORT,
            limit=64,
        ),
        "find stored turn",
    )
    turn = [prompt]
    following = yield from restore_flow(following)
    for document in following:
        record = schema.message_from_document(document)
        if document.get("idempotency_key") is not None or _is_prompt(record.message):
            break
        turn.append(record)
    return tuple(turn)


def _is_prompt(message: Mapping[str, Any]) -> bool:
    content = message.get("content") or []
    return message.get("role") == "user" and not any("toolResult" in block for block in content)


def _read_tail(session_id: str, agent_id: str, from_message_id: int) -> Flow[int]:
    """The highest stored message id at or above ``from_message_id`` (a short index range)."""
    documents = yield ask(
        Find(
            "messages",
            schema.message_window_filter(session_id, agent_id, from_message_id),
            projection={"message_id": 1, "_id": 0},
        ),
        "read message ids",
    )
    return int(max((document["message_id"] for document in documents), default=from_message_id))


def _allocate(session_id: str, agent_id: str, floor: int, count: int = 1) -> Flow[int]:
    """The first of ``count`` free message ids above ``floor`` (one atomic update of the session)."""
    projection = {schema.agent_path(agent_id, "next_message_id"): 1}
    update = schema.allocate_message_id_update(agent_id, floor, count)
    document = yield ask(
        FindAndUpdate("sessions", {"_id": session_id}, update, projection),
        "allocate message id",
    )
    if document is None:  # SecantusDB may answer None under contention: read it back
        document = yield ask(FindOne("sessions", {"_id": session_id}, projection), "allocate message id")
    agent = ((document or {}).get("agents") or {}).get(agent_id) or {}
    if "next_message_id" not in agent:
        raise SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")
    logger.debug(
        "session_id=<%s> | agent_id=<%s> | ids up to <%s> taken, moved to <%s>",
        session_id,
        agent_id,
        floor,
        agent["next_message_id"],
    )
    return int(agent["next_message_id"]) - count + 1


@dataclass(frozen=True)
class SessionSnapshot:
    """A session document and, for one agent, its conversation window (what a resume needs)."""

    document: Document
    agent_id: str | None = None
    window: tuple[SessionMessage, ...] = ()
    lease: Mapping[str, Any] | None = None  # the lease of the agent's turn still open, if any


def load_flow(
    session_id: str,
    agent_id: str | None,
    messages_collection: str,
    *,
    join: bool = True,
    defer_large_content: bool = False,
) -> Flow[SessionSnapshot | None]:
    """The session document and the agent's window in one command, served by the unique index.

    The window starts at the conversation manager's ``removed_message_count``; the aggregate
    reads it from the session document itself. When ids have gaps (concurrent writers collided)
    the offset counts messages, not ids, and a second read skips them instead.
    ``defer_large_content``: GridFS bytes are not read; :class:`DeferredContent` stands in for them.
    """
    if agent_id is None:
        document = yield ask(FindOne("sessions", schema.live_session_filter(session_id)), "read session")
        return None if document is None else SessionSnapshot(document)
    found = None
    if join:
        pipeline = schema.resume_pipeline(session_id, agent_id, messages_collection)
        try:
            found = yield ask(Aggregate("sessions", pipeline), "resume session")
        except MessageTooLargeError:  # the document with its window exceeds one reply document
            found = None
    if found == []:
        return None
    if found:
        document = dict(found[0])
        window_documents = document.pop(schema.RESUME_WINDOW_FIELD, [])
    else:  # the window does not fit in one reply document: read it apart
        document = yield ask(FindOne("sessions", {"_id": session_id}), "read session")
        if document is None:
            return None
        window_documents = None
    if schema.is_expired(document):
        yield from purge_expired_flow(document)
        return None
    agent = (document.get("agents") or {}).get(agent_id)
    if agent is None:
        return SessionSnapshot(document, agent_id)
    if "next_message_id" in agent or window_documents is None:
        offset = schema.removed_message_count(agent)
        contiguous = "next_message_id" not in agent
        window = yield from list_messages_flow(
            session_id, agent_id, None, offset, contiguous, defer_large_content=defer_large_content
        )
        lease = None
        if window:
            lease = yield from open_lease_flow(session_id, agent_id, window[0].message_id)
        return SessionSnapshot(document, agent_id, tuple(window), lease)
    lease = schema.open_turn_lease(window_documents)
    window_documents = yield from read_content_flow(window_documents, defer_large_content)
    return SessionSnapshot(
        document, agent_id, tuple(schema.message_from_document(item) for item in window_documents), lease
    )


def purge_expired_flow(document: Mapping[str, Any]) -> Flow[None]:
    """Delete an expired session a reader came across, so its id can start afresh at once.

    The TTL monitor would delete it within about a minute; until then nothing reads it. The
    session goes first, matched as it was read (a session renewed meanwhile stays), then the
    messages that expire with it (never those of a new session under the same id).
    """
    found_at = schema.utcnow()
    deleted = yield ask(
        Delete("sessions", schema.expired_session_filter(document), many=False), "expire session"
    )
    if deleted:
        yield ask(Delete("messages", schema.expired_messages_filter(document)), "expire session")
        yield ask(DeleteFiles((str(document["_id"]),), before=found_at), "expire session")


def list_messages_flow(
    session_id: str,
    agent_id: str,
    limit: int | None,
    offset: int,
    contiguous: bool,
    *,
    check_session: bool = False,
    defer_large_content: bool = False,
) -> Flow[list[SessionMessage]]:
    """Messages in order, skipping ``offset``: an id range when ids are contiguous, else a skip.

    ``check_session``: first make sure the session exists and has not expired; messages of a
    missing or expired session are never returned (the TTL monitor deletes them later).
    """
    if check_session:
        live = yield ask(
            FindOne("sessions", schema.live_session_filter(session_id), {"_id": 1}), "list messages"
        )
        if live is None:
            return []
    if contiguous:
        query, skip = schema.message_window_filter(session_id, agent_id, offset), 0
    else:
        query, skip = schema.message_filter(session_id, agent_id), offset
    documents = yield ask(
        Find("messages", query, sort=schema.MESSAGE_SORT, skip=skip, limit=limit or 0), "list messages"
    )
    documents = yield from read_content_flow(documents, defer_large_content)
    return [schema.message_from_document(document) for document in documents]


def drive_sync(flow: Flow[T], execute: Any) -> T:
    """Run a flow with a blocking ``execute(step)``."""
    try:
        step = next(flow)
        while True:
            try:
                answer = execute(step)
            except BaseException as exc:  # let the flow decide (e.g. a window too large)
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(flow: Flow[T], execute: Any) -> T:
    """Run a flow with an awaitable ``execute(step)``."""
    try:
        step = next(flow)
        while True:
            try:
                answer = await execute(step)
            except BaseException as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
