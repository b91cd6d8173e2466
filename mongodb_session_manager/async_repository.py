"""AsyncMongoDBSessionRepository: the same sessions, on pymongo's ``AsyncMongoClient`` (or motor).

For code that lives on an event loop (FastAPI endpoints, metrics, streaming). It is the async
twin of :class:`~.repository.MongoDBSessionRepository`: every filter, update and document comes
from :mod:`.schema`, every multi-step write from :mod:`._plans`, so both write identical
documents and each method here is only the awaited driver call.

``AsyncMongoClient`` binds to the loop it is first used on, so a client this repository creates
is made lazily, on first use: constructing the repository at import time is fine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import AsyncMongoClient, ReturnDocument
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
from .metrics_query import AsyncMetricsQuery, SessionMetrics
from .pool import DRIVER_INFO, check_client_arguments

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase

__all__ = ["AsyncMongoDBSessionRepository"]

logger = logging.getLogger(__name__)

Document = dict[str, Any]


class AsyncMongoDBSessionRepository:
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
        **client_options: Any,
    ) -> None:
        check_client_arguments(connection_string, client, client_options)
        self._connection_string = connection_string
        self._client_options = client_options
        self._client: Any = client
        self._owns_client = client is None
        self._database_name = database_name
        self.names = schema.CollectionNames.for_base(collection_name)
        # Client-level bulkWrite: AsyncMongoClient and motor define it on the class (motor's
        # ``__getattr__`` would hand back a database for any other name); mongomock does not.
        self._bulk_supported = client is None or callable(getattr(type(client), "bulk_write", None))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(database_name={self._database_name!r}, "
            f"collection_name={self.names.sessions!r})"
        )

    # --- the client and its collections (typed Any: pymongo async and motor differ) -----------

    @property
    def client(self) -> Any:
        """The client; one made from ``connection_string`` is created here, on first use."""
        if self._client is None:
            options = {"driver": DRIVER_INFO, **self._client_options}
            with translate_driver_errors("create client"):  # a malformed URI or an unknown option
                self._client = AsyncMongoClient[Document](self._connection_string, **options)
        return self._client

    @property
    def database(self) -> Any:
        return self.client[self._database_name]

    @property
    def collection(self) -> Any:
        return self.database[self.names.sessions]

    @property
    def messages_collection(self) -> Any:
        return self.database[self.names.messages]

    # --- set-up -----------------------------------------------------------------------------

    async def ensure_indexes(self) -> None:
        """Create the indexes once per process per (client, database, collection); idempotent."""
        where = (self.client, self._database_name, self.names.sessions)
        if indexes_ready(*where):
            return
        with translate_driver_errors("create indexes"):
            await self.collection.create_indexes(schema.index_models(schema.SESSION_INDEXES))
            await self.messages_collection.create_indexes(schema.index_models(schema.MESSAGE_INDEXES))
        mark_indexes_ready(*where)

    async def close(self) -> None:
        """Close the client if this repository created it; a client passed in stays open."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> AsyncMongoDBSessionRepository:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- sessions ---------------------------------------------------------------------------

    async def create_session(self, session: Session, **kwargs: Any) -> Session:
        """Create the session document; creating an existing session is a no-op (race-free)."""
        validate_session_id(session.session_id)
        await self.ensure_indexes()
        document = schema.session_document(session, metadata=kwargs.get("metadata"))
        try:
            with translate_driver_errors("create session"):
                await self.collection.update_one(
                    {"_id": session.session_id}, schema.create_session_update(document), upsert=True
                )
        except DuplicateKey:  # two first requests raced on the upsert: the other one created it
            pass
        return session

    async def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        document = await self.load_session_document(session_id)
        return None if document is None else schema.session_from_document(document)

    async def load_session_document(self, session_id: str) -> Document | None:
        """The whole session document (small and bounded by design), or None."""
        validate_session_id(session_id)
        with translate_driver_errors("read session"):
            document: Document | None = await self.collection.find_one({"_id": session_id})
        return document

    async def delete_session(self, session_id: str, **kwargs: Any) -> bool:
        """Delete a session and all of its messages; False if there was no such session."""
        validate_session_id(session_id)
        with translate_driver_errors("delete session"):
            await self.messages_collection.delete_many({"session_id": session_id})
            result = await self.collection.delete_one({"_id": session_id})
        return bool(result.deleted_count == 1)

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
        query = schema.session_list_filter(since=since, until=until, agent_id=agent_id, metadata=metadata)
        skip, limit = schema.page(skip, limit)
        with translate_driver_errors("list sessions"):
            cursor = self.collection.find(query, sort=schema.SESSION_LIST_SORT, skip=skip, limit=limit)
            documents = await cursor.to_list(length=None)
        return [schema.session_summary(document) for document in documents]

    # --- agents -----------------------------------------------------------------------------

    async def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        validate_session_id(session_id)
        validate_agent_id(session_agent.agent_id)
        with translate_driver_errors("create agent"):
            result = await self.collection.update_one(
                schema.create_agent_filter(session_id, session_agent.agent_id),
                schema.create_agent_update(session_agent),
            )
            if result.matched_count == 0 and not await self.collection.count_documents(
                {"_id": session_id}, limit=1
            ):
                raise SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")

    async def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        validate_agent_id(agent_id)
        document = await self.load_session_document(session_id)
        return schema.agent_in_session(document, agent_id)

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
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        validate_message_id(message_id)
        with translate_driver_errors("read message"):
            document = await self.messages_collection.find_one(
                schema.message_filter(session_id, agent_id, message_id)
            )
        return None if document is None else schema.message_from_document(document)

    async def update_message(
        self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any
    ) -> None:
        validate_session_id(session_id)
        validate_agent_id(agent_id)
        with translate_driver_errors("update message"):
            result = await self.messages_collection.update_one(
                schema.message_filter(session_id, agent_id, session_message.message_id),
                schema.update_message_update(session_message),
            )
        if result.matched_count == 0:
            raise SessionNotFoundError(
                f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
                f"message_id=<{session_message.message_id}> | message does not exist"
            )

    async def list_messages(
        self,
        session_id: str,
        agent_id: str,
        limit: int | None = None,
        offset: int = 0,
        **kwargs: Any,
    ) -> list[SessionMessage]:
        """Messages in order, skipping ``offset`` (a range on the index with ``contiguous=True``)."""
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
            documents = await cursor.to_list(length=None)
        return [schema.message_from_document(document) for document in documents]

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
        await self.ensure_indexes()
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
        validate_session_id(session_id)
        agent_id = agent_id or (agent.agent_id if agent else None)
        if agent_id is not None:
            validate_agent_id(agent_id)
        plan = session_update_plan(
            session_id, agent=agent, totals=totals, agent_id=agent_id, turn_record=turn_record
        )
        await self._run_plan(plan, "update session")

    # --- multi-agent ------------------------------------------------------------------------

    async def create_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        await self._write_multi_agent(session_id, multi_agent, create=True)

    async def read_multi_agent(
        self, session_id: str, multi_agent_id: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        validate_agent_id(multi_agent_id)
        document = await self.load_session_document(session_id) or {}
        entry = (document.get("multi_agents") or {}).get(multi_agent_id)
        return None if entry is None else dict(entry.get("state") or {})

    async def update_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, **kwargs: Any) -> None:
        await self._write_multi_agent(session_id, multi_agent, create=False)

    async def _write_multi_agent(self, session_id: str, multi_agent: MultiAgentBase, *, create: bool) -> None:
        validate_session_id(session_id)
        validate_agent_id(multi_agent.id)
        update = schema.multi_agent_update(multi_agent.id, multi_agent.serialize_state(), create=create)
        with translate_driver_errors("write multi-agent state"):
            result = await self.collection.update_one({"_id": session_id}, update)
        if result.matched_count == 0:
            raise SessionNotFoundError(f"session_id=<{session_id}> | session does not exist")

    # --- metrics ----------------------------------------------------------------------------

    async def get_session_metrics(self, session_id: str, *, skip: int = 0, limit: int = 50) -> SessionMetrics:
        """A page of the session's turns with their totals (``AsyncMetricsQuery.session_metrics``)."""
        return await AsyncMetricsQuery(self).session_metrics(session_id, skip=skip, limit=limit)

    # --- I/O shell ----------------------------------------------------------------------------

    async def _drive(self, flow: Flow) -> int:
        step = next(flow)
        while True:
            try:
                if isinstance(step, Plan):
                    step = flow.send(await self._try_plan(step))
                elif isinstance(step, ReadTail):
                    step = flow.send(await self._read_tail(step))
                else:
                    step = flow.send(await self._allocate(step))
            except StopIteration as done:
                return int(done.value)

    async def _try_plan(self, plan: Plan) -> bool:
        try:
            await self._run_plan(plan, "write message")
        except DuplicateKey:
            return False
        return True

    async def _read_tail(self, request: ReadTail) -> int:
        with translate_driver_errors("read message ids"):
            cursor = self.messages_collection.find(request.filter, {"message_id": 1, "_id": 0})
            documents = await cursor.to_list(length=None)
        return int(max((document["message_id"] for document in documents), default=request.from_message_id))

    async def _allocate(self, request: Allocate) -> int:
        projection = allocate_projection(request)
        with translate_driver_errors("allocate message id"):
            document = await self.collection.find_one_and_update(
                {"_id": request.session_id},
                request.update,
                projection=projection,
                return_document=ReturnDocument.AFTER,
            )
            if document is None:  # SecantusDB may answer None under contention: read it back
                document = await self.collection.find_one({"_id": request.session_id}, projection)
        return allocated_message_id(request, document)

    async def _run_plan(self, plan: Plan, operation: str) -> None:
        """One round trip with client-level bulkWrite when possible, else one per operation."""
        if self._bulk_supported and len(plan.ops) > 1:
            models = client_models(plan, self.names.namespaces(self._database_name))
            try:
                with translate_driver_errors(operation):
                    await self.client.bulk_write(models, ordered=True)
                return
            except ClientBulkWriteUnsupported:
                self._bulk_supported = False
        with translate_driver_errors(operation):
            for op in plan.ops:
                collection = self.collection if op.target == "sessions" else self.messages_collection
                if isinstance(op, InsertOp):
                    await collection.insert_one(op.document)
                else:
                    await collection.update_one(op.filter, op.update, upsert=op.upsert)
