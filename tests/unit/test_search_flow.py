"""The search flow's two paths, driven by a scripted store (no server)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from mongodb_session_manager._plans import Find, ListIndexes, Step, drive_sync
from mongodb_session_manager._repository_core import RepositoryCore
from mongodb_session_manager._search import MAX_SEARCH_SESSIONS, SEARCH_MAX_TIME_MS, has_text_index
from mongodb_session_manager.config import StoreConfig

WHEN = datetime(2025, 1, 31, 12, 0)
STORED = {
    "session_id": "s-1",
    "agent_id": "assistant",
    "message_id": 4,
    "role": "assistant",
    "created_at": WHEN,
    "message": {"content": [{"text": "nothing here"}, {"text": "Hotel in PARIS"}, {}]},
}


class Store:
    def __init__(self, indexes: list[dict[str, Any]]) -> None:
        self.indexes = indexes
        self.requests: list[Any] = []

    def execute(self, step: Step) -> Any:
        request = step.request
        self.requests.append(request)
        if isinstance(request, ListIndexes):
            return self.indexes
        assert isinstance(request, Find)
        if request.target == "sessions":
            return [{"_id": "s-1"}, {"_id": "s-2"}]
        return [STORED]


def test_without_a_text_index_the_text_is_an_escaped_case_insensitive_pattern() -> None:
    core = RepositoryCore(StoreConfig(client=object()))
    store = Store([{"key": {"_id": 1}}])

    (match,) = drive_sync(core._search_messages("paris.", "alice", 5), store.execute)

    sessions, messages = store.requests[1], store.requests[2]
    assert sessions.filter["user_id"] == "alice"
    assert sessions.limit == MAX_SEARCH_SESSIONS
    assert messages.filter["session_id"] == {"$in": ["s-1", "s-2"]}
    assert messages.filter["$or"][0] == {"message.content.text": {"$regex": r"paris\.", "$options": "i"}}
    assert (messages.limit, messages.max_time_ms) == (5, SEARCH_MAX_TIME_MS)
    assert match.text == "nothing here\nHotel in PARIS"  # no block matches "paris.": all of them
    assert match.created_at == WHEN.replace(tzinfo=timezone.utc)


def test_the_matching_block_is_the_text_and_the_index_is_looked_up_once() -> None:
    core = RepositoryCore(StoreConfig(client=object()))
    store = Store([])
    (match,) = drive_sync(core._search_messages("paris", None, 20), store.execute)
    assert match.text == "Hotel in PARIS"
    drive_sync(core._search_messages("paris", None, 20), store.execute)
    assert sum(isinstance(request, ListIndexes) for request in store.requests) == 1


def test_with_a_text_index_the_index_answers() -> None:
    core = RepositoryCore(StoreConfig(client=object()))
    store = Store([{"key": {"_fts": "text", "_ftsx": 1}}])
    (match,) = drive_sync(core._search_messages("paris", "alice", 20), store.execute)
    messages = store.requests[2]
    assert messages.filter == {"session_id": {"$in": ["s-1", "s-2"]}, "$text": {"$search": "paris"}}
    assert match.text == "nothing here\nHotel in PARIS"
    assert has_text_index([{"key": {"message.content.text": "text"}}])
    assert not has_text_index([{"key": {"session_id": 1}}])
