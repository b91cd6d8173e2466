"""One factory per process, one cheap session manager per request.

A web app calls ``initialize_global_factory`` once at startup (FastAPI: in its lifespan),
``get_global_factory().create_session_manager(session_id)`` in each request, and
``close_global_factory`` at shutdown. Every manager shares the factory's client and its
connection pool (``maxPoolSize=100`` here), and indexes are created once, not per request.

    python examples/factory_pattern.py
"""

import asyncio

from _setup import DATABASE, local_mongodb, model
from strands import Agent

from mongodb_session_manager import close_global_factory, get_global_factory, initialize_global_factory


async def handle_request(session_id: str, message: str) -> str:
    """What one request handler does."""
    factory = get_global_factory()
    session_manager = factory.create_session_manager(session_id)
    agent = Agent(
        agent_id="assistant",
        model=model(),  # the scripted model answers "You said: <message>"
        session_manager=session_manager,
        callback_handler=None,
    )
    chunks = []
    async for event in agent.stream_async(message):
        if "data" in event:
            chunks.append(event["data"])
    session_manager.close()
    return "".join(chunks)


async def handle_request_on_loop(session_id: str, message: str) -> str:
    """The same, with the session read off the event loop: ``acreate_session_manager`` loads the
    agent's messages on a worker thread, so building the Agent does no I/O on the loop."""
    factory = get_global_factory()
    session_manager = await factory.acreate_session_manager(session_id, agent_id="assistant")
    async with session_manager:
        agent = Agent(
            agent_id="assistant", model=model(), session_manager=session_manager, callback_handler=None
        )
        result = await agent.invoke_async(message)
    return str(result).strip()


async def serve(connection_string: str) -> None:
    initialize_global_factory(
        connection_string=connection_string,
        database_name=DATABASE,
        maxPoolSize=100,
    )
    try:
        replies = await asyncio.gather(
            handle_request("alice", "Hi, I am Alice"),
            handle_request("bob", "Hi, I am Bob"),
            handle_request("carol", "Hi, I am Carol"),
        )
        for reply in replies:
            print(reply)
        print(await handle_request_on_loop("alice", "Me again"))

        factory = get_global_factory()
        print(f"Pool size: {factory.client.options.pool_options.max_pool_size}")
        sessions = factory.repository.collection.count_documents({})
        print(f"Sessions stored: {sessions}")
    finally:
        close_global_factory()


if __name__ == "__main__":
    with local_mongodb() as uri:
        asyncio.run(serve(uri))
