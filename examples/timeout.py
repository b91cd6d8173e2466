"""Give a streamed reply a deadline with ``asyncio.timeout`` (Python 3.11+).

``asyncio.wait_for`` takes an awaitable, not an async generator, so the guide's
``asyncio.wait_for(stream_response(), timeout=...)`` fails before streaming anything. Wrap the
``async for`` in ``async with asyncio.timeout(...)`` instead: when the deadline passes, the
stream is cancelled where it is, and ``TimeoutError`` is raised at the ``async with``.
The words streamed so far are kept in the session as an incomplete reply.

    python examples/timeout.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager

TIMEOUT_SECONDS = 0.5
SLOW_REPLY = " ".join(f"word{n}" for n in range(100))  # 100 chunks, 50 ms apart: about 5 s


async def stream_with_timeout(agent, session_manager, prompt: str, timeout: float = TIMEOUT_SECONDS):
    response_chunks = []
    try:
        async with asyncio.timeout(timeout):
            async for event in agent.stream_async(prompt):
                if "data" in event:
                    response_chunks.append(event["data"])
                    yield event["data"]
    except TimeoutError:
        await session_manager.record_incomplete_reply(agent, "".join(response_chunks), reason="timeout")
        yield "\n[Response timeout - streaming stopped]"


async def main(connection_string: str) -> None:
    async with create_mongodb_session_manager(
        session_id="timeout", connection_string=connection_string, database_name=DATABASE
    ) as session_manager:
        agent = Agent(
            agent_id="assistant",
            model=model(SLOW_REPLY, chunk_delay=0.05),
            session_manager=session_manager,
            callback_handler=None,
        )
        started = asyncio.get_running_loop().time()
        async for chunk in stream_with_timeout(agent, session_manager, "Tell me a long story"):
            print(chunk, end="", flush=True)
        print()
        print(f"Stopped after {asyncio.get_running_loop().time() - started:.1f} s")

        stored = session_manager.repository.messages_collection.find_one(
            {"session_id": "timeout", "role": "assistant"}
        )
        words = len(stored["message"]["content"][0]["text"].split())
        print(f"Stored partial reply: {words} words, incomplete={stored['incomplete']}")


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(main(uri))
