"""What the data-lifecycle operations of the repositories hand back: a prune report, an erasure receipt.

``repository.prune(older_than=...)`` deletes whole sessions idle for longer than ``older_than``
(optionally archiving each first) and returns a :class:`PruneReport`;
``repository.erase_user(user_id)`` deletes everything of one user and returns an
:class:`ErasureReceipt`, the record to keep that the request was carried out. See
docs/lifecycle.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["ErasureReceipt", "PruneReport"]


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` deleted (or, with ``dry_run``, would delete).

    ``cutoff``: sessions last updated before it were idle long enough. ``messages`` counts the
    messages of those sessions. ``archived``: the export files written, one per session, in
    the ``sessions export`` format (``sessions import FILE`` restores one).
    """

    cutoff: datetime
    dry_run: bool
    session_ids: tuple[str, ...]
    sessions: int
    messages: int
    archived: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["session_ids"] = list(self.session_ids)
        data["archived"] = list(self.archived)
        return data


@dataclass(frozen=True)
class ErasureReceipt:
    """What ``erase_user`` removed: the user's sessions, their messages, the user's encryption keys."""

    user_id: str
    erased_at: datetime
    session_ids: tuple[str, ...]
    sessions: int
    messages: int
    keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["session_ids"] = list(self.session_ids)
        return data
