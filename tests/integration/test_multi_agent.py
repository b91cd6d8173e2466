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
