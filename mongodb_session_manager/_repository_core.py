"""What the sync and the async repository share: configuration, validation and every operation.

Each public repository operation is a method here that checks its input (before any I/O) and
returns a flow (:mod:`._plans`). The two shells, :mod:`.repository` and
:mod:`.async_repository`, only drive flows: their methods are one line each, and their single
``_execute`` turns a request into a driver call. So the sync and the async repository accept
the same input, raise the same errors and write the same documents by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strands.types.session import Session, SessionAgent, SessionMessage

from . import schema
from ._content_cache import DEFAULT_LARGE_CONTENT_CACHE_BYTES, ContentCache, shared_cache
from ._driver_errors import DuplicateKey
from ._large_content import (
    DEFAULT_LARGE_CONTENT_THRESHOLD,
    LargeContent,
    offload_document,
    validate_threshold,
)
from ._lifecycle import erase_user_flow, prune_flow, validate_older_than
from ._plans import (
    Count,
    Delete,
    DeleteFiles,
    DownloadFiles,
    EnsureIndexes,
    Find,
    FindOne,
    Flow,
    MessageWrite,
    SessionSnapshot,
    SessionWrite,
    Update,
    UploadFiles,
    ask,
    batch_write_flow,
    delete_files_flow,
    download_flow,
    find_turn_flow,
    hydrate_flow,
    list_messages_flow,
    load_flow,
    offload_flow,
    open_lease_flow,
    restore_flow,
    sweep_files_flow,
    write_flow,
)
from ._search import MessageMatch, search_flow, text_index_flow, validate_search
from ._storable import check_metadata, check_storable
from ._validation import (
    validate_agent_id,
    validate_idempotency_key,
    validate_message_id,
    validate_session_id,
    validate_user_id,
)
from .config import StoreConfig
from .errors import InvalidSessionInputError, SessionNotFoundError
from .lifecycle import ErasureReceipt, PruneReport

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

Document = dict[str, Any]


def _not_found(session_id: str) -> SessionNotFoundError:
    return SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")


class RepositoryCore:
    """Configuration and the operations, as flows; subclasses add the I/O."""

    def __init__(
        self,
        config: StoreConfig,
        large_content_threshold: int = DEFAULT_LARGE_CONTENT_THRESHOLD,
        large_content_cache_bytes: int = DEFAULT_LARGE_CONTENT_CACHE_BYTES,
    ) -> None:
        self.config = config
        self.names = config.names
        # Binary blocks above the threshold go to the GridFS bucket ``<collection>_files``.
        self._text_index: bool | None = None  # a $text index on the messages: looked up once
        self.large_content = LargeContent(self.names.files, validate_threshold(large_content_threshold))
        # Their bytes, kept in the process's cache of this bound (None: off), see _content_cache.
        self.large_content_cache: ContentCache | None = shared_cache(large_content_cache_bytes)
        # Client-level bulkWrite (MongoDB 8): assumed until the server says otherwise.
        self._bulk_supported = True
        # ``$lookup`` with ``let``/``pipeline`` (a resume in one command); mongomock lacks it.
        self._joins_supported = not type(config.client).__module__.startswith("mongomock")
        # Set by the shells once the indexes are known to exist: writes then skip asking.
        self._indexes_ready = False
        self._namespaces = self.names.namespaces(config.database_name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(database_name={self.config.database_name!r}, "
            f"collection_name={self.names.sessions!r})"
        )

    @property
    def namespaces(self) -> dict[str, str]:
        return self._namespaces

    @property
    def large_content_cache_bytes(self) -> int:
        """The bound of :attr:`large_content_cache` in bytes (0: no cache)."""
        return 0 if self.large_content_cache is None else self.large_content_cache.max_bytes

    # --- large content files (the shells upload; reads and deletes are flows) ------------------

    def _files_flow(self, request: DownloadFiles | DeleteFiles, operation: str) -> Flow[Any]:
        """How the shells answer a download or a delete of GridFS files: plain finds and deletes."""
        bucket = (self.config.database_name, self.names.files)
        if isinstance(request, DownloadFiles):
            return download_flow(request.file_ids, self.large_content_cache, bucket, operation)
        return delete_files_flow(request, bucket, operation)

    def _uploaded(self, request: UploadFiles) -> None:
        """Keep the bytes just uploaded in the cache: the next resume of the session reads them."""
        if self.large_content_cache is not None:
            bucket = (self.config.database_name, self.names.files)
            self.large_content_cache.put_many(
                {(*bucket, upload.file_id): upload.data for upload in request.files}
            )

    # --- sessions ---------------------------------------------------------------------------

    def _create_session(
        self, session: Session, metadata: Mapping[str, Any] | None, user_id: str | None = None
    ) -> Flow[Session]:
        validate_session_id(session.session_id)
        check_metadata(metadata)
        if user_id is not None:
            validate_user_id(user_id)
        document = schema.session_document(session, metadata=metadata, user_id=user_id)

        def flow() -> Flow[Session]:
            yield from _ensure_indexes()
            for _ in range(2):  # two first requests may race on the upsert: the retry matches
                try:
                    yield ask(
                        Update(
                            "sessions",
                            {"_id": session.session_id},
                            schema.create_session_update(document),
                            True,
                        ),
                        "create session",
                    )
                    break
                except DuplicateKey:
                    continue
            return session

        return flow()

    def _load_session_document(self, session_id: str) -> Flow[Document | None]:
        validate_session_id(session_id)

        def flow() -> Flow[Document | None]:
            document: Document | None = yield ask(
                FindOne("sessions", schema.live_session_filter(session_id)), "read session"
            )
            return document

        return flow()

    def _claim_user(self, session_id: str, user_id: str) -> Flow[str | None]:
        validate_session_id(session_id)
        validate_user_id(user_id)

        def flow() -> Flow[str | None]:
            yield ask(
                Update(
                    "sessions", schema.unclaimed_session_filter(session_id), schema.claim_user_update(user_id)
                ),
                "assign user",
            )
            document = yield ask(FindOne("sessions", {"_id": session_id}, {"user_id": 1}), "assign user")
            return None if document is None else document.get("user_id")

        return flow()

    def _read_session(self, session_id: str) -> Flow[Session | None]:
        loading = self._load_session_document(session_id)

        def flow() -> Flow[Session | None]:
            document = yield from loading
            return None if document is None else schema.session_from_document(document)

        return flow()

    def _load_session(
        self, session_id: str, agent_id: str | None, defer_large_content: bool = False
    ) -> Flow[SessionSnapshot | None]:
        validate_session_id(session_id)
        if agent_id is not None:
            validate_agent_id(agent_id)
        return load_flow(
            session_id,
            agent_id,
            self.names.messages,
            join=self._joins_supported,
            defer_large_content=bool(defer_large_content),
        )

    def _delete_session(self, session_id: str) -> Flow[bool]:
        validate_session_id(session_id)

        def flow() -> Flow[bool]:
            yield ask(Delete("messages", {"session_id": session_id}), "delete session")
            deleted = yield ask(Delete("sessions", {"_id": session_id}, many=False), "delete session")
            yield ask(DeleteFiles((session_id,)), "delete session")
            return bool(deleted == 1)

        return flow()

    def _list_sessions(
        self,
        skip: int,
        limit: int,
        since: datetime | None,
        until: datetime | None,
        agent_id: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Flow[list[dict[str, Any]]]:
        query = schema.session_list_filter(since=since, until=until, agent_id=agent_id, metadata=metadata)
        query = schema.live(query)
        skip, limit = schema.page(skip, limit)

        def flow() -> Flow[list[dict[str, Any]]]:
            documents = yield ask(
                Find("sessions", query, sort=schema.SESSION_LIST_SORT, skip=skip, limit=limit),
                "list sessions",
            )
            return [schema.session_summary(document) for document in documents]

        return flow()

    def _prune(
        self, older_than: timedelta, user_id: str | None, dry_run: bool, archive_to: str | Path | None
    ) -> Flow[PruneReport]:
        validate_older_than(older_than)
        if user_id is not None:
            validate_user_id(user_id)
        if not isinstance(dry_run, bool):
            raise InvalidSessionInputError(f"dry_run must be a bool, got {dry_run!r}")
        directory = None if archive_to is None else Path(archive_to)
        if directory is not None and directory.exists() and not directory.is_dir():
            raise InvalidSessionInputError(f"archive_to must be a directory: {directory}")
        return prune_flow(schema.utcnow() - older_than, user_id, dry_run=dry_run, archive_to=directory)

    def _erase_user(self, user_id: str, key_vault_namespace: str) -> Flow[ErasureReceipt]:
        database, _, collection = str(key_vault_namespace).partition(".")
        if not database or not collection:
            raise InvalidSessionInputError(
                f"key_vault_namespace must be 'database.collection', got {key_vault_namespace!r}"
            )
        return erase_user_flow(validate_user_id(user_id), key_vault_namespace)

    def _page_sessions(
        self,
        user_id: str | None,
        limit: int,
        after: str | None,
        since: datetime | None,
        until: datetime | None,
        agent_id: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Flow[schema.SessionPage]:
        """A keyset page: ``limit + 1`` sessions from where the cursor ended, newest first."""
        _, limit = schema.page(0, limit)
        cursor = None if after is None else schema.PageCursor.decode(after)
        query = schema.session_page_filter(
            user_id=user_id, after=cursor, since=since, until=until, agent_id=agent_id, metadata=metadata
        )

        def flow() -> Flow[schema.SessionPage]:
            documents = yield ask(
                Find("sessions", query, sort=schema.SESSION_PAGE_SORT, limit=limit + 1), "page sessions"
            )
            return schema.SessionPage(
                [schema.session_summary(document) for document in documents[:limit]],
                schema.next_page_cursor(documents, cursor, limit),
            )

        return flow()

    # --- search -----------------------------------------------------------------------------

    def _search_messages(self, text: str, user_id: str | None, limit: int) -> Flow[list[MessageMatch]]:
        text, user_id, limit = validate_search(text, user_id, limit)

        def flow() -> Flow[list[MessageMatch]]:
            if self._text_index is None:
                self._text_index = yield from text_index_flow()
            matches = yield from search_flow(text, user_id, limit, self._text_index)
            return matches

        return flow()

    # --- large content (export and import) -----------------------------------------------

    def _inline_files(self, documents: Sequence[Document]) -> Flow[list[Document]]:
        """Stored message documents with their GridFS content back in place (an export)."""
        return restore_flow(list(documents))

    def _hydrate_messages(self, messages: Sequence[Any]) -> Flow[int]:
        """The bytes of the deferred large content in ``messages`` put back (see :func:`hydrate_flow`)."""
        if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
            raise InvalidSessionInputError(
                f"messages must be a list of messages, got {type(messages).__name__}"
            )
        return hydrate_flow(messages)

    def _sweep_files(self, older_than: timedelta) -> Flow[int]:
        validate_older_than(older_than)
        return sweep_files_flow(schema.utcnow() - older_than)

    def _offload_files(self, documents: Sequence[Document]) -> Flow[list[Document]]:
        """Message documents to insert (an import), their large blocks uploaded to GridFS first."""
        policy = self.large_content

        def flow() -> Flow[list[Document]]:
            stored: list[Document] = []
            uploads = []
            for document in documents:
                replaced, found = offload_document(document, policy)
                stored.append(dict(replaced))
                uploads += found
            if uploads:
                yield ask(UploadFiles(tuple(uploads)), "upload content")
            return stored

        return flow()

    # --- agents -----------------------------------------------------------------------------

    def _create_agent(self, session_id: str, session_agent: SessionAgent) -> Flow[None]:
        validate_session_id(session_id)
        agent_id = validate_agent_id(session_agent.agent_id)
        entry = schema.agent_document(session_agent)
        check_storable(entry, "agent")

        def flow() -> Flow[None]:
            matched = yield ask(
                Update(
                    "sessions",
                    schema.create_agent_filter(session_id, agent_id),
                    schema.create_agent_update(agent_id, entry),
                ),
                "create agent",
            )
            if (
                matched == 0
                and (yield ask(Count("sessions", {"_id": session_id}, limit=1), "create agent")) == 0
            ):
                raise _not_found(session_id)

        return flow()

    def _read_agent(self, session_id: str, agent_id: str) -> Flow[SessionAgent | None]:
        validate_agent_id(agent_id)
        loading = self._load_session_document(session_id)

        def flow() -> Flow[SessionAgent | None]:
            document = yield from loading
            return schema.agent_in_session(document, agent_id)

        return flow()

    # --- messages ---------------------------------------------------------------------------

    def _read_message(self, session_id: str, agent_id: str, message_id: int) -> Flow[SessionMessage | None]:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        validate_message_id(message_id)

        def flow() -> Flow[SessionMessage | None]:
            live = yield ask(
                FindOne("sessions", schema.live_session_filter(session_id), {"_id": 1}), "read message"
            )
            if live is None:
                return None
            document = yield ask(
                FindOne("messages", schema.message_filter(session_id, agent_id, message_id)), "read message"
            )
            if document is None:
                return None
            restored = yield from restore_flow([document])
            return schema.message_from_document(restored[0])

        return flow()

    def _update_message(
        self,
        session_id: str,
        agent_id: str,
        session_message: SessionMessage,
        mask: Sequence[Callable[[str], str]] = (),
        seal: Callable[[Any], Any] | None = None,
    ) -> Flow[None]:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        validate_message_id(session_message.message_id)
        _check_message(session_message)

        def flow() -> Flow[None]:
            rewrite = MessageWrite(session_message, seal=seal)
            stored = yield from offload_flow(session_id, agent_id, [rewrite], self.large_content)
            matched = yield ask(
                Update(
                    "messages",
                    schema.message_filter(session_id, agent_id, session_message.message_id),
                    schema.update_message_update(stored[0], mask, seal),
                ),
                "update message",
            )
            if matched == 0:
                raise SessionNotFoundError(
                    f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
                    f"message_id=<{session_message.message_id}> | message does not exist"
                )

        return flow()

    def _list_messages(
        self, session_id: str, agent_id: str, limit: int | None, offset: int, contiguous: bool
    ) -> Flow[list[SessionMessage]]:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidSessionInputError(f"offset must be a non-negative int, got {offset!r}")
        return list_messages_flow(session_id, agent_id, limit, offset, contiguous, check_session=True)

    # --- the hot path -----------------------------------------------------------------------

    def _write(
        self,
        session_id: str,
        agent_id: str,
        message: MessageWrite | None,
        write: SessionWrite | None,
        allocate_first: bool,
    ) -> Flow[int | None]:
        _check_writes(session_id, agent_id, [] if message is None else [message], write)
        return write_flow(
            session_id,
            agent_id,
            message,
            write,
            allocate_first=allocate_first,
            large_content=self.large_content,
            ensure_indexes=not self._indexes_ready,
        )

    def _append(
        self,
        session_id: str,
        agent_id: str,
        messages: Sequence[MessageWrite],
        write: SessionWrite | None,
        allocate_first: bool,
    ) -> Flow[list[int]]:
        _check_writes(session_id, agent_id, messages, write)
        return batch_write_flow(
            session_id,
            agent_id,
            messages,
            write,
            allocate_first=allocate_first,
            large_content=self.large_content,
            ensure_indexes=not self._indexes_ready,
        )

    def _find_turn(
        self, session_id: str, agent_id: str, idempotency_key: str
    ) -> Flow[tuple[SessionMessage, ...] | None]:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        validate_idempotency_key(idempotency_key)
        return find_turn_flow(session_id, agent_id, idempotency_key)

    def _open_turn_lease(
        self, session_id: str, agent_id: str, from_message_id: int
    ) -> Flow[Mapping[str, Any] | None]:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        return open_lease_flow(session_id, agent_id, from_message_id)

    def _write_message(
        self,
        session_id: str,
        agent_id: str,
        session_message: SessionMessage,
        event_loop_metrics: Mapping[str, Any] | None,
        incomplete_reason: str | None,
        allocate_first: bool,
        session_update: Mapping[str, Any] | None,
    ) -> Flow[int]:
        message = MessageWrite(session_message, event_loop_metrics, incomplete_reason)
        write = None if session_update is None else SessionWrite(agent_id, update=session_update)
        writing = self._write(session_id, agent_id, message, write, allocate_first)

        def flow() -> Flow[int]:
            message_id = yield from writing
            assert message_id is not None
            return message_id

        return flow()

    def _write_session_update(
        self,
        session_id: str,
        agent: SessionAgent | None,
        totals: Mapping[str, int | float] | None,
        agent_id: str | None,
        turn_record: tuple[int, Mapping[str, Any]] | None,
    ) -> Flow[None]:
        validate_session_id(session_id)
        agent_id = agent_id or (agent.agent_id if agent else None)
        if agent_id is None:
            if totals or turn_record:
                raise InvalidSessionInputError("totals and turn records need the agent_id they belong to")
            touch = {"$set": {"updated_at": schema.utcnow()}}

            def touch_flow() -> Flow[None]:
                yield ask(Update("sessions", {"_id": session_id}, touch), "update session")

            return touch_flow()
        state = None if agent is None else schema.agent_state(agent)
        writing = self._write(
            session_id, agent_id, None, SessionWrite(agent_id, state, totals, turn_record), False
        )

        def flow() -> Flow[None]:
            yield from writing

        return flow()

    # --- multi-agent ------------------------------------------------------------------------

    def _read_multi_agent(self, session_id: str, multi_agent_id: str) -> Flow[dict[str, Any] | None]:
        validate_agent_id(multi_agent_id)
        loading = self._load_session_document(session_id)

        def flow() -> Flow[dict[str, Any] | None]:
            document = (yield from loading) or {}
            entry = (document.get("multi_agents") or {}).get(multi_agent_id)
            return None if entry is None else dict(entry.get("state") or {})

        return flow()

    def _write_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, *, create: bool) -> Flow[None]:
        validate_session_id(session_id)
        validate_agent_id(multi_agent.id)
        state = multi_agent.serialize_state()
        check_storable(state, "multi_agent_state")
        update = schema.multi_agent_update(multi_agent.id, state, create=create)

        def flow() -> Flow[None]:
            matched = yield ask(Update("sessions", {"_id": session_id}, update), "write multi-agent state")
            if matched == 0:
                raise _not_found(session_id)

        return flow()


def _check_writes(
    session_id: str, agent_id: str, messages: Sequence[MessageWrite], write: SessionWrite | None
) -> None:
    """Everything a write would store, checked before any I/O (ids, BSON-storable content)."""
    validate_session_id(session_id)
    validate_agent_id(agent_id)
    for message in messages:
        validate_message_id(message.session_message.message_id)
        _check_message(message.session_message)
        if message.event_loop_metrics is not None:
            check_storable(message.event_loop_metrics, "event_loop_metrics")
    if write is not None and write.agent_id != agent_id:
        raise InvalidSessionInputError("a session write belongs to the agent it is written for")
    if write is not None:
        _check_session_write(write)


def _check_message(session_message: SessionMessage) -> None:
    """A message and its redacted form must round-trip through BSON (see :mod:`._storable`)."""
    check_storable(session_message.message, "message")
    if session_message.redact_message is not None:
        check_storable(session_message.redact_message, "redact_message")


def _check_session_write(write: SessionWrite) -> None:
    """What a write puts in the session document: agent state, metrics, a new session and agent."""
    if write.agent:
        check_storable(write.agent, "agent")
    if write.turn_record is not None:
        check_storable(write.turn_record[1], "event_loop_metrics")
    if write.create is not None:
        check_metadata(write.create.session.get("metadata"))
        check_storable(write.create.agent, "agent")


def _ensure_indexes() -> Flow[None]:
    yield ask(EnsureIndexes(), "create indexes")
