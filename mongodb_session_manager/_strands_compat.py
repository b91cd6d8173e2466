"""Every Strands internal this package relies on, in one module.

Strands (1.x) exposes no public API for what a session manager must read and restore: an
agent's interrupt and model state, how its conversation manager restores itself, where its
window starts. Each use is a small function here, and ``tests/unit/test_strands_compat.py``
pins each assumption, so a Strands release that changes one fails a test instead of making
the manager silently skip or corrupt writes.

Change detection does not use Strands' private version counters: the manager compares the
agent document it would write with the one it wrote last (:func:`agent_state`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from strands.agent.agent import Agent
from strands.agent.state import AgentState
from strands.hooks import (
    AfterInvocationEvent,
    AfterMultiAgentInvocationEvent,
    AfterNodeCallEvent,
    AgentInitializedEvent,
    MessageAddedEvent,
    MultiAgentInitializedEvent,
)
from strands.multiagent.base import MultiAgentBase
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.content import Message
from strands.types.session import SessionAgent, SessionMessage

from . import schema

if TYPE_CHECKING:
    from strands.types.agent import LocalAgent

__all__: list[str] = []

# The events Strands' own ``SessionManager.register_hooks`` wires; the manager must handle each.
STRANDS_SESSION_EVENTS: frozenset[type[Any]] = frozenset(
    {
        AgentInitializedEvent,
        MessageAddedEvent,
        AfterInvocationEvent,
        MultiAgentInitializedEvent,
        AfterNodeCallEvent,
        AfterMultiAgentInvocationEvent,
    }
)


def is_multi_agent(source: object) -> bool:
    """A Graph or Swarm (what ``initialize_multi_agent`` restores), not an agent."""
    return isinstance(source, MultiAgentBase)


def is_full_agent(agent: LocalAgent) -> bool:
    """Strands' ``Agent`` (with conversation manager, interrupts, model state), not another LocalAgent."""
    return isinstance(agent, Agent)


def agent_state(agent: LocalAgent) -> dict[str, Any]:
    """What the agent's entry in the session document would hold now (``schema.agent_state``).

    The fields ``SessionAgent.from_agent`` reads, read directly: every write takes this
    snapshot, and the dataclass (with two timestamps formatted per call) costs 3x the reads.
    The state comes copied; the model state is handed out by reference, so it is copied here:
    a snapshot must not change when the agent does.
    """
    if not isinstance(agent, Agent):
        return schema.agent_state(SessionAgent.from_agent(agent))
    model_state = agent._model_state
    return {
        "state": agent.state.get(),
        "conversation_manager_state": agent.conversation_manager.get_state(),
        "internal_state": {
            "interrupt_state": agent._interrupt_state.to_dict(),
            "model_state": copy.deepcopy(model_state) if model_state else model_state,
        },
    }


def restore_agent(agent: LocalAgent, entry: dict[str, Any]) -> list[Message]:
    """Put a stored agent entry back into ``agent``; returns the messages to prepend to its window.

    The same steps as Strands' ``RepositorySessionManager.initialize``: state, interrupt and
    model state, then the conversation manager, which may hand back messages to prepend (a
    summarising manager's summary).
    """
    session_agent = schema.agent_from_document(agent.agent_id, entry)
    agent.state = AgentState(session_agent.state)
    session_agent.initialize_internal_state(agent)
    if not is_full_agent(agent):
        return []
    full = cast(Agent, agent)
    return list(
        full.conversation_manager.restore_from_session(session_agent.conversation_manager_state) or []
    )


def window_offset(agent: LocalAgent, entry: dict[str, Any]) -> int:
    """Where the agent's stored window starts, as its conversation manager counts it."""
    if is_full_agent(agent):
        return int(cast(Agent, agent).conversation_manager.removed_message_count)
    return schema.removed_message_count(entry)


def set_messages(agent: LocalAgent, prepend: Sequence[Message], window: Sequence[SessionMessage]) -> None:
    """Replace the agent's messages with the restored window, mending broken tool pairs as Strands does."""
    if is_full_agent(agent) and cast(Agent, agent).model.stateful:
        return  # the provider keeps the conversation server-side
    messages = [*prepend, *(record.to_message() for record in window)]
    agent.messages = _fix_broken_tool_use(messages)


def _fix_broken_tool_use(messages: list[Message]) -> list[Message]:
    # Strands' own repair of orphaned toolUse/toolResult pairs after a restore; it reads no state
    # of the manager it is defined on.
    return RepositorySessionManager._fix_broken_tool_use(cast(Any, None), messages)


def resume_interrupt(agent: LocalAgent, messages: Sequence[Message] | None) -> None:
    """Re-apply an interrupt response after a deferred restore activated the stored interrupt.

    Strands calls ``_interrupt_state.resume(prompt)`` before ``BeforeInvocationEvent``; when the
    state arrives in that hook, the responses in the invocation's messages are applied here.
    """
    if not is_full_agent(agent):
        return
    interrupt_state = cast(Agent, agent)._interrupt_state
    if not interrupt_state.activated or not messages:
        return
    content = [block for message in messages for block in message.get("content", [])]
    if content and all("interruptResponse" in block for block in content):
        interrupt_state.resume(cast(Any, content))


def interrupt_pending(agent: LocalAgent) -> bool:
    """True while the agent waits for interrupt responses (its open ``toolUse`` is not a fault)."""
    return is_full_agent(agent) and bool(cast(Agent, agent)._interrupt_state.activated)


def unwrap(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """``error`` itself or the ``kind`` error Strands wrapped in it (``EventLoopException``), or None.

    Strands' event loop re-raises what a hook raised inside ``EventLoopException``; the manager
    gives callers its own error back (one error type for an outage, wherever it happened).
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or getattr(error, "original_exception", None) or error.__context__
    return None
