"""``page_sessions``: a user's sessions page by page, each exactly once, newest first (sync and async)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pymongo
import pytest
from pymongo import AsyncMongoClient
from strands.types.session import Session, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    InvalidSessionInputError,
    MongoDBSessionRepository,
    SessionPage,
    schema,
)

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


class Repository:
    def __init__(self, repository: Any) -> None:
        self.repository = repository

    async def page(self, **kwargs: Any) -> SessionPage:
        result = self.repository.page_sessions(**kwargs)
        return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "async"])
async def repository(
    request: pytest.FixtureRequest, mongodb_uri: str, database_name: str
) -> AsyncIterator[Repository]:
    if request.param == "sync":
        with pymongo.MongoClient(mongodb_uri) as client:
            yield Repository(MongoDBSessionRepository(client=client, database_name=database_name))
    else:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
        yield Repository(AsyncMongoDBSessionRepository(client=client, database_name=database_name))
        await client.close()


def store(
    client: pymongo.MongoClient[dict[str, Any]], database_name: str, rows: list[tuple[str, str, datetime]]
) -> None:
    """Session documents as the manager writes them, with a ``user_id`` (issue 13's field)."""
    documents = []
    for session_id, user_id, updated_at in rows:
        document = schema.session_document(Session(session_id, SessionType.AGENT), metadata={"n": session_id})
        documents.append({**document, "user_id": user_id, "updated_at": updated_at})
    client[database_name]["sessions"].insert_many(documents)


async def all_pages(repository: Repository, **kwargs: Any) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = await repository.page(after=after, **kwargs)
        pages.append([summary["session_id"] for summary in page.sessions])
        if page.next_cursor is None:
            return pages
        after = page.next_cursor


async def test_a_users_sessions_come_once_each_newest_first_in_pages(
    repository: Repository, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    mine = [(f"mine-{i:02d}", "ada", START + timedelta(minutes=i)) for i in range(23)]
    theirs = [(f"theirs-{i:02d}", "bob", START + timedelta(minutes=i, seconds=30)) for i in range(10)]
    store(mongo_client, database_name, mine + theirs)

    pages = await all_pages(repository, user_id="ada", limit=5)

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [s for page in pages for s in page] == [f"mine-{i:02d}" for i in reversed(range(23))]


async def test_sessions_sharing_one_instant_across_page_ends_are_neither_lost_nor_repeated(
    repository: Repository, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    same = START + timedelta(hours=1)
    rows = [(f"tie-{i}", "ada", same) for i in range(8)]
    rows += [("newer", "ada", same + timedelta(seconds=1)), ("older", "ada", same - timedelta(seconds=1))]
    store(mongo_client, database_name, rows)

    pages = await all_pages(repository, user_id="ada", limit=3)

    flat = [s for page in pages for s in page]
    assert flat[0] == "newer"
    assert flat[-1] == "older"
    assert sorted(flat[1:-1]) == [f"tie-{i}" for i in range(8)]
    assert len(flat) == len(set(flat)) == 10


async def test_an_exact_last_page_has_no_cursor_and_filters_still_apply(
    repository: Repository, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    store(mongo_client, database_name, [(f"s-{i}", "ada", START + timedelta(days=i)) for i in range(4)])

    page = await repository.page(user_id="ada", limit=4)
    assert page.next_cursor is None
    assert len(page.sessions) == 4
    assert page.sessions[0]["metadata"] == {"n": "s-3"}

    recent = await all_pages(repository, user_id="ada", limit=1, since=START + timedelta(days=2))
    assert recent == [["s-3"], ["s-2"]]
    assert (await repository.page(user_id="nobody")).sessions == []
    assert (await repository.page(metadata={"n": "s-1"})).sessions[0]["session_id"] == "s-1"


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"after": "not-a-cursor"}, "cursor"),
        ({"after": ""}, "cursor"),
        ({"user_id": {"$ne": None}}, "user_id"),
        ({"user_id": "$where"}, "user_id"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_bad_cursors_and_ids_are_refused_before_any_io(
    repository: Repository, arguments: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidSessionInputError, match=match):
        await repository.page(**arguments)
