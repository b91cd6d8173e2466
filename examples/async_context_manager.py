"""``async with`` a session manager: pending writes are stored and it is closed, even on errors.

The guide sketches a ``SessionContext`` class for this; the manager is already an async
context manager (and a plain one: ``with ... as session_manager:`` works in sync code).
Leaving the block stores anything still pending (on a worker thread, so the event loop never
waits) and closes the manager. The client stays open for the next manager: it is pooled.

    python examples/async_context_manager.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager


async def chat(connection_string: str, prompt: str) -> None:
    async with create_mongodb_session_manager(
        session_id="async-context-manager",
        connection_string=connection_string,
        database_name=DATABASE,
    ) as session_manager:
        agent = Agent(
            agent_id="assistant",
            model=model("Context managers make sure clean-up happens."),
            session_manager=session_manager,
            callback_handler=None,
        )
        session_manager.append_message({"role": "user", "content": prompt}, agent)
        chunks = []
        print("Assistant: ", end="", flush=True)
        async for event in agent.stream_async(prompt):
            if "data" in event:
                chunks.append(event["data"])
                print(event["data"], end="", flush=True)
        print()
        session_manager.append_message({"role": "assistant", "content": "".join(chunks)}, agent)
        # No sync_agent/close calls: leaving the block does both.
    # Here the manager is closed and the turn is in MongoDB, stored once.

    count = session_manager.repository.messages_collection.count_documents(
        {"session_id": "async-context-manager"}
    )
    print(f"Stored messages after the block: {count}")


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(chat(uri, "Why use a context manager?"))
