"""Errors raised by mongodb-session-manager.

The tree is shaped by what a caller does next::

    SessionException                      (strands; catch-all for session storage)
    └── MongoDBSessionError               root of this package
        ├── StoreUnavailableError         server unreachable or timed out: retry later
        ├── SessionNotFoundError          the session (or agent) does not exist
        ├── InvalidSessionInputError      bad ids or arguments (also a ValueError): fix the call
        ├── MessageTooLargeError          a message cannot be stored in one document
        ├── ConcurrentWriteError          could not find a free message id after bounded retries
        └── ConfigurationError            wrong set-up, e.g. the global factory is not initialised
            └── FactoryNotInitializedError

Driver errors are translated into these at one edge (``_driver_errors``); nothing above the
repositories needs to import ``pymongo.errors``.
"""

from __future__ import annotations

from strands.types.exceptions import SessionException

__all__ = [
    "ConcurrentWriteError",
    "ConfigurationError",
    "FactoryNotInitializedError",
    "InvalidSessionInputError",
    "MessageTooLargeError",
    "MongoDBSessionError",
    "SessionNotFoundError",
    "StoreUnavailableError",
]


class MongoDBSessionError(SessionException):
    """Root of every error this package raises."""


class StoreUnavailableError(MongoDBSessionError):
    """MongoDB could not be reached (or answered too late); the operation may be retried."""


class SessionNotFoundError(MongoDBSessionError, LookupError):
    """The requested session or agent does not exist."""


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
