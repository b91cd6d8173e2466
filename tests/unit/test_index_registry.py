"""The per-process record of which client already created the indexes of a collection."""

from __future__ import annotations

import gc

import pymongo

from mongodb_session_manager._index_registry import indexes_ready, mark_indexes_ready


def client() -> pymongo.MongoClient[dict[str, object]]:
    return pymongo.MongoClient("mongodb://127.0.0.1:1/", connect=False)


def test_a_client_keeps_its_record_when_another_client_of_the_same_servers_goes() -> None:
    # pymongo's clients of the same servers compare equal: the record is the object's own.
    kept, dropped = client(), client()
    assert kept == dropped
    mark_indexes_ready(dropped, "db", "sessions")
    mark_indexes_ready(kept, "db", "sessions")
    dropped.close()
    del dropped
    gc.collect()
    assert indexes_ready(kept, "db", "sessions")
    kept.close()


def test_a_new_client_starts_unmarked_even_beside_an_equal_one() -> None:
    marked, fresh = client(), client()
    mark_indexes_ready(marked, "db", "sessions")
    assert not indexes_ready(fresh, "db", "sessions")
    assert not indexes_ready(marked, "db", "other")
    marked.close()
    fresh.close()
