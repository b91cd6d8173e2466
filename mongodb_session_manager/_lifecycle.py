"""A manager's data-lifecycle options and the pure rules behind them: its user, expiry, trimming, masks.

The manager holds one :class:`Lifecycle` and asks it, per write, what rides along with that
write (the write path itself stays in :mod:`.manager` and :mod:`._plans`); the documents come
from :mod:`.schema`.

Expiry is renewed by activity. Every write of the session moves its ``expires_at`` to
``now + expire_after``. Messages cannot be renewed one by one on every turn (that is a write of
every message), so they carry a *horizon*: ``expires_at = messages_expire_at``, set to
``now + 2 * expire_after`` and pushed forward (one ``updateMany`` riding in the same
``bulkWrite``) only when a write would renew the session past it, at most once per
``expire_after`` of activity. So a message never expires before its session; it may outlive it
by up to ``expire_after``, unseen: every reader goes through the session document, and an
expired or missing session has no messages. The TTL monitor deletes both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import schema
from ._encryption import key_name, keyring, open_document, session_key_name, user_key_name
from ._plans import (
    Count,
    Delete,
    DeleteKeys,
    DeleteOp,
    Find,
    Flow,
    Op,
    SessionSnapshot,
    UpdateOp,
    WriteArchive,
    ask,
)
from ._validation import validate_user_id
from .codec import to_bson_datetime
from .encryption import ContentEncryption
from .errors import ConfigurationError, InvalidSessionInputError
from .lifecycle import ErasureReceipt, PruneReport

__all__ = [
    "Lifecycle",
    "Stamp",
    "check_user",
    "erase_user_flow",
    "prune_flow",
    "validate_expire_after",
    "validate_keep_last",
    "validate_mask",
    "validate_older_than",
]

MaskFunction = Callable[[str], str]
# What encryption covers in an agent's entry; conversation_manager_state stays in clear (a resume
# reads its removed_message_count on the server).
SEALED_AGENT_FIELDS = ("state", "internal_state")


@dataclass(frozen=True)
class Stamp:
    """The expiry one write sets: the session's, the messages' horizon, and whether to push it."""

    expires_at: datetime
    messages_expire_at: datetime
    extend: bool


@dataclass
class Lifecycle:
    """What a manager does with a session's data over time, validated once at construction."""

    user_id: str | None = None
    expire_after: timedelta | None = None
    keep_last_messages: int | None = None
    mask: tuple[MaskFunction, ...] = ()
    encryption: ContentEncryption | None = None
    _horizon: datetime | None = None
    _stored_user: str | None = None
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(
        cls,
        *,
        user_id: Any = None,
        expire_after: Any = None,
        keep_last_messages: Any = None,
        mask: Any = None,
        encryption: Any = None,
    ) -> Lifecycle:
        return cls(
            user_id=None if user_id is None else validate_user_id(user_id),
            expire_after=validate_expire_after(expire_after),
            keep_last_messages=validate_keep_last(keep_last_messages),
            mask=validate_mask(mask),
            encryption=validate_encryption(encryption),
        )

    def bind(self, client: Any) -> None:
        """The client whose database holds the session (and, by default, the key vault)."""
        self._client = client

    def observe(self, document: Mapping[str, Any] | None) -> None:
        """Learn the stored message horizon and the session's user from a loaded session document."""
        horizon = None if document is None else document.get("messages_expire_at")
        with self._lock:
            self._horizon = None if horizon is None else to_bson_datetime(horizon)
            self._stored_user = None if document is None else document.get("user_id")

    # --- encryption (on the I/O threads: sealing may read the key vault) --------------------

    def sealer(self, session_id: str) -> Callable[[Any], Any] | None:
        """Encrypts a value with the session's data key, or None without encryption."""
        if self.encryption is None:
            return None
        ring = keyring(self.encryption, self._client)
        name = key_name(session_id, self.user_id or self._stored_user)

        def seal(value: Any) -> Any:
            return ring.seal(value, name)

        return seal

    def seal_state(self, session_id: str, state: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """An agent's fields as stored: ``state`` and ``internal_state`` encrypted."""
        seal = self.sealer(session_id)
        if seal is None or state is None:
            return state
        return {**state, **{name: seal(state[name]) for name in SEALED_AGENT_FIELDS if name in state}}

    def open_snapshot(self, session_id: str, snapshot: SessionSnapshot | None) -> SessionSnapshot | None:
        """A loaded session with its agents' state and its window decrypted."""
        if self.encryption is None or snapshot is None:
            return snapshot
        ring = keyring(self.encryption, self._client)
        where = f"session_id=<{session_id}>"
        document = dict(snapshot.document)
        agents = document.get("agents") or {}
        document["agents"] = {
            agent_id: open_document(ring, entry, SEALED_AGENT_FIELDS, where)
            for agent_id, entry in agents.items()
        }
        for message in snapshot.window:
            message.message = ring.open(message.message, where)
            if message.redact_message is not None:
                message.redact_message = ring.open(message.redact_message, where)
        return SessionSnapshot(document, snapshot.agent_id, snapshot.window)

    def stamp(self, now: datetime | None = None) -> Stamp | None:
        """The expiry the next write sets, or None without ``expire_after``."""
        if self.expire_after is None:
            return None
        now = now or schema.utcnow()
        expires_at = now + self.expire_after
        with self._lock:
            horizon = self._horizon
        if horizon is not None and expires_at <= horizon:
            return Stamp(expires_at, horizon, extend=False)
        return Stamp(expires_at, now + 2 * self.expire_after, extend=True)

    def confirm(self, stamp: Stamp | None) -> None:
        """The write carrying ``stamp`` was stored: its horizon holds from now on."""
        if stamp is not None and stamp.extend:
            with self._lock:
                if self._horizon is None or stamp.messages_expire_at > self._horizon:
                    self._horizon = stamp.messages_expire_at

    def ride_along(
        self,
        session_id: str,
        agent_id: str,
        stamp: Stamp | None,
        state: Mapping[str, Any] | None,
        *,
        contiguous: bool,
    ) -> tuple[Op, ...]:
        """Writes that join this one: the expiry renewal, and trimming messages long out of the window."""
        ops: list[Op] = []
        if stamp is not None:
            renew = schema.renew_session_update(stamp.expires_at, stamp.messages_expire_at)
            ops.append(UpdateOp("sessions", {"_id": session_id}, renew))
            if stamp.extend:
                ops.append(
                    UpdateOp(
                        "messages",
                        schema.renew_messages_filter(session_id, stamp.messages_expire_at),
                        schema.renew_messages_update(stamp.messages_expire_at),
                        many=True,
                    )
                )
        if self.keep_last_messages is not None and state is not None and contiguous:
            below = schema.removed_message_count(state) - self.keep_last_messages
            if below > 0:
                ops.append(DeleteOp("messages", schema.trimmed_messages_filter(session_id, agent_id, below)))
        return tuple(ops)


def check_user(session_id: str, stored: Any, given: str | None) -> None:
    """A session belongs to one user for good: a manager for another user is refused."""
    if given is not None and stored != given:
        owner = "no user" if stored is None else "another user_id"
        raise InvalidSessionInputError(
            f"session_id=<{session_id}> | the session belongs to {owner}; user_id=<{given}> cannot use it"
        )


def validate_expire_after(value: Any) -> timedelta | None:
    """``None`` (never expires) or a ``timedelta`` of at least one second."""
    if value is None:
        return None
    if not isinstance(value, timedelta) or value < timedelta(seconds=1):
        raise InvalidSessionInputError(
            f"expire_after must be a timedelta of at least 1 second, got {value!r}"
        )
    return value


def validate_encryption(value: Any) -> ContentEncryption | None:
    if value is None or isinstance(value, ContentEncryption):
        return value
    raise ConfigurationError(f"encryption must be a ContentEncryption, got {type(value).__name__}")


def validate_older_than(value: Any) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidSessionInputError(f"older_than must be a positive timedelta, got {value!r}")
    return value


def validate_keep_last(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSessionInputError(f"keep_last_messages must be a non-negative int, got {value!r}")
    return value


def validate_mask(value: Any) -> tuple[MaskFunction, ...]:
    """A list of ``str -> str`` callables (an empty one masks nothing)."""
    if value is None:
        return ()
    if callable(value) or not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise InvalidSessionInputError("mask must be a list of str -> str callables, e.g. [EMAIL, PHONE]")
    masks = tuple(value)
    for mask in masks:
        if not callable(mask):
            raise InvalidSessionInputError(f"every mask must be a str -> str callable, got {mask!r}")
    return masks


# --- retention and erasure: flows both repositories drive -------------------------------------

PRUNE_BATCH = 500
ERASE_BATCH = 500
MAX_ERASE_ROUNDS = 10_000  # a writer that keeps creating sessions for the user cannot stall it forever


def prune_flow(
    cutoff: datetime, user_id: str | None, *, dry_run: bool, archive_to: Path | None
) -> Flow[PruneReport]:
    """Delete whole sessions last updated before ``cutoff``, archiving each first when asked.

    The session document goes first, matched on ``updated_at`` again, so a session that became
    active since it was listed stays; then its messages (unseen meanwhile: readers go through
    the session document).
    """
    query = schema.idle_sessions_filter(cutoff, user_id)
    if dry_run:
        documents = yield ask(
            Find("sessions", query, sort=[("updated_at", 1)], projection={"_id": 1}), "prune"
        )
        ids = tuple(str(document["_id"]) for document in documents)
        messages = 0
        if ids:
            messages = yield ask(Count("messages", {"session_id": {"$in": list(ids)}}), "prune")
        return PruneReport(cutoff, True, ids, len(ids), int(messages))
    pruned: list[str] = []
    archived: list[str] = []
    messages = 0
    while True:
        batch = yield ask(
            Find(
                "sessions",
                query,
                sort=[("updated_at", 1)],
                limit=PRUNE_BATCH,
                projection=None if archive_to else {"_id": 1},
            ),
            "prune",
        )
        if not batch:
            break
        for document in batch:
            session_id = str(document["_id"])
            if archive_to is not None:
                stored = yield ask(
                    Find("messages", {"session_id": session_id}, sort=schema.EXPORT_MESSAGE_SORT),
                    "archive session",
                )
                path = yield ask(WriteArchive(archive_to, document, list(stored)), "archive session")
                archived.append(str(path))
            deleted = yield ask(Delete("sessions", {**query, "_id": session_id}, many=False), "prune")
            if deleted:
                pruned.append(session_id)
                messages += yield ask(Delete("messages", {"session_id": session_id}), "prune")
            elif archive_to is not None:
                archived.pop()  # it became active again: it stays, and so does nothing in the archive
    return PruneReport(cutoff, False, tuple(pruned), len(pruned), messages, tuple(archived))


def erase_user_flow(user_id: str, key_vault_namespace: str) -> Flow[ErasureReceipt]:
    """Delete every session of ``user_id``, every message of those sessions, and their data keys.

    Messages go before their session (so none is left behind without a session naming its
    user) and once more after it, for a turn that was being written meanwhile. Last the keys:
    the user's, and those of sessions encrypted before they had a user; without them no copy of
    the user's documents (a backup, an archive) can be decrypted.
    """
    erased_at = schema.utcnow()
    session_ids: list[str] = []
    sessions = messages = 0
    for _ in range(MAX_ERASE_ROUNDS):
        batch = yield ask(
            Find("sessions", schema.user_sessions_filter(user_id), projection={"_id": 1}, limit=ERASE_BATCH),
            "erase user",
        )
        if not batch:
            break
        ids = [str(document["_id"]) for document in batch]
        messages += yield ask(Delete("messages", {"session_id": {"$in": ids}}), "erase user")
        sessions += yield ask(Delete("sessions", {"_id": {"$in": ids}, "user_id": user_id}), "erase user")
        messages += yield ask(Delete("messages", {"session_id": {"$in": ids}}), "erase user")
        session_ids.extend(ids)
    erased = tuple(sorted(set(session_ids)))
    names = (user_key_name(user_id), *(session_key_name(session_id) for session_id in erased))
    keys = yield ask(DeleteKeys(key_vault_namespace, names), "erase user keys")
    return ErasureReceipt(user_id, erased_at, erased, sessions, messages, int(keys))
