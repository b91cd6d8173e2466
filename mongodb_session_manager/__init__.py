"""MongoDB as the memory of Strands Agents: sessions, streaming and per-turn metrics."""

from ._large_content import DeferredContent
from ._search import MessageMatch
from ._version import package_version as _package_version
from .async_repository import AsyncMongoDBSessionRepository
from .errors import (
    ConcurrentWriteError,
    ConfigurationError,
    EmbeddedServerError,
    FactoryNotInitializedError,
    InvalidSessionInputError,
    MessageTooLargeError,
    MongoDBSessionError,
    SessionBusyError,
    SessionDecryptionError,
    SessionNotFoundError,
    StoreUnavailableError,
    TurnAlreadyStoredError,
)
from .factory import (
    MongoDBSessionManagerFactory,
    close_global_factory,
    get_global_factory,
    initialize_global_factory,
)
from .lifecycle import ErasureReceipt, PruneReport
from .manager import MongoDBSessionManager, create_mongodb_session_manager
from .metrics import (
    AsyncMetricsQuery,
    MetricsFilter,
    MetricsGroup,
    MetricsQuery,
    MetricsTotals,
    SessionMetrics,
    SessionRank,
    ToolUsage,
    TurnMetrics,
    TurnTracker,
)
from .pool import MongoDBConnectionPool
from .repository import MongoDBSessionRepository
from .schema import SessionPage
from .streaming import stream_sse, stream_text

__version__ = _package_version()

__all__ = [
    "AsyncMetricsQuery",
    "AsyncMongoDBSessionRepository",
    "ConcurrentWriteError",
    "ConfigurationError",
    "DeferredContent",
    "EmbeddedServerError",
    "ErasureReceipt",
    "FactoryNotInitializedError",
    "InvalidSessionInputError",
    "MessageMatch",
    "MessageTooLargeError",
    "MetricsFilter",
    "MetricsGroup",
    "MetricsQuery",
    "MetricsTotals",
    "MongoDBConnectionPool",
    "MongoDBSessionError",
    "MongoDBSessionManager",
    "MongoDBSessionManagerFactory",
    "MongoDBSessionRepository",
    "PruneReport",
    "SessionBusyError",
    "SessionDecryptionError",
    "SessionMetrics",
    "SessionNotFoundError",
    "SessionPage",
    "SessionRank",
    "StoreUnavailableError",
    "ToolUsage",
    "TurnAlreadyStoredError",
    "TurnMetrics",
    "TurnTracker",
    "close_global_factory",
    "create_mongodb_session_manager",
    "get_global_factory",
    "initialize_global_factory",
    "stream_sse",
    "stream_text",
]
