"""Close a conversation that a fault left open, so a strict provider accepts it again.

A turn that breaks off (cancel, disconnect, model error, outage, a crashed process) can leave
the conversation ending in a ``toolUse`` nobody answered, or in a user message nobody replied
to. Bedrock Converse and Anthropic refuse both, and a new prompt after them would put two user
messages in a row. :func:`repair_messages` returns what closes the conversation: a
``toolResult`` of status ``error`` for every unanswered tool call, then an assistant message
marked incomplete. Pure functions: the manager stores what they return like any message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from strands.types.content import Message

__all__ = [
    "INCOMPLETE_KEY",
    "answers_open_tool_use",
    "incomplete_reply",
    "is_incomplete",
    "needs_repair",
    "reason_of",
    "repair_messages",
]

INCOMPLETE_KEY = "incomplete"


def _tool_use_ids(message: Message) -> list[str]:
    return [block["toolUse"]["toolUseId"] for block in message.get("content", []) if "toolUse" in block]


def answers_open_tool_use(messages: Sequence[Message], message: Message) -> bool:
    """True when ``message`` holds a ``toolResult`` for every ``toolUse`` that ends ``messages``."""
    pending = set(_tool_use_ids(messages[-1])) if messages else set()
    answered = {
        block["toolResult"]["toolUseId"] for block in message.get("content", []) if "toolResult" in block
    }
    return bool(pending) and pending <= answered


def needs_repair(messages: Sequence[Message]) -> bool:
    """True when the conversation ends open: an unanswered ``toolUse`` or an unanswered user message."""
    return bool(messages) and (messages[-1].get("role") == "user" or bool(_tool_use_ids(messages[-1])))


def repair_messages(messages: Sequence[Message], reason: str, text: str = "") -> list[Message]:
    """The messages that close ``messages`` (none when it is closed already).

    ``reason`` says why (``"cancelled"``, ``"error: TimeoutError"``, ``"recovered"``...); it is
    kept in each message's ``metadata.custom`` so readers (metrics, the CLI) can show it.
    ``text`` is the reply streamed before the break, if any.
    """
    if not needs_repair(messages):
        return []
    repairs: list[Message] = []
    pending = _tool_use_ids(messages[-1]) if messages[-1].get("role") == "assistant" else []
    if pending:
        results: list[Any] = [
            {
                "toolResult": {
                    "toolUseId": tool_use_id,
                    "status": "error",
                    "content": [{"text": f"The tool call did not complete ({reason})."}],
                }
            }
            for tool_use_id in pending
        ]
        repairs.append(_marked({"role": "user", "content": results}, reason))
    repairs.append(incomplete_reply(text, reason))
    return repairs


def incomplete_reply(text: str, reason: str) -> Message:
    """An assistant message standing for a reply that never finished."""
    return _marked({"role": "assistant", "content": [{"text": text or f"(no reply: {reason})"}]}, reason)


def is_incomplete(message: Message) -> bool:
    return reason_of(message) is not None


def reason_of(message: Message) -> str | None:
    """Why ``message`` stands in for something a fault cut off, or None for an ordinary message."""
    custom = (message.get("metadata") or {}).get("custom") or {}
    if isinstance(custom, dict) and custom.get(INCOMPLETE_KEY):
        return str(custom.get("reason") or "incomplete")
    return None


def _marked(message: dict[str, Any], reason: str) -> Message:
    message["metadata"] = {"custom": {INCOMPLETE_KEY: True, "reason": reason}}
    return cast(Message, message)
