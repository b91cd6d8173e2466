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

import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pymongo import InsertOne, UpdateOne
from strands.types.session import SessionMessage

from . import schema
from .errors import ConcurrentWriteError, MessageTooLargeError, SessionNotFoundError

logger = logging.getLogger(__name__)

Target = Literal["sessions", "messages", "rollups"]
Document = dict[str, Any]
T = TypeVar("T")

MAX_ID_ATTEMPTS = 64


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


Op = InsertOp | UpdateOp


@dataclass(frozen=True)
class Plan:
    """Writes that belong together, run in order; ``message_index`` marks the message insert."""

    ops: tuple[Op, ...]
    message_index: int | None = None


@dataclass
class MessageWrite:
    """One message to insert, with what rides on its document."""

    session_message: SessionMessage
    event_loop_metrics: Mapping[str, Any] | None = None
    incomplete_reason: str | None = None


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

    @property
    def empty(self) -> bool:
        return not (self.agent or self.totals or self.turn_record or self.create or self.update)


@dataclass(frozen=True)
class NewAgent:
    """The session document's fields and the agent entry, written only if they do not exist yet."""

    session: Mapping[str, Any]
    agent: Mapping[str, Any]


def write_plan(session_id: str, message: Document | None, write: SessionWrite | None) -> Plan:
    """The ordered writes for one message and/or one session change."""
    ops: list[Op] = []
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
    message_index = None
    if message is not None:
        message_index = len(ops)
        ops.append(InsertOp("messages", message))
    if write is not None and write.update is not None:
        ops.append(UpdateOp("sessions", {"_id": session_id}, write.update))
    elif write is not None and (write.agent or write.totals or message is None):
        ops.append(
            UpdateOp(
                "sessions",
                {"_id": session_id},
                schema.session_update(agent_id=write.agent_id, agent=write.agent, totals=write.totals),
            )
        )
    if write is not None and write.turn_record is not None:
        message_id, metrics = write.turn_record
        ops.append(
            UpdateOp(
                "messages",
                schema.message_filter(session_id, write.agent_id, message_id),
                schema.turn_record_update(metrics),
            )
        )
    ops.extend(rollup_ops(message, write))
    return Plan(tuple(ops), message_index)


def rollup_ops(message: Document | None, write: SessionWrite | None) -> list[Op]:
    """The ``$inc`` of the turn's hour rollup, riding on the write that stores its record.

    A turn's record is either on the message inserted now (``event_loop_metrics``) or attached
    to an earlier one (``turn_record``). The op comes after those writes in the ordered plan, so
    a plan stopped by a conflict (retried with another id) never counts a turn twice.
    """
    ops: list[Op] = []
    records: list[tuple[str, Mapping[str, Any]]] = []
    if message is not None and message.get("event_loop_metrics") is not None:
        records.append((message["agent_id"], message["event_loop_metrics"]))
    if write is not None and write.turn_record is not None:
        records.append((write.agent_id, write.turn_record[1]))
    for agent_id, record in records:
        rollup = schema.rollup_update(agent_id, record)
        if rollup is not None:
            ops.append(UpdateOp("rollups", rollup[0], rollup[1], upsert=True))
    return ops


def client_models(plan: Plan, namespaces: Mapping[str, str]) -> list[InsertOne[Any] | UpdateOne]:
    """The plan as client-level ``bulk_write`` models (``namespaces``: target -> "db.collection")."""
    models: list[InsertOne[Any] | UpdateOne] = []
    for op in plan.ops:
        namespace = namespaces[op.target]
        if isinstance(op, InsertOp):
            models.append(InsertOne(op.document, namespace=namespace))
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


Request = FindOne | Find | Aggregate | Update | FindAndUpdate | Delete | Count | RunPlan | EnsureIndexes


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
) -> Flow[int | None]:
    """Insert with the id Strands chose; on a conflict move past the stored tail and retry.

    The common case (one writer per agent) costs one round trip. After a conflict, the id comes
    from an atomic counter in the session document, so writers that collide get distinct ids;
    ``allocate_first`` keeps a writer that has seen contention on the counter from then on.
    Returns the id the message was stored under (also written back into its ``SessionMessage``).
    """
    yield ask(EnsureIndexes(), "create indexes")
    if message is None:
        plan = write_plan(session_id, None, write)
        for _ in range(2):  # a racing first write may take the session upsert: the retry matches
            if plan.ops and (yield ask(RunPlan(plan), "update session")) is None:
                break
        return None
    session_message = message.session_message
    message_id = session_message.message_id
    if allocate_first:
        message_id = yield from _allocate(session_id, agent_id, floor=message_id - 1)
    for attempt in range(MAX_ID_ATTEMPTS):
        session_message.message_id = message_id
        document = schema.message_document(
            session_id,
            agent_id,
            session_message,
            event_loop_metrics=message.event_loop_metrics,
            incomplete_reason=message.incomplete_reason,
        )
        plan = write_plan(session_id, document, write)
        conflict = yield ask(RunPlan(plan), "write message")
        if conflict is None:
            return message_id
        if conflict != plan.message_index:
            continue  # the session upsert raced another first write; it exists now
        tail = yield from _read_tail(session_id, agent_id, message_id)
        # First retry: right after the tail, which keeps the order of writers taking turns. If
        # that loses too, a writer still inserting optimistically is racing for tail + 1 and wins
        # every time; skip a growing gap so it meets our id later and moves to the counter as well.
        gap = 0 if attempt == 0 else min(2**attempt, 64)
        message_id = yield from _allocate(session_id, agent_id, floor=tail + gap)
    raise ConcurrentWriteError(
        f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
        f"no free message id after {MAX_ID_ATTEMPTS} attempts"
    )


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


def _allocate(session_id: str, agent_id: str, floor: int) -> Flow[int]:
    """The next free message id above ``floor`` (one atomic update of the session document)."""
    projection = {schema.agent_path(agent_id, "next_message_id"): 1}
    document = yield ask(
        FindAndUpdate(
            "sessions", {"_id": session_id}, schema.allocate_message_id_update(agent_id, floor), projection
        ),
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
    return int(agent["next_message_id"])


@dataclass(frozen=True)
class SessionSnapshot:
    """A session document and, for one agent, its conversation window (what a resume needs)."""

    document: Document
    agent_id: str | None = None
    window: tuple[SessionMessage, ...] = ()


def load_flow(
    session_id: str, agent_id: str | None, messages_collection: str, *, join: bool = True
) -> Flow[SessionSnapshot | None]:
    """The session document and the agent's window in one command, served by the unique index.

    The window starts at the conversation manager's ``removed_message_count``; the aggregate
    reads it from the session document itself. When ids have gaps (concurrent writers collided)
    the offset counts messages, not ids, and a second read skips them instead.
    """
    if agent_id is None:
        document = yield ask(FindOne("sessions", {"_id": session_id}), "read session")
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
    agent = (document.get("agents") or {}).get(agent_id)
    if agent is None:
        return SessionSnapshot(document, agent_id)
    if "next_message_id" in agent or window_documents is None:
        offset = schema.removed_message_count(agent)
        contiguous = "next_message_id" not in agent
        window_documents = yield from list_messages_flow(session_id, agent_id, None, offset, contiguous)
        return SessionSnapshot(document, agent_id, tuple(window_documents))
    return SessionSnapshot(
        document, agent_id, tuple(schema.message_from_document(item) for item in window_documents)
    )


def list_messages_flow(
    session_id: str, agent_id: str, limit: int | None, offset: int, contiguous: bool
) -> Flow[list[SessionMessage]]:
    """Messages in order, skipping ``offset``: an id range when ids are contiguous, else a skip."""
    if contiguous:
        query, skip = schema.message_window_filter(session_id, agent_id, offset), 0
    else:
        query, skip = schema.message_filter(session_id, agent_id), offset
    documents = yield ask(
        Find("messages", query, sort=schema.MESSAGE_SORT, skip=skip, limit=limit or 0), "list messages"
    )
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
