"""The write flow, driven by a fake store: what both repositories rely on."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from strands.types.session import Session, SessionMessage, SessionType

from mongodb_session_manager import schema
from mongodb_session_manager._plans import (
    DeleteOp,
    EnsureIndexes,
    Find,
    FindAndUpdate,
    Flow,
    InsertOp,
    Lease,
    MessageWrite,
    NewAgent,
    RunPlan,
    SessionWrite,
    Step,
    UpdateOp,
    drive_sync,
    new_lease_owner,
    write_flow,
)


class FakeStore:
    """Taken ids and a counter, like the unique index and the session document."""

    def __init__(self, taken: set[int]) -> None:
        self.taken = set(taken)
        self.counter = -1
        self.steps: list[str] = []

    def execute(self, step: Step) -> Any:
        request = step.request
        if isinstance(request, EnsureIndexes):
            return None
        if isinstance(request, RunPlan):
            plan = request.plan
            assert plan.message_index is not None
            insert = plan.ops[plan.message_index]
            assert isinstance(insert, InsertOp)
            message_id = insert.document["message_id"]
            applied = message_id not in self.taken
            self.taken.add(message_id)
            self.steps.append(f"insert {message_id} {'ok' if applied else 'taken'}")
            return None if applied else plan.message_index
        if isinstance(request, Find):
            self.steps.append("tail")
            floor = request.filter["message_id"]["$gte"]
            return [{"message_id": i} for i in self.taken if i >= floor]
        assert isinstance(request, FindAndUpdate)
        floor = request.update[0]["$set"]["agents.a.next_message_id"]["$add"][0]["$max"][1]
        self.counter = max(self.counter, floor) + 1
        self.steps.append(f"allocate {self.counter}")
        return {"agents": {"a": {"next_message_id": self.counter}}}

    def drive(self, flow: Flow[int | None]) -> int | None:
        return drive_sync(flow, self.execute)


def message(message_id: int) -> MessageWrite:
    return MessageWrite(
        SessionMessage.from_message({"role": "user", "content": [{"text": "hi"}]}, message_id)
    )


def test_a_free_id_is_one_insert() -> None:
    store = FakeStore(taken={0, 1})
    assert store.drive(write_flow("s", "a", message(2), None)) == 2
    assert store.steps == ["insert 2 ok"]


def test_a_taken_id_moves_past_the_stored_tail() -> None:
    store = FakeStore(taken={0, 1, 2, 3, 4})
    stored = message(2)
    assert store.drive(write_flow("s", "a", stored, None)) == 5
    assert stored.session_message.message_id == 5
    assert store.steps == ["insert 2 taken", "tail", "allocate 5", "insert 5 ok"]


def test_a_writer_that_saw_contention_takes_ids_from_the_counter() -> None:
    store = FakeStore(taken={0, 1})
    store.counter = 6
    assert store.drive(write_flow("s", "a", message(2), None, allocate_first=True)) == 7


def first_plan(flow: Flow[int | None]) -> Any:
    step = next(flow)
    assert isinstance(step.request, EnsureIndexes)
    step = flow.send(None)
    assert isinstance(step.request, RunPlan)
    return step.request.plan


def test_a_session_update_rides_in_the_same_plan() -> None:
    plan = first_plan(write_flow("s", "a", message(0), SessionWrite("a", totals={"turns": 1})))
    assert [op.target for op in plan.ops] == ["messages", "sessions"]


def test_a_first_write_creates_the_session_and_the_agent_in_the_same_plan() -> None:
    create = NewAgent(session={"_id": "s", "metadata": {}}, agent={"state": {}})
    plan = first_plan(write_flow("s", "a", message(0), SessionWrite("a", create=create)))
    assert [(op.target, getattr(op, "upsert", False)) for op in plan.ops] == [
        ("sessions", True),  # the session, once: $setOnInsert
        ("sessions", False),  # the agent entry, only while it is absent
        ("messages", False),
    ]
    assert plan.message_index == 2


def test_a_first_write_deletes_what_no_session_held_when_it_read_before_its_message() -> None:
    read_at = schema.utcnow()
    create = NewAgent(session={"_id": "s"}, agent={"state": {}}, leftovers_before=read_at)
    plan = first_plan(write_flow("s", "a", message(0), SessionWrite("a", create=create)))
    delete = plan.ops[2]
    assert isinstance(delete, DeleteOp)
    # Only expiring messages stored well before the read that found no entry: whatever another
    # first writer stored since that read stays.
    assert delete.filter == {
        "session_id": "s",
        "agent_id": "a",
        "expires_at": {"$type": "date"},
        "created_at": {"$lt": read_at - timedelta(seconds=1)},
    }
    assert plan.message_index == 3


def lease(**fields: Any) -> Lease:
    return Lease("me", schema.utcnow() + timedelta(seconds=60), **fields)


def test_taking_the_lease_costs_no_op_it_rides_in_the_first_message() -> None:
    plan = first_plan(write_flow("s", "a", message(3), SessionWrite("a", lease=lease(take=True))))
    assert [op.target for op in plan.ops] == ["messages"]
    insert = plan.ops[0]
    assert isinstance(insert, InsertOp)
    assert insert.document["lease"]["owner"] == "me"


def test_a_turn_record_closes_the_lease_without_a_release_op() -> None:
    write = SessionWrite("a", totals={"turns": 1}, lease=lease())  # held: the reply carries it too
    plan = first_plan(write_flow("s", "a", message(3), write))
    assert [op.target for op in plan.ops] == ["messages", "sessions"]
    assert plan.ops[0].document["lease"]["owner"] == "me"  # type: ignore[union-attr]


def test_every_manager_has_a_lease_owner_of_its_own() -> None:
    owners = {new_lease_owner() for _ in range(10_000)}
    assert len(owners) == 10_000


def _owner_in_child(conn: Any) -> None:
    conn.send(new_lease_owner())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_reuse_its_parents_lease_owners() -> None:
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe()
    child = context.Process(target=_owner_in_child, args=(child_end,))
    child.start()
    from_child = parent_end.recv()
    child.join(10)
    # Both counters stand where the fork left them: without a prefix of its own the child would
    # hand out the very owner the parent hands out next.
    assert from_child != new_lease_owner()
    assert from_child[:16] != new_lease_owner()[:16]


def test_a_lease_runs_while_it_is_another_writers_and_has_time_left() -> None:
    later, earlier = schema.utcnow() + timedelta(minutes=1), schema.utcnow() - timedelta(seconds=1)
    assert schema.lease_running({"owner": "other", "until": later}, "me")
    assert schema.lease_running({"owner": "other", "until": later.replace(tzinfo=None)}, "me")  # BSON: UTC
    assert not schema.lease_running({"owner": "me", "until": later}, "me")
    assert not schema.lease_running({"owner": "other", "until": earlier}, "me")
    assert not schema.lease_running(None, "me")


def test_a_lease_is_renewed_and_given_back_on_its_messages_by_its_owner_only() -> None:
    renew = first_plan(write_flow("s", "a", None, SessionWrite("a", lease=lease(message_id=7))))
    release = first_plan(
        write_flow("s", "a", None, SessionWrite("a", lease=lease(message_id=7, release=True)))
    )
    for plan in (renew, release):
        (op,) = plan.ops
        assert isinstance(op, UpdateOp)
        assert op.target == "messages"
        assert op.many  # every message of the turn from its first on carries the lease
        assert op.filter == {
            "session_id": "s",
            "agent_id": "a",
            "message_id": {"$gte": 7},
            "lease.owner": "me",
        }
    assert "lease.until" in renew.ops[0].update["$set"]  # type: ignore[union-attr,index]
    assert release.ops[0].update == {"$unset": {"lease": ""}}  # type: ignore[union-attr]


def test_the_last_update_of_a_turn_can_recreate_a_vanished_session() -> None:
    recreate = NewAgent(
        session={"_id": "s", "schema_version": 1, "metadata": {}, "totals": {}, "updated_at": 0},
        agent={"state": {"k": 1}, "created_at": 0, "updated_at": 0},
    )
    write = SessionWrite("a", totals={"turns": 1}, recreate=recreate)
    plan = first_plan(write_flow("s", "a", message(3), write))
    update = plan.ops[1]
    assert isinstance(update, UpdateOp)
    assert update.upsert
    # Whatever the update writes itself stays out of $setOnInsert (the server refuses a path in both).
    assert update.update["$setOnInsert"] == {
        "schema_version": 1,
        "metadata": {},
        "agents.a.state": {"k": 1},
        "agents.a.created_at": 0,
        "agents.a.updated_at": 0,
    }


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ({"$set": {"agents.a.state": {}}}, {"agents.a.state_version"}),  # the same path
        ({"$set": {"agents.a": {}}}, set()),  # a parent of it
        ({"$inc": {"agents.a.state.turns": 1}}, {"agents.a.state_version"}),  # a child of it
        ({"$set": {"agents.a.stat": 1}}, {"agents.a.state", "agents.a.state_version"}),  # a prefix only
    ],
)
def test_recreation_leaves_out_a_path_its_update_writes_itself_or_beneath_or_above(
    written: dict[str, Any], kept: set[str]
) -> None:
    update = schema.with_recreation(written, "a", {"_id": "s"}, {"state": {"k": 1}, "state_version": 2})
    assert set(update["$setOnInsert"]) == kept


def test_an_upsert_after_the_messages_that_lost_a_race_retries_only_the_rest_of_the_plan() -> None:
    # Two first turns of an hour create its rollup at once: one upsert collides on _id. The
    # messages and the session update before it are stored; running them again would insert
    # twice and count the turn's totals twice.
    sent: list[list[str]] = []

    def execute(step: Step) -> Any:
        if isinstance(step.request, EnsureIndexes):
            return None
        assert isinstance(step.request, RunPlan)
        ops = step.request.plan.ops
        sent.append([f"{op.target}:{type(op).__name__}" for op in ops])
        return len(ops) - 1 if len(sent) == 1 else None  # the first plan's last op collides

    write = SessionWrite("a", totals={"turns": 1})
    record = {"status": "completed", "started_at": schema.utcnow(), "model_id": "m", "accumulated_usage": {}}
    reply = MessageWrite(
        SessionMessage.from_message({"role": "assistant", "content": [{"text": "hi"}]}, 3),
        event_loop_metrics=record,
    )
    assert drive_sync(write_flow("s", "a", reply, write), execute) == 3
    assert sent == [
        ["messages:InsertOp", "sessions:UpdateOp", "rollups:UpdateOp"],
        ["rollups:UpdateOp"],
    ]


def test_a_rollup_id_spells_its_hour_as_the_backfill_pipeline_formats_it() -> None:
    hour = datetime(2026, 3, 4, 5, tzinfo=timezone.utc)
    assert schema.rollup_id(hour, "a", "m") == f"{hour.strftime(schema.ROLLUP_HOUR_FORMAT)}.a.m"


def test_timestamps_are_utc_whole_milliseconds() -> None:
    stamps = [schema.utcnow() for _ in range(1000)]
    assert all(stamp.tzinfo is timezone.utc and stamp.microsecond % 1000 == 0 for stamp in stamps)
    assert abs(stamps[-1] - datetime.now(timezone.utc)) < timedelta(seconds=1)


def test_a_restamped_session_document_is_a_fresh_copy_created_now() -> None:
    document = schema.session_document(Session("s", SessionType.AGENT), metadata={"team": "a"})
    before = schema.utcnow()
    copy = schema.restamped(document)
    copy["metadata"]["team"] = "b"
    copy["agents"]["x"] = {}
    assert document["metadata"] == {"team": "a"}
    assert document["agents"] == {}
    assert copy["created_at"] == copy["updated_at"] >= before
    assert {key: copy[key] for key in ("_id", "session_type")} == {"_id": "s", "session_type": "AGENT"}
