"""Buffer streamed text: send fewer, larger writes to the client.

A model streams many small chunks; sending each as its own network write costs more than the
text. Join them: every ``buffer_size`` chunks (the guide's pattern), and flush what is left at
the end. The session stores the full reply either way: buffering only changes what the client
receives, and when.

    python examples/buffering.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager, stream_text

STORY = " ".join(f"word{n}" for n in range(1, 26))  # 25 chunks


async def buffered_chunks(agent, prompt: str, buffer_size: int = 10):
    """Yield the reply in groups of ``buffer_size`` chunks."""
    buffer = []
    async for event in agent.stream_async(prompt):
        if "data" in event:
            buffer.append(event["data"])
            if len(buffer) >= buffer_size:
                yield "".join(buffer)
                buffer = []
    if buffer:  # flush the rest
        yield "".join(buffer)


async def main(connection_string: str) -> None:
    async with create_mongodb_session_manager(
        session_id="buffering", connection_string=connection_string, database_name=DATABASE
    ) as session_manager:
        agent = Agent(
            agent_id="assistant",
            model=model(STORY),
            session_manager=session_manager,
            callback_handler=None,
        )
        writes = []
        async for text in buffered_chunks(agent, "Tell me a story", buffer_size=10):
            writes.append(text)
            print(f"write {len(writes)}: {text!r}")
        print(f"{len(writes)} writes to the client")

        # The package's helper: at most 10 chunks, or 100 ms worth of them, per write.
        agent.model = model(STORY, chunk_delay=0.02)
        writes = []
        async for text in stream_text(
            agent, "Again, please", session_manager=session_manager, buffer_chunks=10, buffer_ms=100
        ):
            writes.append(text)
        print(f"stream_text: {len(writes)} writes, {sum(len(t.split()) for t in writes)} words")

    replies = list(
        session_manager.repository.messages_collection.find(
            {"session_id": "buffering", "role": "assistant"}, sort=[("message_id", 1)]
        )
    )
    last_reply = replies[-1]["message"]["content"][0]["text"]
    print(f"Stored reply equals what was sent: {last_reply == ''.join(writes)}")


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(main(uri))
