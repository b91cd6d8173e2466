"""Checks applied to user input (ids, metadata filters) before anything touches the database."""

from __future__ import annotations

from collections.abc import Mapping
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


def validate_user_id(user_id: Any) -> str:
    """User ids follow the session id rules; they are stored in a top-level, indexed field."""
    valid = _validate_id(user_id, "user_id")
    if valid.startswith("$"):
        raise InvalidSessionInputError(f"user_id must not start with '$': {valid!r}")
    return valid


def validate_message_id(message_id: Any) -> int:
    """Message ids are non-negative integers."""
    if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 0:
        raise InvalidSessionInputError(f"message_id must be a non-negative int, got {message_id!r}")
    return message_id


MAX_IDEMPOTENCY_KEY_LENGTH = 256


def validate_idempotency_key(key: Any) -> str:
    """An idempotency key: a non-empty ``str`` of at most 256 characters."""
    if not isinstance(key, str) or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidSessionInputError(
            f"idempotency_key must be a non-empty str of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )
    return key


def validate_metadata_filter(metadata: Any) -> dict[str, Any]:
    """Return a metadata filter as a new dict if it is a plain equality match, else raise.

    A filter ``{"tenant": "acme"}`` becomes ``{"metadata.tenant": "acme"}``. A key that starts with
    ``$`` or holds a ``.$`` step, at any depth (inside lists too), would turn it into an operator:
    ``{"user": {"$ne": None}}`` matches everyone. Such keys, empty keys and non-str keys raise
    ``InvalidSessionInputError``. ``None`` is no filter: ``{}``.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidSessionInputError(f"metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        _check_filter_key(key)
        _check_filter_value(key, value)
    return dict(metadata)


def _check_filter_key(key: Any, *, within: str | None = None) -> None:
    if not isinstance(key, str) or not key or key.startswith("$") or ".$" in key:
        where = "" if within is None else f" (in the value for {within!r})"
        raise InvalidSessionInputError(
            f"metadata filter keys must be non-empty strings, must not start with '$' "
            f"and must not contain '.$': {key!r}{where}"
        )


def _check_filter_value(field: str, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _check_filter_key(key, within=field)
            _check_filter_value(field, inner)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_filter_value(field, item)


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
