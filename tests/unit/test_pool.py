"""One client per (URI, options) per process; a forked child never reuses its parent's."""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection

import pytest

from mongodb_session_manager import MongoDBConnectionPool

URI = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100"


def test_the_same_uri_and_options_share_one_client() -> None:
    pool = MongoDBConnectionPool()
    try:
        first = pool.client(URI, maxPoolSize=10)
        assert pool.client(URI, maxPoolSize=10) is first
        assert pool.client(URI, maxPoolSize=20) is not first
        assert len(pool) == 2
    finally:
        pool.close()
    assert len(pool) == 0


def test_closing_one_uri_keeps_the_others() -> None:
    pool = MongoDBConnectionPool()
    try:
        kept = pool.client(URI)
        pool.client("mongodb://127.0.0.1:2/?serverSelectionTimeoutMS=100")
        pool.close("mongodb://127.0.0.1:2/?serverSelectionTimeoutMS=100")
        assert len(pool) == 1
        assert pool.client(URI) is kept
    finally:
        pool.close()


def _child(pool: MongoDBConnectionPool, parent_client_id: int, answer: Connection) -> None:
    answer.send(id(pool.client(URI)) != parent_client_id)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # 3.12+
def test_a_forked_child_gets_its_own_client() -> None:
    pool = MongoDBConnectionPool()
    try:
        parent_client = pool.client(URI)
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(
            target=_child, args=(pool, id(parent_client), send)
        )
        child.start()
        assert receive.recv() is True
        child.join(10)
        assert child.exitcode == 0
        assert pool.client(URI) is parent_client  # the parent keeps its own
    finally:
        pool.close()
