"""The guide's complete pattern: stream a reply to the client and persist the whole conversation.

``chat_with_streaming`` is an async generator, as you would hand to a web framework: it yields
text chunks while the agent streams, then appends the user and assistant messages and syncs
the agent, as the guide shows. Those manual appends are safe: the hooks already stored both
messages, ``append_message`` sees that, and each turn is stored exactly once (two messages,
content as Strands' list of blocks).

    python examples/complete_persistence.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager

REPLIES = {
    "Hello!": "Hi! What would you like to talk about?",
    "Tell me about MongoDB.": "MongoDB is a document database: it stores JSON-like documents.",
}


async def chat_with_streaming(connection_string: str, session_id: str, prompt: str):
    """Chat with streaming and full session persistence."""
    session_manager = create_mongodb_session_manager(
        session_id=session_id,
        connection_string=connection_string,
        database_name=DATABASE,
    )
    agent = Agent(
        agent_id="assistant",
        model=model(REPLIES[prompt]),
        session_manager=session_manager,
        system_prompt="You are a helpful assistant.",
        callback_handler=None,
    )

    session_manager.append_message({"role": "user", "content": prompt}, agent)

    response_chunks = []
    async for event in agent.stream_async(prompt):
        if "data" in event:
            chunk = event["data"]
            response_chunks.append(chunk)
            yield chunk  # send to the client: websocket, SSE, ...

    full_response = "".join(response_chunks)
    session_manager.append_message({"role": "assistant", "content": full_response}, agent)
    session_manager.sync_agent(agent)
    session_manager.close()  # the conversation is now fully persisted


async def main(connection_string: str) -> None:
    for prompt in REPLIES:
        print(f"User: {prompt}")
        print("Assistant: ", end="", flush=True)
        async for chunk in chat_with_streaming(connection_string, "complete-persistence", prompt):
            print(chunk, end="", flush=True)
        print()

    # What MongoDB holds now: one document per message, in order, none twice.
    session_manager = create_mongodb_session_manager(
        session_id="complete-persistence", connection_string=connection_string, database_name=DATABASE
    )
    stored = session_manager.repository.messages_collection.find(
        {"session_id": "complete-persistence"}, sort=[("message_id", 1)]
    )
    print("Stored conversation:")
    for document in stored:
        print(f"  {document['message_id']} {document['role']}: {document['message']['content']}")
    session_manager.close()


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(main(uri))
