"""MongoDBSessionRepository: the Strands ``SessionRepository`` on synchronous pymongo.

A thin I/O shell: every filter, update and document comes from :mod:`.schema`, every multi-step
write from :mod:`._plans`. ``MongoClient`` is thread-safe and not tied to an event loop, so the
session manager runs these methods on worker threads and never blocks the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pymongo import MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from strands.session.session_repository import SessionRepository
from strands.types.session import Session, SessionAgent, SessionMessage

from . import schema
from ._driver_errors import ClientBulkWriteUnsupported, DuplicateKey, translate_driver_errors
from ._index_registry import indexes_ready, mark_indexes_ready
from ._plans import (
    Allocate,
    Flow,
    InsertOp,
    Plan,
    ReadTail,
    allocate_projection,
    allocated_message_id,
    checked_insert_message_flow,
    client_models,
    session_update_plan,
)
from ._validation import validate_agent_id, validate_message_id, validate_session_id
from .errors import SessionNotFoundError
from .metrics_query import MetricsQuery, SessionMetrics
from .pool import MongoDBConnectionPool, check_client_arguments

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

__all__ = ["MongoDBSessionRepository"]

logger = logging.getLogger(__name__)

Document = dict[str, Any]

_indexes_lock = threading.Lock()


class MongoDBSessionRepository(SessionRepository):
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
        **client_options: Any,
    ) -> None:
        check_client_arguments(connection_string, client, client_options)
        if client is None:
            client = MongoDBConnectionPool.default().client(cast(str, connection_string), **client_options)
        self.client: MongoClient[Document] = client
        self.database: Database[Document] = client[database_name]
        self.names = schema.CollectionNames.for_base(collection_name)
        self.collection: Collection[Document] = self.database[self.names.sessions]
        self.messages_collection: Collection[Document] = self.database[self.names.messages]
        # Checked on the type: clients like mongomock answer any attribute with a database.
        self._bulk_supported = callable(getattr(type(client), "bulk_write", None))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(database_name={self.database.name!r}, "
            f"collection_name={self.names.sessions!r})"
        )

    # --- set-up -----------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create the indexes once per process per (client, database, collection); idempotent."""
        where = (self.client, self.database.name, self.names.sessions)
        if indexes_ready(*where):
            return
        with _indexes_lock:
            if indexes_ready(*where):
                return
            with translate_driver_errors("create indexes"):
                self.collection.create_indexes(schema.index_models(schema.SESSION_INDEXES))
                self.messages_collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))
            mark_indexes_ready(*where)

    def close(self) -> None:
        """Nothing to release: clients belong to the pool or to whoever passed them in."""

    # --- sessions ---------------------------------------------------------------------------

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session document; creating an existing session is a no-op (race-free)."""
        validate_session_id(session.session_id)
        self.ensure_indexes()
        document = schema.session_document(session, metadata=kwargs.get("metadata"))
        try:
            with translate_driver_errors("create session"):
                self.collection.update_one(
                    {"_id": session.session_id}, schema.create_session_update(document), upsert=True
                )
        except DuplicateKey:  # two first requests raced on the upsert: the other one created it
            pass
        return session

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        document = self.load_session_document(session_id)
        return None if document is None else schema.session_from_document(document)

    def load_session_document(self, session_id: str) -> Document | None:
        """The whole session document (small and bounded by design), or None."""
        validate_session_id(session_id)
        with translate_driver_errors("read session"):
            return self.collection.find_one({"_id": session_id})

    def delete_session(self, session_id: str, **kwargs: Any) -> bool:
        """Delete a session and all of its messages; False if there was no such session."""
        validate_session_id(session_id)
        with translate_driver_errors("delete session"):
            self.messages_collection.delete_many({"session_id": session_id})
            return self.collection.delete_one({"_id": session_id}).deleted_count == 1

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
        query = schema.session_list_filter(since=since, until=until, agent_id=agent_id, metadata=metadata)
        skip, limit = schema.page(skip, limit)
        with translate_driver_errors("list sessions"):
            cursor = self.collection.find(query, sort=schema.SESSION_LIST_SORT, skip=skip, limit=limit)
            return [schema.session_summary(document) for document in cursor]

    # --- agents -----------------------------------------------------------------------------

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        validate_session_id(session_id)
        validate_agent_id(session_agent.agent_id)
        with translate_driver_errors("create agent"):
            result = self.collection.update_one(
                schema.create_agent_filter(session_id, session_agent.agent_id),
                schema.create_agent_update(session_agent),
            )
            if (
                result.matched_count == 0
                and self.collection.count_documents({"_id": session_id}, limit=1) == 0
            ):
                raise SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        validate_agent_id(agent_id)
        document = self.load_session_document(session_id)
        return schema.agent_in_session(document, agent_id)

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
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        validate_message_id(message_id)
        with translate_driver_errors("read message"):
            document = self.messages_collection.find_one(
                schema.message_filter(session_id, agent_id, message_id)
            )
        return None if document is None else schema.message_from_document(document)

    def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        with translate_driver_errors("update message"):
            result = self.messages_collection.update_one(
                schema.message_filter(session_id, agent_id, session_message.message_id),
                schema.update_message_update(session_message),
            )
        if result.matched_count == 0:
            raise SessionNotFoundError(
                f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
                f"message_id=<{session_message.message_id}> | message does not exist"
            )

    def list_messages(
        self,
        session_id: str,
        agent_id: str,
        limit: int | None = None,
        offset: int = 0,
        **kwargs: Any,
    ) -> list[SessionMessage]:
        """Messages in order, skipping ``offset``.

        With ``contiguous=True`` (ids 0..n-1, the case unless concurrent writers collided) the
        offset becomes a range on the unique index, so a resume reads only its window.
        """
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        if kwargs.get("contiguous"):
            query, skip = schema.message_window_filter(session_id, agent_id, offset), 0
        else:
            query, skip = schema.message_filter(session_id, agent_id), offset
        with translate_driver_errors("list messages"):
            cursor = self.messages_collection.find(
                query, sort=schema.MESSAGE_SORT, skip=skip, limit=limit or 0
            )
            return [schema.message_from_document(document) for document in cursor]

    # --- the hot path: one round trip per message -------------------------------------------

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
        """Insert a message (plus an optional session-document update) and return its stored id."""
        flow = checked_insert_message_flow(
            session_id,
            agent_id,
            session_message,
            session_update=session_update,
            event_loop_metrics=event_loop_metrics,
            incomplete_reason=incomplete_reason,
            allocate_first=allocate_first,
        )
        self.ensure_indexes()
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
        validate_session_id(session_id)
        agent_id = agent_id or (agent.agent_id if agent else None)
        if agent_id is not None:
            validate_agent_id(agent_id)
        plan = session_update_plan(
            session_id, agent=agent, totals=totals, agent_id=agent_id, turn_record=turn_record
        )
        self._run_plan(plan, "update session")

    # --- metrics ----------------------------------------------------------------------------

    def get_session_metrics(self, session_id: str, *, skip: int = 0, limit: int = 50) -> SessionMetrics:
        """A session's totals, per-agent totals and one page of its turns (see :class:`MetricsQuery`)."""
        return MetricsQuery(self).session_metrics(session_id, skip=skip, limit=limit)

    # --- multi-agent ------------------------------------------------------------------------

    def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        self._write_multi_agent(session_id, multi_agent, create=True)

    def read_multi_agent(self, session_id: str, multi_agent_id: str, **kwargs: Any) -> dict[str, Any] | None:
        validate_agent_id(multi_agent_id)
        document = self.load_session_document(session_id) or {}
        entry = (document.get("multi_agents") or {}).get(multi_agent_id)
        return None if entry is None else dict(entry.get("state") or {})

    def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        self._write_multi_agent(session_id, multi_agent, create=False)

    def _write_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, *, create: bool) -> None:
        validate_session_id(session_id)
        validate_agent_id(multi_agent.id)
        update = schema.multi_agent_update(multi_agent.id, multi_agent.serialize_state(), create=create)
        with translate_driver_errors("write multi-agent state"):
            result = self.collection.update_one({"_id": session_id}, update)
        if result.matched_count == 0:
            raise SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")

    # --- I/O shell ----------------------------------------------------------------------------

    def _drive(self, flow: Flow) -> int:
        step = next(flow)
        while True:
            try:
                if isinstance(step, Plan):
                    step = flow.send(self._try_plan(step))
                elif isinstance(step, ReadTail):
                    step = flow.send(self._read_tail(step))
                else:
                    step = flow.send(self._allocate(step))
            except StopIteration as done:
                return int(done.value)

    def _try_plan(self, plan: Plan) -> bool:
        try:
            self._run_plan(plan, "write message")
        except DuplicateKey:
            return False
        return True

    def _read_tail(self, request: ReadTail) -> int:
        with translate_driver_errors("read message ids"):
            ids = [
                doc["message_id"]
                for doc in self.messages_collection.find(request.filter, {"message_id": 1, "_id": 0})
            ]
        return int(max(ids, default=request.from_message_id))

    def _allocate(self, request: Allocate) -> int:
        projection = allocate_projection(request)
        with translate_driver_errors("allocate message id"):
            document = self.collection.find_one_and_update(
                {"_id": request.session_id},
                request.update,
                projection=projection,
                return_document=ReturnDocument.AFTER,
            )
            if document is None:
                document = self.collection.find_one({"_id": request.session_id}, projection)
        return allocated_message_id(request, document)

    def _run_plan(self, plan: Plan, operation: str) -> None:
        """One round trip with client-level bulkWrite when possible, else one per operation."""
        if self._bulk_supported and len(plan.ops) > 1:
            try:
                with translate_driver_errors(operation):
                    self.client.bulk_write(
                        client_models(plan, self.names.namespaces(self.database.name)), ordered=True
                    )
                return
            except ClientBulkWriteUnsupported:
                self._bulk_supported = False
        with translate_driver_errors(operation):
            for op in plan.ops:
                collection = self._collection_for(op.target)
                if isinstance(op, InsertOp):
                    collection.insert_one(op.document)
                else:
                    collection.update_one(op.filter, op.update, upsert=op.upsert)

    def _collection_for(self, target: str) -> Collection[Document]:
        return self.collection if target == "sessions" else self.messages_collection
