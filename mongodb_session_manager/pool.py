"""MongoDBConnectionPool: one MongoClient per (connection string, options) per process.

pymongo clients are heavy (monitor threads, a connection pool of their own) and thread-safe:
an app should hold one per cluster. The pool hands that one out to every repository and
manager built from a connection string (a factory makes a client of its own, ``new_client``).
It is fork-aware: a child process never reuses its parent's sockets, it gets fresh clients.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any, ClassVar

import pymongo
from pymongo import MongoClient
from pymongo.driver_info import DriverInfo

from ._driver_errors import translate_driver_errors
from ._fork import in_forked_child
from ._redact import redact_uri
from ._version import package_version as _package_version

__all__ = ["CLOSE_TIMEOUT", "DRIVER_INFO", "MongoDBConnectionPool", "close_client", "new_client"]

logger = logging.getLogger(__name__)

Document = dict[str, Any]


DRIVER_INFO = DriverInfo(name="mongodb-session-manager", version=_package_version())


def new_client(connection_string: str, **options: Any) -> MongoClient[Document]:
    """A client tagged with this package's name, so server logs show who connected."""
    options.setdefault("driver", DRIVER_INFO)
    with translate_driver_errors("create client"):  # a malformed URI or an unknown option
        return MongoClient(connection_string, **options)


# ``MongoClient.close()`` first ends the client's server sessions, and to do so selects a server:
# with the server gone that waits the whole ``serverSelectionTimeoutMS`` (30 s by default), at
# exit too. Ending sessions is a courtesy (the server expires them after 30 minutes): bound it.
CLOSE_TIMEOUT = 0.5


def close_client(client: MongoClient[Document]) -> None:
    """Close ``client`` without waiting more than ``CLOSE_TIMEOUT`` seconds for a server that is gone."""
    with pymongo.timeout(CLOSE_TIMEOUT):
        client.close()


def _key(connection_string: str, options: dict[str, Any]) -> tuple[str, str]:
    return connection_string, repr(sorted(options.items()))


class MongoDBConnectionPool:
    """Process-wide registry of shared clients; ``default()`` is the one the package uses."""

    _default: ClassVar[MongoDBConnectionPool | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._forget_clients()
        _pools.add(self)

    def _forget_clients(self) -> None:
        self._clients: dict[tuple[str, str], MongoClient[Document]] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> MongoDBConnectionPool:
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
                    atexit.register(cls._default.close)
        return cls._default

    def client(self, connection_string: str, **options: Any) -> MongoClient[Document]:
        """The shared client for this URI and options, created on first use."""
        key = _key(connection_string, options)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = new_client(connection_string, **options)
                self._clients[key] = client
                logger.debug("uri=<%s> | created pooled client", redact_uri(connection_string))
            return client

    def __len__(self) -> int:
        return len(self._clients)

    def close(self, connection_string: str | None = None) -> None:
        """Close the clients this pool created, or only those for ``connection_string``.

        They are recreated on next use. Close before the server goes away, or pymongo's monitors
        keep the interpreter waiting for it at exit.
        """
        with self._lock:
            keys = [key for key in self._clients if connection_string in (None, key[0])]
            clients = [self._clients.pop(key) for key in keys]
        for client in clients:
            close_client(client)


_pools: weakref.WeakSet[MongoDBConnectionPool] = weakref.WeakSet()


@in_forked_child
def _after_fork_in_child() -> None:
    # pymongo: a client must not cross a fork, so the child makes its own on first use. The
    # parent's are dropped, not closed: closing could end sessions and write on sockets it still uses.
    MongoDBConnectionPool._default_lock = threading.Lock()
    for pool in list(_pools):
        pool._forget_clients()
