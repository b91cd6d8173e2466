"""Every filter the package sends to the messages collection carries the shard key's prefix.

On a cluster the messages collection is sharded on ``schema.MESSAGE_SHARD_KEY``
(``{session_id: 1, agent_id: 1}``). A filter with ``session_id`` (one value, or an ``$in`` of
a few) is routed to the shards holding those conversations; one without it is broadcast to all.
Each repository operation is driven here through a recording store, and every request that
reaches the messages collection (finds, deletes, updates, plan inserts and updates, the
resume's ``$lookup``) is checked.

The exception, by design: metrics aggregations across sessions (``summary``/``group_by`` and
the others without ``session_ids``) read turn records of every session, so they fan out; the
dashboards' ``summary``/``group_by`` read the rollups collection instead (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from strands.types.session import Session, SessionMessage, SessionType

from mongodb_session_manager import schema
from mongodb_session_manager._plans import (
    Aggregate,
    Count,
    Delete,
    DeleteFiles,
    EnsureIndexes,
    Find,
    FindAndUpdate,
    FindOne,
    Flow,
    InsertOp,
    ListIndexes,
    MessageWrite,
    NewAgent,
    RunPlan,
    SessionWrite,
    Step,
    Update,
    UpdateOp,
    drive_sync,
    write_plan,
)
from mongodb_session_manager._repository_core import RepositoryCore
from mongodb_session_manager.config import StoreConfig
from mongodb_session_manager.metrics import MetricsFilter, pipelines

SESSION, AGENT = "s-1", "agent-1"


class RecordingStore:
    """Answers like a store holding one session, and keeps each filter sent to the messages."""

    def __init__(self, *, conflicts: int = 0) -> None:
        self.conflicts = conflicts
        self.message_filters: list[tuple[str, Mapping[str, Any]]] = []

    def execute(self, step: Step) -> Any:
        request = step.request
        if isinstance(request, EnsureIndexes):
            return None
        if isinstance(request, ListIndexes):
            return []
        if isinstance(request, Find) and request.target == "sessions":  # a search's sessions
            return [{"_id": SESSION}]
        if isinstance(request, DeleteFiles):  # a session's GridFS files, found by its id
            assert request.session_ids
            return 0
        if isinstance(request, RunPlan):
            for op in request.plan.ops:
                if op.target == "messages":
                    shape = op.document if isinstance(op, InsertOp) else op.filter
                    self.message_filters.append((step.operation, shape))
            if self.conflicts and request.plan.message_index is not None:
                self.conflicts -= 1
                return request.plan.message_index
            return None
        if isinstance(request, Aggregate):
            joined_from: Any = None  # the session ids the pipeline's own $match selected
            for stage in request.pipeline:
                if "$match" in stage and "_id" in stage["$match"]:
                    joined_from = stage["$match"]["_id"]
                lookup = stage.get("$lookup")
                if lookup and lookup["from"].endswith("_messages"):
                    query = dict(lookup["pipeline"][0]["$match"])
                    if (lookup.get("localField"), lookup.get("foreignField")) == ("_id", "session_id"):
                        query["session_id"] = joined_from  # the join's equality targets the shards too
                    self.message_filters.append((step.operation, query))
            agents = {AGENT: {"next_message_id": 3}}
            return [{"_id": SESSION, "agents": agents, schema.RESUME_WINDOW_FIELD: []}]
        if getattr(request, "target", None) == "messages":
            self.message_filters.append((step.operation, request.filter))  # type: ignore[union-attr]
        if isinstance(request, FindOne) and request.target == "messages":
            return None
        if isinstance(request, FindAndUpdate | FindOne):
            return {"_id": SESSION, "agents": {AGENT: {"next_message_id": 7}}}
        if isinstance(request, Find):
            return []
        if isinstance(request, Update | Delete | Count):
            return 1
        raise AssertionError(f"unexpected request {request!r}")


def _core() -> RepositoryCore:
    return RepositoryCore(StoreConfig(client=object()))


def _message(message_id: int = 0) -> SessionMessage:
    return SessionMessage(message={"role": "user", "content": [{"text": "hi"}]}, message_id=message_id)


def _operations(core: RepositoryCore) -> dict[str, Flow[Any]]:
    first = SessionWrite(
        AGENT,
        totals={"turns": 1},
        turn_record=(1, {"status": "completed"}),
        create=NewAgent(schema.session_document(Session(SESSION, SessionType.AGENT)), {"state": {}}),
    )
    return {
        "write a first message": core._write(SESSION, AGENT, MessageWrite(_message()), first, False),
        "write after contention": core._write(SESSION, AGENT, MessageWrite(_message(2)), None, True),
        "write a turn record": core._write_session_update(
            SESSION, None, {"turns": 1}, AGENT, (4, {"status": "completed"})
        ),
        "resume": core._load_session(SESSION, AGENT),
        "list messages": core._list_messages(SESSION, AGENT, 10, 0, True),
        "list messages past gaps": core._list_messages(SESSION, AGENT, None, 3, False),
        "read message": core._read_message(SESSION, AGENT, 3),
        "update message": core._update_message(SESSION, AGENT, _message(3)),
        "delete session": core._delete_session(SESSION),
        "search a user's messages": core._search_messages("paris", "alice", 20),
        "search every session": core._search_messages("paris", None, 20),
    }


def _targets_conversations(query: Mapping[str, Any]) -> bool:
    """True when ``query`` pins ``session_id`` (the shard key's first field) to known values."""
    value = query.get("session_id")
    if isinstance(value, str):
        return True
    return isinstance(value, Mapping) and set(value) == {"$in"} and bool(value["$in"])


@pytest.mark.parametrize("name", list(_operations(_core())))
def test_every_messages_request_of_an_operation_is_targeted(name: str) -> None:
    store = RecordingStore(conflicts=1 if "contention" in name or "first" in name else 0)
    drive_sync(_operations(_core())[name], store.execute)
    assert store.message_filters, f"{name} sent nothing to the messages collection"
    for operation, query in store.message_filters:
        assert _targets_conversations(query), f"{name} / {operation}: {query} is broadcast to every shard"


def test_shard_key_of_the_messages_is_a_prefix_of_their_unique_index() -> None:
    unique = next(spec for spec in schema.MESSAGE_INDEXES if spec.options.get("unique"))
    assert unique.keys[: len(schema.MESSAGE_SHARD_KEY)] == schema.MESSAGE_SHARD_KEY
    assert all(direction == 1 for _, direction in schema.MESSAGE_SHARD_KEY)  # ranged, never hashed


def test_the_turn_record_update_names_the_whole_unique_key() -> None:
    plan_filter = schema.message_filter(SESSION, AGENT, 4)
    assert [field for field, _ in schema.MESSAGE_INDEXES[0].keys] == list(plan_filter)


def test_session_bound_metrics_are_targeted_and_cross_session_ones_are_the_documented_exception() -> None:
    one = pipelines.session_turns_pipeline(SESSION, skip=0, limit=10)
    assert _targets_conversations(one[0]["$match"])
    some = MetricsFilter(session_ids=["a", "b"])
    assert _targets_conversations(pipelines.summary_pipeline(some, sessions_collection="s")[0]["$match"])
    everything = pipelines.group_pipeline("day", None, sessions_collection="s")
    assert not _targets_conversations(everything[0]["$match"])


def test_plan_updates_of_messages_are_update_ops_with_the_full_key() -> None:
    write = SessionWrite(AGENT, turn_record=(4, {"status": "completed"}))
    ops = [op for op in write_plan(SESSION, None, write).ops if op.target == "messages"]
    assert ops
    assert all(isinstance(op, UpdateOp) and _targets_conversations(op.filter) for op in ops)
