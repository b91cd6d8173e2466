"""Basic streaming: print an agent's reply token by token while MongoDB keeps the conversation.

This is the guide's "Simple Streaming Example". Its manual ``append_message`` calls are kept:
the session manager's hooks already store every message the agent adds, and
``append_message`` recognises those messages, so nothing is stored twice.

    python examples/basic_streaming.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager


async def stream_response(connection_string: str) -> None:
    """Stream an agent's response token by token."""
    session_manager = create_mongodb_session_manager(
        session_id="basic-streaming",
        connection_string=connection_string,
        database_name=DATABASE,
    )
    agent = Agent(
        agent_id="assistant",
        model=model(
            "Async code lets one thread wait on many things at once: while a request waits "
            "for the network, the event loop runs other work."
        ),
        session_manager=session_manager,
        callback_handler=None,  # we print the stream ourselves
    )

    prompt = "Explain async programming in Python"
    session_manager.append_message({"role": "user", "content": prompt}, agent)

    response_chunks = []
    print("Response: ", end="", flush=True)
    # Text arrives in events that carry a "data" key; other events (lifecycle, tool use,
    # the final "result") are skipped here.
    async for event in agent.stream_async(prompt):
        if "data" in event:
            chunk = event["data"]
            response_chunks.append(chunk)
            print(chunk, end="", flush=True)
    print()

    full_response = "".join(response_chunks)
    session_manager.append_message({"role": "assistant", "content": full_response}, agent)
    session_manager.sync_agent(agent)

    stored = session_manager.repository.messages_collection.count_documents({"session_id": "basic-streaming"})
    print(f"Stored messages: {stored}")
    session_manager.close()


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(stream_response(uri))
