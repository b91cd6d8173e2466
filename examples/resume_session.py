"""Resume a streaming session: a new manager and agent with the same ids continue the conversation.

The first block plays yesterday's conversation. The second block is what a new request (or a
new process) does: build a manager for the same ``session_id`` and an Agent with the same
``agent_id``. The agent starts with the stored history, so the model sees the whole context.

    python examples/resume_session.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager

SESSION_ID = "resume-session"


def recall(messages):
    """The scripted model's reply: proves it received the earlier turns."""
    first = messages[0]["content"][0]["text"]
    return f"We have {len(messages) - 1} earlier messages; you started with: {first!r}"


async def ask(agent, prompt: str) -> None:
    print(f"User: {prompt}")
    print("Assistant: ", end="", flush=True)
    async for event in agent.stream_async(prompt):
        if "data" in event:
            print(event["data"], end="", flush=True)
    print()


async def main(connection_string: str) -> None:
    # Earlier: the first turn of the conversation.
    with create_mongodb_session_manager(
        session_id=SESSION_ID, connection_string=connection_string, database_name=DATABASE
    ) as session_manager:
        agent = Agent(
            agent_id="assistant",
            model=model("Noted: your favourite database is MongoDB."),
            session_manager=session_manager,
            callback_handler=None,
        )
        await ask(agent, "Remember that my favourite database is MongoDB.")

    # Later: load the existing session. Same session_id, same agent_id.
    session_manager = create_mongodb_session_manager(
        session_id=SESSION_ID, connection_string=connection_string, database_name=DATABASE
    )
    agent = Agent(
        agent_id="assistant",
        model=model(respond=recall),
        session_manager=session_manager,
        callback_handler=None,
    )
    # On an event loop, building the Agent does no I/O: the history arrives with the first turn.
    # To read it before that, load it (or build the manager with
    # `await factory.acreate_session_manager(session_id, agent_id=...)`).
    await session_manager.load(agent)
    print(f"Restored {len(agent.messages)} messages from MongoDB")
    await ask(agent, "What did I tell you?")
    await session_manager.aclose()


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(main(uri))
