"""Errors raised by mongodb-session-manager.

The tree is shaped by what a caller does next::

    SessionException                      (strands; catch-all for session storage)
    └── MongoDBSessionError               root of this package: anything else went wrong
        ├── StoreUnavailableError         server unreachable or timed out: retry later
        ├── SessionBusyError              another writer holds the session: retry later (HTTP 409)
        ├── TurnAlreadyStoredError        a retried request's turn is stored: answer with its reply
        ├── SessionNotFoundError          the session (or agent) does not exist (also a LookupError)
        ├── SessionDecryptionError        the session's encryption key is gone: its content is lost
        ├── InvalidSessionInputError      bad ids or arguments (also a ValueError): fix the call
        ├── MessageTooLargeError          a message cannot be stored in one document (also a ValueError)
        ├── ConcurrentWriteError          could not find a free message id after bounded retries
        └── ConfigurationError            wrong set-up: fix the code or the deployment
            ├── FactoryNotInitializedError   the global factory is not initialised (also a RuntimeError)
            └── EmbeddedServerError          the embedded server cannot start (also a RuntimeError)

Driver errors are translated into these at one edge (``_driver_errors``); nothing above the
repositories needs to import ``pymongo.errors``.
"""

from __future__ import annotations

from typing import Any

from strands.types.exceptions import SessionException

__all__ = [
    "ConcurrentWriteError",
    "ConfigurationError",
    "EmbeddedServerError",
    "FactoryNotInitializedError",
    "InvalidSessionInputError",
    "MessageTooLargeError",
    "MongoDBSessionError",
    "SessionBusyError",
    "SessionDecryptionError",
    "SessionNotFoundError",
    "StoreUnavailableError",
    "TurnAlreadyStoredError",
]


class MongoDBSessionError(SessionException):
    """Root of every error this package raises."""


class StoreUnavailableError(MongoDBSessionError):
    """MongoDB could not be reached (or answered too late); the operation may be retried."""


class SessionBusyError(MongoDBSessionError):
    """Another writer is working on this session right now; retry once its turn is over."""


class TurnAlreadyStoredError(MongoDBSessionError):
    """A request with this idempotency key already ran: its turn is stored, it is not run again.

    ``prompt_message_id``: the stored prompt; ``reply``: the turn's last assistant message (None
    while that turn is still running); ``reply_text``: its text.
    """

    def __init__(
        self,
        message: str,
        *,
        idempotency_key: str,
        prompt_message_id: int,
        reply: dict[str, Any] | None,
    ) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.prompt_message_id = prompt_message_id
        self.reply = reply

    @property
    def reply_text(self) -> str:
        content = (self.reply or {}).get("content") or []
        return "".join(block["text"] for block in content if isinstance(block.get("text"), str))


class SessionNotFoundError(MongoDBSessionError, LookupError):
    """The requested session or agent does not exist."""


class SessionDecryptionError(MongoDBSessionError):
    """The session's data cannot be decrypted: its encryption key was deleted (or never existed)."""


class InvalidSessionInputError(MongoDBSessionError, ValueError):
    """An id or argument was rejected before anything was written."""


class MessageTooLargeError(MongoDBSessionError, ValueError):
    """A message does not fit in one MongoDB document (16 MiB)."""


class ConcurrentWriteError(MongoDBSessionError):
    """No free message id was found after the bounded number of retries."""


class ConfigurationError(MongoDBSessionError):
    """The package was set up wrongly (missing connection string, unknown option...)."""


class FactoryNotInitializedError(ConfigurationError, RuntimeError):
    """``get_global_factory()`` was called before ``initialize_global_factory()``."""


class EmbeddedServerError(ConfigurationError, RuntimeError):
    """The embedded server could not be found, started or reached."""
