"""MongoDBSessionRepository: the Strands ``SessionRepository`` on synchronous pymongo.

A thin I/O shell: every operation is a flow from :mod:`._repository_core` (documents from
:mod:`.schema`, multi-step writes from :mod:`._plans`); :meth:`_execute` is the only place that
calls the driver. ``MongoClient`` is thread-safe and not tied to an event loop, so the session
manager runs these methods on its I/O threads and never blocks the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import gridfs
from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from . import schema
from ._content_cache import DEFAULT_LARGE_CONTENT_CACHE_BYTES
from ._driver_errors import ClientBulkWriteUnsupported, DuplicateKey, translate_driver_errors
from ._export import write_archive
from ._fork import in_forked_child
from ._index_registry import indexes_ready, mark_indexes_ready
from ._large_content import DEFAULT_LARGE_CONTENT_THRESHOLD
from ._plans import (
    Aggregate,
    Count,
    Delete,
    DeleteFiles,
    DeleteKeys,
    DeleteOp,
    DownloadFiles,
    EnsureIndexes,
    Find,
    FindAndUpdate,
    FindOne,
    Flow,
    InsertOp,
    ListIndexes,
    MessageWrite,
    Plan,
    RunPlan,
    SessionSnapshot,
    SessionWrite,
    Step,
    Update,
    UploadFiles,
    WriteArchive,
    client_models,
    drive_sync,
)
from ._repository_core import RepositoryCore
from ._search import MessageMatch
from .config import StoreConfig
from .encryption import DEFAULT_KEY_VAULT_NAMESPACE
from .lifecycle import ErasureReceipt, PruneReport
from .pool import MongoDBConnectionPool

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

__all__ = ["MongoDBSessionRepository"]

Document = dict[str, Any]
T = TypeVar("T")

_indexes_lock = threading.Lock()


@in_forked_child
def _after_fork_in_child() -> None:
    # Held across the index round trips: a parent thread creating indexes at the fork leaves it locked.
    global _indexes_lock
    _indexes_lock = threading.Lock()


class MongoDBSessionRepository(RepositoryCore, SessionRepository):
    """Sessions, agents, messages and multi-agent state in two MongoDB collections.

    Pass ``connection_string`` (the process-wide pool hands out one client per URI and options)
    or an existing ``client``; either way the repository never closes a client it did not create.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = schema.DEFAULT_DATABASE_NAME,
        collection_name: str = schema.DEFAULT_COLLECTION_NAME,
        *,
        client: MongoClient[Document] | None = None,
        large_content_threshold: int = DEFAULT_LARGE_CONTENT_THRESHOLD,
        large_content_cache_bytes: int = DEFAULT_LARGE_CONTENT_CACHE_BYTES,
        **client_options: Any,
    ) -> None:
        config = StoreConfig(connection_string, client, database_name, collection_name, client_options)
        super().__init__(config, large_content_threshold, large_content_cache_bytes)
        if client is None:
            client = MongoDBConnectionPool.default().client(cast(str, connection_string), **client_options)
        self.client: MongoClient[Document] = client
        self.database: Database[Document] = client[database_name]
        self.collection: Collection[Document] = self.database[self.names.sessions]
        self.messages_collection: Collection[Document] = self.database[self.names.messages]
        self.rollups_collection: Collection[Document] = self.database[self.names.rollups]
        self.files_collection: Collection[Document] = self.database[f"{self.names.files}.files"]
        self.file_chunks_collection: Collection[Document] = self.database[self.names.file_chunks]
        self._files_bucket: gridfs.GridFSBucket | None = None
        # Checked on the type: clients like mongomock answer any attribute with a database.
        self._bulk_supported = callable(getattr(type(client), "bulk_write", None))

    @property
    def files_bucket(self) -> gridfs.GridFSBucket:
        """The GridFS bucket of large content, made on first use (only real pymongo databases)."""
        if self._files_bucket is None:
            self._files_bucket = gridfs.GridFSBucket(self.database, bucket_name=self.names.files)
        return self._files_bucket

    @classmethod
    def from_config(cls, config: StoreConfig) -> MongoDBSessionRepository:
        return cls(
            config.connection_string,
            config.database_name,
            config.collection_name,
            client=config.client,
            **config.client_options,
        )

    # --- set-up -----------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the indexes once per process per (client, database, collection); idempotent."""
        where = (self.client, self.database.name, self.names.sessions)
        if not indexes_ready(*where):
            with _indexes_lock:
                if not indexes_ready(*where):
                    self._create_indexes()
                    mark_indexes_ready(*where)
        self._indexes_ready = True

    def _create_indexes(self) -> None:
        with translate_driver_errors("create indexes"):
            self.collection.create_indexes(schema.index_models(schema.SESSION_INDEXES))
            self.messages_collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))
            self.rollups_collection.create_indexes(schema.index_models(schema.ROLLUP_INDEXES))
            self.files_collection.create_indexes(schema.index_models(schema.FILE_INDEXES))
            self.rollups_collection.update_one(*schema.rollup_coverage_update(schema.utcnow()), upsert=True)

    def close(self) -> None:
        """Nothing to release: clients belong to the pool or to whoever passed them in."""

    # --- sessions ---------------------------------------------------------------------------

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session document; creating an existing session is a no-op (race-free)."""
        return self._drive(self._create_session(session, kwargs.get("metadata"), kwargs.get("user_id")))

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        return self._drive(self._read_session(session_id))

    def claim_user(self, session_id: str, user_id: str) -> str | None:
        """Give a session stored without a user to ``user_id``; returns the user it belongs to now."""
        return self._drive(self._claim_user(session_id, user_id))

    def load_session_document(self, session_id: str) -> Document | None:
        """The whole session document (small and bounded by design), or None."""
        return self._drive(self._load_session_document(session_id))

    def load_session(
        self, session_id: str, agent_id: str | None = None, *, defer_large_content: bool = False
    ) -> SessionSnapshot | None:
        """The session document and ``agent_id``'s conversation window, in one round trip.

        ``defer_large_content``: GridFS bytes stay unread; a :class:`DeferredContent` stands in
        for each (:meth:`hydrate_messages` reads them later).
        """
        return self._drive(self._load_session(session_id, agent_id, defer_large_content))

    def hydrate_messages(self, messages: Sequence[Any]) -> int:
        """Replace every :class:`DeferredContent` in ``messages`` with its stored bytes, in place.

        One read for all of them (the content cache, then two finds); returns how many blocks were
        filled. A file gone from GridFS raises :class:`~.errors.MongoDBSessionError`.
        """
        return self._drive(self._hydrate_messages(messages))

    def delete_session(self, session_id: str, **kwargs: Any) -> bool:
        """Delete a session and all of its messages; False if there was no such session."""
        return self._drive(self._delete_session(session_id))

    def list_sessions(
        self,
        *,
        skip: int = 0,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """A page of session summaries, most recently active first (see ``schema.session_list_filter``)."""
        return self._drive(self._list_sessions(skip, limit, since, until, agent_id, metadata))

    # --- data lifecycle ---------------------------------------------------------------------

    def prune(
        self,
        older_than: timedelta,
        *,
        user_id: str | None = None,
        dry_run: bool = False,
        archive_to: str | Path | None = None,
    ) -> PruneReport:
        """Delete whole sessions idle for longer than ``older_than`` (of one user, when given).

        ``archive_to``: a directory; each session is written there first, as a ``sessions
        export`` file, and deleted only once its file is complete on disk. ``dry_run``: report,
        delete nothing.
        """
        return self._drive(self._prune(older_than, user_id, dry_run, archive_to))

    def erase_user(
        self, user_id: str, *, key_vault_namespace: str = DEFAULT_KEY_VAULT_NAMESPACE
    ) -> ErasureReceipt:
        """Delete every session of ``user_id``, all their messages and the user's data keys.

        The receipt counts what was removed. The keys are looked for in ``key_vault_namespace``
        on this repository's client (see :mod:`.encryption`).
        """
        return self._drive(self._erase_user(user_id, key_vault_namespace))

    def page_sessions(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> schema.SessionPage:
        """A page of ``user_id``'s sessions, most recently active first; pass ``next_cursor`` on.

        Keyset-paged over the ``{user_id: 1, updated_at: -1}`` index, so page 200 costs what page 1
        does (``list_sessions``' ``skip`` reads every skipped session).
        """
        return self._drive(self._page_sessions(user_id, limit, after, since, until, agent_id, metadata))

    def inline_files(self, documents: Sequence[Document]) -> list[Document]:
        """Stored message documents with their large content read back from GridFS (an export)."""
        return self._drive(self._inline_files(documents))

    def sweep_files(self, *, older_than: timedelta = timedelta(hours=1)) -> int:
        """Delete large content files whose session is gone (expired by the TTL monitor); the count.

        GridFS files have no TTL. Files uploaded less than ``older_than`` ago stay (a first write
        uploads its files just before it creates the session). Run it now and then, like ``prune``.
        """
        return self._drive(self._sweep_files(older_than))

    def offload_files(self, documents: Sequence[Document]) -> list[Document]:
        """Message documents to insert (an import): large content uploaded to GridFS, referenced."""
        return self._drive(self._offload_files(documents))

    def search_messages(
        self, text: str, *, user_id: str | None = None, limit: int = 20
    ) -> list[MessageMatch]:
        """Messages whose text contains ``text``, newest first, with the sessions they are in.

        Only ``user_id``'s sessions when given (its 1,000 most recently active); a ``$text``
        index on the messages is used when there is one, else a bounded case-insensitive scan.
        Encrypted messages never match (see :mod:`._search`).
        """
        return self._drive(self._search_messages(text, user_id, limit))

    # --- agents -----------------------------------------------------------------------------

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self._drive(self._create_agent(session_id, session_agent))

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        return self._drive(self._read_agent(session_id, agent_id))

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        self.write_session_update(session_id, agent=session_agent)

    # --- messages ---------------------------------------------------------------------------

    def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        self.write_message(session_id, agent_id, session_message)

    def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        return self._drive(self._read_message(session_id, agent_id, message_id))

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        self._drive(
            self._update_message(
                session_id, agent_id, session_message, kwargs.get("mask", ()), kwargs.get("seal")
            )
        )

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """Messages in order, skipping ``offset``.

        With ``contiguous=True`` (ids 0..n-1, the case unless concurrent writers collided) the
        offset becomes a range on the unique index, so a resume reads only its window.
        """
        contiguous = bool(kwargs.get("contiguous"))
        return self._drive(self._list_messages(session_id, agent_id, limit, offset, contiguous))

    def find_turn(
        self, session_id: str, agent_id: str, idempotency_key: str
    ) -> tuple[SessionMessage, ...] | None:
        """The turn a prompt stored with ``idempotency_key`` started: the prompt, then its replies."""
        return self._drive(self._find_turn(session_id, agent_id, idempotency_key))

    def open_turn_lease(
        self, session_id: str, agent_id: str, from_message_id: int
    ) -> Mapping[str, Any] | None:
        """The lease of the agent's turn still open among its messages from ``from_message_id`` on."""
        return self._drive(self._open_turn_lease(session_id, agent_id, from_message_id))

    # --- the hot path: one round trip per message -------------------------------------------

    def write(
        self,
        session_id: str,
        agent_id: str,
        message: MessageWrite | None = None,
        session: SessionWrite | None = None,
        *,
        allocate_first: bool = False,
    ) -> int | None:
        """One message and/or one change of the session document, in one round trip.

        Returns the id the message was stored under (None without a message).
        """
        return self._drive(self._write(session_id, agent_id, message, session, allocate_first))

    def append(
        self,
        session_id: str,
        agent_id: str,
        messages: Sequence[MessageWrite],
        session: SessionWrite | None = None,
        *,
        allocate_first: bool = False,
    ) -> list[int]:
        """Several messages (and one change of the session document) in one round trip; their ids."""
        return self._drive(self._append(session_id, agent_id, messages, session, allocate_first))

    def write_message(
        self,
        session_id: str,
        agent_id: str,
        session_message: SessionMessage,
        *,
        session_update: Mapping[str, Any] | None = None,
        event_loop_metrics: Mapping[str, Any] | None = None,
        incomplete_reason: str | None = None,
        allocate_first: bool = False,
    ) -> int:
        """Insert a message (plus an optional prepared session-document update); return its stored id."""
        flow = self._write_message(
            session_id,
            agent_id,
            session_message,
            event_loop_metrics,
            incomplete_reason,
            allocate_first,
            session_update,
        )
        return self._drive(flow)

    def write_session_update(
        self,
        session_id: str,
        *,
        agent: SessionAgent | None = None,
        totals: Mapping[str, int | float] | None = None,
        agent_id: str | None = None,
        turn_record: tuple[int, Mapping[str, Any]] | None = None,
    ) -> None:
        """Persist agent state, a turn's totals and its metrics record, in one round trip."""
        self._drive(self._write_session_update(session_id, agent, totals, agent_id, turn_record))

    # --- multi-agent ------------------------------------------------------------------------

    def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        self._drive(self._write_multi_agent(session_id, multi_agent, create=True))

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        return self._drive(self._read_multi_agent(session_id, multi_agent_id))

    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        self._drive(self._write_multi_agent(session_id, multi_agent, create=False))

    # --- I/O shell ----------------------------------------------------------------------------

    def _drive(self, flow: Flow[T]) -> T:
        return drive_sync(flow, self._execute)

    def _execute(self, step: Step) -> Any:
        request = step.request
        if isinstance(request, RunPlan):
            return self._run_plan(request.plan, step.operation)
        if isinstance(request, EnsureIndexes):
            return self.ensure_indexes()
        if isinstance(request, DeleteKeys):
            vault_database, _, vault_collection = request.namespace.partition(".")
            vault = self.client[vault_database][vault_collection]
            with translate_driver_errors(step.operation):
                deleted = vault.delete_many({"keyAltNames": {"$in": list(request.key_alt_names)}})
            return deleted.deleted_count
        if isinstance(request, WriteArchive):
            return write_archive(request.directory, request.session, request.messages)
        if isinstance(request, DownloadFiles | DeleteFiles):
            return self._drive(self._files_flow(request, step.operation))
        if isinstance(request, UploadFiles):
            with translate_driver_errors(step.operation):
                return self._upload(request)
        collection = self._collection_for(request.target)
        with translate_driver_errors(step.operation):
            if isinstance(request, FindOne):
                return collection.find_one(request.filter, request.projection)
            if isinstance(request, Find):
                bound = {} if request.max_time_ms is None else {"max_time_ms": request.max_time_ms}
                cursor = collection.find(
                    request.filter,
                    request.projection,
                    sort=request.sort,
                    skip=request.skip,
                    limit=request.limit,
                    **bound,
                )
                return list(cursor)
            if isinstance(request, ListIndexes):
                return list(collection.list_indexes())
            if isinstance(request, Aggregate):
                return list(collection.aggregate(list(request.pipeline)))
            if isinstance(request, Update):
                return collection.update_one(
                    request.filter, request.update, upsert=request.upsert
                ).matched_count
            if isinstance(request, FindAndUpdate):
                return collection.find_one_and_update(
                    request.filter,
                    request.update,
                    projection=request.projection,
                    return_document=ReturnDocument.AFTER,
                )
            if isinstance(request, Delete):
                if request.many:
                    return collection.delete_many(request.filter).deleted_count
                return collection.delete_one(request.filter).deleted_count
            if isinstance(request, Count):
                if request.limit:
                    return collection.count_documents(request.filter, limit=request.limit)
                return collection.count_documents(request.filter)
        raise TypeError(f"unknown request {request!r}")  # pragma: no cover

    def _upload(self, request: UploadFiles) -> None:
        """Write GridFS files of large content blocks (see :mod:`._large_content`)."""
        for upload in request.files:
            self.files_bucket.upload_from_stream_with_id(
                upload.file_id, str(upload.file_id), upload.data, metadata=dict(upload.metadata)
            )
        self._uploaded(request)

    def _run_plan(self, plan: Plan, operation: str) -> int | None:
        """One round trip with client-level bulkWrite when possible, else one per operation.

        Returns the index of the write that hit a unique index, or None when all applied.
        """
        if self._bulk_supported and len(plan.ops) > 1:
            try:
                with translate_driver_errors(operation):
                    self.client.bulk_write(client_models(plan, self.namespaces), ordered=True)
                return None
            except DuplicateKey as conflict:
                return conflict.index if conflict.index is not None else 0
            except ClientBulkWriteUnsupported:
                self._bulk_supported = False
        for index, op in enumerate(plan.ops):
            collection = self._collection_for(op.target)
            try:
                with translate_driver_errors(operation):
                    if isinstance(op, InsertOp):
                        collection.insert_one(op.document)
                    elif isinstance(op, DeleteOp):
                        collection.delete_many(op.filter)
                    elif op.many:
                        collection.update_many(op.filter, op.update, upsert=op.upsert)
                    else:
                        collection.update_one(op.filter, op.update, upsert=op.upsert)
            except DuplicateKey:
                return index
        return None

    def _collection_for(self, target: str) -> Collection[Document]:
        if target == "rollups":
            return self.rollups_collection
        if target == "files":
            return self.files_collection
        if target == "chunks":
            return self.file_chunks_collection
        return self.collection if target == "sessions" else self.messages_collection
