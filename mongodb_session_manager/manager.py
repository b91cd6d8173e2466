"""MongoDBSessionManager: Strands' session manager on MongoDB, without blocking the event loop.

Strands calls session hooks on the agent's event loop. This manager registers async callbacks
and runs each write on an I/O thread (:func:`._io.run_io`), shielded from cancellation, so
``stream_async`` in a web app never waits on the database and a started write always lands.

One round trip per message: the message insert carries, in the same client-level
``bulkWrite``, any change of agent state and, on the turn's final assistant message, the turn's
metrics and running totals. A plain one-cycle turn costs two round trips.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from strands.agent.agent import Agent
from strands.hooks import (
    AfterInvocationEvent,
    AfterModelCallEvent,
    AfterMultiAgentInvocationEvent,
    AfterNodeCallEvent,
    AgentInitializedEvent,
    BeforeInvocationEvent,
    HookRegistry,
    MessageAddedEvent,
    MultiAgentInitializedEvent,
)
from strands.session.repository_session_manager import RepositorySessionManager
from strands.session.session_repository import SessionRepository
from strands.types.content import Message
from strands.types.session import SessionAgent, SessionMessage

from . import schema
from ._io import run_io
from ._session_view import SessionView
from ._validation import validate_agent_id, validate_session_id
from .errors import ConfigurationError, InvalidSessionInputError, MongoDBSessionError
from .metrics import TurnStatus, TurnTracker, has_tool_use, message_text
from .repository import MongoDBSessionRepository

if TYPE_CHECKING:
    from strands.multiagent.base import MultiAgentBase
    from strands.types.agent import LocalAgent

__all__ = ["MongoDBSessionManager", "create_mongodb_session_manager", "normalise_message"]

logger = logging.getLogger(__name__)

SyncMarker = dict[str, Any]


class MongoDBSessionManager(RepositorySessionManager):
    """Persist a Strands agent's conversation, state and per-turn metrics in MongoDB.

    Build it from a ``connection_string`` (a pooled, process-wide client), a ``client`` you own,
    or a ``repository`` shared with other managers (what the factory does). Extra keyword
    arguments are pymongo client options (``maxPoolSize=100``, ``serverSelectionTimeoutMS=...``).
    """

    def __init__(
        self,
        session_id: str,
        *,
        connection_string: str | None = None,
        client: Any = None,
        database_name: str | None = None,
        collection_name: str | None = None,
        repository: MongoDBSessionRepository | None = None,
        metadata: Mapping[str, Any] | None = None,
        session_document: Mapping[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        session_id = validate_session_id(session_id)
        if repository is None:
            repository = MongoDBSessionRepository(
                connection_string,
                database_name or schema.DEFAULT_DATABASE_NAME,
                collection_name or schema.DEFAULT_COLLECTION_NAME,
                client=client,
                **client_options,
            )
        else:
            given = {"connection_string": connection_string, "client": client, "database_name": database_name}
            given |= {"collection_name": collection_name, **client_options}
            ignored = sorted(name for name, value in given.items() if value is not None)
            if ignored:
                raise ConfigurationError(f"{ignored} cannot apply to a repository you passed in")
        self.repository = repository
        self._view = SessionView(repository, session_id, metadata=metadata, document=session_document)
        super().__init__(session_id=session_id, session_repository=cast(SessionRepository, self._view))
        self._turns: dict[str, TurnTracker] = {}
        self._turn_starts: dict[str, int] = {}
        self._pending: dict[str, list[Message]] = {}
        self._agents: dict[str, LocalAgent] = {}
        self._last_turn_metrics: dict[str, dict[str, Any]] = {}
        self._contended: set[str] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r}, repository={self.repository!r})"

    # --- hooks --------------------------------------------------------------------------------

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        """Async callbacks for everything that writes; Strands awaits them on the agent's loop."""
        registry.add_callback(AgentInitializedEvent, lambda event: self.initialize(event.agent))
        registry.add_callback(BeforeInvocationEvent, self._on_before_invocation)
        registry.add_callback(AfterModelCallEvent, self._on_after_model_call)
        registry.add_callback(MessageAddedEvent, self._on_message_added)
        registry.add_callback(AfterInvocationEvent, self._on_after_invocation)
        registry.add_callback(
            MultiAgentInitializedEvent, lambda event: self.initialize_multi_agent(event.source)
        )
        registry.add_callback(AfterNodeCallEvent, self._on_multi_agent_changed)
        registry.add_callback(AfterMultiAgentInvocationEvent, self._on_multi_agent_changed)

    async def _on_before_invocation(self, event: BeforeInvocationEvent) -> None:
        agent = event.agent
        self._turns[agent.agent_id] = TurnTracker.start(agent)
        self._turn_starts[agent.agent_id] = len(agent.messages)

    async def _on_after_model_call(self, event: AfterModelCallEvent) -> None:
        turn = self._turns.get(event.agent.agent_id)
        if turn is None:
            return
        if event.stop_response is not None:
            turn.stop_reason = str(event.stop_response.stop_reason)
        if event.exception is not None:
            turn.error = event.exception

    async def _on_message_added(self, event: MessageAddedEvent) -> None:
        agent, message = event.agent, event.message
        pending = self._pending.get(agent.agent_id)
        if pending and _same_message(pending[0], message):
            pending.pop(0)  # the guide's manual append arrived first: this is that message
        turn = self._turns.get(agent.agent_id)
        event_loop_metrics: dict[str, Any] | None = None
        totals: dict[str, int] | None = None
        if turn is not None:
            turn.observe(message)
            if turn.is_final(message):
                event_loop_metrics, totals = turn.finish("completed")
                self._last_turn_metrics[agent.agent_id] = event_loop_metrics
        await self._write_message(agent, message, event_loop_metrics=event_loop_metrics, totals=totals)

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        agent = event.agent
        turn = self._turns.pop(agent.agent_id, None)
        turn_record: tuple[int, dict[str, Any]] | None = None
        totals: dict[str, int] | None = None
        if turn is not None and not turn.recorded and turn.last_message_id is not None:
            result = event.result
            in_flight = sys.exc_info()[1]  # Strands runs this hook in a `finally`: the turn's error, if any
            if turn.error is None and in_flight is not None:
                turn.error = in_flight
            record, totals = turn.finish(
                _status_of(turn, None if result is None else str(result.stop_reason))
            )
            turn_record = (turn.last_message_id, record)
            self._last_turn_metrics[agent.agent_id] = record
        elif turn is not None and turn.recorded:
            # The final message already carried the turn's state and totals. What changed after it
            # (the conversation manager trimming its window) rides along with the next write, or
            # sync_agent()/close() stores it: a plain turn stays at two round trips.
            return
        changed = self._changed_agent(agent)
        if changed is None and totals is None:
            return
        await run_io(self._write_session_update, agent, changed, totals, turn_record)

    async def _on_multi_agent_changed(
        self, event: AfterNodeCallEvent | AfterMultiAgentInvocationEvent
    ) -> None:
        await run_io(self.sync_multi_agent, event.source)

    # --- writes (run on I/O threads) ----------------------------------------------------------

    async def _write_message(
        self,
        agent: LocalAgent,
        message: Message,
        *,
        event_loop_metrics: dict[str, Any] | None = None,
        totals: dict[str, int] | None = None,
    ) -> None:
        changed = self._changed_agent(agent)
        session_update = None
        if changed is not None or totals:
            session_update = schema.session_update(
                agent=changed[0] if changed else None, totals=totals, agent_id=agent.agent_id
            )
        session_message = SessionMessage.from_message(message, self._next_message_id(agent.agent_id))
        await run_io(self._store_message, agent, session_message, session_update, event_loop_metrics, changed)

    def _store_message(
        self,
        agent: LocalAgent,
        session_message: SessionMessage,
        session_update: dict[str, Any] | None,
        event_loop_metrics: dict[str, Any] | None,
        changed: tuple[SessionAgent, SyncMarker] | None,
        incomplete_reason: str | None = None,
    ) -> None:
        requested = session_message.message_id
        message_id = self.repository.write_message(
            self.session_id,
            agent.agent_id,
            session_message,
            session_update=session_update,
            event_loop_metrics=event_loop_metrics,
            incomplete_reason=incomplete_reason,
            allocate_first=agent.agent_id in self._contended,
        )
        if message_id != requested:  # another writer shares this agent: take ids from the counter
            self._contended.add(agent.agent_id)
        self._latest_agent_message[agent.agent_id] = session_message
        self._held_records.setdefault(agent.agent_id, []).append(session_message)
        turn = self._turns.get(agent.agent_id)
        if turn is not None:
            turn.last_message_id = message_id
        if changed is not None:
            self._last_synced_internal_state[agent.agent_id] = changed[1]

    def _write_session_update(
        self,
        agent: LocalAgent,
        changed: tuple[SessionAgent, SyncMarker] | None,
        totals: dict[str, int] | None,
        turn_record: tuple[int, dict[str, Any]] | None,
    ) -> None:
        self.repository.write_session_update(
            self.session_id,
            agent=changed[0] if changed else None,
            totals=totals,
            agent_id=agent.agent_id,
            turn_record=turn_record,
        )
        if changed is not None:
            self._last_synced_internal_state[agent.agent_id] = changed[1]

    def _next_message_id(self, agent_id: str) -> int:
        latest = self._latest_agent_message.get(agent_id)
        return 0 if latest is None else latest.message_id + 1

    def _changed_agent(self, agent: LocalAgent) -> tuple[SessionAgent, SyncMarker] | None:
        """The agent's state to write, with its sync marker, or None if nothing changed since last time."""
        marker = _sync_marker(agent)
        if marker is not None and marker == self._last_synced_internal_state.get(agent.agent_id):
            return None
        return SessionAgent.from_agent(agent), marker or {}

    # --- Strands entry points -----------------------------------------------------------------

    def initialize(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Restore (or create) the agent from the session: two round trips for a resume."""
        self._ensure_open()
        validate_agent_id(agent.agent_id)
        super().initialize(agent, **kwargs)
        self._agents[agent.agent_id] = agent
        marker = _sync_marker(agent)
        if marker is not None:
            self._last_synced_internal_state[agent.agent_id] = marker

    def append_message(self, message: Message | Mapping[str, Any], agent: LocalAgent, **kwargs: Any) -> None:
        """Add a message to the session by hand (the guide's pattern), safely.

        Strands' hooks already store every message the agent adds. A message given here that
        the agent added (or will add) in its current turn, same role and text, is that message
        and is not stored twice. Any other message is appended to ``agent.messages`` and stored
        on the next ``sync_agent``/``close`` (or when the agent adds it), so the stored
        conversation always equals ``agent.messages``. String content becomes ``[{"text": ...}]``.
        """
        self._ensure_open()
        normalised = normalise_message(message)
        if self._in_current_turn(agent, normalised):
            return
        self._agents.setdefault(agent.agent_id, agent)
        self._pending.setdefault(agent.agent_id, []).append(normalised)

    def sync_agent(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Store hand-appended messages and any change of state; never counts a turn twice."""
        self._ensure_open()
        self._flush_pending(agent)
        changed = self._changed_agent(agent)
        if changed is not None:
            self._write_session_update(agent, changed, None, None)

    async def sync_agent_async(self, agent: LocalAgent) -> None:
        """:meth:`sync_agent` on an I/O thread, for code running on an event loop."""
        await run_io(self.sync_agent, agent)

    def sync_multi_agent(self, source: MultiAgentBase, **kwargs: Any) -> None:
        self._ensure_open()
        super().sync_multi_agent(source, **kwargs)

    def close(self) -> None:
        """Store what is still pending (messages appended by hand, the latest state).

        The client stays open: it belongs to the pool, the factory, or you.
        """
        if self._closed:
            return
        for agent in list(self._agents.values()):
            self.sync_agent(agent)
        self._closed = True

    async def aclose(self) -> None:
        await run_io(self.close)

    def __enter__(self) -> MongoDBSessionManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> MongoDBSessionManager:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- manual appends -----------------------------------------------------------------------

    def _in_current_turn(self, agent: LocalAgent, message: Message) -> bool:
        start = self._turn_starts.get(agent.agent_id)
        if start is None:
            return False
        same_role = [m for m in agent.messages[start:] if m.get("role") == message["role"]]
        text = message_text(message)
        return (
            any(message_text(m) == text for m in same_role) or "".join(map(message_text, same_role)) == text
        )

    def _flush_pending(self, agent: LocalAgent) -> None:
        pending = self._pending.pop(agent.agent_id, [])
        for message in pending:
            agent.messages.append(message)
            session_message = SessionMessage.from_message(message, self._next_message_id(agent.agent_id))
            self._store_message(agent, session_message, None, None, None)

    def _ensure_open(self) -> None:
        if self._closed:
            raise MongoDBSessionError(f"session_id=<{self.session_id}> | the session manager is closed")

    async def record_incomplete_reply(self, agent: LocalAgent, text: str, *, reason: str) -> Message | None:
        """Store the reply a turn had streamed when it broke off (error, cancel, timeout, disconnect).

        The message is appended to ``agent.messages`` as well, so the conversation alternates
        user/assistant and the next turn (in this process or after a resume) is valid. Returns the
        message, or None if the turn had already ended with a complete reply.
        """
        self._ensure_open()
        last = agent.messages[-1] if agent.messages else None
        if last is None or (last.get("role") == "assistant" and not has_tool_use(last)):
            return None
        message = cast(
            Message,
            {
                "role": "assistant",
                "content": [{"text": text or f"(no reply: {reason})"}],
                "metadata": {"custom": {"incomplete": True, "reason": reason}},
            },
        )
        agent.messages.append(message)
        session_message = SessionMessage.from_message(message, self._next_message_id(agent.agent_id))
        await run_io(self._store_message, agent, session_message, None, None, None, reason)
        return message

    def last_turn_metrics(self, agent_id: str) -> dict[str, Any] | None:
        """The ``event_loop_metrics`` record of the agent's last finished turn in this manager, or None."""
        return self._last_turn_metrics.get(agent_id)

    # --- async construction -------------------------------------------------------------------

    def preload(self, agent_id: str) -> None:
        """Read the agent's message window now, so building the Agent does no I/O."""
        self._view.preload_messages(validate_agent_id(agent_id))


def normalise_message(message: Message | Mapping[str, Any]) -> Message:
    """A message as Strands stores it: a known role and a list of content blocks."""
    if not isinstance(message, Mapping):
        raise InvalidSessionInputError(f"a message must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidSessionInputError(f"message role must be 'user' or 'assistant', got {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"text": content}]
    elif isinstance(content, list) and all(isinstance(block, Mapping) for block in content):
        blocks = [dict(block) for block in content]
    else:
        raise InvalidSessionInputError("message content must be a str or a list of content blocks")
    normalised = cast(Message, {**copy.deepcopy(dict(message)), "role": role, "content": blocks})
    return normalised


def _same_message(first: Message, second: Message) -> bool:
    return first.get("role") == second.get("role") and message_text(first) == message_text(second)


def _status_of(turn: TurnTracker, stop_reason: str | None) -> TurnStatus:
    if stop_reason == "interrupt":
        return "interrupted"
    if stop_reason == "cancelled" or type(turn.error).__name__ in ("CancelledError", "GeneratorExit"):
        return "cancelled"
    if stop_reason is None:
        return "failed"
    return "completed"


def _sync_marker(agent: LocalAgent) -> SyncMarker | None:
    """What Strands compares to decide whether an agent changed (None: always write)."""
    if not isinstance(agent, Agent):
        return None
    return {
        "state_version": agent.state._get_version(),
        "interrupt_state_version": agent._interrupt_state._get_version(),
        "conversation_manager_state": copy.deepcopy(agent.conversation_manager.get_state()),
        "model_state": copy.deepcopy(agent._model_state),
    }


def create_mongodb_session_manager(
    session_id: str,
    connection_string: str | None = None,
    database_name: str | None = None,
    collection_name: str | None = None,
    **kwargs: Any,
) -> MongoDBSessionManager:
    """The guide's one-call constructor; keyword arguments go to :class:`MongoDBSessionManager`."""
    return MongoDBSessionManager(
        session_id,
        connection_string=connection_string,
        database_name=database_name,
        collection_name=collection_name,
        **kwargs,
    )
