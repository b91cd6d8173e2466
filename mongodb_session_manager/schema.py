"""The on-disk layout (schema_version 1), in one place.

Two collections derive from the configured ``collection_name`` (default ``sessions``):

``sessions``: one small, bounded document per session::

    {_id: <session_id>, schema_version: 1, session_type, created_at, updated_at,
     metadata: {...}, agents: {<agent_id>: {state, conversation_manager_state, internal_state,
     created_at, updated_at, totals: {...}, next_message_id?}}, multi_agents: {<id>: {state, ...}},
     totals: {...}}

``sessions_messages``: one document per message, unique on (session_id, agent_id, message_id)::

    {session_id, agent_id, message_id, role, message, redact_message, created_at, updated_at,
     event_loop_metrics?: {...}}

Everything here is a pure function returning plain dicts: no client, no I/O. Both repositories
(sync and async) send exactly what these builders make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pymongo import IndexModel
from strands.types.content import Message
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from ._validation import validate_agent_id, validate_metadata_filter
from .codec import from_bson_datetime, to_bson_datetime
from .errors import InvalidSessionInputError

__all__ = [
    "DEFAULT_COLLECTION_NAME",
    "DEFAULT_DATABASE_NAME",
    "MAX_PAGE_SIZE",
    "MESSAGE_INDEXES",
    "MESSAGE_SORT",
    "RESUME_WINDOW_FIELD",
    "SCHEMA_VERSION",
    "SESSION_INDEXES",
    "SESSION_LIST_SORT",
    "CollectionNames",
    "IndexSpec",
    "agent_document",
    "agent_entry",
    "agent_from_document",
    "agent_in_session",
    "agent_path",
    "agent_state",
    "allocate_message_id_update",
    "create_agent_filter",
    "create_agent_update",
    "create_session_update",
    "index_models",
    "message_document",
    "message_filter",
    "message_from_document",
    "message_window_filter",
    "multi_agent_path",
    "multi_agent_update",
    "page",
    "removed_message_count",
    "resume_pipeline",
    "session_document",
    "session_from_document",
    "session_list_filter",
    "session_summary",
    "session_update",
    "turn_record_update",
    "update_message_update",
    "utcnow",
]

SCHEMA_VERSION = 1
DEFAULT_COLLECTION_NAME = "sessions"
DEFAULT_DATABASE_NAME = "strands_sessions"


@dataclass(frozen=True)
class CollectionNames:
    """The names of the collections behind one ``collection_name``."""

    sessions: str
    messages: str

    @classmethod
    def for_base(cls, collection_name: str) -> CollectionNames:
        return cls(sessions=collection_name, messages=f"{collection_name}_messages")

    def namespaces(self, database_name: str) -> dict[str, str]:
        """``"db.collection"`` per write target, as client-level ``bulkWrite`` names them."""
        return {
            "sessions": f"{database_name}.{self.sessions}",
            "messages": f"{database_name}.{self.messages}",
        }


@dataclass(frozen=True)
class IndexSpec:
    """One index: keys plus the options passed to ``create_index``."""

    keys: tuple[tuple[str, int], ...]
    name: str
    options: Mapping[str, Any]


SESSION_INDEXES = (IndexSpec((("updated_at", -1),), "updated_at", {}),)
MESSAGE_INDEXES = (
    # Serves every conversation read (window by message_id) and makes concurrent inserts safe.
    IndexSpec(
        (("session_id", 1), ("agent_id", 1), ("message_id", 1)), "session_agent_message", {"unique": True}
    ),
    # Serves metrics queries: only turn records (messages that carry event_loop_metrics) are indexed.
    IndexSpec(
        (("event_loop_metrics.started_at", 1),),
        "turn_started_at",
        {"partialFilterExpression": {"event_loop_metrics": {"$exists": True}}},
    ),
    IndexSpec(
        (("session_id", 1), ("event_loop_metrics.started_at", 1)),
        "session_turn_started_at",
        {"partialFilterExpression": {"event_loop_metrics": {"$exists": True}}},
    ),
)


def index_models(specs: tuple[IndexSpec, ...]) -> list[IndexModel]:
    return [IndexModel(list(spec.keys), name=spec.name, **spec.options) for spec in specs]


def utcnow() -> datetime:
    """Timestamps are UTC, truncated to milliseconds (what BSON dates hold)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- sessions ---------------------------------------------------------------------------------


def session_document(session: Session, *, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document inserted when a session is created."""
    document: dict[str, Any] = {
        "_id": session.session_id,
        "schema_version": SCHEMA_VERSION,
        "session_type": _session_type_value(session.session_type),
        "created_at": to_bson_datetime(session.created_at),
        "updated_at": to_bson_datetime(session.updated_at),
        "metadata": dict(metadata or {}),
        "agents": {},
        "multi_agents": {},
        "totals": {},
    }
    return document


def create_session_update(document: Mapping[str, Any]) -> dict[str, Any]:
    """An upsert that creates the session once; a second creator changes nothing."""
    return {"$setOnInsert": {k: v for k, v in document.items() if k != "_id"}}


def session_from_document(document: Mapping[str, Any]) -> Session:
    return Session(
        session_id=document["_id"],
        session_type=SessionType(document.get("session_type", SessionType.AGENT.value)),
        created_at=from_bson_datetime(document.get("created_at")),
        updated_at=from_bson_datetime(document.get("updated_at")),
    )


MAX_PAGE_SIZE = 1000


def page(skip: int, limit: int) -> tuple[int, int]:
    """Validated ``(skip, limit)`` for a listing: ``skip >= 0``, ``1 <= limit <= MAX_PAGE_SIZE``."""
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise InvalidSessionInputError(f"skip must be a non-negative int, got {skip!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidSessionInputError(f"limit must be an int in 1..{MAX_PAGE_SIZE}, got {limit!r}")
    return skip, limit


def session_summary(document: Mapping[str, Any]) -> dict[str, Any]:
    """What a listing shows of a session: ids, times, metadata, totals (not agent state)."""
    return {
        "session_id": document["_id"],
        "session_type": document.get("session_type", SessionType.AGENT.value),
        "created_at": document.get("created_at"),
        "updated_at": document.get("updated_at"),
        "metadata": dict(document.get("metadata") or {}),
        "agent_ids": sorted(document.get("agents") or {}),
        "totals": dict(document.get("totals") or {}),
    }


def _session_type_value(session_type: Any) -> str:
    return str(getattr(session_type, "value", session_type))


# --- agents -----------------------------------------------------------------------------------


def agent_path(agent_id: str, *fields: str) -> str:
    """Dotted path of an agent's field in the session document (agent ids are validated map keys)."""
    return ".".join(("agents", agent_id, *fields))


def agent_document(session_agent: SessionAgent) -> dict[str, Any]:
    return {
        "state": session_agent.state,
        "conversation_manager_state": session_agent.conversation_manager_state,
        "internal_state": session_agent._internal_state,
        "created_at": to_bson_datetime(session_agent.created_at),
        "updated_at": to_bson_datetime(session_agent.updated_at),
    }


def agent_from_document(agent_id: str, document: Mapping[str, Any]) -> SessionAgent:
    return SessionAgent(
        agent_id=agent_id,
        state=dict(document.get("state") or {}),
        conversation_manager_state=dict(document.get("conversation_manager_state") or {}),
        _internal_state=dict(document.get("internal_state") or {}),
        created_at=from_bson_datetime(document.get("created_at")),
        updated_at=from_bson_datetime(document.get("updated_at")),
    )


def agent_in_session(document: Mapping[str, Any] | None, agent_id: str) -> SessionAgent | None:
    """The agent stored in a session document, or None."""
    agent = ((document or {}).get("agents") or {}).get(agent_id)
    return None if agent is None else agent_from_document(agent_id, agent)


def create_agent_filter(session_id: str, agent_id: str) -> dict[str, Any]:
    """Matches the session only while the agent is absent, so creating twice keeps the first."""
    return {"_id": session_id, agent_path(agent_id): {"$exists": False}}


def create_agent_update(agent_id: str, agent: Mapping[str, Any]) -> dict[str, Any]:
    """Add the agent entry (``agent_entry``) to the session; ``create_agent_filter`` keeps the first."""
    return {"$set": {agent_path(agent_id): dict(agent), "updated_at": utcnow()}}


def agent_state(session_agent: SessionAgent) -> dict[str, Any]:
    """The agent fields that change over its life: what change detection compares and ``$set`` writes."""
    return {
        "state": session_agent.state,
        "conversation_manager_state": session_agent.conversation_manager_state,
        "internal_state": session_agent._internal_state,
    }


def agent_entry(state: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A new agent entry of the session document, from its ``agent_state``."""
    now = now or utcnow()
    return {**state, "created_at": now, "updated_at": now}


def removed_message_count(agent: Mapping[str, Any]) -> int:
    """Where the agent's window starts: the messages its conversation manager already removed."""
    return int((agent.get("conversation_manager_state") or {}).get("removed_message_count", 0) or 0)


def session_update(
    *,
    agent_id: str,
    agent: Mapping[str, Any] | None = None,
    totals: Mapping[str, int | float] | None = None,
) -> dict[str, Any]:
    """One update of the session document: changed agent state (``agent_state``) and/or a turn's totals."""
    now = utcnow()
    fields: dict[str, Any] = {"updated_at": now}
    if agent:
        fields |= {agent_path(agent_id, name): value for name, value in agent.items()}
        fields[agent_path(agent_id, "updated_at")] = now
    update: dict[str, Any] = {"$set": fields}
    if totals:
        increments: dict[str, int | float] = {}
        for name, value in totals.items():
            increments[f"totals.{name}"] = value
            increments[agent_path(agent_id, "totals", name)] = value
        update["$inc"] = increments
    return update


def allocate_message_id_update(agent_id: str, floor: int) -> list[dict[str, Any]]:
    """Pipeline update handing out the next free message id above ``floor``.

    ``next_message_id`` exists only once writers have collided (it also tells readers that ids
    may have gaps); it holds the last id handed out this way, so concurrent writers that
    collide each get a distinct id from one atomic update.
    """
    counter = "$" + agent_path(agent_id, "next_message_id")
    return [
        {
            "$set": {
                agent_path(agent_id, "next_message_id"): {
                    "$add": [{"$max": [{"$ifNull": [counter, -1]}, floor]}, 1]
                }
            }
        }
    ]


# --- multi-agents -----------------------------------------------------------------------------


def multi_agent_path(multi_agent_id: str, *fields: str) -> str:
    return ".".join(("multi_agents", multi_agent_id, *fields))


def multi_agent_update(multi_agent_id: str, state: Mapping[str, Any], *, create: bool) -> dict[str, Any]:
    now = utcnow()
    fields = {
        multi_agent_path(multi_agent_id, "state"): dict(state),
        multi_agent_path(multi_agent_id, "updated_at"): now,
    }
    if create:
        fields[multi_agent_path(multi_agent_id, "created_at")] = now
    return {"$set": {**fields, "updated_at": now}}


# --- messages ---------------------------------------------------------------------------------


def message_filter(session_id: str, agent_id: str, message_id: int | None = None) -> dict[str, Any]:
    query: dict[str, Any] = {"session_id": session_id, "agent_id": agent_id}
    if message_id is not None:
        query["message_id"] = message_id
    return query


def message_window_filter(session_id: str, agent_id: str, first_message_id: int) -> dict[str, Any]:
    """The tail of a conversation from ``first_message_id`` on: a bounded range on the unique index."""
    return {"session_id": session_id, "agent_id": agent_id, "message_id": {"$gte": first_message_id}}


MESSAGE_SORT = [("message_id", 1)]

RESUME_WINDOW_FIELD = "_window"


def resume_pipeline(session_id: str, agent_id: str, messages_collection: str) -> list[dict[str, Any]]:
    """The session document with the agent's window joined in: a resume in one command.

    The window starts at the stored conversation manager's ``removed_message_count``, read from
    the session document by the ``$lookup``; its range on ``message_id`` is served by the
    unique index. Only right while ids are contiguous (no ``next_message_id`` counter).
    ``localField``/``foreignField`` (MongoDB 5.0+) as well as the sub-pipeline: SecantusDB
    serves only that join key from the index and scans the whole messages collection for a
    sub-pipeline's ``$match`` (a resume went from 3 ms at 200 stored messages to 63 ms at 6,000).
    """
    removed = "$" + agent_path(agent_id, "conversation_manager_state", "removed_message_count")
    return [
        {"$match": {"_id": session_id}},
        {
            "$lookup": {
                "from": messages_collection,
                "localField": "_id",
                "foreignField": "session_id",
                "let": {"first": {"$ifNull": [removed, 0]}},
                "pipeline": [
                    {
                        "$match": {
                            "agent_id": agent_id,
                            "$expr": {"$gte": ["$message_id", "$$first"]},
                        }
                    },
                    {"$sort": {"message_id": 1}},
                ],
                "as": RESUME_WINDOW_FIELD,
            }
        },
    ]


def message_document(
    session_id: str,
    agent_id: str,
    session_message: SessionMessage,
    *,
    event_loop_metrics: Mapping[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """Bytes stay ``bytes`` (stored as BSON Binary), timestamps become BSON dates."""
    message: Message = session_message.message
    document: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": agent_id,
        "message_id": session_message.message_id,
        "role": message.get("role"),
        "message": message,
        "redact_message": session_message.redact_message,
        "created_at": to_bson_datetime(session_message.created_at),
        "updated_at": to_bson_datetime(session_message.updated_at),
    }
    if event_loop_metrics is not None:
        document["event_loop_metrics"] = dict(event_loop_metrics)
    if incomplete_reason is not None:
        document["incomplete"] = {"reason": incomplete_reason}
    return document


def message_from_document(document: Mapping[str, Any]) -> SessionMessage:
    return SessionMessage(
        message=document["message"],
        message_id=int(document["message_id"]),
        redact_message=document.get("redact_message"),
        created_at=from_bson_datetime(document.get("created_at")),
        updated_at=from_bson_datetime(document.get("updated_at")),
    )


def update_message_update(session_message: SessionMessage) -> dict[str, Any]:
    return {
        "$set": {
            "message": session_message.message,
            "redact_message": session_message.redact_message,
            "updated_at": utcnow(),
        }
    }


def turn_record_update(event_loop_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Attach a turn's metrics to the message that closes it."""
    return {"$set": {"event_loop_metrics": dict(event_loop_metrics)}}


# --- listing ----------------------------------------------------------------------------------


def session_list_filter(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Sessions updated in ``[since, until)``, holding ``agent_id``, whose metadata has these values.

    ``agent_id`` and the metadata filter are validated here: operator keys are refused at any depth
    (see :func:`._validation.validate_metadata_filter`).
    """
    query: dict[str, Any] = {}
    window: dict[str, datetime] = {}
    if since is not None:
        window["$gte"] = to_bson_datetime(since)
    if until is not None:
        window["$lt"] = to_bson_datetime(until)
    if window:
        query["updated_at"] = window
    if agent_id is not None:
        query[agent_path(validate_agent_id(agent_id))] = {"$exists": True}
    for key, value in validate_metadata_filter(metadata).items():
        query[f"metadata.{key}"] = value
    return query


SESSION_LIST_SORT = [("updated_at", -1), ("_id", 1)]
