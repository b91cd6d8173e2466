"""Which (client, database, collection) already has its indexes, in this process.

Keyed by the client object itself (weakly), not by ``id(client)``: Python reuses the id of a
collected client, and a new client must not inherit "done" from a dead one. Nothing is reset in a
forked child: the clients it makes start unmarked, and a client it inherits keeps what is true on
the server.
"""

from __future__ import annotations

import weakref
from typing import Any

_done: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


def indexes_ready(client: Any, database_name: str, collection_name: str) -> bool:
    return (database_name, collection_name) in _done.get(client, ())


def mark_indexes_ready(client: Any, database_name: str, collection_name: str) -> None:
    _done.setdefault(client, set()).add((database_name, collection_name))
