"""MongoDB as the memory of Strands Agents: sessions, streaming and per-turn metrics."""

from .errors import (
    ConcurrentWriteError,
    ConfigurationError,
    FactoryNotInitializedError,
    InvalidSessionInputError,
    MessageTooLargeError,
    MongoDBSessionError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from .factory import (
    MongoDBSessionManagerFactory,
    close_global_factory,
    get_global_factory,
    initialize_global_factory,
)
from .manager import MongoDBSessionManager, create_mongodb_session_manager
from .metrics import TurnTracker
from .pool import MongoDBConnectionPool
from .repository import MongoDBSessionRepository

__all__ = [
    "ConcurrentWriteError",
    "ConfigurationError",
    "FactoryNotInitializedError",
    "InvalidSessionInputError",
    "MessageTooLargeError",
    "MongoDBConnectionPool",
    "MongoDBSessionError",
    "MongoDBSessionManager",
    "MongoDBSessionManagerFactory",
    "MongoDBSessionRepository",
    "SessionNotFoundError",
    "StoreUnavailableError",
    "TurnTracker",
    "close_global_factory",
    "create_mongodb_session_manager",
    "get_global_factory",
    "initialize_global_factory",
]
