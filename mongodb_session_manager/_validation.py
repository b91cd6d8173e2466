"""Checks applied to ids before anything touches the database."""

from __future__ import annotations

from typing import Any

from .errors import InvalidSessionInputError

MAX_ID_LENGTH = 512


def validate_session_id(session_id: Any) -> str:
    """Return ``session_id`` if it is a usable session id, else raise ``InvalidSessionInputError``.

    A leading ``$`` is refused too: such ids read like operators in logs, exports and filters.
    """
    valid = _validate_id(session_id, "session_id")
    if valid.startswith("$"):
        raise InvalidSessionInputError(f"session_id must not start with '$': {valid!r}")
    return valid


def validate_agent_id(agent_id: Any) -> str:
    """Like :func:`validate_session_id`; agent ids also become map keys, so no ``.`` and no leading ``$``."""
    valid = _validate_id(agent_id, "agent_id")
    if "." in valid or valid.startswith("$"):
        raise InvalidSessionInputError(f"agent_id must not contain '.' or start with '$': {valid!r}")
    return valid


def validate_message_id(message_id: Any) -> int:
    """Message ids are non-negative integers."""
    if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
        raise InvalidSessionInputError(f"message_id must be a non-negative int, got {message_id!r}")
    return message_id


def _validate_id(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidSessionInputError(f"{name} must be a str, got {type(value).__name__}")
    if not value or not value.strip():
        raise InvalidSessionInputError(f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidSessionInputError(
            f"{name} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if "\x00" in value:
        raise InvalidSessionInputError(f"{name} must not contain NUL characters")
    return value
