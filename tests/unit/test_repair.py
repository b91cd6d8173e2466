"""What closes a conversation a fault left open, and what counts as already answered."""

from __future__ import annotations

from typing import Any

from mongodb_session_manager._repair import answers_open_tool_use

ASKED: Any = {
    "role": "assistant",
    "content": [
        {"toolUse": {"toolUseId": "a", "name": "f", "input": {}}},
        {"toolUse": {"toolUseId": "b", "name": "f", "input": {}}},
    ],
}


def result(*ids: str) -> Any:
    return {"role": "user", "content": [{"toolResult": {"toolUseId": i, "content": []}} for i in ids]}


def test_a_tool_result_answers_the_tool_use_that_ends_the_conversation_only_if_it_answers_all() -> None:
    assert answers_open_tool_use([ASKED], result("a", "b"))
    assert not answers_open_tool_use([ASKED], result("a"))


def test_nothing_is_answered_when_no_tool_use_is_open() -> None:
    assert not answers_open_tool_use([ASKED, result("a", "b")], result("a", "b"))  # closed already
    assert not answers_open_tool_use([], result("a"))
