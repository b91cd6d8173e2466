"""Faults at random points never leave a session a strict provider refuses (seeded, bounded).

Each scenario breaks a turn that calls a tool (cancel, SIGKILL of the app process, the server
killed and restarted), then a new request resumes the session on a strict scripted model,
which refuses exactly what Bedrock Converse and Anthropic refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest
from strands import Agent, tool

from mongodb_session_manager import MongoDBSessionManagerFactory, StoreUnavailableError
from mongodb_session_manager.streaming import stream_text
from mongodb_session_manager.testing import (
    ScriptedModel,
    ScriptedResponse,
    ScriptedToolCall,
    conversation_problem,
)

Client = pymongo.MongoClient[dict[str, Any]]
SEED = 20261201


@tool
async def slow_lookup(city: str) -> str:
    """Look a city's weather up (slowly)."""
    await asyncio.sleep(0.02)
    return f"{city}: sunny"


def tool_turn(chunk_delay: float = 0.002) -> ScriptedModel:
    return ScriptedModel(
        [
            ScriptedResponse(
                text="Let me check. ", tool_calls=[ScriptedToolCall("slow_lookup", {"city": "Oslo"})]
            ),
            ScriptedResponse(text="It is sunny in Oslo today, enjoy the walk."),
        ],
        chunk_delay=chunk_delay,
    )


def stored_conversation(client: Client, database_name: str, session_id: str) -> list[dict[str, Any]]:
    documents = client[database_name].sessions_messages.find(
        {"session_id": session_id}, sort=[("message_id", 1)]
    )
    return [document["message"] for document in documents]


async def resume_strictly(factory: Any, session_id: str) -> ScriptedModel:
    """A new request on the session, on a model that refuses what strict providers refuse."""
    model = ScriptedModel(["Back again."], strict=True)
    async with await factory.acreate_session_manager(session_id, agent_id="assistant") as manager:
        agent = Agent(agent_id="assistant", model=model, session_manager=manager, callback_handler=None)
        await agent.invoke_async("Where were we?")
    return model


async def test_40_random_cancels_of_a_tool_call_turn_leave_valid_sessions(
    mongodb_uri: str, database_name: str, mongo_client: Client
) -> None:
    rng = random.Random(SEED)
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)

    async def cancelled_turn(index: int) -> None:
        session_id = f"cancel-{index}"
        async with await factory.acreate_session_manager(session_id, agent_id="assistant") as manager:
            agent = Agent(
                agent_id="assistant",
                model=tool_turn(),
                tools=[slow_lookup],
                session_manager=manager,
                callback_handler=None,
            )
            if index % 2:
                work = asyncio.ensure_future(agent.invoke_async("Weather in Oslo?"))
            else:  # through the streaming helper, which keeps the partial reply
                work = asyncio.ensure_future(
                    _drain(stream_text(agent, "Weather in Oslo?", session_manager=manager))
                )
            await asyncio.sleep(rng.choice([0, 0.001, rng.uniform(0, 0.08)]))
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            assert conversation_problem([*agent.messages, _user("next")]) is None, agent.messages

    try:
        for batch in range(4):
            await asyncio.gather(*(cancelled_turn(batch * 10 + n) for n in range(10)))
        refused = []
        for index in range(40):
            model = await resume_strictly(factory, f"cancel-{index}")
            refused += model.refused
            conversation = stored_conversation(mongo_client, database_name, f"cancel-{index}")
            assert conversation_problem([*conversation, _user("next")]) is None, conversation
            # Every turn that stored its prompt is in the metrics (a cancel at ~1 ms included).
            documents = mongo_client[database_name].sessions_messages.find({"session_id": f"cancel-{index}"})
            prompts = turns = 0
            for document in documents:
                content = document["message"]["content"]
                prompts += document["role"] == "user" and not any("toolResult" in b for b in content)
                turns += "event_loop_metrics" in document
            assert turns == prompts, f"cancel-{index}: {prompts} prompts, {turns} turn records"
        assert refused == []
    finally:
        factory.close()


async def _drain(chunks: Any) -> None:
    async for _ in chunks:
        pass


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


APP = textwrap.dedent(
    """
    import asyncio, sys
    from strands import Agent, tool
    from mongodb_session_manager import create_mongodb_session_manager
    from mongodb_session_manager.testing import ScriptedModel, ScriptedResponse, ScriptedToolCall

    @tool
    async def slow_lookup(city: str) -> str:
        '''Look a city's weather up (slowly).'''
        await asyncio.sleep(0.05)
        return f"{city}: sunny"

    async def main(uri, database, session_id):
        manager = create_mongodb_session_manager(
            session_id, connection_string=uri, database_name=database, lease_ttl=1.0
        )
        model = ScriptedModel(
            [
                ScriptedResponse(
                    text="Let me check. ", tool_calls=[ScriptedToolCall("slow_lookup", {"city": "Oslo"})]
                ),
                ScriptedResponse(text="It is sunny in Oslo today, enjoy the walk."),
            ],
            chunk_delay=0.01,
        )
        agent = Agent(agent_id="assistant", model=model, tools=[slow_lookup], session_manager=manager,
                      callback_handler=None)
        await manager.load(agent)
        print("ready", flush=True)
        await agent.invoke_async("Weather in Oslo?")
        await manager.aclose()
        print("done", flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_8_sigkills_of_the_app_mid_turn_leave_valid_sessions(
    mongodb_uri: str, database_name: str, mongo_client: Client, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    def run_and_kill(index: int, delay: float) -> None:
        process = subprocess.Popen(
            [sys.executable, str(script), mongodb_uri, database_name, f"killed-{index}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()

    delays = [rng.uniform(0, 0.35) for _ in range(8)]
    for start in range(0, 8, 4):
        await asyncio.gather(
            *(asyncio.to_thread(run_and_kill, index, delays[index]) for index in range(start, start + 4))
        )

    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    try:
        models = await asyncio.gather(*(resume_strictly(factory, f"killed-{index}") for index in range(8)))
    finally:
        factory.close()
    assert [problem for model in models for problem in model.refused] == []
    for index in range(8):
        conversation = stored_conversation(mongo_client, database_name, f"killed-{index}")
        assert conversation_problem([*conversation, _user("next")]) is None, conversation


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Server:
    """A SecantusDB on disk that can be SIGKILLed and started again on the same port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?retryWrites=false&directConnection=true"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = Path(sys.executable).with_name("secantusd-py")
        self.process = subprocess.Popen(
            [
                str(command),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.path),
                "--sync-on-commit",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=20_000) as client:
            client.admin.command("ping")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


async def test_the_server_killed_and_restarted_mid_turn(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    server = _Server(tmp_path / "data")
    server.start()
    timeout_ms = 1500
    factory = MongoDBSessionManagerFactory(
        server.uri, "chaos", serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    failures = 0
    try:
        for cycle in range(3):
            session_id = f"outage-{cycle}"
            manager = await factory.acreate_session_manager(session_id, agent_id="assistant", lease_ttl=1.0)
            agent = Agent(
                agent_id="assistant",
                model=tool_turn(chunk_delay=0.01),
                tools=[slow_lookup],
                session_manager=manager,
                callback_handler=None,
            )
            turn = asyncio.ensure_future(agent.invoke_async("Weather in Oslo?"))
            await asyncio.sleep(0.03 + rng.uniform(0, 0.15))
            await asyncio.to_thread(server.kill)
            started = time.monotonic()
            with contextlib.suppress(Exception):
                await turn
            if turn.exception() is not None:
                failures += 1
                # One error of ours, whatever Strands wrapped, after one server-selection timeout.
                assert isinstance(turn.exception(), StoreUnavailableError), repr(turn.exception())
                assert time.monotonic() - started < timeout_ms / 1000 * 1.5 + 1
            await asyncio.to_thread(server.start)
            # The same agent goes on once the server is back: a strict model accepts its history,
            # and memory and store agree.
            strict = ScriptedModel(["Back."], strict=True)
            agent.model = strict
            await agent.invoke_async("Still there?")
            assert strict.refused == []
            with pymongo.MongoClient(server.uri) as client:
                conversation = stored_conversation(client, "chaos", session_id)
            assert _texts(conversation) == _texts(agent.messages)
            await manager.aclose()
            model = await resume_strictly(factory, session_id)
            assert model.refused == []
        assert failures >= 1  # the kills did land mid-turn
    finally:
        factory.close()
        with contextlib.suppress(Exception):
            server.kill()


def _texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (
            m["role"],
            "".join(str(b.get("text", "")) + ("toolUse" if "toolUse" in b else "") for b in m["content"]),
        )
        for m in messages
    ]


@pytest.mark.parametrize("where", ["the prompt", "the reply"])
async def test_a_turn_whose_write_fails_leaves_memory_as_stored(
    mongodb_uri: str, database_name: str, mongo_client: Client, where: str
) -> None:
    factory = MongoDBSessionManagerFactory(mongodb_uri, database_name)
    try:
        async with await factory.acreate_session_manager("flaky", agent_id="assistant") as manager:
            agent = Agent(
                agent_id="assistant",
                model=ScriptedModel(["Hello."]),
                session_manager=manager,
                callback_handler=None,
            )
            await agent.invoke_async("hi")
            repository = manager.repository
            real_write = repository._run_plan
            calls = {"n": 0}
            fail_at = 1 if where == "the prompt" else 2

            def flaky_write(*args: Any, **kwargs: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == fail_at:
                    raise StoreUnavailableError("server unreachable (simulated)")
                return real_write(*args, **kwargs)

            repository._run_plan = flaky_write  # type: ignore[method-assign]
            with pytest.raises(StoreUnavailableError):
                await agent.invoke_async("again")
            repository._run_plan = real_write  # type: ignore[method-assign]
            assert _texts(stored_conversation(mongo_client, database_name, "flaky")) == _texts(agent.messages)
            strict = ScriptedModel(["Fine."], strict=True)
            agent.model = strict
            await agent.invoke_async("third time")
            assert strict.refused == []
        assert _texts(stored_conversation(mongo_client, database_name, "flaky")) == _texts(agent.messages)
    finally:
        factory.close()
