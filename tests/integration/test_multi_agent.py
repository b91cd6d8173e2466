"""Graphs persist their execution state in the session and restore it in a new process."""

from __future__ import annotations

from typing import Any

import pymongo
from strands import Agent
from strands.multiagent import GraphBuilder
from strands.multiagent.graph import Graph

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]


def research_graph(manager: MongoDBSessionManager) -> Graph:
    builder = GraphBuilder()
    builder.add_node(
        Agent(name="researcher", model=ScriptedModel(["Facts found."]), callback_handler=None), "research"
    )
    builder.add_node(
        Agent(name="writer", model=ScriptedModel(["Report written."]), callback_handler=None), "write"
    )
    builder.add_edge("research", "write")
    builder.set_entry_point("research")
    builder.set_graph_id("report_graph")
    builder.set_max_node_executions(10)
    builder.set_session_manager(manager)
    return builder.build()


def test_a_graph_of_two_agents_persists_and_resumes_its_state(
    mongodb_uri: str, database_name: str, client: Client
) -> None:
    graph = research_graph(
        MongoDBSessionManager(session_id="team", client=client, database_name=database_name)
    )
    result = graph("Write a report")
    assert [node.node_id for node in result.execution_order] == ["research", "write"]

    stored = client[database_name].sessions.find_one({"_id": "team"})
    assert stored is not None
    state = stored["multi_agents"]["report_graph"]["state"]
    assert state["status"] == "completed"
    assert sorted(state["completed_nodes"]) == ["research", "write"]
    assert state == graph.serialize_state()

    restored: list[dict[str, Any]] = []
    with pymongo.MongoClient(mongodb_uri) as fresh_client:
        manager = MongoDBSessionManager(session_id="team", client=fresh_client, database_name=database_name)
        original = Graph.deserialize_state

        def capture(self: Graph, payload: dict[str, Any]) -> None:
            restored.append(payload)
            original(self, payload)

        Graph.deserialize_state = capture  # type: ignore[method-assign]
        try:
            research_graph(manager)
        finally:
            Graph.deserialize_state = original  # type: ignore[method-assign]
    assert restored == [state]


def capture_restores() -> tuple[list[dict[str, Any]], Any]:
    """Record every state Graph.deserialize_state is given; returns (records, undo)."""
    restored: list[dict[str, Any]] = []
    original = Graph.deserialize_state

    def capture(self: Graph, payload: dict[str, Any]) -> None:
        restored.append(payload)
        original(self, payload)

    Graph.deserialize_state = capture  # type: ignore[method-assign]

    def undo() -> None:
        Graph.deserialize_state = original  # type: ignore[method-assign]

    return restored, undo


async def test_a_graph_built_on_the_loop_restores_at_its_first_invocation_without_io_in_the_constructor(
    database_name: str, client: Client, counted_client: Client, counter: Any
) -> None:
    with MongoDBSessionManager(session_id="team-loop", client=client, database_name=database_name) as first:
        research_graph(first)("Write a report")  # Strands runs it on a loop of its own
    stored = client[database_name].sessions.find_one({"_id": "team-loop"})
    assert stored is not None
    state = stored["multi_agents"]["report_graph"]["state"]

    restored, undo = capture_restores()
    try:
        manager = MongoDBSessionManager(
            session_id="team-loop", client=counted_client, database_name=database_name
        )
        counter.take()
        graph = research_graph(manager)
        assert counter.take() == []  # the constructor waited on no network
        assert restored == []
        await graph.invoke_async("Write it again")
        assert restored == [state]  # exactly what the eager restore gives, before the first node ran
        await manager.aclose()
    finally:
        undo()


async def test_load_restores_a_deferred_graph_now_and_once(database_name: str, client: Client) -> None:
    with MongoDBSessionManager(session_id="team-load", client=client, database_name=database_name) as first:
        research_graph(first)("Write a report")
    state = client[database_name].sessions.find_one({"_id": "team-load"})["multi_agents"]["report_graph"][
        "state"
    ]

    restored, undo = capture_restores()
    try:
        manager = MongoDBSessionManager(session_id="team-load", client=client, database_name=database_name)
        graph = research_graph(manager)
        await manager.load(graph)
        assert restored == [state]
        await graph.invoke_async("Write it again")
        assert restored == [state]  # not read a second time
        await manager.aclose()
    finally:
        undo()


async def test_a_graph_built_on_the_loop_that_never_runs_writes_nothing(
    database_name: str, client: Client
) -> None:
    manager = MongoDBSessionManager(session_id="team-idle", client=client, database_name=database_name)
    research_graph(manager)
    await manager.aclose()
    assert client[database_name].sessions.find_one({"_id": "team-idle"}) is None
