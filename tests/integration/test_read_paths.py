"""Reading never creates a database, a collection or an index; ``ensure_indexes()`` is the one place.

A read-only user would be refused any of those, and a mistyped database name must not leave a
database behind. SecantusDB has no read-only role to test with, so these tests check the
effect: after every read API runs on a fresh database name, the server does not know the name.
"""

from __future__ import annotations

from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    AsyncMetricsQuery,
    AsyncMongoDBSessionRepository,
    MetricsFilter,
    MetricsQuery,
    MongoDBSessionManager,
    MongoDBSessionRepository,
    SessionNotFoundError,
)
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def read_everything(query: MetricsQuery, repository: MongoDBSessionRepository) -> None:
    with pytest.raises(SessionNotFoundError):
        query.session_metrics("nope")
    assert query.summary().turns == 0
    assert query.summary(MetricsFilter(metadata={"tenant": "acme"})).turns == 0
    for by in ("day", "hour", "model", "agent"):
        assert query.group_by(by) == []
    assert query.tool_usage() == []
    assert query.top_sessions() == []
    assert repository.read_session("nope") is None
    assert repository.load_session("nope", "a") is None
    assert repository.read_agent("nope", "a") is None
    assert repository.read_message("nope", "a", 0) is None
    assert repository.list_messages("nope", "a") == []
    assert repository.list_sessions() == []


def test_sync_reads_leave_no_database_behind(client: Client, database_name: str) -> None:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    read_everything(MetricsQuery(repository), repository)
    manager = MongoDBSessionManager("nope", client=client, database_name=database_name)
    Agent(agent_id="a", model=ScriptedModel(["x"]), session_manager=manager, callback_handler=None)
    manager.close()  # an agent that ran no turn writes nothing
    assert database_name not in client.list_database_names()


async def test_async_reads_leave_no_database_behind(
    mongodb_uri: str, client: Client, database_name: str
) -> None:
    async with AsyncMongoDBSessionRepository(mongodb_uri, database_name) as repository:
        query = AsyncMetricsQuery(repository)
        with pytest.raises(SessionNotFoundError):
            await query.session_metrics("nope")
        assert (await query.summary()).turns == 0
        assert await query.group_by("model") == []
        assert await query.tool_usage() == []
        assert await query.top_sessions() == []
        assert await repository.load_session("nope", "a") is None
        assert await repository.list_messages("nope", "a") == []
        assert await repository.list_sessions() == []
    assert database_name not in client.list_database_names()


def test_metrics_over_data_without_indexes_create_none_and_still_answer(
    client: Client, database_name: str
) -> None:
    # A turn stored by the package elsewhere, copied as plain documents into a database that no
    # writer of this package set up: its collections have no index but ``_id``.
    source = f"{database_name}_src"
    try:
        writer = MongoDBSessionManager("s", client=client, database_name=source)
        agent = Agent(
            agent_id="a", model=ScriptedModel(["hello"]), session_manager=writer, callback_handler=None
        )
        agent("hi")
        writer.close()
        for name in ("sessions", "sessions_messages"):
            client[database_name][name].insert_many(list(client[source][name].find()))
    finally:
        client.drop_database(source)
    database = client[database_name]
    before = {
        name: sorted(i["name"] for i in database[name].list_indexes())
        for name in database.list_collection_names()
    }
    assert before == {"sessions": ["_id_"], "sessions_messages": ["_id_"]}

    query = MetricsQuery(MongoDBSessionRepository(client=client, database_name=database_name))
    assert query.summary().turns == 1  # a hinted query: unhinted while the index is missing
    assert query.session_metrics("s").total_turns == 1
    assert [row.key for row in query.group_by("agent")] == ["a"]

    after = {
        name: sorted(i["name"] for i in database[name].list_indexes())
        for name in database.list_collection_names()
    }
    assert after == before
