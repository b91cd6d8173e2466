"""The insert flow, driven by a fake store: what both repositories rely on."""

from __future__ import annotations

from strands.types.session import SessionMessage

from mongodb_session_manager._plans import Allocate, Flow, InsertOp, Plan, ReadTail, insert_message_flow


class FakeStore:
    """Taken ids and a counter, like the unique index and the session document."""

    def __init__(self, taken: set[int]) -> None:
        self.taken = set(taken)
        self.counter = -1
        self.steps: list[str] = []

    def drive(self, flow: Flow) -> int:
        step = next(flow)
        while True:
            try:
                if isinstance(step, Plan):
                    insert = step.ops[0]
                    assert isinstance(insert, InsertOp)
                    message_id = insert.document["message_id"]
                    applied = message_id not in self.taken
                    self.taken.add(message_id)
                    self.steps.append(f"insert {message_id} {'ok' if applied else 'taken'}")
                    step = flow.send(applied)
                elif isinstance(step, ReadTail):
                    self.steps.append("tail")
                    step = flow.send(max(i for i in self.taken if i >= step.from_message_id))
                else:
                    assert isinstance(step, Allocate)
                    self.counter = max(self.counter, step.floor) + 1
                    self.steps.append(f"allocate {self.counter}")
                    step = flow.send(self.counter)
            except StopIteration as done:
                return int(done.value)


def message(message_id: int) -> SessionMessage:
    return SessionMessage.from_message({"role": "user", "content": [{"text": "hi"}]}, message_id)


def test_a_free_id_is_one_insert() -> None:
    store = FakeStore(taken={0, 1})
    assert store.drive(insert_message_flow("s", "a", message(2))) == 2
    assert store.steps == ["insert 2 ok"]


def test_a_taken_id_moves_past_the_stored_tail() -> None:
    store = FakeStore(taken={0, 1, 2, 3, 4})
    stored = message(2)
    assert store.drive(insert_message_flow("s", "a", stored)) == 5
    assert stored.message_id == 5
    assert store.steps == ["insert 2 taken", "tail", "allocate 5", "insert 5 ok"]


def test_a_writer_that_saw_contention_takes_ids_from_the_counter() -> None:
    store = FakeStore(taken={0, 1})
    store.counter = 6
    assert store.drive(insert_message_flow("s", "a", message(2), allocate_first=True)) == 7


def test_a_session_update_rides_in_the_same_plan() -> None:
    flow = insert_message_flow("s", "a", message(0), session_update={"$set": {"updated_at": 1}})
    plan = next(flow)
    assert isinstance(plan, Plan)
    assert [op.target for op in plan.ops] == ["messages", "sessions"]
