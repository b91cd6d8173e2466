"""Handle a stream that breaks off, and keep the partial reply in the session.

The model fails after a few words (a provider dropping the connection, simulated by
``ScriptedResponse(error_after_chunks=...)``). The client gets the words streamed so far plus
an error note; the session keeps the partial reply, marked incomplete, via
``record_incomplete_reply``. That keeps the stored conversation alternating user/assistant, so
the next turn, here or after a resume, works. (``stream_text``/``stream_sse`` from the
package do this for you, also on cancellation and client disconnects.)

    python examples/error_handling.py
"""

import asyncio
import logging

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import create_mongodb_session_manager
from mongodb_session_manager.testing import ScriptedResponse

logger = logging.getLogger(__name__)

SESSION_ID = "error-handling"


async def stream_with_error_handling(agent, session_manager, prompt: str):
    """Yield the reply's chunks; on failure, yield an error note and store what was streamed."""
    session_manager.append_message({"role": "user", "content": prompt}, agent)
    response_chunks = []
    try:
        async for event in agent.stream_async(prompt):
            if "data" in event:
                chunk = event["data"]
                response_chunks.append(chunk)
                yield chunk
    except Exception as stream_error:
        logger.warning("stream failed: %s", stream_error)
        partial = "".join(response_chunks)
        # Stored as an assistant message marked {"incomplete": {"reason": "error"}}.
        await session_manager.record_incomplete_reply(agent, partial, reason="error")
        yield f"\n[Error during streaming: {type(stream_error).__name__}]"
        return

    full_response = "".join(response_chunks)
    session_manager.append_message({"role": "assistant", "content": full_response}, agent)
    try:
        await session_manager.sync_agent_async(agent)
    except Exception as sync_error:
        logger.error("Error syncing agent: %s", sync_error)


async def main(connection_string: str) -> None:
    session_manager = create_mongodb_session_manager(
        session_id=SESSION_ID, connection_string=connection_string, database_name=DATABASE
    )
    try:
        agent = Agent(
            agent_id="assistant",
            model=model(
                ScriptedResponse(
                    "Here are three ideas: first, cache the results; second,", error_after_chunks=6
                ),
                "No problem. Here they are again: cache, batch, index.",
            ),
            session_manager=session_manager,
            callback_handler=None,
        )
        for prompt in ["Give me three performance ideas.", "Could you repeat that?"]:
            print(f"User: {prompt}")
            print("Assistant: ", end="", flush=True)
            async for chunk in stream_with_error_handling(agent, session_manager, prompt):
                print(chunk, end="", flush=True)
            print()
    finally:
        session_manager.close()

    print("Stored conversation:")
    for document in session_manager.repository.messages_collection.find(
        {"session_id": SESSION_ID}, sort=[("message_id", 1)]
    ):
        note = " (incomplete)" if "incomplete" in document else ""
        print(f"  {document['role']}: {document['message']['content'][0]['text']}{note}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with local_mongodb() as uri:
        asyncio.run(main(uri))
