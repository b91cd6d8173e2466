"""Each Strands internal the package relies on, pinned: a Strands release that changes one fails here."""

from __future__ import annotations

import inspect
from typing import Any

from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.hooks import HookRegistry
from strands.session.repository_session_manager import RepositorySessionManager
from strands.session.session_manager import SessionManager
from strands.types.session import SessionAgent

from mongodb_session_manager import _strands_compat as compat
from mongodb_session_manager import schema
from mongodb_session_manager.manager import MongoDBSessionManager
from mongodb_session_manager.testing import ScriptedModel


def agent(**options: Any) -> Agent:
    return Agent(agent_id="a", model=ScriptedModel([]), callback_handler=None, **options)


class _Recorder(HookRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.events: set[type[Any]] = set()

    def add_callback(self, event_type: Any, callback: Any) -> None:  # type: ignore[override]
        self.events.add(event_type)


def test_the_manager_handles_every_event_strands_own_session_manager_registers() -> None:
    class Plain(SessionManager):  # Strands' default wiring, nothing overridden
        redact_latest_message = append_message = sync_agent = initialize = lambda *a, **k: None  # type: ignore[assignment]

    strands_events, ours = _Recorder(), _Recorder()
    Plain().register_hooks(strands_events)
    manager = MongoDBSessionManager.__new__(MongoDBSessionManager)
    manager.register_hooks(ours)
    assert strands_events.events == compat.STRANDS_SESSION_EVENTS
    assert strands_events.events <= ours.events


def test_session_agent_from_agent_copies_state_but_not_model_state() -> None:
    subject = agent(state={"k": [1]})
    snapshot = SessionAgent.from_agent(subject)
    assert snapshot.state == {"k": [1]}
    assert snapshot.state is not subject.state.get()
    assert set(snapshot._internal_state) == {"interrupt_state", "model_state"}
    assert snapshot._internal_state["model_state"] is subject._model_state  # why agent_state copies it


def test_agent_state_is_a_snapshot_that_later_changes_do_not_touch() -> None:
    subject = agent(state={"k": 1})
    subject._model_state = {"response_id": "r1"}
    before = compat.agent_state(subject)
    subject.state.set("k", 2)
    subject._model_state["response_id"] = "r2"
    after = compat.agent_state(subject)
    assert before != after
    assert before["state"] == {"k": 1}
    assert before["internal_state"]["model_state"] == {"response_id": "r1"}


def test_agent_state_reads_what_strands_own_session_snapshot_holds() -> None:
    """agent_state reads the agent's fields directly: it must equal SessionAgent.from_agent's."""
    subject = agent(
        state={"city": "Paris"}, conversation_manager=SlidingWindowConversationManager(window_size=4)
    )
    subject._model_state = {"response_id": "r3"}
    subject.conversation_manager.removed_message_count = 2
    subject._interrupt_state.context = {"step": 1}
    assert compat.agent_state(subject) == schema.agent_state(SessionAgent.from_agent(subject))


def test_restore_puts_state_interrupts_model_state_and_the_window_back() -> None:
    source = agent(
        state={"city": "Paris"}, conversation_manager=SlidingWindowConversationManager(window_size=4)
    )
    source._model_state = {"response_id": "r9"}
    source.conversation_manager.removed_message_count = 6
    entry = compat.agent_state(source)

    target = agent(conversation_manager=SlidingWindowConversationManager(window_size=4))
    prepend = compat.restore_agent(target, entry)
    assert prepend == []
    assert target.state.get() == {"city": "Paris"}
    assert target._model_state == {"response_id": "r9"}
    assert compat.window_offset(target, entry) == 6
    assert not target._interrupt_state.activated


def test_strands_repairs_orphaned_tool_use_without_manager_state() -> None:
    # _fix_broken_tool_use is called unbound: it must not need the manager's attributes.
    assert "self" in inspect.signature(RepositorySessionManager._fix_broken_tool_use).parameters
    messages: list[Any] = [
        {"role": "user", "content": [{"text": "go"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "x", "input": {}}}]},
        {"role": "user", "content": [{"text": "next"}]},
    ]
    fixed = compat._fix_broken_tool_use(messages)
    assert (
        next(block for block in fixed[2]["content"] if "toolResult" in block)["toolResult"]["toolUseId"]
        == "t1"
    )


def test_interrupt_state_resume_applies_responses_only_when_activated() -> None:
    subject = agent()
    compat.resume_interrupt(subject, [{"role": "user", "content": [{"text": "hi"}]}])  # not activated: no-op
    state = subject._interrupt_state
    assert hasattr(state, "activated")
    assert hasattr(state, "resume")
    assert hasattr(state, "to_dict")
