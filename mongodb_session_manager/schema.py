"""The on-disk layout (schema_version 1), in one place.

Two collections derive from the configured ``collection_name`` (default ``sessions``):

``sessions``: one small, bounded document per session::

    {_id: <session_id>, schema_version: 1, session_type, created_at, updated_at,
     user_id?, expires_at?, messages_expire_at?, metadata: {...},
     agents: {<agent_id>: {state, conversation_manager_state, internal_state, created_at,
     updated_at, totals: {...}, next_message_id?}}, multi_agents: {<id>: {state, ...}},
     totals: {...}}

``sessions_messages``: one document per message, unique on (session_id, agent_id, message_id)::

    {session_id, agent_id, message_id, role, message, redact_message, created_at, updated_at,
     expires_at?, event_loop_metrics?: {...}, incomplete?: {reason}, idempotency_key?,
     lease?: {owner, until}}

``lease`` is the turn lease, on the first message a turn stores (see :func:`lease_field`).

``sessions_files`` (GridFS, ``.files`` and ``.chunks``): binary content blocks (image, document,
video ``source.bytes``) longer than ``large_content_threshold`` (4 MiB by default). The message
keeps ``DBRef("sessions_files", <file id>, length=n)`` in place of the bytes (a ``$ref`` key is
refused in user content, so it never collides); the file's ``metadata`` is ``{session_id,
agent_id, kind}``. Encrypted messages are never split (their content stays in the ciphertext).

``user_id`` is set once; ``expires_at`` (TTL) with ``expire_after`` (see :mod:`._lifecycle`);
``message``/``redact_message`` and the agents' ``state``/``internal_state`` are BSON binary
subtype 6 with encryption (see :mod:`.encryption`).

Everything here is a pure function returning plain dicts: no client, no I/O. Both repositories
(sync and async) send exactly what these builders make.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

from pymongo import IndexModel
from strands.types.content import Message
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from ._validation import validate_agent_id, validate_metadata_filter, validate_user_id
from .codec import from_bson_datetime, to_bson_datetime
from .errors import InvalidSessionInputError
from .masking import mask_message

__all__ = [
    "DEFAULT_COLLECTION_NAME",
    "DEFAULT_DATABASE_NAME",
    "EXPORT_MESSAGE_SORT",
    "FILE_CHUNKS_INDEX",
    "FILE_CHUNKS_SHARD_KEY",
    "FILE_INDEXES",
    "LEASE_FIELD",
    "LEASE_PROJECTION",
    "MAX_PAGE_SIZE",
    "MESSAGE_INDEXES",
    "MESSAGE_SHARD_KEY",
    "MESSAGE_SORT",
    "MESSAGE_TEXT_FIELDS",
    "RESUME_WINDOW_FIELD",
    "ROLLUPS_FROM_THE_START",
    "ROLLUP_COVERAGE_ID",
    "ROLLUP_HOUR_FORMAT",
    "ROLLUP_INDEXES",
    "ROLLUP_TOKEN_FIELDS",
    "SCHEMA_VERSION",
    "SEARCH_PROJECTION",
    "SEARCH_SORT",
    "SESSION_INDEXES",
    "SESSION_LIST_SORT",
    "SESSION_PAGE_SORT",
    "SESSION_SHARD_KEY",
    "CollectionNames",
    "IndexSpec",
    "PageCursor",
    "SessionPage",
    "ShardKey",
    "agent_document",
    "agent_entry",
    "agent_from_document",
    "agent_in_session",
    "agent_path",
    "agent_state",
    "allocate_message_id_update",
    "claim_user_update",
    "create_agent_filter",
    "create_agent_update",
    "create_session_update",
    "expired_messages_filter",
    "expired_session_filter",
    "idle_sessions_filter",
    "index_models",
    "is_expired",
    "latency_measured",
    "lease_field",
    "lease_messages_filter",
    "lease_release_update",
    "lease_renew_update",
    "lease_running",
    "leftover_messages_filter",
    "live",
    "live_session_filter",
    "message_document",
    "message_filter",
    "message_from_document",
    "message_regex_filter",
    "message_text_filter",
    "message_window_filter",
    "multi_agent_path",
    "multi_agent_update",
    "next_page_cursor",
    "open_turn_lease",
    "page",
    "removed_message_count",
    "renew_messages_filter",
    "renew_messages_update",
    "renew_session_update",
    "restamped",
    "resume_pipeline",
    "rollup_coverage_update",
    "rollup_hour",
    "rollup_id",
    "rollup_increments",
    "rollup_key",
    "rollup_update",
    "search_sessions_filter",
    "session_document",
    "session_from_document",
    "session_list_filter",
    "session_page_filter",
    "session_summary",
    "session_update",
    "trimmed_messages_filter",
    "turn_key_filter",
    "turn_record_update",
    "unclaimed_session_filter",
    "update_message_update",
    "user_sessions_filter",
    "utcnow",
    "with_recreation",
]

SCHEMA_VERSION = 1
DEFAULT_COLLECTION_NAME = "sessions"
DEFAULT_DATABASE_NAME = "chat_db"


@dataclass(frozen=True)
class CollectionNames:
    """The names of the collections behind one ``collection_name``."""

    sessions: str
    messages: str
    rollups: str = ""
    files: str = ""  # the GridFS bucket: ``<files>.files`` and ``<files>.chunks``

    @classmethod
    def for_base(cls, collection_name: str) -> CollectionNames:
        return cls(
            sessions=collection_name,
            messages=f"{collection_name}_messages",
            rollups=f"{collection_name}_rollups",
            files=f"{collection_name}_files",
        )

    @property
    def file_chunks(self) -> str:
        """The GridFS chunks collection of :attr:`files` (the one that grows with content)."""
        return f"{self.files}.chunks"

    def namespaces(self, database_name: str) -> dict[str, str]:
        """``"db.collection"`` per write target, as client-level ``bulkWrite`` names them."""
        return {
            "sessions": f"{database_name}.{self.sessions}",
            "messages": f"{database_name}.{self.messages}",
            "rollups": f"{database_name}.{self.rollups}",
        }


@dataclass(frozen=True)
class IndexSpec:
    """One index: keys plus the options passed to ``create_index``."""

    keys: tuple[tuple[str, int], ...]
    name: str
    options: Mapping[str, Any]


SESSION_INDEXES = (
    IndexSpec((("updated_at", -1),), "updated_at", {}),
    # A user's sessions, most recent first: erasure, retention per user, listing per user.
    IndexSpec((("user_id", 1), ("updated_at", -1)), "user_updated_at", {}),
    # expire_after: the TTL monitor deletes a session once its expires_at has passed.
    IndexSpec((("expires_at", 1),), "expires_at_ttl", {"expireAfterSeconds": 0}),
)
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
    # expire_after: messages carry an expires_at at or after their session's (see _lifecycle).
    IndexSpec((("expires_at", 1),), "expires_at_ttl", {"expireAfterSeconds": 0}),
    # Finds the stored turn of a retried request by its idempotency key (keyed prompts only).
    IndexSpec(
        (("session_id", 1), ("agent_id", 1), ("idempotency_key", 1)),
        "session_agent_idempotency_key",
        {"partialFilterExpression": {"idempotency_key": {"$exists": True}}},
    ),
)


# --- shard keys (see docs/deployment.md, "Sharding") --------------------------------------------
#
# A sharded cluster enforces a unique index only when the shard key is a prefix of it, and never
# under a hashed shard key. The messages' unique (session_id, agent_id, message_id) index is what
# makes concurrent inserts safe, so that collection takes a *ranged* key on a prefix of it; every
# filter the package sends there carries ``session_id`` (tests/unit/test_shard_keys.py), so reads
# and writes target the shard that holds the conversation. The sessions collection has no unique
# index besides ``_id`` and is read by ``_id`` only: a hashed ``_id`` spreads it evenly.

ShardKey = tuple[tuple[str, int | str], ...]

SESSION_SHARD_KEY: ShardKey = (("_id", "hashed"),)
MESSAGE_SHARD_KEY: ShardKey = (("session_id", 1), ("agent_id", 1))
# GridFS reads a file's chunks by files_id in n order; the driver's unique index is this key.
FILE_CHUNKS_SHARD_KEY: ShardKey = (("files_id", 1), ("n", 1))
# Large content (see :mod:`._large_content`): each GridFS file names its session in metadata,
# so deleting a session (delete, prune, erasure) finds its files by this index.
FILE_INDEXES = (IndexSpec((("metadata.session_id", 1),), "metadata_session_id", {}),)
FILE_CHUNKS_INDEX = IndexSpec((("files_id", 1), ("n", 1)), "files_id_1_n_1", {"unique": True})


def index_models(specs: tuple[IndexSpec, ...]) -> list[IndexModel]:
    return [IndexModel(list(spec.keys), name=spec.name, **spec.options) for spec in specs]


def utcnow() -> datetime:
    """Timestamps are UTC, truncated to milliseconds (what BSON dates hold).

    From the clock's whole milliseconds: a third of the cost of ``now()`` and a ``replace``
    (a turn takes several); ``ms / 1000`` always rounds back to the exact millisecond.
    """
    return datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, timezone.utc)


# --- sessions ---------------------------------------------------------------------------------


def session_document(
    session: Session, *, metadata: Mapping[str, Any] | None = None, user_id: str | None = None
) -> dict[str, Any]:
    """The document inserted when a session is created (``user_id`` only when given: it never changes)."""
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
    if user_id is not None:
        document["user_id"] = user_id
    return document


def restamped(document: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A copy of a :func:`session_document` as if created ``now`` (a manager builds it once)."""
    now = now or utcnow()
    copied = {key: dict(value) if isinstance(value, dict) else value for key, value in document.items()}
    copied["created_at"] = copied["updated_at"] = now
    return copied


def unclaimed_session_filter(session_id: str) -> dict[str, Any]:
    """The session while it has no user: a user can be assigned once, never changed."""
    return {"_id": session_id, "user_id": None}


def claim_user_update(user_id: str) -> dict[str, Any]:
    return {"$set": {"user_id": user_id}}


def create_session_update(document: Mapping[str, Any]) -> dict[str, Any]:
    """An upsert that creates the session once; a second creator changes nothing."""
    return {"$setOnInsert": {k: v for k, v in document.items() if k != "_id"}}


def live_session_filter(session_id: str, now: datetime | None = None) -> dict[str, Any]:
    """The session, unless it has expired (the TTL monitor deletes it later, within about a minute)."""
    return {"_id": session_id, **_not_expired(now)}


def _not_expired(now: datetime | None = None) -> dict[str, Any]:
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now or utcnow()}}]}


def live(query: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """``query`` on the sessions collection, leaving out sessions that have expired."""
    return {**query, **_not_expired(now)}


def is_expired(document: Mapping[str, Any], now: datetime | None = None) -> bool:
    expires_at = document.get("expires_at")
    return expires_at is not None and to_bson_datetime(expires_at) <= (now or utcnow())


def expired_session_filter(document: Mapping[str, Any]) -> dict[str, Any]:
    """This expired session, as it was read: a session renewed meanwhile no longer matches."""
    return {"_id": document["_id"], "expires_at": document["expires_at"]}


def leftover_messages_filter(session_id: str, agent_id: str, before: datetime) -> dict[str, Any]:
    """An agent's expiring messages stored before ``before``: an earlier session's, under the same id.

    A session that expired keeps its messages up to ``expire_after`` longer than its document
    (see ``_lifecycle``); when the TTL monitor has removed the document, a new session under the
    same id meets them. They are gone by contract: the new session deletes them, not takes them up.
    Messages without an expiry (a session that never expires) are never matched.
    """
    return {
        "session_id": session_id,
        "agent_id": agent_id,
        "expires_at": {"$type": "date"},
        "created_at": {"$lt": before},
    }


def expired_messages_filter(document: Mapping[str, Any]) -> dict[str, Any]:
    """The messages of an expired session: none written after it expired (a new session's) match."""
    horizon = document.get("messages_expire_at") or document["expires_at"]
    return {
        "session_id": document["_id"],
        "$or": [{"expires_at": None}, {"expires_at": {"$lte": horizon}}],
    }


def renew_session_update(expires_at: datetime, messages_expire_at: datetime) -> dict[str, Any]:
    """Move a session's expiry; ``messages_expire_at`` records how long its messages are kept."""
    return {"$set": {"expires_at": expires_at}, "$max": {"messages_expire_at": messages_expire_at}}


def renew_messages_filter(session_id: str, messages_expire_at: datetime) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "$or": [{"expires_at": None}, {"expires_at": {"$lt": messages_expire_at}}],
    }


def renew_messages_update(messages_expire_at: datetime) -> dict[str, Any]:
    return {"$set": {"expires_at": messages_expire_at}}


def idle_sessions_filter(cutoff: datetime, user_id: str | None = None) -> dict[str, Any]:
    """Sessions last updated before ``cutoff`` (of one user, when given): what ``prune`` deletes."""
    query: dict[str, Any] = {"updated_at": {"$lt": cutoff}}
    if user_id is not None:
        query["user_id"] = user_id
    return query


def user_sessions_filter(user_id: str) -> dict[str, Any]:
    return {"user_id": user_id}


# How an export (and a prune archive) orders a session's messages: agent by agent, in order.
EXPORT_MESSAGE_SORT = [("agent_id", 1), ("message_id", 1)]


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


def allocate_message_id_update(agent_id: str, floor: int, count: int = 1) -> list[dict[str, Any]]:
    """Pipeline update handing out the next ``count`` free message ids above ``floor``.

    ``next_message_id`` exists only once writers have collided (it also tells readers that ids
    may have gaps); it holds the last id handed out this way, so concurrent writers that
    collide each get a distinct id from one atomic update.
    """
    counter = "$" + agent_path(agent_id, "next_message_id")
    return [
        {
            "$set": {
                agent_path(agent_id, "next_message_id"): {
                    "$add": [{"$max": [{"$ifNull": [counter, -1]}, floor]}, count]
                }
            }
        }
    ]


# --- leases: one writer per (session, agent) while a turn runs ---------------------------------

LEASE_FIELD = "lease"


def lease_field(owner: str, until: datetime) -> dict[str, Any]:
    """What each message a running turn stores carries: the turn is ``owner``'s until ``until``.

    The turn lease lives in the message stream itself, so taking it costs no write of its own:
    two writers that both take it insert the same next ``message_id`` and the unique index
    lets one through. Every message of the turn carries it, so the latest stored message, which
    every reader's window holds however the conversation manager trimmed it, tells whether a
    turn runs. A turn is closed by a message carrying its turn record (``event_loop_metrics``),
    or by unsetting the field.
    """
    return {"owner": owner, "until": until}


def open_turn_lease(documents: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The lease of a turn still open at the end of ``documents`` (messages in id order), if any.

    Read from the end: a turn record closes everything before it; the first lease found before
    any record is the running turn's (expired or not: the caller compares ``until``).
    """
    for document in reversed(documents):
        if document.get("event_loop_metrics") is not None:
            return None
        lease = document.get(LEASE_FIELD)
        if lease:
            return cast("Mapping[str, Any]", lease)
    return None


def lease_running(lease: Mapping[str, Any] | None, owner: str) -> bool:
    """True when ``lease`` (of a turn still open) is another writer's and has not run out."""
    if not lease or lease.get("owner") in (None, owner):
        return False
    until = lease.get("until")
    if not isinstance(until, datetime):
        return False
    return (until if until.tzinfo is not None else until.replace(tzinfo=timezone.utc)) > utcnow()


def lease_messages_filter(
    session_id: str, agent_id: str, first_message_id: int, owner: str
) -> dict[str, Any]:
    """The messages carrying ``owner``'s lease from the turn's first on (only while they are ``owner``'s)."""
    return {**message_window_filter(session_id, agent_id, first_message_id), f"{LEASE_FIELD}.owner": owner}


def lease_renew_update(until: datetime) -> dict[str, Any]:
    return {"$set": {f"{LEASE_FIELD}.until": until}}


def lease_release_update() -> dict[str, Any]:
    return {"$unset": {LEASE_FIELD: ""}}


LEASE_PROJECTION = {"message_id": 1, LEASE_FIELD: 1, "event_loop_metrics.started_at": 1}


def with_recreation(
    update: Mapping[str, Any], agent_id: str, session: Mapping[str, Any], agent: Mapping[str, Any]
) -> dict[str, Any]:
    """``update`` (of the session document) as an upsert that recreates a vanished document.

    ``$setOnInsert`` gets the session's fields and the agent's entry, leaving out every path
    the update sets or increments itself (a path in both is refused by the server).
    """
    written = frozenset(path for operator in ("$set", "$inc", "$unset") for path in update.get(operator, ()))
    taken = _recreation_paths(written, agent_id, tuple(session), tuple(agent))
    on_insert = {path: (session if of_session else agent)[key] for of_session, key, path in taken}
    return {**update, "$setOnInsert": on_insert}


@functools.lru_cache(maxsize=256)
def _recreation_paths(
    written: frozenset[str], agent_id: str, session_keys: tuple[str, ...], agent_keys: tuple[str, ...]
) -> tuple[tuple[bool, str, str], ...]:
    """``(from the session?, key, path)`` of each field ``$setOnInsert`` may set: the same few
    shapes recur turn after turn, so the path analysis runs once per shape."""
    # A path is taken when it, one of its parents or one of its children is written.
    parents = {parent for path in written for parent in _parents(path)}

    def free(path: str) -> bool:
        if path in written or path in parents:
            return False
        return not any(parent in written for parent in _parents(path))

    taken = [(True, key, key) for key in session_keys if key not in ("_id", "agents") and free(key)]
    for key in agent_keys:
        path = agent_path(agent_id, key)
        if free(path):
            taken.append((False, key, path))
    return tuple(taken)


def _parents(path: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b"]``."""
    parents, dot = [], path.find(".")
    while dot != -1:
        parents.append(path[:dot])
        dot = path.find(".", dot + 1)
    return parents


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


def trimmed_messages_filter(session_id: str, agent_id: str, below_message_id: int) -> dict[str, Any]:
    """Messages long out of the conversation window (``keep_last_messages``): ids below a bound."""
    return {"session_id": session_id, "agent_id": agent_id, "message_id": {"$lt": below_message_id}}


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
    expires_at: datetime | None = None,
    mask: Sequence[Callable[[str], str]] = (),
    seal: Callable[[Any], Any] | None = None,
    idempotency_key: str | None = None,
    lease: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bytes stay ``bytes`` (stored as BSON Binary), timestamps become BSON dates, text is masked.

    ``seal`` (encryption) turns the masked message and its redacted form into ciphertext.
    """
    message: Any = _stored(mask_message(session_message.message, mask), seal)
    redact_message = session_message.redact_message
    document: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": agent_id,
        "message_id": session_message.message_id,
        "role": session_message.message.get("role"),
        "message": message,
        "redact_message": None
        if redact_message is None
        else _stored(mask_message(redact_message, mask), seal),
        "created_at": (created_at := to_bson_datetime(session_message.created_at)),
        "updated_at": created_at
        if session_message.updated_at == session_message.created_at
        else to_bson_datetime(session_message.updated_at),
    }
    if expires_at is not None:
        document["expires_at"] = expires_at
    if event_loop_metrics is not None:
        document["event_loop_metrics"] = dict(event_loop_metrics)
    if incomplete_reason is not None:
        document["incomplete"] = {"reason": incomplete_reason}
    if idempotency_key is not None:
        document["idempotency_key"] = idempotency_key
    if lease is not None:
        document[LEASE_FIELD] = dict(lease)
    return document


def _stored(message: Message, seal: Callable[[Any], Any] | None) -> Any:
    return message if seal is None else seal(dict(message))


def turn_key_filter(session_id: str, agent_id: str, idempotency_key: str) -> dict[str, Any]:
    """The prompt stored with ``idempotency_key`` (served by its partial index)."""
    return {"session_id": session_id, "agent_id": agent_id, "idempotency_key": idempotency_key}


def message_from_document(document: Mapping[str, Any]) -> SessionMessage:
    return SessionMessage(
        message=document["message"],
        message_id=int(document["message_id"]),
        redact_message=document.get("redact_message"),
        created_at=from_bson_datetime(document.get("created_at")),
        updated_at=from_bson_datetime(document.get("updated_at")),
    )


def update_message_update(
    session_message: SessionMessage,
    mask: Sequence[Callable[[str], str]] = (),
    seal: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Rewrite a stored message; one marked incomplete in its metadata keeps ``incomplete`` in step.

    ``mask`` and ``seal`` as in :func:`message_document`: a rewrite is stored like the original.
    """
    redact_message = session_message.redact_message
    fields: dict[str, Any] = {
        "message": _stored(mask_message(session_message.message, mask), seal),
        "redact_message": None
        if redact_message is None
        else _stored(mask_message(redact_message, mask), seal),
        "updated_at": utcnow(),
    }
    custom = (session_message.message.get("metadata") or {}).get("custom") or {}
    if isinstance(custom, Mapping) and custom.get("incomplete"):
        fields["incomplete"] = {"reason": str(custom.get("reason", ""))}
    return {"$set": fields}


def turn_record_update(event_loop_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Attach a turn's metrics to the message that closes it."""
    return {"$set": {"event_loop_metrics": dict(event_loop_metrics)}}


# --- search (see :mod:`._search`) --------------------------------------------------------------

# Where a message's words are: its text blocks and the text blocks of its tool results.
MESSAGE_TEXT_FIELDS = ("message.content.text", "message.content.toolResult.content.text")
SEARCH_PROJECTION = {
    "_id": 0,
    "session_id": 1,
    "agent_id": 1,
    "message_id": 1,
    "role": 1,
    "created_at": 1,
    "message.content.text": 1,
    "message.content.toolResult.content.text": 1,
}
SEARCH_SORT = [("created_at", -1)]


def search_sessions_filter(user_id: str | None) -> dict[str, Any]:
    """The live sessions a search looks in: the user's (``user_updated_at`` index) or all."""
    return live({} if user_id is None else {"user_id": user_id})


def message_regex_filter(session_ids: Sequence[str], pattern: str) -> dict[str, Any]:
    """Messages of ``session_ids`` whose text matches ``pattern`` (case-insensitive)."""
    regex = {"$regex": pattern, "$options": "i"}
    return {
        "session_id": {"$in": list(session_ids)},
        "$or": [{field: regex} for field in MESSAGE_TEXT_FIELDS],
    }


def message_text_filter(session_ids: Sequence[str], text: str) -> dict[str, Any]:
    """Messages of ``session_ids`` matching ``text`` through a ``$text`` index (whole words)."""
    return {"session_id": {"$in": list(session_ids)}, "$text": {"$search": text}}


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

# Keyset paging (``page_sessions``) sorts on ``updated_at`` alone, so a user's page is a range of
# the ``{user_id: 1, updated_at: -1}`` index read in index order, with no sort of its own (with
# ``_id`` as a second sort key MongoDB would sort every session of the user first). Sessions that
# share the last page's ``updated_at`` millisecond are carried in the cursor and excluded by id.
SESSION_PAGE_SORT = [("updated_at", -1)]
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class SessionPage:
    """One page of ``page_sessions``: the summaries, and the cursor of the next page (None: last)."""

    sessions: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class PageCursor:
    """Where a page ended: its last ``updated_at`` and the ids already returned at that instant."""

    updated_at: datetime
    seen: tuple[str, ...]

    def encode(self) -> str:
        millis = int(
            self.updated_at.replace(tzinfo=self.updated_at.tzinfo or timezone.utc).timestamp() * 1000
        )
        raw = json.dumps({"v": _CURSOR_VERSION, "t": millis, "x": list(self.seen)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> PageCursor:
        """The cursor ``page_sessions`` handed out; anything else is refused before any I/O."""
        if not isinstance(cursor, str) or not cursor or len(cursor) > 4 * MAX_CURSOR_BYTES:
            raise InvalidSessionInputError(f"after must be a cursor from page_sessions, got {cursor!r:.80}")
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            millis, seen = data["t"], data["x"]
            valid = (
                data.get("v") == _CURSOR_VERSION
                and isinstance(millis, int)
                and isinstance(seen, list)
                and all(isinstance(item, str) for item in seen)
            )
        except (ValueError, TypeError, KeyError, binascii.Error):
            valid = False
        if not valid:
            raise InvalidSessionInputError(f"after is not a cursor from page_sessions: {cursor!r:.80}")
        return cls(datetime.fromtimestamp(millis / 1000, tz=timezone.utc), tuple(seen))


MAX_CURSOR_BYTES = 64 * 1024


def session_page_filter(
    *,
    user_id: str | None = None,
    after: PageCursor | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    agent_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`session_list_filter` for one user, continuing after a cursor (a keyset page)."""
    query = session_list_filter(since=since, until=until, agent_id=agent_id, metadata=metadata)
    if user_id is not None:
        query = {"user_id": validate_user_id(user_id), **query}
    if after is not None:
        window = dict(query.get("updated_at") or {})
        window["$lte"] = after.updated_at
        query["updated_at"] = window
        if after.seen:
            query["_id"] = {"$nin": list(after.seen)}
    return query


def next_page_cursor(
    documents: list[Mapping[str, Any]], previous: PageCursor | None, limit: int
) -> str | None:
    """The cursor after ``documents`` (``limit + 1`` were asked for: one more means a next page)."""
    if len(documents) <= limit:
        return None
    page = documents[:limit]
    last = page[-1]["updated_at"]
    seen = [document["_id"] for document in page if document["updated_at"] == last]
    if previous is not None and _same_instant(previous.updated_at, last):
        seen = [*previous.seen, *seen]
    return PageCursor(last, tuple(seen)).encode()


def _same_instant(a: datetime, b: datetime) -> bool:
    return a.replace(tzinfo=a.tzinfo or timezone.utc) == b.replace(tzinfo=b.tzinfo or timezone.utc)


# --- metrics rollups ----------------------------------------------------------------------------
#
# ``<collection>_rollups``: one document per (hour, agent_id, model_id), ``$inc``-ed by the write
# that stores a turn's record (in the same bulkWrite), so dashboards read hours, not turns::
#
#     {_id: "2025-01-31T08Z.<agent_id>.<model_id>", hour: Date, agent_id, model_id, turns, failed_turns,
#      cancelled_turns, inputTokens, outputTokens, totalTokens, cacheReadInputTokens,
#      cacheWriteInputTokens, latency_ms, latency_max_ms, ttfb_ms, ttfb_turns, tool_calls}
#
# A ledger of the turns that ran: deleting a session does not subtract its turns (rollups hold
# no conversation content). ``metrics backfill`` rebuilds them from the stored turn records.

ROLLUP_INDEXES = (IndexSpec((("hour", 1),), "hour", {}),)
ROLLUP_TOKEN_FIELDS = (
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "cacheReadInputTokens",
    "cacheWriteInputTokens",
)


def rollup_hour(moment: datetime) -> datetime:
    """The UTC hour a turn that started at ``moment`` is counted in (naive means UTC)."""
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return utc.replace(minute=0, second=0, microsecond=0)


ROLLUP_HOUR_FORMAT = "%Y-%m-%dT%HZ"

ROLLUP_COVERAGE_ID = "coverage"
"""The rollups document saying from which hour on they count every turn (``since``).

A process that writes turns lowers it to the hour it set up its indexes (``$min``, once per
process: no hot document on the turn's path); ``metrics backfill`` sets it to the epoch. Turns
stored before the package wrote rollups are not in them: a query reads rollups only over a
window that starts at or after a whole hour past ``since``.
"""

ROLLUPS_FROM_THE_START = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rollup_coverage_update(moment: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(filter, update)`` of the upsert recording that rollups count turns from ``moment``'s hour on."""
    return {"_id": ROLLUP_COVERAGE_ID}, {"$min": {"since": rollup_hour(moment)}}


def rollup_id(hour: datetime, agent_id: str, model_id: str | None) -> str:
    """``2025-01-31T08Z.<agent_id>[.<model_id>]``: unambiguous, as agent ids hold no ``.``.

    A string, not a sub-document: SecantusDB upserts on a sub-document ``_id`` about 4x slower.
    """
    # ROLLUP_HOUR_FORMAT spelled out: formatting four ints is a quarter of strftime's cost.
    prefix = f"{hour.year:04d}-{hour.month:02d}-{hour.day:02d}T{hour.hour:02d}Z.{agent_id}"
    return prefix if model_id is None else f"{prefix}.{model_id}"


def rollup_key(hour: datetime, agent_id: str, model_id: str | None) -> dict[str, Any]:
    return {"hour": hour, "agent_id": agent_id, "model_id": model_id}


def rollup_increments(record: Mapping[str, Any]) -> dict[str, int | float]:
    """What one turn record adds to its hour's rollup."""
    usage: Mapping[str, Any] = record.get("accumulated_usage") or {}
    timing: Mapping[str, Any] = record.get("accumulated_metrics") or {}
    increments: dict[str, int | float] = {
        "turns": 1,
        "failed_turns": int(record.get("status") == "failed"),
        "cancelled_turns": int(record.get("status") == "cancelled"),
        **{name: int(usage.get(name) or 0) for name in ROLLUP_TOKEN_FIELDS},
        "latency_ms": timing.get("latencyMs") or 0,
        "tool_calls": int(record.get("tool_calls") or 0),
    }
    if timing.get("timeToFirstByteMs") is not None:
        increments["ttfb_ms"] = timing["timeToFirstByteMs"]
        increments["ttfb_turns"] = 1
    if latency_measured(record):  # what the latency mean covers (see metrics.pipelines)
        increments["latency_sample_ms"] = timing.get("latencyMs") or 0
        increments["latency_turns"] = 1
    return increments


def latency_measured(record: Mapping[str, Any]) -> bool:
    """A turn with a model latency to measure: not cancelled, and a model call came back."""
    calls = record.get("model_calls")
    return record.get("status") != "cancelled" and (calls is None or calls > 0)


def rollup_update(agent_id: str, record: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(filter, update)`` of the upsert counting one turn record in its hour (None: no start time)."""
    started_at = record.get("started_at")
    if not isinstance(started_at, datetime):
        return None
    key = rollup_key(rollup_hour(started_at), agent_id, record.get("model_id"))
    timing: Mapping[str, Any] = record.get("accumulated_metrics") or {}
    update: dict[str, Any] = {
        "$setOnInsert": dict(key),
        "$inc": rollup_increments(record),
    }
    if latency_measured(record):
        update["$max"] = {"latency_max_ms": timing.get("latencyMs") or 0}
    return {"_id": rollup_id(**key)}, update
