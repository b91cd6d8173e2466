"""Search the messages of a user's sessions for a piece of text (one flow for both repositories).

Two steps, so the messages filter always carries the shard key's prefix (``session_id``): the
user's most recently active sessions (at most :data:`MAX_SEARCH_SESSIONS`, from the
``user_updated_at`` index), then their messages matching the text, newest first, at most
``limit``. Where the messages collection has a ``$text`` index (a real mongod; create it
yourself, see docs/schema.md) the match is the index's: whole words, stemmed. Otherwise (SecantusDB, or
no such index) it is a case-insensitive substring match (the text is escaped, never a regex)
that the server runs over those sessions' messages: bounded by the session cap and by
:data:`SEARCH_MAX_TIME_MS`. Encrypted messages are ciphertext: they never match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import schema
from ._plans import Find, Flow, ListIndexes, ask
from ._validation import validate_user_id
from .codec import from_bson_datetime
from .errors import InvalidSessionInputError

__all__ = [
    "MAX_SEARCH_LIMIT",
    "MAX_SEARCH_SESSIONS",
    "MAX_SEARCH_TEXT",
    "SEARCH_MAX_TIME_MS",
    "MessageMatch",
    "has_text_index",
    "search_flow",
    "text_index_flow",
    "validate_search",
]

MAX_SEARCH_LIMIT = 100
MAX_SEARCH_TEXT = 256  # characters
MAX_SEARCH_SESSIONS = 1000  # the most recently active sessions a search looks in
SEARCH_MAX_TIME_MS = 5000  # the server stops a scan that runs longer


@dataclass(frozen=True)
class MessageMatch:
    """A message that matched a search: where it is, who wrote it, and its text."""

    session_id: str
    agent_id: str
    message_id: int
    role: str | None
    text: str
    created_at: datetime


def validate_search(text: Any, user_id: Any, limit: Any) -> tuple[str, str | None, int]:
    """The search's arguments, or :class:`InvalidSessionInputError` before anything is read."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSessionInputError(f"search text must be a non-empty string, got {text!r}")
    if len(text) > MAX_SEARCH_TEXT or "\x00" in text:
        raise InvalidSessionInputError(
            f"search text must be at most {MAX_SEARCH_TEXT} characters, without NUL"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise InvalidSessionInputError(f"limit must be an int from 1 to {MAX_SEARCH_LIMIT}, got {limit!r}")
    return text, None if user_id is None else validate_user_id(user_id), limit


def has_text_index(indexes: list[Mapping[str, Any]]) -> bool:
    """Whether one of the messages collection's indexes (``listIndexes``) is a ``$text`` index."""
    return any("text" in dict(index.get("key") or {}).values() for index in indexes)


def text_index_flow() -> Flow[bool]:
    """Whether the messages collection has a ``$text`` index (the repository asks once)."""
    indexes = yield ask(ListIndexes("messages"), "search messages")
    return has_text_index(indexes)


def search_flow(text: str, user_id: str | None, limit: int, text_index: bool) -> Flow[list[MessageMatch]]:
    """The matches, newest first: through the ``$text`` index when there is one, else a scan."""
    sessions = yield ask(
        Find(
            "sessions",
            schema.search_sessions_filter(user_id),
            sort=schema.SESSION_PAGE_SORT,
            limit=MAX_SEARCH_SESSIONS,
            projection={"_id": 1},
        ),
        "search messages",
    )
    session_ids = [str(document["_id"]) for document in sessions]
    if not session_ids:
        return []
    pattern = re.escape(text)
    query = (
        schema.message_text_filter(session_ids, text)
        if text_index
        else schema.message_regex_filter(session_ids, pattern)
    )
    documents = yield ask(
        Find(
            "messages",
            query,
            sort=schema.SEARCH_SORT,
            limit=limit,
            projection=schema.SEARCH_PROJECTION,
            max_time_ms=SEARCH_MAX_TIME_MS,
        ),
        "search messages",
    )
    matcher = None if text_index else re.compile(pattern, re.IGNORECASE)
    return [_match(document, matcher) for document in documents]


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.fromisoformat(from_bson_datetime(value))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _texts(content: Any) -> list[str]:
    texts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        result = block.get("toolResult")
        if isinstance(result, Mapping):
            texts.extend(_texts(result.get("content")))
    return texts


def _match(document: Mapping[str, Any], matcher: re.Pattern[str] | None) -> MessageMatch:
    message = document.get("message")
    texts = _texts(message.get("content") if isinstance(message, Mapping) else None)
    # The block that matched first (with the index: the message's text, every block).
    matching = [text for text in texts if matcher is None or matcher.search(text)]
    return MessageMatch(
        session_id=str(document["session_id"]),
        agent_id=str(document["agent_id"]),
        message_id=int(document["message_id"]),
        role=document.get("role"),
        text="\n".join((matching[:1] if matcher is not None else []) or texts),
        created_at=_utc(document.get("created_at")),
    )
