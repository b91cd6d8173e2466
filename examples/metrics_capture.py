"""Metrics are captured while you stream: tokens, latency, cycles and tool calls, per turn.

Nothing to call for it: when a turn ends, its ``event_loop_metrics`` (this turn only, never
the agent's lifetime totals) are stored on the turn's last message, and the session document's
running ``totals`` grow by the turn's numbers. The guide's ``sync_agent`` after streaming is
harmless and never counts a turn twice.

    python examples/metrics_capture.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent, tool

from mongodb_session_manager import create_mongodb_session_manager
from mongodb_session_manager.testing import ScriptedResponse, ScriptedToolCall


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 21 degrees in {city}"


async def stream_with_metrics(connection_string: str) -> None:
    session_manager = create_mongodb_session_manager(
        session_id="metrics-capture", connection_string=connection_string, database_name=DATABASE
    )
    agent = Agent(
        agent_id="assistant",
        # Two model calls: one asks for the tool, the next one answers with its result.
        model=model(
            ScriptedResponse(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"})]),
            ScriptedResponse("It is sunny and 21 degrees in Paris.", latency_ms=250),
        ),
        tools=[get_weather],
        session_manager=session_manager,
        callback_handler=None,
    )

    prompt = "What is the weather in Paris?"
    session_manager.append_message({"role": "user", "content": prompt}, agent)
    response_chunks = []
    async for event in agent.stream_async(prompt):
        if "data" in event:
            response_chunks.append(event["data"])
    session_manager.append_message({"role": "assistant", "content": "".join(response_chunks)}, agent)
    session_manager.sync_agent(agent)
    print(f"Assistant: {''.join(response_chunks)}")

    # The turn's record sits on its last message.
    turn = session_manager.repository.messages_collection.find_one(
        {"session_id": "metrics-capture", "event_loop_metrics": {"$exists": True}},
        sort=[("message_id", -1)],
    )
    metrics = turn["event_loop_metrics"]
    usage = metrics["accumulated_usage"]
    print(f"Status: {metrics['status']}")
    print(f"Model calls: {metrics['model_calls']}, cycles: {metrics['cycles']['count']}")
    print(f"Latency: {metrics['accumulated_metrics']['latencyMs']} ms")
    print(f"Tokens: {usage['inputTokens']} in, {usage['outputTokens']} out, {usage['totalTokens']} total")
    for name, stats in metrics["tools"].items():
        print(f"Tool {name}: {stats['calls']} call(s), {stats['errors']} error(s), {stats['time_ms']} ms")

    # Running totals for the whole session live in the session document.
    session = session_manager.repository.collection.find_one({"_id": "metrics-capture"})
    print(f"Session totals: {session['totals']}")
    session_manager.close()


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(stream_with_metrics(uri))
