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
import contextlib
import copy
import logging
import sys
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from strands.hooks import (
    AfterInvocationEvent,
    AfterModelCallEvent,
    AfterMultiAgentInvocationEvent,
    AfterNodeCallEvent,
    AgentInitializedEvent,
    BeforeInvocationEvent,
    BeforeModelCallEvent,
    BeforeMultiAgentInvocationEvent,
    HookRegistry,
    MessageAddedEvent,
    MultiAgentInitializedEvent,
)
from strands.session.session_manager import SessionManager
from strands.types.content import Message
from strands.types.session import Session, SessionMessage, SessionType

from . import _repair, schema
from . import _strands_compat as compat
from ._io import Lane, on_loop_thread
from ._large_content import deferred_files
from ._lifecycle import Lifecycle, check_user
from ._plans import (
    Flow,
    Lease,
    LeaseHeld,
    MessageWrite,
    NewAgent,
    SessionSnapshot,
    SessionWrite,
    StaleWindow,
    new_lease_owner,
)
from ._storable import check_metadata
from ._validation import validate_agent_id, validate_idempotency_key, validate_session_id
from .encryption import ContentEncryption
from .errors import (
    ConfigurationError,
    InvalidSessionInputError,
    MongoDBSessionError,
    SessionBusyError,
    TurnAlreadyStoredError,
)
from .metrics.capture import TurnStatus, TurnTracker, has_tool_use, message_text
from .repository import MongoDBSessionRepository

if TYPE_CHECKING:
    import concurrent.futures

    from strands.multiagent.base import MultiAgentBase
    from strands.types.agent import LocalAgent

__all__ = [
    "IDEMPOTENCY_KEY",
    "MongoDBSessionManager",
    "create_mongodb_session_manager",
    "normalise_message",
]

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "idempotency_key"
"""Where a request's idempotency key goes: ``stream_async(p, invocation_state={IDEMPOTENCY_KEY: k})``."""

DEFAULT_LEASE_TTL = timedelta(seconds=60)
DEFAULT_TURN_WAIT = timedelta(seconds=30)
PRUNE_SLACK = 16  # stored-message records kept beyond twice the window before a prune


@dataclass(eq=False)
class _Slot:
    """Everything the manager knows about one agent of the session.

    The agent holds the manager (its hooks, ``agent._session_manager``), so the slot holds the
    agent strongly only while the manager is open: once closed, with nothing left to store, it
    keeps a weak reference, and a dropped agent and its manager are freed by reference counting
    (no garbage-collector pass, whose full collections stall the loop in a busy app).
    """

    _held: LocalAgent | None
    lane: Lane = field(default_factory=Lane)
    restored: bool = False  # False while the restore is deferred to the first async hook
    stored: bool = False  # the agent's entry exists in the session document
    # When the read that found no entry for the agent started: its messages stored before then
    # are no session's (an expired one's, left by the TTL monitor); its first write deletes them.
    absent_since: datetime | None = None
    latest_message_id: int | None = None
    contended: bool = False  # another writer shares this agent: ids come from the counter
    written: dict[str, Any] | None = None  # the agent state as last written (or restored)
    # In agent.messages, not stored yet: a new agent's initial messages, repairs, manual appends.
    unsaved: list[Message] = field(default_factory=list)
    pending: list[Message] = field(default_factory=list)  # appended by hand before the restore
    records: list[SessionMessage] = field(default_factory=list)  # the stored messages still held
    turn: TurnTracker | None = None
    turn_start: int | None = None
    turn_key: str | None = None  # the invocation's idempotency key, stored with its prompt
    last_turn_metrics: dict[str, Any] | None = None
    # The turn lease (one writer per session and agent): this manager's token for the agent.
    owner: str = field(default_factory=new_lease_owner)
    lease_wanted: bool = False  # the turn's next write with a message takes the lease
    leased: bool = False  # the lease is ours (taken, its turn not closed yet)
    lease_message_id: int | None = None  # the stored message that carries our lease
    lease_contended: bool = False  # another writer's turn was running when we restored: wait for it
    renewer: asyncio.TimerHandle | asyncio.Task[None] | None = None
    store_error: BaseException | None = None  # the turn's failed write: no further write this turn
    needs_repair: str | None = None  # why the tail must be closed before the next turn
    manual_tail: Message | None = None  # the last hand-appended message, while it ends agent.messages
    placeholder: Message | None = None  # the incomplete reply a repair stored for this turn
    _ref: Callable[[], LocalAgent | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        agent = self._held
        try:
            self._ref = weakref.ref(agent)
        except TypeError:  # an agent type without weak references stays held (and collected by gc)
            self._ref = lambda: agent

    @property
    def agent(self) -> LocalAgent:
        agent = self._held if self._held is not None else self._ref()
        if agent is None:
            raise MongoDBSessionError("the agent of this session manager was garbage-collected")
        return agent

    def let_go(self) -> None:
        """Keep only a weak reference to the agent, unless something still waits to be stored."""
        if not (self.unsaved or self.pending):
            self._held = None


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
    idempotency_key: str | None = None
    release: bool = False  # the turn's last write: its record (or a release) closes the lease
    batch: list[Message] | None = None  # several messages in one write (instead of ``message``)


class MongoDBSessionManager(SessionManager["LocalAgent"]):
    """Persist a Strands agent's conversation, state and per-turn metrics in MongoDB.

    Build it from a ``connection_string`` (a pooled, process-wide client), a ``client`` you own,
    or a ``repository`` shared with other managers (what the factory does). Extra keyword
    arguments are pymongo client options (``maxPoolSize=100``, ``serverSelectionTimeoutMS=...``,
    ``w="majority"``, ``journal=True``). Construction does no I/O.

    One writer per (session, agent): each turn holds a lease carried by every message it stores
    and closed by its turn record (no write of its own). A second request
    on the same session waits up to ``turn_wait`` for it, then raises `SessionBusyError`; a
    crashed writer's lease expires after ``lease_ttl`` (renewed while a long turn runs).
    ``turn_lock=False`` turns the lease off.

    Data lifecycle (docs/lifecycle.md): ``user_id`` ties the session to one user for good;
    ``expire_after`` expires the session and its messages together after that long without
    activity; ``keep_last_messages`` deletes messages that left the conversation manager's
    window more than that many messages ago; ``mask`` functions rewrite text before it is
    stored; ``encryption`` encrypts message content and agent state at rest.

    ``large_content_threshold`` (bytes, default 4 MiB): image, document and video bytes longer
    than this are stored in GridFS and read back byte-exact (docs/schema.md);
    ``large_content_cache_bytes`` (default 256 MiB, 0: off) bounds the process-wide cache of
    their bytes, so resuming the session again does not download them again.
    ``defer_large_content=True`` (default off) makes a resume leave those bytes unread: until the
    agent's next model call (or ``await manager.load(agent)``) ``agent.messages`` holds a
    :class:`~._large_content.DeferredContent` in their place, then the stored bytes. The sync
    constructor's own read off an event loop (no ``preload``) still reads them at once.
    """

    _defer_large_content = False  # the option's value, set per instance by the constructor

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
        turn_lock: bool = True,
        lease_ttl: timedelta | float = DEFAULT_LEASE_TTL,
        turn_wait: timedelta | float = DEFAULT_TURN_WAIT,
        large_content_threshold: int | None = None,
        large_content_cache_bytes: int | None = None,
        defer_large_content: bool = False,
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
        self._turn_lock = bool(turn_lock)
        self._lease_ttl = _seconds("lease_ttl", lease_ttl, minimum=1.0)
        self._turn_wait = _seconds("turn_wait", turn_wait, minimum=0.0)
        if not isinstance(defer_large_content, bool):
            raise ConfigurationError(f"defer_large_content must be a bool, got {defer_large_content!r}")
        self._defer_large_content = defer_large_content
        if repository is None:
            repository = MongoDBSessionRepository(
                connection_string,
                database_name or schema.DEFAULT_DATABASE_NAME,
                collection_name or schema.DEFAULT_COLLECTION_NAME,
                client=client,
                **client_options,
                **(
                    {}
                    if large_content_threshold is None
                    else {"large_content_threshold": large_content_threshold}
                ),
                **(
                    {}
                    if large_content_cache_bytes is None
                    else {"large_content_cache_bytes": large_content_cache_bytes}
                ),
            )
        else:
            given = {"connection_string": connection_string, "client": client, "database_name": database_name}
            given["large_content_threshold"] = large_content_threshold
            given["large_content_cache_bytes"] = large_content_cache_bytes
            given |= {"collection_name": collection_name, **client_options}
            ignored = sorted(name for name, value in given.items() if value is not None)
            if ignored:
                raise ConfigurationError(f"{ignored} cannot apply to a repository you passed in")
        self.repository = repository
        self._lifecycle.bind(repository.client)
        self._metadata = dict(metadata or {})
        self._session_document: dict[str, Any] | None = None  # built on first use
        schema.session_list_filter(metadata=self._metadata)  # refuse operator keys before any write
        check_metadata(self._metadata)  # and what BSON cannot hold
        self._slots: dict[str, _Slot] = {}
        self._preloaded: dict[str, tuple[SessionSnapshot | None, datetime]] = {}
        # Built on an event loop's thread: Graphs and Swarms restore at their first invocation
        # (Strands initialises them from a loop of its own that the caller's thread waits for).
        self._defer_multi_agents = on_loop_thread()
        self._deferred_multi_agents: dict[str, MultiAgentBase] = {}
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
        if self._defer_large_content:
            registry.add_callback(BeforeModelCallEvent, self._on_before_model_call)
        registry.add_callback(MessageAddedEvent, self._on_message_added)
        registry.add_callback(AfterInvocationEvent, self._on_after_invocation)
        registry.add_callback(
            MultiAgentInitializedEvent, lambda event: self.initialize_multi_agent(event.source)
        )
        registry.add_callback(BeforeMultiAgentInvocationEvent, self._on_before_multi_agent_invocation)
        registry.add_callback(AfterNodeCallEvent, self._on_multi_agent_changed)
        registry.add_callback(AfterMultiAgentInvocationEvent, self._on_multi_agent_changed)

    async def _on_before_invocation(self, event: BeforeInvocationEvent) -> None:
        slot = self._slot(event.agent)
        slot.store_error = None
        slot.placeholder = None
        slot.turn_start = None  # no turn of this invocation yet (a reload keeps nothing of the last)
        key = (event.invocation_state or {}).get(IDEMPOTENCY_KEY)
        slot.turn_key = None if key is None else validate_idempotency_key(key)
        if slot.turn_key is not None and await self._refuse_stored_turn(slot):
            # Its turn is stored without a reply: most likely still running (a retry sent while
            # the first request streams). Wait for its lease, then look again.
            slot.lease_contended = True
        if not slot.restored or slot.pending:
            # Requests that arrive together build their agents in one pass of the loop. An I/O
            # thread reading now would take the GIL at each syscall of the agents built after
            # this one, and run inside that pass: start the read after it.
            await asyncio.sleep(0)
            await slot.lane.run(self._catch_up, slot)
            compat.resume_interrupt(slot.agent, event.messages)
        slot.lease_wanted = self._turn_lock
        try:
            if slot.lease_contended and self._turn_lock:
                # Another writer's turn was running when we restored: wait for it, then read what it stored.
                await self._in_turn(slot, self._nothing_to_write)
            if slot.needs_repair is not None and not compat.interrupt_pending(slot.agent):
                self._add_repairs(slot, slot.needs_repair)
            if slot.unsaved:
                await self._in_turn(slot, self._store_unsaved)
        except BaseException:
            # Strands runs no AfterInvocationEvent when this hook raises: give the lease back here.
            slot.lease_wanted = False
            if slot.leased:
                await slot.lane.run(self._give_back, slot)
            raise
        slot.turn = TurnTracker.start(cast(Any, event.agent))
        slot.turn_start = len(event.agent.messages)

    async def _on_before_model_call(self, event: BeforeModelCallEvent) -> None:
        """Deferred large content gets its bytes before the model sees the messages (in the lane)."""
        slot = self._slot(event.agent)
        if deferred_files(slot.agent.messages):
            await slot.lane.run(self._hydrate, slot)

    def _hydrate(self, slot: _Slot, messages: Sequence[Any] | None = None) -> None:
        """Read the bytes of the deferred large content in ``messages`` (the agent's), in place."""
        self.repository.hydrate_messages(slot.agent.messages if messages is None else messages)

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
        if self._is_manual_duplicate(slot, message):
            # The guide's pattern: the prompt was appended (and stored) by hand before the turn.
            manual, slot.manual_tail = slot.manual_tail, None
            slot.agent.messages.pop()
            if slot.turn is not None:
                slot.turn.observe(message)
                await slot.lane.run(self._adopt, slot, manual, slot.turn)
            return
        slot.manual_tail = None
        if slot.turn is None and slot.lease_contended and self._turn_lock:
            # Before a turn starts, Strands answers a window that ends in a toolUse with a
            # "missing" toolResult. Here that toolUse is another writer's running turn: wait for
            # it (the window is read again), and keep the message only if it is still needed.
            await self._in_turn(slot, self._nothing_to_write)
            if not _repair.answers_open_tool_use(slot.agent.messages, message):
                return
            slot.agent.messages.append(message)
        opens_turn = slot.turn_start is not None and len(slot.agent.messages) == slot.turn_start + 1
        key = slot.turn_key if opens_turn and message.get("role") == "user" else None
        job = _Job(message=message, state=compat.agent_state(slot.agent), turn=slot.turn, idempotency_key=key)
        if slot.turn is not None:
            slot.turn.observe(message)
            if slot.turn.is_final(message):
                job.event_loop_metrics, job.totals = slot.turn.finish("completed")
                job.release = True
                slot.last_turn_metrics = job.event_loop_metrics
        await self._in_turn(slot, self._persist_after_unsaved, job)

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        slot = self._slot(event.agent)
        turn, slot.turn = slot.turn, None
        self._stop_renewer(slot)
        in_flight = sys.exc_info()[1]  # Strands runs this hook in a `finally`: the turn's error, if any
        if slot.store_error is not None:
            # The store failed during the turn: nothing more is tried now (one wait for an
            # unreachable server, not one per write); the caller gets our error, not Strands'
            # wrapper of it.
            # A write cut off by an outage may have landed or not: the store says which, so the
            # agent is read again (and what was left open closed) before its next turn.
            slot.restored = False
            # Let go of it as the turn ends: its traceback's frames hold the slot (a cycle) and the
            # turn's messages, which a long-lived agent would otherwise keep until its next turn.
            error, slot.store_error = slot.store_error, None
            if in_flight is not None and in_flight is not error and compat.unwrap(in_flight, type(error)):
                raise error
            return
        if turn is not None and turn.recorded:
            # The final message carried the turn's state, totals and record (closing the lease). What
            # changed after it (the conversation manager trimming its window) rides along with
            # the next write, or sync_agent()/close() stores it: a plain turn stays at two round trips.
            self._prune_records(slot)
            return
        outcome = None
        if turn is not None:
            result = event.result
            if turn.error is None and in_flight is not None:
                turn.error = in_flight
            status = _status_of(turn, None if result is None else str(result.stop_reason))
            record, totals = turn.finish(status)
            slot.last_turn_metrics = record
            outcome = (turn, status, record, totals)
        # Decided and written in the lane, after the writes the turn handed off: what to close
        # depends on what they stored. Submitted before the first await, so a cancel that keeps
        # cancelling every await (anyio's cancel scopes) cannot skip it.
        future = slot.lane.submit(self._finish_turn, slot, outcome)
        await asyncio.shield(asyncio.wrap_future(future))
        self._prune_records(slot)

    def _finish_turn(
        self, slot: _Slot, outcome: tuple[TurnTracker, TurnStatus, dict[str, Any], dict[str, int]] | None
    ) -> None:
        """End a turn that its final message did not end: close what it left open, record it, release."""
        agent = slot.agent
        jobs: list[_Job] = []
        if outcome is not None:
            turn, status, record, totals = outcome
            if turn.last_message_id is None and slot.turn_start is not None:
                del agent.messages[slot.turn_start :]  # nothing of this turn was stored: nor is it kept
            stored_any = turn.last_message_id is not None
            if stored_any and status in ("cancelled", "failed") and not compat.interrupt_pending(agent):
                reason = _reason_of(status, turn.error)
                for message in _repair.repair_messages(agent.messages, reason):
                    agent.messages.append(message)
                    jobs.append(_Job(message=message, turn=turn, incomplete_reason=reason))
                if jobs:
                    slot.placeholder = jobs[-1].message
                    jobs[-1].event_loop_metrics, jobs[-1].totals = record, totals
            if not jobs and stored_any:
                jobs.append(_Job(turn_record=record, totals=totals, turn=turn))
        if not jobs:
            jobs.append(_Job())
        jobs[-1].state = compat.agent_state(agent)
        jobs[-1].release = True
        for job in jobs:
            self._persist(slot, job)

    async def _on_multi_agent_changed(
        self, event: AfterNodeCallEvent | AfterMultiAgentInvocationEvent
    ) -> None:
        await self._lane.run(self.repository.update_multi_agent, self.session_id, event.source)

    # --- the turn lease -----------------------------------------------------------------------

    async def _in_turn(self, slot: _Slot, write: Callable[..., None], *args: Any) -> None:
        """Run a write of the turn in the agent's lane; wait (bounded) while another writer holds the lease.

        When the lease is won after another writer stored a turn, the window is read again (and
        the invocation's messages put after it) before the write is tried again, so this turn sees
        its predecessors. A write that fails leaves memory as the store has it and ends the turn's
        writes (``store_error``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._turn_wait
        delay = 0.01
        while True:
            try:
                if slot.lease_contended and self._turn_lock:
                    # The window shows another writer's turn running: writing now would put
                    # this turn inside it. Wait until it is closed (or its lease ran out).
                    await slot.lane.run(self._wait_for_turn, slot)
                await slot.lane.run(write, slot, *args)
                break
            except LeaseHeld as held:
                if loop.time() + delay > deadline:
                    self._undo(slot, args)
                    slot.lease_wanted = False
                    raise SessionBusyError(
                        f"session_id=<{self.session_id}> | agent_id=<{slot.agent.agent_id}> | "
                        "another request is running a turn of this session "
                        f"(its lease ends {held.until:%H:%M:%S} UTC)"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
            except StaleWindow:
                try:
                    await slot.lane.run(self._reload, slot)
                except TurnAlreadyStoredError:
                    self._undo(slot, args)  # a retry of this request ran while we waited
                    slot.lease_wanted = False
                    raise
            except TurnAlreadyStoredError:
                self._undo(slot, args)  # not a store failure: the turn's end gives the lease back
                slot.lease_wanted = False
                raise
            except MongoDBSessionError as error:
                self._undo(slot, args)
                slot.lease_wanted = slot.lease_wanted and slot.turn is not None
                slot.store_error = error
                raise
        if slot.leased and slot.renewer is None and slot.turn is not None:
            # A timer, not a task: most turns end long before their lease needs renewing.
            slot.renewer = loop.call_later(self._lease_ttl / 3, self._start_renewing, slot)

    def _undo(self, slot: _Slot, args: tuple[Any, ...]) -> None:
        """Take a message that could not be stored back out of ``agent.messages``."""
        job = args[0] if args and isinstance(args[0], _Job) else None
        if job is None or job.message is None:
            return
        messages = slot.agent.messages
        for index in range(len(messages) - 1, -1, -1):
            if messages[index] is job.message:
                del messages[index]
                return

    def _give_back(self, slot: _Slot) -> None:
        with contextlib.suppress(MongoDBSessionError):  # else it expires by itself
            self._persist(slot, _Job(release=True))

    @staticmethod
    def _nothing_to_write(slot: _Slot) -> None:
        """What waiting for another writer's turn is for, at the start of a turn: nothing more."""

    def _wait_for_turn(self, slot: _Slot) -> None:
        """``LeaseHeld`` while another writer's turn still runs; then read the window again.

        While it runs, only the lease on the messages after ours is read (a small indexed
        range), not the whole window.
        """
        agent_id = slot.agent.agent_id
        if slot.latest_message_id is not None:
            held = self.repository.open_turn_lease(self.session_id, agent_id, slot.latest_message_id)
            running = self._running_lease(slot, held)
            if running is not None:
                raise LeaseHeld(running["until"])
        snapshot, read_at = self._load(agent_id)
        held = None if snapshot is None else self._running_lease(slot, snapshot.lease)
        if held is not None:
            raise LeaseHeld(held["until"])
        slot.lease_contended = False  # before the restore, which closes what a dead writer left open
        self._reload_from(slot, snapshot, read_at)

    def _running_lease(self, slot: _Slot, lease: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """``lease`` (of a turn still open) if it is another writer's and has not expired."""
        return lease if self._turn_lock and schema.lease_running(lease, slot.owner) else None

    def _reload(self, slot: _Slot) -> None:
        """Read the window again after another writer's turn; keep this invocation's messages after it."""
        self._reload_from(slot, *self._load(slot.agent.agent_id))

    def _reload_from(self, slot: _Slot, snapshot: SessionSnapshot | None, read_at: datetime) -> None:
        agent = slot.agent
        start = slot.turn_start if slot.turn_start is not None else len(agent.messages)
        waiting = {id(message) for message in slot.unsaved}
        ours = [message for message in agent.messages[start:] if id(message) not in waiting]
        slot.restored = False
        self._restore(slot, snapshot, read_at, reloading=True)
        if slot.turn_start is not None:
            slot.turn_start = len(agent.messages)
        if slot.needs_repair is not None:
            self._add_repairs(slot, slot.needs_repair)
        agent.messages.extend(ours)
        if slot.turn_key is not None:
            self._refuse_stored_turn_sync(slot, slot.turn_key)

    def _start_renewing(self, slot: _Slot) -> None:
        slot.renewer = asyncio.get_running_loop().create_task(self._renew_lease(slot))

    async def _renew_lease(self, slot: _Slot) -> None:
        """Renew the turn's lease every third of its time to live, while the turn holds it."""
        while slot.leased:
            await slot.lane.run(self._renew, slot)
            await asyncio.sleep(self._lease_ttl / 3)

    def _renew(self, slot: _Slot) -> None:
        if slot.leased and slot.lease_message_id is not None:
            agent_id = slot.agent.agent_id
            until = schema.utcnow() + timedelta(seconds=self._lease_ttl)
            lease = Lease(slot.owner, until, message_id=slot.lease_message_id)
            self.repository.write(self.session_id, agent_id, None, SessionWrite(agent_id, lease=lease))

    @staticmethod
    def _stop_renewer(slot: _Slot) -> None:
        if slot.renewer is not None:
            slot.renewer.cancel()
            slot.renewer = None

    # --- idempotency --------------------------------------------------------------------------

    async def _refuse_stored_turn(self, slot: _Slot) -> bool:
        """Raise if the key's turn is stored; True if without a reply yet and a lease to wait for."""
        assert slot.turn_key is not None
        return await slot.lane.run(self._refuse_stored_turn_sync, slot, slot.turn_key, not self._turn_lock)

    def _refuse_stored_turn_sync(self, slot: _Slot, key: str, final: bool = True) -> bool:
        turn = self.repository.find_turn(self.session_id, slot.agent.agent_id, key)
        if turn is None:
            return False
        prompt, replies = (
            turn[0],
            [record for record in turn[1:] if record.message.get("role") == "assistant"],
        )
        reply = replies[-1] if replies else None
        if reply is None and not final:
            return True
        raise TurnAlreadyStoredError(
            f"session_id=<{self.session_id}> | agent_id=<{slot.agent.agent_id}> | idempotency_key=<{key}> | "
            f"this request already ran: its turn starts at message {prompt.message_id}"
            + ("" if reply is not None else " and has no reply yet"),
            idempotency_key=key,
            prompt_message_id=prompt.message_id,
            reply=None if reply is None else dict(reply.message),
        )

    # --- the write path (runs in the agent's lane, on an I/O thread) --------------------------

    def _persist(self, slot: _Slot, job: _Job) -> None:
        """Store one job: its message(s) (if any) and whatever changed in the session document."""
        self.repository._drive(self._persist_flow(slot, job))

    def _persist_flow(self, slot: _Slot, job: _Job) -> Flow[None]:
        """:meth:`_persist` as a flow: the write is the repository's, run by whichever shell drives it."""
        agent_id = slot.agent.agent_id
        state = job.state
        changed = _changed_fields(state, slot.written)
        if job.turn_record is not None and (job.turn is None or job.turn.last_message_id is None):
            job.turn_record = None  # the turn stored no message to carry its record
            job.totals = None
        messages = job.batch if job.batch else [] if job.message is None else [job.message]
        lease = self._lease_for(slot, job, bool(messages))
        if (
            not messages
            and changed is None
            and job.totals is None
            and job.turn_record is None
            and lease is None
        ):
            return
        create = None
        if not slot.stored:
            current = state if state is not None else compat.agent_state(slot.agent)
            sealed = self._lifecycle.seal_state(self.session_id, current)
            create = NewAgent(
                self._session_fields(),
                schema.agent_entry(sealed or current),
                leftovers_before=slot.absent_since,
            )
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
        recreate = None
        if job.release and create is None and (sealed_change or job.totals):
            # What recreates a session document deleted under a live manager, riding in the
            # turn's last session update (an upsert that changes nothing else when it exists).
            current = state if state is not None else compat.agent_state(slot.agent)
            entry = schema.agent_entry(self._lifecycle.seal_state(self.session_id, current) or current)
            recreate = NewAgent(self._session_fields(), entry)
        write = SessionWrite(
            agent_id,
            sealed_change,
            job.totals,
            turn_record,
            create,
            extra=extra,
            lease=lease,
            recreate=recreate,
        )
        first_id = self._next_message_id(slot)
        now = schema.utcnow().isoformat() if messages else ""  # one timestamp for the write's messages
        writes = [
            MessageWrite(
                SessionMessage(message, first_id + offset, created_at=now, updated_at=now),
                job.event_loop_metrics if message is messages[-1] else None,
                job.incomplete_reason or _repair.reason_of(message),
                idempotency_key=job.idempotency_key if offset == 0 else None,
                expires_at=None if stamp is None else stamp.messages_expire_at,
                mask=self._lifecycle.mask,
                seal=self._lifecycle.sealer(self.session_id),
            )
            for offset, message in enumerate(messages)
        ]
        session = None if write.empty else write
        allocate_first = slot.contended  # with the lease: look for a running turn above a gap first
        # StaleWindow passes through: nothing landed, the lease is still to take after a new read.
        ids = yield from self.repository._append(self.session_id, agent_id, writes, session, allocate_first)
        self._lifecycle.confirm(stamp)
        slot.stored = True
        if lease is not None and lease.take:
            slot.leased, slot.lease_wanted, slot.lease_message_id = True, False, ids[0]
        if job.release:
            slot.leased, slot.lease_message_id = False, None  # closed by the record or released
        if changed is not None or create is not None:
            slot.written = state
        for message_write, stored_id in zip(writes, ids, strict=True):
            if stored_id != self._next_message_id(slot):
                slot.contended = True
            slot.latest_message_id = stored_id
            slot.records.append(message_write.session_message)
        if ids and job.turn is not None:
            job.turn.last_message_id = ids[-1]

    def _lease_for(self, slot: _Slot, job: _Job, with_messages: bool) -> Lease | None:
        """The lease this write takes or gives back (None: nothing to do with the lease).

        Taken by the turn's first write with a message and carried by every message the turn
        stores; closed by the turn's record on its last write, so only a turn that ends without
        one gives the lease back in an op of its own.
        """
        if not self._turn_lock or not (slot.lease_wanted or slot.leased):
            return None
        records = job.event_loop_metrics is not None or job.turn_record is not None
        until = schema.utcnow() + timedelta(seconds=self._lease_ttl)
        if slot.lease_wanted:
            if not with_messages or (job.release and not records):
                if job.release:
                    slot.lease_wanted = False  # the turn ends without having written: nothing to take
                return None
            return Lease(slot.owner, until, take=True)
        if job.release and not records and slot.lease_message_id is not None:
            return Lease(slot.owner, until, message_id=slot.lease_message_id, release=True)
        # Held: each message of the running turn carries it (a reader sees it on the latest).
        return Lease(slot.owner, until) if with_messages else None

    @staticmethod
    def _adopt(slot: _Slot, message: Message | None, turn: TurnTracker) -> None:
        """A prompt stored by hand before the turn is the turn's first stored message."""
        record = next((r for r in reversed(slot.records) if r.message is message), None)
        if record is not None and turn.last_message_id is None:
            turn.last_message_id = record.message_id

    def _persist_after_unsaved(self, slot: _Slot, job: _Job) -> None:
        self._store_unsaved(slot)
        self._persist(slot, job)

    def _persist_all(self, slot: _Slot, jobs: list[_Job]) -> None:
        for job in jobs:
            self._persist(slot, job)

    def _store_unsaved(self, slot: _Slot) -> None:
        """Store what is in ``agent.messages`` but not in MongoDB yet, in one write (a failure keeps it)."""
        if slot.unsaved:
            batch = list(slot.unsaved)
            self._persist(slot, _Job(batch=batch, state=compat.agent_state(slot.agent)))
            del slot.unsaved[: len(batch)]

    def _catch_up(self, slot: _Slot) -> None:
        """Restore a deferred agent, then store what waits: initial messages and manual appends."""
        if not slot.restored:
            self._restore(slot, *self._load(slot.agent.agent_id))
        while slot.pending:
            message = slot.pending.pop(0)
            slot.agent.messages.append(message)
            slot.unsaved.append(message)
            slot.manual_tail = message
        self._store_unsaved(slot)

    def _sync(self, slot: _Slot) -> None:
        """Store what waits and any change of state (``sync_agent``'s work, in the lane)."""
        if not slot.restored and not slot.pending:
            return  # never restored, nothing to add: an agent that ran no turn writes nothing
        self._catch_up(slot)
        self._persist(slot, _Job(state=compat.agent_state(slot.agent)))

    def _next_message_id(self, slot: _Slot) -> int:
        return 0 if slot.latest_message_id is None else slot.latest_message_id + 1

    def _session_fields(self) -> dict[str, Any]:
        """The session document a first write (or a recreation) inserts, timestamped now."""
        if self._session_document is None:
            session = Session(session_id=self.session_id, session_type=SessionType.AGENT)
            self._session_document = schema.session_document(
                session, metadata=self._metadata, user_id=self._lifecycle.user_id
            )
        return schema.restamped(self._session_document)

    # --- restore --------------------------------------------------------------------------------

    def _restore(
        self, slot: _Slot, snapshot: SessionSnapshot | None, read_at: datetime, *, reloading: bool = False
    ) -> None:
        """Apply a loaded session to the agent, exactly as Strands' own initialize does.

        A conversation a crashed writer left open (a prompt without a reply, a ``toolUse``
        without a result) is closed once, by messages stored before the next turn's own,
        unless that writer's lease says its turn is still running.
        """
        agent = slot.agent
        entry = None if snapshot is None else (snapshot.document.get("agents") or {}).get(agent.agent_id)
        if entry is None:
            if not reloading:
                slot.unsaved = list(
                    agent.messages
                )  # a new agent: its initial messages go with its first write
            slot.written = compat.agent_state(agent)
            slot.absent_since = read_at
        else:
            assert snapshot is not None
            prepend = compat.restore_agent(agent, entry)
            compat.set_messages(agent, prepend, snapshot.window)
            slot.stored = True
            slot.contended = "next_message_id" in entry
            slot.records = list(snapshot.window)
            slot.unsaved = []
            if snapshot.window:
                slot.latest_message_id = snapshot.window[-1].message_id
            elif "next_message_id" in entry:
                slot.latest_message_id = int(entry["next_message_id"])
            slot.written = compat.agent_state(agent)
            # Kept if already set (a retry whose turn is stored without a reply yet waits too).
            slot.lease_contended = (
                slot.lease_contended or self._running_lease(slot, snapshot.lease) is not None
            )
            # Open, but not a running turn's (its writer is still on that): closed before the next turn.
            if (
                not slot.lease_contended
                and _repair.needs_repair(agent.messages)
                and not compat.interrupt_pending(agent)
            ):
                slot.needs_repair = "recovered: the previous turn did not finish"
        slot.restored = True

    def _add_repairs(self, slot: _Slot, reason: str) -> None:
        slot.needs_repair = None
        for message in _repair.repair_messages(slot.agent.messages, reason):
            slot.agent.messages.append(message)
            slot.unsaved.append(message)

    def _prune_records(self, slot: _Slot) -> None:
        # Only the records of messages still in agent.messages are needed (for redaction): the
        # others are dropped once they could double what is held (each turn's walk, amortised).
        messages = slot.agent.messages
        if len(slot.records) <= 2 * len(messages) + PRUNE_SLACK:
            return
        held = {id(message) for message in messages}
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
            self._restore(slot, *self._preloaded.pop(agent_id))
        elif not on_loop_thread():
            slot.lane.submit(self._restore_from_store, slot).result()

    def _restore_from_store(self, slot: _Slot) -> None:
        """The sync constructor's and ``load()``'s restore: the bytes are read now, even if deferred."""
        self._restore(slot, *self._load(slot.agent.agent_id))
        if self._defer_large_content:
            self._hydrate(slot)

    async def load(self, agent: LocalAgent | MultiAgentBase) -> None:
        """Restore a deferred agent now, so ``agent.messages`` holds the history before a turn.

        Deferred large content (``defer_large_content``) gets its bytes here too.

        A Graph or Swarm given here gets its stored state now instead of at its first invocation.
        """
        if compat.is_multi_agent(agent):
            await self._load_multi_agent(cast("MultiAgentBase", agent))
            return
        slot = self._slot(cast("LocalAgent", agent))
        if not slot.restored:
            await slot.lane.run(self._restore_from_store, slot)
        elif deferred_files(slot.agent.messages):
            await slot.lane.run(self._hydrate, slot)

    def append_message(self, message: Message | Mapping[str, Any], agent: LocalAgent, **kwargs: Any) -> None:
        """Add a message to the session by hand (the guide's pattern), durably and safely.

        The message is appended to ``agent.messages`` and stored: when this returns in
        synchronous code; on an event loop's thread it is handed to the I/O thread at once and
        ``flush()``, ``aclose()`` and ``close()`` wait for it. Strands' hooks already store every
        message the agent adds: a message given here that the agent added in its current turn
        (same role and text) is not stored twice, and a prompt appended here right before the
        turn that sends it is stored once. String content becomes ``[{"text": ...}]``.
        """
        self._ensure_open()
        normalised = normalise_message(message)
        slot = self._slot(agent)
        placeholder = slot.placeholder
        last = agent.messages[-1] if agent.messages else None
        if placeholder is not None and last is placeholder and normalised["role"] == "assistant":
            # The reply of a turn that broke off, given by hand: it fills the turn's repair.
            slot.placeholder = None
            placeholder["content"] = normalised["content"]
            self._wait_unless_on_loop(slot.lane.submit(self._rewrite_latest, slot, placeholder))
            return
        if self._in_current_turn(slot, normalised):
            return
        if slot.restored and not slot.pending:
            agent.messages.append(normalised)
            slot.unsaved.append(normalised)
            slot.manual_tail = normalised
            future = slot.lane.submit(self._store_unsaved, slot)
        else:
            slot.pending.append(normalised)  # goes in after the deferred restore
            future = slot.lane.submit(self._catch_up, slot)
        self._wait_unless_on_loop(future)

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
        """Wait until every write handed to the I/O threads so far has been stored.

        Messages a failed write left unstored are tried again here; if that fails too, the
        error is raised and they stay pending (in ``agent.messages``, stored by the next flush).
        """
        for lane in [slot.lane for slot in self._slots.values()] + [self._lane]:
            await asyncio.wrap_future(lane.idle())
        for slot in self._slots.values():
            if slot.unsaved or slot.pending:
                await slot.lane.run(self._catch_up, slot)
        if self._closed:  # a retry stored what close() could not: nothing holds the agent now
            for slot in self._slots.values():
                await slot.lane.run(slot.let_go)

    def pending_writes(self) -> list[concurrent.futures.Future[None]]:
        """Futures that complete once every write handed to the I/O threads so far has run."""
        return [lane.idle() for lane in [slot.lane for slot in self._slots.values()] + [self._lane]]

    def redact_latest_message(self, redact_message: Message, agent: LocalAgent, **kwargs: Any) -> None:
        """Replace the latest stored message's redacted form (Strands' guardrail redaction)."""
        slot = self._slot(agent)
        self._wait_unless_on_loop(slot.lane.submit(self._redact, slot, redact_message))

    def _redact(self, slot: _Slot, redact_message: Message) -> None:
        if not slot.records:
            raise MongoDBSessionError("No message to redact.")
        latest = slot.records[-1]
        self._hydrate(slot, [latest.message, redact_message])
        latest.redact_message = redact_message
        self.repository.update_message(
            self.session_id,
            slot.agent.agent_id,
            latest,
            mask=self._lifecycle.mask,
            seal=self._lifecycle.sealer(self.session_id),
        )

    def initialize_multi_agent(self, source: MultiAgentBase, **kwargs: Any) -> None:
        """Restore a Graph's or Swarm's state: now, or at its first invocation for a loop's manager."""
        self._ensure_open()
        if self._defer_multi_agents:
            self._deferred_multi_agents[source.id] = source
        else:
            self._restore_multi_agent(source)

    def _restore_multi_agent(self, source: MultiAgentBase) -> None:
        state = self.repository.read_multi_agent(self.session_id, source.id)
        if state is None:
            self._ensure_session()
            self.repository.create_multi_agent(self.session_id, source)
        else:
            source.deserialize_state(state)

    async def _on_before_multi_agent_invocation(self, event: BeforeMultiAgentInvocationEvent) -> None:
        await self._load_multi_agent(event.source)

    async def _load_multi_agent(self, source: MultiAgentBase) -> None:
        if self._deferred_multi_agents.pop(source.id, None) is not None:
            await self._lane.run(self._restore_multi_agent, source)

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
        futures = [slot.lane.submit(self._close_slot, slot) for slot in self._slots.values()]
        self._closed = True
        self._deferred_multi_agents.clear()  # a Graph that never ran: nothing to restore, no cycle
        if not on_loop_thread():
            for future in futures:
                future.result()

    async def aclose(self) -> None:
        """:meth:`close`, awaited: returns once everything is stored."""
        if self._closed:
            await self.flush()
            return
        jobs = [slot.lane.run(self._close_slot, slot) for slot in self._slots.values()]
        self._closed = True
        self._deferred_multi_agents.clear()
        await asyncio.gather(*jobs)

    def _close_slot(self, slot: _Slot) -> None:
        """``close()``'s work in the lane: store what waits, then hold the agent only weakly."""
        try:
            self._sync(slot)
        finally:
            slot.let_go()

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

    @staticmethod
    def _is_manual_duplicate(slot: _Slot, message: Message) -> bool:
        messages = slot.agent.messages
        return (
            slot.manual_tail is not None
            and len(messages) >= 2
            and messages[-1] is message
            and messages[-2] is slot.manual_tail
            and _same_message(slot.manual_tail, message)
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

        The turn's own repair already closed the conversation with an assistant message marked
        incomplete; it now gets the streamed text. Without one (the turn was not stored as
        broken) the conversation is closed here the same way, ``toolResult`` first where a tool
        call was left open, in MongoDB and in ``agent.messages``. Returns the incomplete reply,
        or None if the turn had ended with a complete reply. The work runs in the agent's lane
        after the turn's own writes, and goes on if the caller is cancelled while it waits.
        """
        self._ensure_open()
        slot = self._slot(agent)
        future = slot.lane.submit(self._keep_incomplete, slot, text, reason)
        return await asyncio.shield(asyncio.wrap_future(future))

    def _keep_incomplete(self, slot: _Slot, text: str, reason: str) -> Message | None:
        messages = slot.agent.messages
        last = messages[-1] if messages else None
        if last is not None and last is slot.placeholder:
            slot.placeholder = None
            if text:
                last["content"] = [{"text": text}]
                custom = cast(dict[str, Any], last.get("metadata") or {}).get("custom") or {}
                custom["reason"] = reason
                self._rewrite_latest(slot, last)
            return last
        if last is None or (last.get("role") == "assistant" and not has_tool_use(last)):
            return None
        repairs = _repair.repair_messages(messages, reason, text)
        messages.extend(repairs)
        slot.unsaved.extend(repairs)
        self._store_unsaved(slot)
        return repairs[-1]

    def _rewrite_latest(self, slot: _Slot, message: Message) -> None:
        record = next((r for r in reversed(slot.records) if r.message is message), None)
        if record is None:
            return
        self._hydrate(slot, [record.message])
        self.repository.update_message(
            self.session_id,
            slot.agent.agent_id,
            record,
            mask=self._lifecycle.mask,
            seal=self._lifecycle.sealer(self.session_id),
        )

    def last_turn_metrics(self, agent_id: str) -> dict[str, Any] | None:
        """The ``event_loop_metrics`` record of the agent's last finished turn in this manager, or None."""
        slot = self._slots.get(agent_id)
        return None if slot is None else slot.last_turn_metrics

    # --- async construction -------------------------------------------------------------------

    def preload(self, agent_id: str) -> None:
        """Read the session and the agent's window now (one round trip), so building the Agent does no I/O."""
        agent_id = validate_agent_id(agent_id)
        self._preloaded[agent_id] = self._load(agent_id)

    def _load(self, agent_id: str) -> tuple[SessionSnapshot | None, datetime]:
        """The session and the agent's window, and when the read started.

        A session of another user is refused before any write.
        """
        read_at = schema.utcnow()
        snapshot = self.repository.load_session(
            self.session_id, agent_id, defer_large_content=self._defer_large_content
        )
        self._lifecycle.observe(None if snapshot is None else snapshot.document)
        user_id = self._lifecycle.user_id
        if snapshot is not None and user_id is not None:
            stored = snapshot.document.get("user_id")
            if stored is None:  # stored before it had a user: it becomes this user's, once
                stored = self.repository.claim_user(self.session_id, user_id)
            check_user(self.session_id, stored, user_id)
        return self._lifecycle.open_snapshot(self.session_id, snapshot), read_at


def _changed_fields(state: dict[str, Any] | None, written: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fields of the agent's ``state`` that differ from what was last written (None: none).

    Only those are ``$set``, checked and sealed: a turn typically changes the conversation
    manager's counters alone, not the agent's own state.
    """
    if state is None or written is None:
        return state
    changed = {name: value for name, value in state.items() if name not in written or written[name] != value}
    return changed or None


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


def _reason_of(status: TurnStatus, error: BaseException | None) -> str:
    return "cancelled" if status == "cancelled" else f"error: {type(error).__name__}" if error else "failed"


def _seconds(name: str, value: timedelta | float, *, minimum: float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < minimum:
        raise ConfigurationError(
            f"{name} must be a timedelta or a number of seconds >= {minimum:g}, got {value!r}"
        )
    return float(seconds)


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
