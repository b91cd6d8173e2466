"""Write plans: what one logical write sends, independent of sync or async I/O.

A plan is a short list of operations on the two collections. The repositories run a plan in
one round trip with MongoDB 8's client-level ``bulkWrite`` when the server has it, else one
operation after another. Multi-step flows (insert a message, re-allocate its id on a conflict)
are generators that yield plans and allocation requests; each repository drives them with its
own I/O, so the logic exists once.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from strands.types.session import SessionMessage

from . import schema
from .errors import ConcurrentWriteError

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
class Allocate:
    """Ask for the next free message id (an atomic update of the session document)."""

    session_id: str
    agent_id: str
    taken_message_id: int
    update: list[dict[str, Any]] = field(default_factory=list)


Step = Plan | Allocate
# What the driver sends back into a flow: True/False for a plan (applied / id taken), an int for Allocate.
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
) -> Flow:
    """Insert optimistically with the id Strands chose; on a conflict take the next free id.

    Returns the id the message was stored under (also written back into ``session_message``).
    """
    message_id = session_message.message_id
    for _ in range(MAX_ID_ATTEMPTS):
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
        allocated = yield Allocate(
            session_id, agent_id, message_id, schema.allocate_message_id_update(agent_id, message_id)
        )
        message_id = int(allocated)
    raise ConcurrentWriteError(
        f"session_id=<{session_id}> | agent_id=<{agent_id}> | "
        f"no free message id after {MAX_ID_ATTEMPTS} attempts"
    )
