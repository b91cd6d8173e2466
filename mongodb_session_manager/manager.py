"""MongoDBSessionManager: Strands' session manager on MongoDB, without blocking the event loop.

The write path, in one place: a Strands hook (or a manual call) hands a :class:`_Job` to the
agent's :class:`~._io.Lane`; on an I/O thread :meth:`MongoDBSessionManager._persist` turns it
into at most one message insert and one change of the session document, and the repository
sends both in one round trip. A plain one-cycle turn costs two round trips (the prompt; the
reply with the turn's metrics and totals). No MongoDB document is built here: that is
:mod:`.schema`'s job, reached through the values of :mod:`._plans`.

Nothing here waits on the network on an event loop's thread. Strands runs ``initialize``
synchronously from ``Agent.__init__``; on a thread whose loop is running the restore is
deferred to the agent's first async hook (``BeforeInvocationEvent``, before the prompt is
appended), or done ahead of time by ``await factory.acreate_session_manager(...)`` or
``await manager.load(agent)``. A new session writes nothing until its first message: the
session document and the agent entry are upserted with it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

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
from strands.session.session_manager import SessionManager
from strands.types.content import Message
from strands.types.session import Session, SessionMessage, SessionType

from . import _strands_compat as compat
from . import schema
from ._io import Lane, on_loop_thread
from ._lifecycle import Lifecycle, check_user
from ._plans import MessageWrite, NewAgent, SessionSnapshot, SessionWrite
from ._validation import validate_agent_id, validate_session_id
from .encryption import ContentEncryption
from .errors import ConfigurationError, InvalidSessionInputError, MongoDBSessionError
from .metrics.capture import TurnStatus, TurnTracker, has_tool_use, message_text
from .repository import MongoDBSessionRepository

if TYPE_CHECKING:
    import concurrent.futures

    from strands.multiagent.base import MultiAgentBase
    from strands.types.agent import LocalAgent

__all__ = ["MongoDBSessionManager", "create_mongodb_session_manager", "normalise_message"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Slot:
    """Everything the manager knows about one agent of the session."""

    agent: LocalAgent
    lane: Lane = field(default_factory=Lane)
    restored: bool = False  # False while the restore is deferred to the first async hook
    stored: bool = False  # the agent's entry exists in the session document
    latest_message_id: int | None = None
    contended: bool = False  # another writer shares this agent: ids come from the counter
    written: dict[str, Any] | None = None  # the agent state as last written (or restored)
    unsaved: list[Message] = field(default_factory=list)  # in agent.messages, not stored yet
    pending: list[Message] = field(default_factory=list)  # appended by hand, not stored yet
    records: list[SessionMessage] = field(default_factory=list)  # the stored messages still held
    turn: TurnTracker | None = None
    turn_start: int | None = None
    last_turn_metrics: dict[str, Any] | None = None


@dataclass
class _Job:
    """One write of the write path: at most one message, plus what rides with it."""

    message: Message | None = None
    state: dict[str, Any] | None = None  # the agent's state when the job was made
    event_loop_metrics: dict[str, Any] | None = None
    totals: dict[str, int] | None = None
    turn: TurnTracker | None = None  # the turn this message belongs to (learns the stored id)
    turn_record: dict[str, Any] | None = None  # metrics for the turn's last stored message
    incomplete_reason: str | None = None


class MongoDBSessionManager(SessionManager["LocalAgent"]):
    """Persist a Strands agent's conversation, state and per-turn metrics in MongoDB.

    Build it from a ``connection_string`` (a pooled, process-wide client), a ``client`` you own,
    or a ``repository`` shared with other managers (what the factory does). Extra keyword
    arguments are pymongo client options (``maxPoolSize=100``, ``serverSelectionTimeoutMS=...``).
    Construction does no I/O.

    Data lifecycle (docs/lifecycle.md): ``user_id`` ties the session to one user for good;
    ``expire_after`` expires the session and its messages together after that long without
    activity; ``keep_last_messages`` deletes messages that left the conversation manager's
    window more than that many messages ago; ``mask`` functions rewrite text before it is stored.
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
        user_id: str | None = None,
        expire_after: timedelta | None = None,
        keep_last_messages: int | None = None,
        mask: Sequence[Callable[[str], str]] | None = None,
        encryption: ContentEncryption | None = None,
        **client_options: Any,
    ) -> None:
        self.session_id = validate_session_id(session_id)
        self._lifecycle = Lifecycle.build(
            user_id=user_id,
            expire_after=expire_after,
            keep_last_messages=keep_last_messages,
            mask=mask,
            encryption=encryption,
        )
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
        self._lifecycle.bind(repository.client)
        self._metadata = dict(metadata or {})
        schema.session_list_filter(metadata=self._metadata)  # refuse operator keys before any write
        self._slots: dict[str, _Slot] = {}
        self._preloaded: dict[str, SessionSnapshot | None] = {}
        self._lane = Lane()  # multi-agent state
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
        slot = self._slot(event.agent)
        if not slot.restored or slot.unsaved:
            # Manual appends stay pending: the prompt may be one of them (the guide's pattern).
            await slot.lane.run(self._catch_up, slot, with_pending=False)
            compat.resume_interrupt(slot.agent, event.messages)
        slot.turn = TurnTracker.start(cast(Any, event.agent))
        slot.turn_start = len(event.agent.messages)

    async def _on_after_model_call(self, event: AfterModelCallEvent) -> None:
        turn = self._slot(event.agent).turn
        if turn is None:
            return
        if event.stop_response is not None:
            turn.stop_reason = str(event.stop_response.stop_reason)
        if event.exception is not None:
            turn.error = event.exception

    async def _on_message_added(self, event: MessageAddedEvent) -> None:
        slot, message = self._slot(event.agent), event.message
        if slot.pending and _same_message(slot.pending[0], message):
            slot.pending.pop(0)  # the guide's manual append arrived first: this is that message
        job = _Job(message=message, state=compat.agent_state(slot.agent), turn=slot.turn)
        if slot.turn is not None:
            slot.turn.observe(message)
            if slot.turn.is_final(message):
                job.event_loop_metrics, job.totals = slot.turn.finish("completed")
                slot.last_turn_metrics = job.event_loop_metrics
        await slot.lane.run(self._persist, slot, job)

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        slot = self._slot(event.agent)
        turn, slot.turn = slot.turn, None
        if turn is not None and turn.recorded:
            # The final message already carried the turn's state and totals. What changed after it
            # (the conversation manager trimming its window) rides along with the next write, or
            # sync_agent()/close() stores it: a plain turn stays at two round trips.
            self._prune_records(slot)
            return
        job = _Job(state=compat.agent_state(slot.agent))
        if turn is not None:
            result = event.result
            in_flight = sys.exc_info()[1]  # Strands runs this hook in a `finally`: the turn's error, if any
            if turn.error is None and in_flight is not None:
                turn.error = in_flight
            status = _status_of(turn, None if result is None else str(result.stop_reason))
            job.turn_record, job.totals = turn.finish(status)
            job.turn = turn
            slot.last_turn_metrics = job.turn_record
        await slot.lane.run(self._persist, slot, job)
        self._prune_records(slot)

    async def _on_multi_agent_changed(
        self, event: AfterNodeCallEvent | AfterMultiAgentInvocationEvent
    ) -> None:
        await self._lane.run(self.repository.update_multi_agent, self.session_id, event.source)

    # --- the write path (runs in the agent's lane, on an I/O thread) --------------------------

    def _persist(self, slot: _Slot, job: _Job) -> None:
        """Store one job: its message (if any) and whatever changed in the session document."""
        agent_id = slot.agent.agent_id
        state = job.state
        changed = state if state is not None and state != slot.written else None
        if job.turn_record is not None and (job.turn is None or job.turn.last_message_id is None):
            job.turn_record = None  # the turn stored no message to carry its record
            job.totals = None
        if job.message is None and changed is None and job.totals is None and job.turn_record is None:
            return
        create = None
        if not slot.stored:
            current = state if state is not None else compat.agent_state(slot.agent)
            sealed = self._lifecycle.seal_state(self.session_id, current)
            create = NewAgent(self._session_fields(), schema.agent_entry(sealed or current))
            changed = None  # the new entry holds the state
            state = current
        turn_record = None
        if job.turn_record is not None and job.turn is not None and job.turn.last_message_id is not None:
            turn_record = (job.turn.last_message_id, job.turn_record)
        stamp = self._lifecycle.stamp()
        extra = self._lifecycle.ride_along(
            self.session_id, agent_id, stamp, changed, contiguous=not slot.contended
        )
        sealed_change = self._lifecycle.seal_state(self.session_id, changed)
        write = SessionWrite(agent_id, sealed_change, job.totals, turn_record, create, extra=extra)
        message = None
        if job.message is not None:
            session_message = SessionMessage.from_message(job.message, self._next_message_id(slot))
            message = MessageWrite(
                session_message,
                job.event_loop_metrics,
                job.incomplete_reason,
                expires_at=None if stamp is None else stamp.messages_expire_at,
                mask=self._lifecycle.mask,
                seal=self._lifecycle.sealer(self.session_id),
            )
        stored_id = self.repository.write(
            self.session_id,
            agent_id,
            message,
            None if write.empty else write,
            allocate_first=slot.contended,
        )
        self._lifecycle.confirm(stamp)
        slot.stored = True
        if changed is not None or create is not None:
            slot.written = state
        if message is not None and stored_id is not None:
            if stored_id != self._next_message_id(slot):
                slot.contended = True
            slot.latest_message_id = stored_id
            slot.records.append(message.session_message)
            if job.turn is not None:
                job.turn.last_message_id = stored_id

    def _catch_up(self, slot: _Slot, *, with_pending: bool = True) -> None:
        """Restore a deferred agent, then store what waits: initial messages and manual appends."""
        if not slot.restored:
            self._restore(slot, self._load(slot.agent.agent_id))
        while slot.unsaved:
            self._persist(slot, _Job(message=slot.unsaved[0], state=compat.agent_state(slot.agent)))
            slot.unsaved.pop(0)
        while with_pending and slot.pending:
            message = slot.pending[0]
            slot.agent.messages.append(message)
            try:
                self._persist(slot, _Job(message=message, state=compat.agent_state(slot.agent)))
            except BaseException:
                slot.agent.messages.pop()
                raise
            slot.pending.pop(0)

    def _sync(self, slot: _Slot) -> None:
        """Store what waits and any change of state (``sync_agent``'s work, in the lane)."""
        if not slot.restored and not slot.pending:
            return  # never restored, nothing to add: an agent that ran no turn writes nothing
        self._catch_up(slot)
        self._persist(slot, _Job(state=compat.agent_state(slot.agent)))

    def _next_message_id(self, slot: _Slot) -> int:
        return 0 if slot.latest_message_id is None else slot.latest_message_id + 1

    def _session_fields(self) -> dict[str, Any]:
        session = Session(session_id=self.session_id, session_type=SessionType.AGENT)
        return schema.session_document(session, metadata=self._metadata, user_id=self._lifecycle.user_id)

    # --- restore --------------------------------------------------------------------------------

    def _restore(self, slot: _Slot, snapshot: SessionSnapshot | None) -> None:
        """Apply a loaded session to the agent, exactly as Strands' own initialize does."""
        agent = slot.agent
        entry = None if snapshot is None else (snapshot.document.get("agents") or {}).get(agent.agent_id)
        if entry is None:
            slot.unsaved = list(agent.messages)  # a new agent: its initial messages go with its first write
            slot.written = compat.agent_state(agent)
        else:
            assert snapshot is not None
            prepend = compat.restore_agent(agent, entry)
            compat.set_messages(agent, prepend, snapshot.window)
            slot.stored = True
            slot.contended = "next_message_id" in entry
            slot.records = list(snapshot.window)
            if snapshot.window:
                slot.latest_message_id = snapshot.window[-1].message_id
            elif "next_message_id" in entry:
                slot.latest_message_id = int(entry["next_message_id"])
            slot.written = compat.agent_state(agent)
        slot.restored = True

    def _prune_records(self, slot: _Slot) -> None:
        # Only the records of messages still in agent.messages are needed (for redaction).
        held = {id(message) for message in slot.agent.messages}
        slot.records = [record for record in slot.records if id(record.message) in held]

    # --- Strands entry points -----------------------------------------------------------------

    def initialize(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Restore (or prepare) the agent from the session, without a network wait on a loop thread."""
        self._ensure_open()
        agent_id = validate_agent_id(agent.agent_id)
        if agent_id in self._slots:
            raise InvalidSessionInputError(f"agent_id=<{agent_id}> | the agent_id of an agent must be unique")
        slot = self._slots[agent_id] = _Slot(agent)
        if agent_id in self._preloaded:
            self._restore(slot, self._preloaded.pop(agent_id))
        elif not on_loop_thread():
            slot.lane.submit(self._catch_up_restore_only, slot).result()

    def _catch_up_restore_only(self, slot: _Slot) -> None:
        self._restore(slot, self._load(slot.agent.agent_id))

    async def load(self, agent: LocalAgent) -> None:
        """Restore a deferred agent now, so ``agent.messages`` holds the history before a turn."""
        slot = self._slot(agent)
        if not slot.restored:
            await slot.lane.run(self._catch_up_restore_only, slot)

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
        slot = self._slot(agent)
        if self._in_current_turn(slot, normalised):
            return
        slot.pending.append(normalised)

    def sync_agent(self, agent: LocalAgent, **kwargs: Any) -> None:
        """Store hand-appended messages and any change of state; never counts a turn twice.

        On an event loop's thread the write is handed to the I/O thread and not waited for
        (``await manager.flush()`` waits); elsewhere it is stored when this returns.
        """
        self._ensure_open()
        self._wait_unless_on_loop(self._slot(agent).lane.submit(self._sync, self._slot(agent)))

    async def sync_agent_async(self, agent: LocalAgent) -> None:
        """:meth:`sync_agent`, awaited."""
        self._ensure_open()
        slot = self._slot(agent)
        await slot.lane.run(self._sync, slot)

    async def flush(self) -> None:
        """Wait until every write handed to the I/O threads so far has been stored."""
        for lane in [slot.lane for slot in self._slots.values()] + [self._lane]:
            await asyncio.wrap_future(lane.idle())

    def redact_latest_message(self, redact_message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        """Replace the latest stored message's redacted form (Strands' guardrail redaction)."""
        slot = self._slot(agent)
        self._wait_unless_on_loop(slot.lane.submit(self._redact, slot, redact_message))

    def _redact(self, slot: _Slot, redact_message: Message) -> None:
        if not slot.records:
            raise MongoDBSessionError("No message to redact.")
        latest = slot.records[-1]
        latest.redact_message = redact_message
        self.repository.update_message(
            self.session_id,
            slot.agent.agent_id,
            latest,
            mask=self._lifecycle.mask,
            seal=self._lifecycle.sealer(self.session_id),
        )

    def initialize_multi_agent(self, source: MultiAgentBase, **kwargs: Any) -> None:
        self._ensure_open()
        state = self.repository.read_multi_agent(self.session_id, source.id)
        if state is None:
            self._ensure_session()
            self.repository.create_multi_agent(self.session_id, source)
        else:
            source.deserialize_state(state)

    def sync_multi_agent(self, source: MultiAgentBase, **kwargs: Any) -> None:
        self._ensure_open()
        self._wait_unless_on_loop(
            self._lane.submit(self.repository.update_multi_agent, self.session_id, source)
        )

    def _ensure_session(self) -> None:
        session = Session(session_id=self.session_id, session_type=SessionType.AGENT)
        self.repository.create_session(session, metadata=self._metadata, user_id=self._lifecycle.user_id)

    def close(self) -> None:
        """Store what is still pending (messages appended by hand, the latest state).

        The client stays open: it belongs to the pool, the factory, or you. On an event loop's
        thread the writes are handed to the I/O thread; ``await manager.aclose()`` waits for them.
        """
        if self._closed:
            return
        futures = [slot.lane.submit(self._sync, slot) for slot in self._slots.values()]
        self._closed = True
        if not on_loop_thread():
            for future in futures:
                future.result()

    async def aclose(self) -> None:
        """:meth:`close`, awaited: returns once everything is stored."""
        if self._closed:
            await self.flush()
            return
        jobs = [slot.lane.run(self._sync, slot) for slot in self._slots.values()]
        self._closed = True
        await asyncio.gather(*jobs)

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

    def _in_current_turn(self, slot: _Slot, message: Message) -> bool:
        start = slot.turn_start
        if start is None:
            return False
        same_role = [m for m in slot.agent.messages[start:] if m.get("role") == message["role"]]
        text = message_text(message)
        return (
            any(message_text(m) == text for m in same_role) or "".join(map(message_text, same_role)) == text
        )

    def _slot(self, agent: LocalAgent) -> _Slot:
        slot = self._slots.get(agent.agent_id)
        if slot is None or slot.agent is not agent:
            raise MongoDBSessionError(
                f"session_id=<{self.session_id}> | agent_id=<{agent.agent_id}> | "
                "this agent was not initialised with this session manager"
            )
        return slot

    def _ensure_open(self) -> None:
        if self._closed:
            raise MongoDBSessionError(f"session_id=<{self.session_id}> | the session manager is closed")

    @staticmethod
    def _wait_unless_on_loop(future: concurrent.futures.Future[Any]) -> None:
        if not on_loop_thread():
            future.result()

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
        slot = self._slot(agent)
        await slot.lane.run(self._persist, slot, _Job(message=message, incomplete_reason=reason))
        return message

    def last_turn_metrics(self, agent_id: str) -> dict[str, Any] | None:
        """The ``event_loop_metrics`` record of the agent's last finished turn in this manager, or None."""
        slot = self._slots.get(agent_id)
        return None if slot is None else slot.last_turn_metrics

    # --- async construction -------------------------------------------------------------------

    def preload(self, agent_id: str) -> None:
        """Read the session and the agent's window now (one round trip), so building the Agent does no I/O."""
        agent_id = validate_agent_id(agent_id)
        self._preloaded[agent_id] = self._load(agent_id)

    def _load(self, agent_id: str) -> SessionSnapshot | None:
        """The session and the agent's window; a session of another user is refused before any write."""
        snapshot = self.repository.load_session(self.session_id, agent_id)
        self._lifecycle.observe(None if snapshot is None else snapshot.document)
        user_id = self._lifecycle.user_id
        if snapshot is not None and user_id is not None:
            stored = snapshot.document.get("user_id")
            if stored is None:  # stored before it had a user: it becomes this user's, once
                stored = self.repository.claim_user(self.session_id, user_id)
            check_user(self.session_id, stored, user_id)
        return self._lifecycle.open_snapshot(self.session_id, snapshot)


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
