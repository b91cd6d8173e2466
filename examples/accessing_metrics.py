"""Read stored metrics back: one turn straight from MongoDB, then the MetricsQuery API.

The guide reads ``doc["agents"]["assistant"]["messages"][-1]``. Messages are not embedded in
the session document here (see docs/schema.md): each one is a document of
``<collection>_messages``, and a turn's metrics sit on its last message. So "the last turn's
metrics" is one indexed query, and ``MetricsQuery`` answers the questions across sessions.

    python examples/accessing_metrics.py
"""

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import MetricsQuery, MongoDBSessionRepository, create_mongodb_session_manager
from mongodb_session_manager.testing import ScriptedResponse


def record_some_turns(connection_string: str) -> None:
    """Three sessions with a few turns each (sync calls: the manager works the same way)."""
    for session_id, turns in [("report-1", 3), ("report-2", 1), ("report-3", 2)]:
        with create_mongodb_session_manager(
            session_id=session_id, connection_string=connection_string, database_name=DATABASE
        ) as session_manager:
            agent = Agent(
                agent_id="assistant",
                model=model(ScriptedResponse("Sure, here you go.", latency_ms=300), loop=True),
                session_manager=session_manager,
                callback_handler=None,
            )
            for n in range(turns):
                agent(f"Question {n + 1}")


def main(connection_string: str) -> None:
    record_some_turns(connection_string)

    repo = MongoDBSessionRepository(
        connection_string=connection_string,
        database_name=DATABASE,
        collection_name="sessions",
    )

    # The guide's "last message metrics", in this layout.
    last_turn = repo.messages_collection.find_one(
        {"session_id": "report-1", "event_loop_metrics": {"$exists": True}},
        sort=[("message_id", -1)],
    )
    if last_turn:
        metrics = last_turn["event_loop_metrics"]
        print(f"Latency: {metrics['accumulated_metrics']['latencyMs']}ms")
        print(f"Input tokens: {metrics['accumulated_usage']['inputTokens']}")
        print(f"Output tokens: {metrics['accumulated_usage']['outputTokens']}")

    # The same numbers, and more, through MetricsQuery.
    query = MetricsQuery(repo)
    session = query.session_metrics("report-1")
    print(f"report-1: {session.totals.turns} turns, {session.totals.total_tokens} tokens")
    for turn in session.turns:
        print(f"  turn at message {turn.message_id}: {turn.status}, {turn.total_tokens} tokens")

    summary = query.summary()
    print(f"All sessions: {summary.turns} turns, p95 latency {summary.latency_p95_ms} ms")
    for group in query.group_by("model"):
        print(f"Model {group.key}: {group.turns} turns, {group.total_tokens} tokens")
    for rank in query.top_sessions(by="tokens", limit=2):
        print(f"Top session {rank.session_id}: {rank.total_tokens} tokens")


if __name__ == "__main__":
    with local_mongodb() as uri:
        main(uri)
