"""AsyncMongoDBSessionRepository: the same sessions, on pymongo's ``AsyncMongoClient`` (or motor).

For code that lives on an event loop (FastAPI endpoints, metrics, streaming). Every operation
is the same flow the sync repository drives (:mod:`._repository_core`); only :meth:`_execute`
differs, awaiting the driver. So both accept the same input, raise the same errors and write
identical documents.

``AsyncMongoClient`` binds to the loop it is first used on, so a client this repository creates
is made lazily, on first use: constructing the repository at import time is fine.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gridfs
import pymongo
from pymongo import AsyncMongoClient, ReturnDocument
from strands.types.session import Session, SessionAgent, SessionMessage

from . import schema
from ._content_cache import DEFAULT_LARGE_CONTENT_CACHE_BYTES
from ._driver_errors import ClientBulkWriteUnsupported, DuplicateKey, translate_driver_errors
from ._export import write_archive
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
    drive_async,
)
from ._repository_core import RepositoryCore
from ._search import MessageMatch
from .config import StoreConfig
from .encryption import DEFAULT_KEY_VAULT_NAMESPACE
from .lifecycle import ErasureReceipt, PruneReport
from .pool import CLOSE_TIMEOUT, DRIVER_INFO

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

__all__ = ["AsyncMongoDBSessionRepository"]

Document = dict[str, Any]
T = TypeVar("T")


class AsyncMongoDBSessionRepository(RepositoryCore):
    """Sessions, agents, messages and multi-agent state, with awaitable methods.

    Pass ``connection_string`` (a client tagged with this package's ``DriverInfo`` is created on
    first use and closed by :meth:`close`) or a ``client``: an ``AsyncMongoClient``, a motor
    ``AsyncIOMotorClient`` or a mongomock-motor client, which stays yours to close.
    """

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = schema.DEFAULT_DATABASE_NAME,
        collection_name: str = schema.DEFAULT_COLLECTION_NAME,
        *,
        client: Any = None,
        large_content_threshold: int = DEFAULT_LARGE_CONTENT_THRESHOLD,
        large_content_cache_bytes: int = DEFAULT_LARGE_CONTENT_CACHE_BYTES,
        **client_options: Any,
    ) -> None:
        super().__init__(
            StoreConfig(connection_string, client, database_name, collection_name, client_options),
            large_content_threshold,
            large_content_cache_bytes,
        )
        self._client: Any = client
        # Client-level bulkWrite: AsyncMongoClient and motor define it on the class (motor's
        # ``__getattr__`` would hand back a database for any other name); mongomock does not.
        self._bulk_supported = client is None or callable(getattr(type(client), "bulk_write", None))

    # --- the client and its collections (typed Any: pymongo async and motor differ) -----------

    @property
    def client(self) -> Any:
        """The client; one made from ``connection_string`` is created here, on first use."""
        if self._client is None:
            options = {"driver": DRIVER_INFO, **self.config.client_options}
            with translate_driver_errors("create client"):  # a malformed URI or an unknown option
                self._client = AsyncMongoClient[Document](self.config.connection_string, **options)
        return self._client

    @property
    def database(self) -> Any:
        return self.client[self.config.database_name]

    @property
    def collection(self) -> Any:
        return self.database[self.names.sessions]

    @property
    def messages_collection(self) -> Any:
        return self.database[self.names.messages]

    @property
    def rollups_collection(self) -> Any:
        return self.database[self.names.rollups]

    @property
    def files_collection(self) -> Any:
        return self.database[f"{self.names.files}.files"]

    @property
    def file_chunks_collection(self) -> Any:
        return self.database[self.names.file_chunks]

    @property
    def files_bucket(self) -> Any:
        """The GridFS bucket of large content: pymongo's ``AsyncGridFSBucket`` (motor's with motor)."""
        database = self.database
        if type(database).__module__.startswith("motor"):
            from motor.motor_asyncio import AsyncIOMotorGridFSBucket

            return AsyncIOMotorGridFSBucket(database, bucket_name=self.names.files)
        return gridfs.AsyncGridFSBucket(database, bucket_name=self.names.files)

    # --- set-up -----------------------------------------------------------------------------

    async def ensure_indexes(self) -> None:
        """Create the indexes once per process per (client, database, collection); idempotent."""
        where = (self.client, self.config.database_name, self.names.sessions)
        if not indexes_ready(*where):
            with translate_driver_errors("create indexes"):
                await self.collection.create_indexes(schema.index_models(schema.SESSION_INDEXES))
                await self.messages_collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))
                await self.rollups_collection.create_indexes(schema.index_models(schema.ROLLUP_INDEXES))
                await self.files_collection.create_indexes(schema.index_models(schema.FILE_INDEXES))
                await self.rollups_collection.update_one(
                    *schema.rollup_coverage_update(schema.utcnow()), upsert=True
                )
            mark_indexes_ready(*where)
        self._indexes_ready = True  # writes skip asking from now on

    async def close(self) -> None:
        """Close the client if this repository created it; a client passed in stays open."""
        if not self.config.borrowed and self._client is not None:
            client, self._client = self._client, None
            with pymongo.timeout(CLOSE_TIMEOUT):  # ending sessions must not wait for a server gone
                await client.close()

    async def __aenter__(self) -> AsyncMongoDBSessionRepository:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session document; creating an existing session is a no-op (race-free)."""
        return await self._drive(self._create_session(session, kwargs.get("metadata"), kwargs.get("user_id")))

    async def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        return await self._drive(self._read_session(session_id))

    async def claim_user(self, session_id: str, user_id: str) -> str | None:
        """Give a session stored without a user to ``user_id``; returns the user it belongs to now."""
        return await self._drive(self._claim_user(session_id, user_id))

    async def load_session_document(self, session_id: str) -> Document | None:
        """The whole session document (small and bounded by design), or None."""
        return await self._drive(self._load_session_document(session_id))

    async def load_session(
        self, session_id: str, agent_id: str | None = None, *, defer_large_content: bool = False
    ) -> SessionSnapshot | None:
        """The session document and ``agent_id``'s conversation window, in one round trip.

        ``defer_large_content``: GridFS bytes stay unread; a :class:`DeferredContent` stands in
        for each (:meth:`hydrate_messages` reads them later).
        """
        return await self._drive(self._load_session(session_id, agent_id, defer_large_content))

    async def hydrate_messages(self, messages: Sequence[Any]) -> int:
        """Replace every :class:`DeferredContent` in ``messages`` with its stored bytes, in place.

        One read for all of them (the content cache, then two finds); returns how many blocks were
        filled. A file gone from GridFS raises :class:`~.errors.MongoDBSessionError`.
        """
        return await self._drive(self._hydrate_messages(messages))

    async def delete_session(self, session_id: str, **kwargs: Any) -> bool:
        """Delete a session and all of its messages; False if there was no such session."""
        return await self._drive(self._delete_session(session_id))

    async def list_sessions(
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
        return await self._drive(self._list_sessions(skip, limit, since, until, agent_id, metadata))

    # --- data lifecycle ---------------------------------------------------------------------

    async def prune(
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
        return await self._drive(self._prune(older_than, user_id, dry_run, archive_to))

    async def erase_user(
        self, user_id: str, *, key_vault_namespace: str = DEFAULT_KEY_VAULT_NAMESPACE
    ) -> ErasureReceipt:
        """Delete every session of ``user_id``, all their messages and the user's data keys.

        The receipt counts what was removed. The keys are looked for in ``key_vault_namespace``
        on this repository's client (see :mod:`.encryption`).
        """
        return await self._drive(self._erase_user(user_id, key_vault_namespace))

    async def page_sessions(
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
        return await self._drive(self._page_sessions(user_id, limit, after, since, until, agent_id, metadata))

    async def inline_files(self, documents: Sequence[Document]) -> list[Document]:
        """Stored message documents with their large content read back from GridFS (an export)."""
        return await self._drive(self._inline_files(documents))

    async def sweep_files(self, *, older_than: timedelta = timedelta(hours=1)) -> int:
        """Delete large content files whose session is gone (expired by the TTL monitor); the count.

        GridFS files have no TTL. Files uploaded less than ``older_than`` ago stay (a first write
        uploads its files just before it creates the session). Run it now and then, like ``prune``.
        """
        return await self._drive(self._sweep_files(older_than))

    async def offload_files(self, documents: Sequence[Document]) -> list[Document]:
        """Message documents to insert (an import): large content uploaded to GridFS, referenced."""
        return await self._drive(self._offload_files(documents))

    async def search_messages(
        self, text: str, *, user_id: str | None = None, limit: int = 20
    ) -> list[MessageMatch]:
        """Messages whose text contains ``text``, newest first, with the sessions they are in.

        Only ``user_id``'s sessions when given (its 1,000 most recently active); a ``$text``
        index on the messages is used when there is one, else a bounded case-insensitive scan.
        Encrypted messages never match (see :mod:`._search`).
        """
        return await self._drive(self._search_messages(text, user_id, limit))

    # --- agents -----------------------------------------------------------------------------

    async def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        await self._drive(self._create_agent(session_id, session_agent))

    async def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        return await self._drive(self._read_agent(session_id, agent_id))

    async def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        await self.write_session_update(session_id, agent=session_agent)

    # --- messages ---------------------------------------------------------------------------

    async def create_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        await self.write_message(session_id, agent_id, session_message)

    async def read_message(
        self, session_id: str, agent_id: str, message_id: int, **kwargs: Any
    ) -> SessionMessage | None:
        return await self._drive(self._read_message(session_id, agent_id, message_id))

    async def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        await self._drive(
            self._update_message(
                session_id, agent_id, session_message, kwargs.get("mask", ()), kwargs.get("seal")
            )
        )

    async def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        """Messages in order, skipping ``offset`` (``contiguous=True``: an id range, see the sync twin)."""
        contiguous = bool(kwargs.get("contiguous"))
        return await self._drive(self._list_messages(session_id, agent_id, limit, offset, contiguous))

    async def find_turn(
        self, session_id: str, agent_id: str, idempotency_key: str
    ) -> tuple[SessionMessage, ...] | None:
        """The turn a prompt stored with ``idempotency_key`` started: the prompt, then its replies."""
        return await self._drive(self._find_turn(session_id, agent_id, idempotency_key))

    async def open_turn_lease(
        self, session_id: str, agent_id: str, from_message_id: int
    ) -> Mapping[str, Any] | None:
        """The lease of the agent's turn still open among its messages from ``from_message_id`` on."""
        return await self._drive(self._open_turn_lease(session_id, agent_id, from_message_id))

    # --- the hot path -------------------------------------------------------------------------

    async def write(
        self,
        session_id: str,
        agent_id: str,
        message: MessageWrite | None = None,
        session: SessionWrite | None = None,
        *,
        allocate_first: bool = False,
    ) -> int | None:
        """One message and/or one change of the session document, in one round trip."""
        return await self._drive(self._write(session_id, agent_id, message, session, allocate_first))

    async def append(
        self,
        session_id: str,
        agent_id: str,
        messages: Sequence[MessageWrite],
        session: SessionWrite | None = None,
        *,
        allocate_first: bool = False,
    ) -> list[int]:
        """Several messages (and one change of the session document) in one round trip; their ids."""
        return await self._drive(self._append(session_id, agent_id, messages, session, allocate_first))

    async def write_message(
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
        return await self._drive(flow)

    async def write_session_update(
        self,
        session_id: str,
        *,
        agent: SessionAgent | None = None,
        totals: Mapping[str, int | float] | None = None,
        agent_id: str | None = None,
        turn_record: tuple[int, Mapping[str, Any]] | None = None,
    ) -> None:
        """Persist agent state, a turn's totals and its metrics record, in one round trip."""
        await self._drive(self._write_session_update(session_id, agent, totals, agent_id, turn_record))

    # --- multi-agent ------------------------------------------------------------------------

    async def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        await self._drive(self._write_multi_agent(session_id, multi_agent, create=True))

    async def read_multi_agent(
        self, session_id: str, multi_agent_id: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        return await self._drive(self._read_multi_agent(session_id, multi_agent_id))

    async def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        await self._drive(self._write_multi_agent(session_id, multi_agent, create=False))

    # --- I/O shell ----------------------------------------------------------------------------

    async def _drive(self, flow: Flow[T]) -> T:
        return await drive_async(flow, self._execute)

    async def _execute(self, step: Step) -> Any:
        request = step.request
        if isinstance(request, RunPlan):
            return await self._run_plan(request.plan, step.operation)
        if isinstance(request, EnsureIndexes):
            return await self.ensure_indexes()
        if isinstance(request, DeleteKeys):
            vault_database, _, vault_collection = request.namespace.partition(".")
            vault = self.client[vault_database][vault_collection]
            with translate_driver_errors(step.operation):
                deleted = await vault.delete_many({"keyAltNames": {"$in": list(request.key_alt_names)}})
            return deleted.deleted_count
        if isinstance(request, DownloadFiles | DeleteFiles):
            return await self._drive(self._files_flow(request, step.operation))
        if isinstance(request, UploadFiles):
            with translate_driver_errors(step.operation):
                return await self._upload(request)
        if isinstance(request, WriteArchive):  # local disk: never on the event loop's thread
            return await asyncio.to_thread(
                write_archive, request.directory, request.session, request.messages
            )
        collection = self._collection_for(request.target)
        with translate_driver_errors(step.operation):
            if isinstance(request, FindOne):
                return await collection.find_one(request.filter, request.projection)
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
                return await cursor.to_list(length=None)
            if isinstance(request, ListIndexes):
                cursor = collection.list_indexes()
                if inspect.isawaitable(cursor):  # pymongo's async API; motor returns the cursor
                    cursor = await cursor
                return await cursor.to_list(None)
            if isinstance(request, Aggregate):
                cursor = collection.aggregate(list(request.pipeline))
                if inspect.isawaitable(cursor):  # pymongo's async API; motor returns the cursor
                    cursor = await cursor
                return await cursor.to_list(None)
            if isinstance(request, Update):
                result = await collection.update_one(request.filter, request.update, upsert=request.upsert)
                return result.matched_count
            if isinstance(request, FindAndUpdate):
                return await collection.find_one_and_update(
                    request.filter,
                    request.update,
                    projection=request.projection,
                    return_document=ReturnDocument.AFTER,
                )
            if isinstance(request, Delete):
                result = await (collection.delete_many if request.many else collection.delete_one)(
                    request.filter
                )
                return result.deleted_count
            if isinstance(request, Count):
                options = {"limit": request.limit} if request.limit else {}
                return await collection.count_documents(request.filter, **options)
        raise TypeError(f"unknown request {request!r}")  # pragma: no cover

    async def _upload(self, request: UploadFiles) -> None:
        """Write GridFS files of large content blocks (see :mod:`._large_content`)."""
        bucket = self.files_bucket
        for upload in request.files:
            await bucket.upload_from_stream_with_id(
                upload.file_id, str(upload.file_id), upload.data, metadata=dict(upload.metadata)
            )
        self._uploaded(request)

    async def _run_plan(self, plan: Plan, operation: str) -> int | None:
        """One round trip with client-level bulkWrite when possible, else one per operation."""
        if self._bulk_supported and len(plan.ops) > 1:
            try:
                with translate_driver_errors(operation):
                    await self.client.bulk_write(client_models(plan, self.namespaces), ordered=True)
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
                        await collection.insert_one(op.document)
                    elif isinstance(op, DeleteOp):
                        await collection.delete_many(op.filter)
                    elif op.many:
                        await collection.update_many(op.filter, op.update, upsert=op.upsert)
                    else:
                        await collection.update_one(op.filter, op.update, upsert=op.upsert)
            except DuplicateKey:
                return index
        return None

    def _collection_for(self, target: str) -> Any:
        if target == "rollups":
            return self.rollups_collection
        if target == "files":
            return self.files_collection
        if target == "chunks":
            return self.file_chunks_collection
        return self.collection if target == "sessions" else self.messages_collection
