"""Which (client, database, collection) already has its indexes, in this process.

Keyed by the client object's identity, held weakly. Not by ``id(client)`` alone: Python reuses
the id of a collected client, and a new client must not inherit "done" from a dead one. Not by
the client as a dictionary key either: pymongo's clients compare equal when they point at the
same servers, so a ``WeakKeyDictionary`` shares one entry between them and drops it for all when
the first of them is collected. Nothing is reset in a forked child: the clients it makes start
unmarked, and a client it inherits keeps what is true on the server.
"""

from __future__ import annotations

import weakref
from typing import Any

_done: dict[int, tuple[weakref.ref[Any], set[tuple[str, str]]]] = {}


def indexes_ready(client: Any, database_name: str, collection_name: str) -> bool:
    entry = _done.get(id(client))
    return entry is not None and entry[0]() is client and (database_name, collection_name) in entry[1]


def mark_indexes_ready(client: Any, database_name: str, collection_name: str) -> None:
    key = id(client)
    entry = _done.get(key)
    if entry is None or entry[0]() is not client:
        entry = _done[key] = (weakref.ref(client, lambda ref: _forget(key, ref)), set())
    entry[1].add((database_name, collection_name))


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    # Only this client's entry: a new client may hold the id by now.
    if (entry := _done.get(key)) is not None and entry[0] is ref:
        del _done[key]
