"""Write plans: what one logical write sends, independent of sync or async I/O.

A plan is a short list of operations on the two collections. The repositories run a plan in
one round trip with MongoDB 8's client-level ``bulkWrite`` when the server has it, else one
operation after another. Multi-step flows (insert a message, re-allocate its id on a conflict)
are generators that yield plans and allocation requests; each repository drives them with its
own I/O, so the logic exists once.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import InsertOne, UpdateOne
from strands.types.session import SessionAgent, SessionMessage

from . import schema
from ._validation import validate_agent_id, validate_message_id, validate_session_id
from .errors import ConcurrentWriteError, SessionNotFoundError

logger = logging.getLogger(__name__)

Target = Literal["sessions", "messages"]

MAX_ID_ATTEMPTS = 64


@dataclass(frozen=True)
class InsertOp:
    target: Target
    document: dict[str, Any]


@dataclass(frozen=True)
class UpdateOp:
    target: Target
    filter: Mapping[str, Any]
    update: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    upsert: bool = False


Op = InsertOp | UpdateOp


@dataclass(frozen=True)
class Plan:
    """Operations that belong together; a leading insert may hit the unique message index."""

    ops: tuple[Op, ...]


@dataclass(frozen=True)
class ReadTail:
    """Ask for the highest stored message id at or above ``from_message_id`` (a short index range)."""

    session_id: str
    agent_id: str
    from_message_id: int

    @property
    def filter(self) -> dict[str, Any]:
        return schema.message_window_filter(self.session_id, self.agent_id, self.from_message_id)


@dataclass(frozen=True)
class Allocate:
    """Ask for the next free message id above ``floor`` (one atomic update of the session document)."""

    session_id: str
    agent_id: str
    floor: int

    @property
    def update(self) -> list[dict[str, Any]]:
        return schema.allocate_message_id_update(self.agent_id, self.floor)


Step = Plan | ReadTail | Allocate
# What a driver sends back into a flow: for a Plan True (applied) or False (the message id was
# taken); for ReadTail and Allocate an int.
Flow = Generator[Step, bool | int, int]


def session_ops(
    session_id: str,
    update: Mapping[str, Any] | None,
) -> tuple[Op, ...]:
    return () if update is None else (UpdateOp("sessions", {"_id": session_id}, update),)


def insert_message_flow(
    session_id: str,
    agent_id: str,
    session_message: SessionMessage,
    *,
    session_update: Mapping[str, Any] | None = None,
    event_loop_metrics: Mapping[str, Any] | None = None,
    incomplete_reason: str | None = None,
    allocate_first: bool = False,
) -> Flow:
    """Insert with the id Strands chose; on a conflict move past the stored tail and retry.

    The common case (one writer per agent) costs one round trip. After a conflict, the id comes
    from an atomic counter in the session document, so writers that collide get distinct ids;
    ``allocate_first`` keeps a writer that has seen contention on the counter from then on.
    Returns the id the message was stored under (also written back into ``session_message``).
    """
    message_id = session_message.message_id
    if allocate_first:
        message_id = int((yield Allocate(session_id, agent_id, floor=message_id - 1)))
    for attempt in range(MAX_ID_ATTEMPTS):
        session_message.message_id = message_id
        document = schema.message_document(
            session_id,
            agent_id,
            session_message,
            event_loop_metrics=event_loop_metrics,
            incomplete_reason=incomplete_reason,
        )
        applied = yield Plan((InsertOp("messages", document), *session_ops(session_id, session_update)))
        if applied:
            return message_id
        tail = int((yield ReadTail(session_id, agent_id, message_id)))
        # First retry: right after the tail, which keeps the order of writers taking turns. If
        # that loses too, a writer still inserting optimistically is racing for tail + 1 and wins
        # every time; skip a growing gap so it meets our id later and moves to the counter as well.
        gap = 0 if attempt == 0 else min(2**attempt, 64)
        message_id = int((yield Allocate(session_id, agent_id, floor=tail + gap)))
    raise ConcurrentWriteError(
        f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
        f"no free message id after {MAX_ID_ATTEMPTS} attempts"
    )


def checked_insert_message_flow(
    session_id: str, agent_id: str, session_message: SessionMessage, **options: Any
) -> Flow:
    """:func:`insert_message_flow` after checking the ids, so bad input fails before any I/O."""
    validate_session_id(session_id)
    validate_agent_id(agent_id)
    validate_message_id(session_message.message_id)
    return insert_message_flow(session_id, agent_id, session_message, **options)


# --- pieces both repositories share around their I/O --------------------------------------------


def session_update_plan(
    session_id: str,
    *,
    agent: SessionAgent | None = None,
    totals: Mapping[str, int | float] | None = None,
    agent_id: str | None = None,
    turn_record: tuple[int, Mapping[str, Any]] | None = None,
) -> Plan:
    """Agent state and a turn's totals on the session document, plus the turn's metrics record."""
    ops: list[Op] = [
        UpdateOp(
            "sessions",
            {"_id": session_id},
            schema.session_update(agent=agent, totals=totals, agent_id=agent_id),
        )
    ]
    if turn_record is not None and agent_id is not None:
        message_id, metrics = turn_record
        ops.append(
            UpdateOp(
                "messages",
                schema.message_filter(session_id, agent_id, message_id),
                schema.turn_record_update(metrics),
            )
        )
    return Plan(tuple(ops))


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


def allocate_projection(request: Allocate) -> dict[str, int]:
    return {schema.agent_path(request.agent_id, "next_message_id"): 1}


def allocated_message_id(request: Allocate, document: Mapping[str, Any] | None) -> int:
    """The id an :class:`Allocate` handed out, read from the session document it updated."""
    agent = ((document or {}).get("agents") or {}).get(request.agent_id) or {}
    if "next_message_id" not in agent:
        raise SessionNotFoundError(f"session_id=<{request.session_id}> | session does not exist")
    logger.debug(
        "session_id=<%s> | agent_id=<%s> | ids up to <%s> taken, moved to <%s>",
        request.session_id,
        request.agent_id,
        request.floor,
        agent["next_message_id"],
    )
    return int(agent["next_message_id"])
