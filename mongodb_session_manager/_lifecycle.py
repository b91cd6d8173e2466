"""A manager's data-lifecycle options and the pure rules behind them: its user, expiry, trimming.

The manager holds one :class:`Lifecycle` and asks it, per write, what rides along (the write
path stays in :mod:`.manager` and :mod:`._plans`); the documents themselves come from
:mod:`.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._validation import validate_user_id
from .errors import InvalidSessionInputError

__all__ = ["Lifecycle", "check_user"]


@dataclass(frozen=True)
class Lifecycle:
    """What a manager does with a session's data over time, validated once at construction."""

    user_id: str | None = None

    @classmethod
    def build(cls, *, user_id: Any = None) -> Lifecycle:
        return cls(user_id=None if user_id is None else validate_user_id(user_id))


def check_user(session_id: str, stored: Any, given: str | None) -> None:
    """A session belongs to one user for good: a manager for another user is refused."""
    if given is not None and stored != given:
        owner = "no user" if stored is None else "another user_id"
        raise InvalidSessionInputError(
            f"session_id=<{session_id}> | the session belongs to {owner}; user_id=<{given}> cannot use it"
        )
