"""MongoDBSessionManagerFactory and the process-wide factory for web apps.

A factory holds one repository (one pooled client, indexes created once) and hands out a cheap
session manager per request. ``initialize_global_factory`` / ``get_global_factory`` /
``close_global_factory`` put one in the app's lifespan. A factory that made its client renews it
in a forked child (a gunicorn ``--preload`` worker), on first use there.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from . import schema
from ._content_cache import DEFAULT_LARGE_CONTENT_CACHE_BYTES
from ._fork import in_forked_child
from ._io import on_loop_thread, run_io
from ._large_content import DEFAULT_LARGE_CONTENT_THRESHOLD
from ._lifecycle import Lifecycle
from ._redact import redact_uri
from .config import StoreConfig
from .encryption import ContentEncryption
from .errors import ConfigurationError, FactoryNotInitializedError
from .manager import MongoDBSessionManager
from .pool import close_client, new_client
from .repository import MongoDBSessionRepository

__all__ = [
    "MongoDBSessionManagerFactory",
    "close_global_factory",
    "get_global_factory",
    "initialize_global_factory",
]

logger = logging.getLogger(__name__)


CLOSE_WAIT = 10.0  # seconds a closing factory waits for its managers' handed-off writes


class MongoDBSessionManagerFactory:
    """Builds session managers that share one client and one repository."""

    def __init__(
        self,
        connection_string: str | None = None,
        database_name: str = schema.DEFAULT_DATABASE_NAME,
        collection_name: str = schema.DEFAULT_COLLECTION_NAME,
        *,
        client: Any = None,
        expire_after: timedelta | None = None,
        keep_last_messages: int | None = None,
        mask: Sequence[Callable[[str], str]] | None = None,
        encryption: ContentEncryption | None = None,
        turn_lock: bool | None = None,
        lease_ttl: timedelta | float | None = None,
        turn_wait: timedelta | float | None = None,
        large_content_threshold: int = DEFAULT_LARGE_CONTENT_THRESHOLD,
        large_content_cache_bytes: int = DEFAULT_LARGE_CONTENT_CACHE_BYTES,
        defer_large_content: bool | None = None,
        **client_options: Any,
    ) -> None:
        self.config = StoreConfig(connection_string, client, database_name, collection_name, client_options)
        turns = {"turn_lock": turn_lock, "lease_ttl": lease_ttl, "turn_wait": turn_wait}
        turns["defer_large_content"] = defer_large_content  # a manager option, like the lease's
        # Lifecycle defaults of every manager handed out (each can override them per session).
        lifecycle = {
            "expire_after": expire_after,
            "keep_last_messages": keep_last_messages,
            "mask": mask,
            "encryption": encryption,
        }
        Lifecycle.build(**lifecycle)
        self._manager_defaults = {
            name: value for name, value in {**lifecycle, **turns}.items() if value is not None
        }
        self._connection_string = connection_string
        self._owns_client = not self.config.borrowed
        self._repository_options: dict[str, Any] = {
            "database_name": database_name,
            "collection_name": collection_name,
            "large_content_threshold": large_content_threshold,
            "large_content_cache_bytes": large_content_cache_bytes,
        }
        self._repository = self._new_repository(client)
        self._closed = False
        self._managers: weakref.WeakSet[MongoDBSessionManager] = weakref.WeakSet()
        self._renew_lock = threading.Lock()
        self._client_from_parent = False  # set in a forked child: the client is renewed on first use
        _factories.add(self)

    def __repr__(self) -> str:
        where = redact_uri(self._connection_string) if self._connection_string else "client"
        return f"{type(self).__name__}({where!r}, repository={self._repository!r})"

    @property
    def repository(self) -> MongoDBSessionRepository:
        """The repository every manager of this factory shares (on a client of this process)."""
        if self._client_from_parent:
            self._renew_after_fork()
        return self._repository

    @property
    def client(self) -> Any:
        return self.repository.client

    def _new_repository(self, client: Any) -> MongoDBSessionRepository:
        if client is None:
            client = new_client(cast(str, self._connection_string), **self.config.client_options)
        return MongoDBSessionRepository(client=client, **self._repository_options)

    def _forked(self) -> None:
        """In a forked child: forget the parent's managers and locks; a client made here is renewed."""
        self._managers = weakref.WeakSet()
        self._renew_lock = threading.Lock()
        self._client_from_parent = self._owns_client

    def _renew_after_fork(self) -> None:
        # The parent's client is left alone (pymongo: never share or close a client across a fork).
        with self._renew_lock:
            if self._client_from_parent:
                self._repository = self._new_repository(None)
                self._client_from_parent = False
                logger.debug("factory=<%r> | new client in a forked child", self)

    def create_session_manager(self, session_id: str, **overrides: Any) -> MongoDBSessionManager:
        """A manager for ``session_id``; ``overrides`` are :class:`MongoDBSessionManager` options.

        ``database_name``/``collection_name`` overrides get their own repository on the same client;
        ``user_id``, ``expire_after``, ``keep_last_messages``, ``mask`` and ``encryption`` apply to
        this session (the last four default to the factory's).
        """
        self._ensure_open()
        repository = self._repository_for(overrides)
        manager = MongoDBSessionManager(
            session_id, repository=repository, **{**self._manager_defaults, **overrides}
        )
        self._managers.add(manager)
        return manager

    async def acreate_session_manager(
        self, session_id: str, *, agent_id: str | None = None, **overrides: Any
    ) -> MongoDBSessionManager:
        """A manager whose session (and, with ``agent_id``, that agent's window) is already read.

        One round trip, on an I/O thread: building the ``Agent`` afterwards does no I/O, and
        ``agent.messages`` holds the history before the first turn.
        """
        manager = self.create_session_manager(session_id, **overrides)
        if agent_id is not None:
            await run_io(manager.preload, agent_id)
        return manager

    def ensure_indexes(self) -> None:
        self.repository.ensure_indexes()

    def close(self) -> None:
        """Close the client if it came from this factory's connection string.

        Writes its managers handed to the I/O threads (appends, a ``close()`` on the loop) are
        waited for first, at most ``CLOSE_WAIT`` seconds. On an event loop's thread that wait and
        the close happen on a helper thread, so the loop never waits on the network.
        """
        if self._closed:
            return
        self._closed = True
        pending = [future for manager in list(self._managers) for future in manager.pending_writes()]
        if on_loop_thread():
            threading.Thread(target=self._finish, args=(pending,), name="msm-factory-close").start()
        else:
            self._finish(pending)

    async def aclose(self) -> None:
        """:meth:`close`, awaited: returns once the handed-off writes are stored and the client closed."""
        if self._closed:
            return
        self._closed = True
        pending = [future for manager in list(self._managers) for future in manager.pending_writes()]
        await run_io(self._finish, pending)

    def _finish(self, pending: list[concurrent.futures.Future[Any]]) -> None:
        concurrent.futures.wait(pending, timeout=CLOSE_WAIT)
        if self._owns_client and not self._client_from_parent:
            close_client(self._repository.client)

    def _repository_for(self, overrides: dict[str, Any]) -> MongoDBSessionRepository:
        database_name = overrides.pop("database_name", self.repository.database.name)
        collection_name = overrides.pop("collection_name", self.repository.names.sessions)
        if (database_name, collection_name) == (
            self.repository.database.name,
            self.repository.names.sessions,
        ):
            return self.repository
        return MongoDBSessionRepository(
            database_name=database_name,
            collection_name=collection_name,
            client=self.client,
            large_content_threshold=self.repository.large_content.threshold,
            large_content_cache_bytes=self.repository.large_content_cache_bytes,
        )

    def _ensure_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this factory is closed")


_global_factory: MongoDBSessionManagerFactory | None = None
_global_lock = threading.Lock()
_factories: weakref.WeakSet[MongoDBSessionManagerFactory] = weakref.WeakSet()


@in_forked_child
def _after_fork_in_child() -> None:
    # A preloaded app's factories serve the workers: each renews its client on first use there, and
    # forgets the parent's managers (their writes run in the parent; a close must not wait for them).
    global _global_lock
    _global_lock = threading.Lock()
    for factory in list(_factories):
        factory._forked()


def initialize_global_factory(
    connection_string: str | None = None,
    database_name: str = schema.DEFAULT_DATABASE_NAME,
    collection_name: str = schema.DEFAULT_COLLECTION_NAME,
    *,
    client: Any = None,
    ensure_indexes: bool = False,
    **client_options: Any,
) -> MongoDBSessionManagerFactory:
    """Create the process-wide factory (call it in the app's lifespan). Re-initialising replaces it."""
    global _global_factory
    factory = MongoDBSessionManagerFactory(
        connection_string, database_name, collection_name, client=client, **client_options
    )
    if ensure_indexes:
        factory.ensure_indexes()
    with _global_lock:
        previous, _global_factory = _global_factory, factory
    if previous is not None:
        previous.close()
    logger.debug("factory=<%r> | global factory initialised", factory)
    return factory


def get_global_factory() -> MongoDBSessionManagerFactory:
    """The factory from :func:`initialize_global_factory`."""
    factory = _global_factory
    if factory is None:
        raise FactoryNotInitializedError(
            "the global session manager factory is not initialised: call initialize_global_factory(...) "
            "in your application's startup (for FastAPI, its lifespan) first"
        )
    return factory


def close_global_factory() -> None:
    """Close the process-wide factory and its client; safe to call when none exists."""
    global _global_factory
    with _global_lock:
        factory, _global_factory = _global_factory, None
    if factory is not None:
        factory.close()
