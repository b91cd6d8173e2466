"""One writer per session: concurrent requests take turns, a busy session answers SessionBusyError."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from strands import Agent

from mongodb_session_manager import (
    MongoDBSessionManagerFactory,
    SessionBusyError,
    TurnAlreadyStoredError,
)
from mongodb_session_manager.schema import open_turn_lease, utcnow
from mongodb_session_manager.streaming import stream_sse, stream_text
from mongodb_session_manager.testing import (
    ScriptedModel,
    ScriptedResponse,
    ScriptedToolCall,
    conversation_problem,
)

Client = pymongo.MongoClient[dict[str, Any]]


@pytest.fixture
def factory(mongodb_uri: str, database_name: str) -> Any:
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    yield factory
    factory.close()


def stored(client: Client, database_name: str, session_id: str) -> list[dict[str, Any]]:
    found = client[database_name].sessions_messages.find({"session_id": session_id}, sort=[("message_id", 1)])
    return list(found)


def open_lease(client: Client, database_name: str, session_id: str) -> Any:
    """The lease of a turn still open in the stored conversation (None: every turn is closed)."""
    return open_turn_lease(stored(client, database_name, session_id))


def store_dead_prompt(
    client: Client,
    database_name: str,
    session_id: str,
    text: str,
    lease_left: timedelta,
    key: str | None = None,
) -> None:
    """What a writer that died before its reply leaves: its prompt (message 2) and its lease."""
    document: dict[str, Any] = {
        "session_id": session_id,
        "agent_id": "assistant",
        "message_id": 2,
        "role": "user",
        "message": {"role": "user", "content": [{"text": text}]},
        "lease": {"owner": "gone", "until": utcnow() + lease_left},
    }
    if key is not None:
        document["idempotency_key"] = key
    client[database_name].sessions_messages.insert_one(document)


def text_of(document: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in document["message"]["content"])


async def request(factory: Any, session_id: str, prompt: str, **options: Any) -> tuple[str, ScriptedModel]:
    """What the guide's FastAPI handler does: a manager and an Agent per request, one streamed turn."""
    model = ScriptedModel(respond=lambda messages: f"reply to {prompt}", chunk_delay=0.005, strict=True)
    manager = await factory.acreate_session_manager(session_id, agent_id="assistant", **options)
    try:
        agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
        reply = "".join([chunk async for chunk in stream_text(agent, prompt, session_manager=manager)])
    finally:
        await manager.aclose()
    return reply, model


async def test_five_concurrent_requests_on_one_session_take_turns(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    await request(factory, "tabs", "hello")
    prompts = [f"question {n}" for n in range(5)]

    results = await asyncio.gather(*(request(factory, "tabs", prompt) for prompt in prompts))

    assert [reply for reply, _ in results] == [f"reply to {prompt}" for prompt in prompts]
    documents = stored(mongo_client, database_name, "tabs")
    assert [d["message_id"] for d in documents] == list(range(12))  # no gaps, no duplicates
    conversation = [d["message"] for d in documents]
    assert conversation_problem([*conversation, {"role": "user", "content": [{"text": "next"}]}]) is None
    for prompt_doc, reply_doc in zip(documents[2::2], documents[3::2], strict=True):
        assert text_of(reply_doc) == f"reply to {text_of(prompt_doc)}"  # each reply right after its prompt
    # Each turn saw every turn stored before it: the model got all earlier messages.
    seen = sorted(len(model.calls[0].messages) for _, model in results)
    assert seen == [3, 5, 7, 9, 11]
    # Each turn's lease rode in on its messages and was closed by its reply's record.
    assert all(d["lease"]["owner"] for d in documents[2:])
    assert all("event_loop_metrics" in d for d in documents[3::2])
    assert open_lease(mongo_client, database_name, "tabs") is None


async def test_a_request_that_cannot_get_the_session_in_time_gets_busy_and_stores_nothing(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    await request(factory, "busy", "hello")
    slow = ScriptedModel(["a long answer " * 20], chunk_delay=0.02)
    manager = await factory.acreate_session_manager("busy", agent_id="assistant")
    agent = Agent(agent_id="assistant", model=slow, session_manager=manager, callback_handler=None)
    running = asyncio.create_task(agent.invoke_async("take your time"))
    while len(stored(mongo_client, database_name, "busy")) < 3:
        await asyncio.sleep(0.01)

    with pytest.raises(SessionBusyError, match="another request"):
        await request(factory, "busy", "me too", turn_wait=timedelta(milliseconds=100))
    impatient = MongoDBSessionManagerFactory(factory.config.connection_string, database_name, turn_wait=0.1)
    try:  # the same, as a factory-wide option
        with pytest.raises(SessionBusyError):
            await request(impatient, "busy", "me three")
    finally:
        impatient.close()

    await running
    await manager.aclose()
    texts = [text_of(d) for d in stored(mongo_client, database_name, "busy")]
    assert "me too" not in texts
    assert "me three" not in texts
    assert len(texts) == 4
    # And the session still takes the next request.
    assert (await request(factory, "busy", "now?"))[0] == "reply to now?"


async def test_the_lease_of_a_crashed_writer_expires(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    await request(factory, "crashed", "hello")
    # A writer stored its prompt, with its lease, and died before its reply.
    store_dead_prompt(mongo_client, database_name, "crashed", "lost question", timedelta(milliseconds=600))

    loop = asyncio.get_running_loop()
    started = loop.time()
    reply, model = await request(factory, "crashed", "anyone?")

    assert reply == "reply to anyone?"
    assert loop.time() - started >= 0.5  # it waited for the dead writer's lease to run out
    assert model.refused == []  # the dead turn was closed before this one (a strict model took it)
    texts = [text_of(d) for d in stored(mongo_client, database_name, "crashed")]
    assert texts[2] == "lost question"
    assert texts[-2:] == ["anyone?", "reply to anyone?"]


async def test_a_long_turn_renews_its_lease(factory: Any, mongo_client: Client, database_name: str) -> None:
    await request(factory, "long", "hello")
    model = ScriptedModel(["word " * 60], chunk_delay=0.03)  # ~1.8 s of streaming
    manager = await factory.acreate_session_manager("long", agent_id="assistant", lease_ttl=1.0)
    agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
    running = asyncio.create_task(agent.invoke_async("go slowly"))
    await asyncio.sleep(1.3)  # past the first lease's end: only a renewal keeps it

    with pytest.raises(SessionBusyError):
        await request(factory, "long", "cut in", turn_wait=0.2)
    await running
    await manager.aclose()


async def test_a_waiting_request_sees_the_turn_it_waited_for(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    # The second request resumed while the first one streamed: its window showed the running
    # turn's prompt and lease, so it waited, then read the reply before writing its own prompt.
    await request(factory, "queued", "hello")
    slow = ScriptedModel(["slowly, slowly"], chunk_delay=0.05)
    manager = await factory.acreate_session_manager("queued", agent_id="assistant")
    agent = Agent(agent_id="assistant", model=slow, session_manager=manager, callback_handler=None)
    running = asyncio.create_task(agent.invoke_async("first in line"))
    while len(stored(mongo_client, database_name, "queued")) < 3:
        await asyncio.sleep(0.01)
    assert open_lease(mongo_client, database_name, "queued")["owner"]

    reply, model = await request(factory, "queued", "second in line")

    await running
    await manager.aclose()
    assert reply == "reply to second in line"
    assert [text_of({"message": m}) for m in model.calls[0].messages][-3:] == [
        "first in line",
        "slowly, slowly",
        "second in line",
    ]
    assert open_lease(mongo_client, database_name, "queued") is None


async def test_turn_lock_false_writes_no_lease(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    await request(factory, "free", "hello", turn_lock=False)
    assert all("lease" not in d for d in stored(mongo_client, database_name, "free"))


async def test_a_retried_request_with_the_same_key_gets_the_stored_reply(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    async def send(prompt: str, key: str) -> list[dict[str, Any]]:
        model = ScriptedModel([f"answer to {prompt}"], strict=True)
        async with await factory.acreate_session_manager("retry", agent_id="assistant") as manager:
            agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
            frames = [
                frame
                async for frame in stream_sse(agent, prompt, session_manager=manager, idempotency_key=key)
            ]
        return [__import__("json").loads(frame[6:]) for frame in frames]

    first = await send("What is 2+2?", "req-1")
    retried = await send("What is 2+2?", "req-1")

    assert first[-1]["type"] == "done"
    assert "replayed" not in first[-1]
    assert retried == [
        {"type": "token", "data": "answer to What is 2+2?"},
        {"type": "done", "replayed": True, "metrics": {}},
    ]
    texts = [text_of(d) for d in stored(mongo_client, database_name, "retry")]
    assert texts == ["What is 2+2?", "answer to What is 2+2?"]  # one turn stored
    turns = mongo_client[database_name].sessions_messages.count_documents(
        {"event_loop_metrics": {"$exists": True}}
    )
    assert turns == 1

    # Without a streaming helper the retry is refused with an error naming the stored turn.
    async with await factory.acreate_session_manager("retry", agent_id="assistant") as manager:
        agent = Agent(
            agent_id="assistant", model=ScriptedModel([]), session_manager=manager, callback_handler=None
        )
        with pytest.raises(TurnAlreadyStoredError, match="starts at message 0") as refused:
            await agent.invoke_async("What is 2+2?", invocation_state={"idempotency_key": "req-1"})
        assert refused.value.reply_text == "answer to What is 2+2?"
        assert [m["role"] for m in agent.messages] == ["user", "assistant"]  # nothing added in memory either


async def test_concurrent_retries_with_one_key_run_one_turn(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    async def send() -> str:
        model = ScriptedModel(["only once"], chunk_delay=0.01)
        async with await factory.acreate_session_manager("double", agent_id="assistant") as manager:
            agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
            chunks = stream_text(agent, "pay", session_manager=manager, idempotency_key="click-1")
            return "".join([chunk async for chunk in chunks])

    replies = await asyncio.gather(send(), send(), send())

    assert replies == ["only once"] * 3
    assert [text_of(d) for d in stored(mongo_client, database_name, "double")] == ["pay", "only once"]


async def test_a_retry_sent_while_the_first_request_streams_waits_and_gets_its_reply(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    async def send(model: ScriptedModel) -> str:
        async with await factory.acreate_session_manager("retry-early", agent_id="assistant") as manager:
            agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
            chunks = stream_text(agent, "pay", session_manager=manager, idempotency_key="click-2")
            return "".join([chunk async for chunk in chunks])

    first = asyncio.create_task(send(ScriptedModel(["paid in full"], chunk_delay=0.1)))
    while not stored(mongo_client, database_name, "retry-early"):  # the prompt is stored, the reply streams
        await asyncio.sleep(0.01)
    retry = await send(ScriptedModel(["must not run"]))

    assert retry == await first == "paid in full"
    assert [text_of(d) for d in stored(mongo_client, database_name, "retry-early")] == ["pay", "paid in full"]
    assert open_lease(mongo_client, database_name, "retry-early") is None
    assert (await request(factory, "retry-early", "next", turn_wait=0.5))[0] == "reply to next"


async def test_a_plain_turn_with_the_lease_and_tools_stays_valid_for_a_strict_model(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city}: sunny"

    from strands import tool

    model = ScriptedModel(
        [ScriptedResponse(tool_calls=[ScriptedToolCall("lookup", {"city": "Oslo"})]), "It is sunny."],
        strict=True,
    )
    async with await factory.acreate_session_manager("tools", agent_id="assistant") as manager:
        agent = Agent(
            agent_id="assistant",
            model=model,
            tools=[tool(lookup)],
            session_manager=manager,
            callback_handler=None,
        )
        await agent.invoke_async("Weather in Oslo?")
    assert model.refused == []
    assert [d["role"] for d in stored(mongo_client, database_name, "tools")] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


async def test_a_long_lived_agent_with_a_stale_window_takes_its_turn_after_the_running_ones(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    # Its window is from before the other requests' turns: its prompt meets their ids, it
    # learns whether a turn still runs there (wait) or only ran (read again), and then goes.
    model = ScriptedModel(respond=lambda messages: "long-lived reply", chunk_delay=0.005, strict=True)
    manager = await factory.acreate_session_manager("stale", agent_id="assistant")
    agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
    await agent.invoke_async("hello")

    others = [request(factory, "stale", f"question {n}") for n in range(3)]
    await asyncio.gather(agent.invoke_async("from the long-lived agent"), *others)
    await manager.aclose()

    documents = stored(mongo_client, database_name, "stale")
    assert [d["message_id"] for d in documents] == list(range(10))  # no gaps, no duplicates
    next_prompt = {"role": "user", "content": [{"text": "next"}]}
    assert conversation_problem([*(d["message"] for d in documents), next_prompt]) is None
    for prompt_doc, reply_doc in zip(documents[0::2], documents[1::2], strict=True):
        expected = (
            "long-lived reply"
            if prompt_doc["message"]["content"][0]["text"]
            in (
                "hello",
                "from the long-lived agent",
            )
            else f"reply to {text_of(prompt_doc)}"
        )
        assert text_of(reply_doc) == expected
    # Its second turn saw every turn stored before it.
    position = [text_of(d) for d in documents].index("from the long-lived agent")
    assert len(model.calls[-1].messages) == position + 1
    assert model.refused == []
    assert open_lease(mongo_client, database_name, "stale") is None


async def test_a_turn_its_conversation_manager_trims_mid_turn_still_holds_the_session(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    # A per-turn sliding window moves the stored window start past the running turn's prompt
    # while the turn calls its tools; every message of the turn carries the lease, so a request
    # arriving then still sees the turn running and waits for it.
    from strands import tool
    from strands.agent.conversation_manager import SlidingWindowConversationManager

    @tool
    async def slow(x: str) -> str:
        """A slow tool."""
        await asyncio.sleep(0.3)
        return f"ok {x}"

    def window() -> SlidingWindowConversationManager:
        return SlidingWindowConversationManager(window_size=4, per_turn=True)

    for n in range(2):
        async with await factory.acreate_session_manager("trimmed", agent_id="assistant") as manager:
            agent = Agent(
                agent_id="assistant",
                model=ScriptedModel([f"reply {n}"]),
                conversation_manager=window(),
                session_manager=manager,
                callback_handler=None,
            )
            await agent.invoke_async(f"prompt {n}")
    calls = [ScriptedResponse(tool_calls=[ScriptedToolCall("slow", {"x": str(n)})]) for n in range(4)]
    long_model = ScriptedModel([*calls, "all done"])
    manager = await factory.acreate_session_manager("trimmed", agent_id="assistant")
    agent = Agent(
        agent_id="assistant",
        model=long_model,
        tools=[slow],
        conversation_manager=window(),
        session_manager=manager,
        callback_handler=None,
    )
    running = asyncio.create_task(agent.invoke_async("a long turn"))

    def removed() -> int:
        session = mongo_client[database_name].sessions.find_one({"_id": "trimmed"})
        return int(session["agents"]["assistant"]["conversation_manager_state"]["removed_message_count"])

    while removed() <= 4 and not running.done():  # until the stored window starts past its prompt (4)
        await asyncio.sleep(0.01)
    assert not running.done()

    model = ScriptedModel(["short reply"], strict=True)
    async with await factory.acreate_session_manager("trimmed", agent_id="assistant") as other:
        second = Agent(
            agent_id="assistant",
            model=model,
            conversation_manager=window(),
            session_manager=other,
            callback_handler=None,
        )
        await second.invoke_async("a short question")
        assert running.done()  # it waited for the long turn
    await running
    await manager.aclose()

    documents = stored(mongo_client, database_name, "trimmed")
    next_prompt = {"role": "user", "content": [{"text": "next"}]}
    assert conversation_problem([*(d["message"] for d in documents), next_prompt]) is None
    assert [text_of(d) for d in documents][-2:] == ["a short question", "short reply"]
    assert model.refused == []
    assert open_lease(mongo_client, database_name, "trimmed") is None


async def test_a_retry_of_a_crashed_request_is_refused_not_run_again_with_the_guide_api(
    factory: Any, mongo_client: Client, database_name: str
) -> None:
    await request(factory, "crashed-retry", "hello")
    # The first request stored its keyed prompt, then died; its lease ran out.
    store_dead_prompt(mongo_client, database_name, "crashed-retry", "pay", -timedelta(seconds=1), key="k1")
    manager = factory.create_session_manager("crashed-retry")  # restored at the first turn
    model = ScriptedModel(["paid twice"])
    agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
    with pytest.raises(TurnAlreadyStoredError, match="no reply yet"):
        await agent.invoke_async("pay", invocation_state={"idempotency_key": "k1"})
    await manager.aclose()
    assert model.calls == []
    keyed = [d for d in stored(mongo_client, database_name, "crashed-retry") if d.get("idempotency_key")]
    assert len(keyed) == 1
