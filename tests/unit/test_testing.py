"""ScriptedModel drives a real Strands Agent like a streaming provider would."""

from __future__ import annotations

import asyncio
import threading

import pytest
from strands import Agent, tool

from mongodb_session_manager.testing import (
    ScriptedModel,
    ScriptedModelError,
    ScriptedResponse,
    ScriptedToolCall,
    default_input_tokens,
)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _agent(model: ScriptedModel, **kwargs: object) -> Agent:
    return Agent(model=model, callback_handler=None, **kwargs)  # type: ignore[arg-type]


def _assistant_messages(agent: Agent) -> list[dict[str, object]]:
    return [dict(message) for message in agent.messages if message["role"] == "assistant"]


async def test_stream_async_yields_the_scripted_chunks() -> None:
    text = "Hello  there,\nworld! "
    agent = _agent(ScriptedModel([text]))

    chunks = [event["data"] async for event in agent.stream_async("hi") if "data" in event]

    assert chunks == ["Hello  ", "there,\n", "world! "]
    assert "".join(chunks) == text
    assert agent.messages[-1]["content"] == [{"text": text}]


async def test_tool_turn_runs_the_tool_and_ends_with_text() -> None:
    seen: list[tuple[int, int]] = []

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        seen.append((a, b))
        return a * b

    model = ScriptedModel(
        [
            ScriptedResponse(
                text="Let me compute.", tool_calls=[ScriptedToolCall("multiply", {"a": 6, "b": 7})]
            ),
            "It is 42.",
        ]
    )
    agent = _agent(model, tools=[multiply])

    result = await agent.invoke_async("6 times 7?")

    assert seen == [(6, 7)]
    assert result.stop_reason == "end_turn"
    assert str(result).strip() == "It is 42."
    roles = [message["role"] for message in agent.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    tool_use = agent.messages[1]["content"][1]["toolUse"]
    assert tool_use == {"toolUseId": "tooluse_0_0", "name": "multiply", "input": {"a": 6, "b": 7}}
    tool_result = agent.messages[2]["content"][0]["toolResult"]
    assert tool_result["toolUseId"] == "tooluse_0_0"
    assert tool_result["content"] == [{"text": "42"}]
    assert [call.stop_reason for call in model.calls] == ["tool_use", "end_turn"]


async def test_usage_and_metrics_reach_message_metadata() -> None:
    model = ScriptedModel(
        [
            ScriptedResponse(
                text="Adding.", tool_calls=[ScriptedToolCall("add", {"a": 1, "b": 2})], latency_ms=250
            ),
            ScriptedResponse(
                text="Three.", input_tokens=99, output_tokens=7, cache_read_tokens=5, cache_write_tokens=3
            ),
        ]
    )
    agent = _agent(model, tools=[add])

    await agent.invoke_async("1 + 2?")

    assistants = _assistant_messages(agent)
    assert len(assistants) == len(model.calls) == 2
    for message, call in zip(assistants, model.calls, strict=True):
        metadata = message["metadata"]
        assert isinstance(metadata, dict)
        assert metadata["usage"] == call.usage
        assert metadata["metrics"]["latencyMs"] == call.metrics["latencyMs"]
        # Strands swaps in its own time-to-first-byte when it measures >= 1 ms.
        assert isinstance(metadata["metrics"]["timeToFirstByteMs"], int)

    first, second = model.calls
    assert first.usage == {
        "inputTokens": default_input_tokens(first.messages),
        "outputTokens": 1 + 1,  # one text chunk and one tool call
        "totalTokens": default_input_tokens(first.messages) + 2,
    }
    assert first.metrics == {"latencyMs": 250, "timeToFirstByteMs": 40}
    assert second.usage == {
        "inputTokens": 99,
        "outputTokens": 7,
        "totalTokens": 106,
        "cacheReadInputTokens": 5,
        "cacheWriteInputTokens": 3,
    }


def test_default_input_tokens_formula() -> None:
    messages = [
        {"role": "user", "content": [{"text": "x" * 41}]},
        {
            "role": "assistant",
            "content": [{"text": "yy"}, {"toolUse": {"toolUseId": "t", "name": "n", "input": {}}}],
        },
    ]
    assert default_input_tokens(messages) == (41 + 2) // 4 + 10 * 2  # type: ignore[arg-type]


async def test_error_after_chunks_raises_mid_stream() -> None:
    agent = _agent(ScriptedModel([ScriptedResponse(text="one two three four", error_after_chunks=2)]))
    chunks: list[str] = []

    async def consume() -> None:
        async for event in agent.stream_async("hi"):
            if "data" in event:
                chunks.append(event["data"])

    with pytest.raises(ScriptedModelError):
        await consume()

    assert chunks == ["one ", "two "]
    assert [message["role"] for message in agent.messages] == ["user"]


def test_sync_call_and_default_reply() -> None:
    model = ScriptedModel()
    agent = _agent(model)

    assert str(agent("ping me")).strip() == "You said: ping me"
    assert str(agent("again")).strip() == "You said: again"
    assert [call.index for call in model.calls] == [0, 1]


def test_exhausted_responses_use_respond_then_loop() -> None:
    answered = _agent(ScriptedModel(["first"], respond=lambda messages: f"seen {len(messages)}"))
    assert str(answered("a")).strip() == "first"
    assert str(answered("b")).strip() == "seen 3"

    looping = _agent(ScriptedModel(["x", "y"], loop=True))
    assert [str(looping(prompt)).strip() for prompt in "abc"] == ["x", "y", "x"]


async def test_chunk_delay_spaces_out_chunks() -> None:
    agent = _agent(ScriptedModel(["a b c d"], chunk_delay=0.02))
    loop = asyncio.get_running_loop()
    started = loop.time()

    async for _ in agent.stream_async("hi"):
        pass

    assert loop.time() - started >= 0.06  # three gaps between four chunks


def test_structured_output_is_not_supported() -> None:
    with pytest.raises(NotImplementedError):
        ScriptedModel().structured_output(dict, [])  # type: ignore[type-var]


def test_calls_are_recorded_per_model_call_across_threads() -> None:
    model = ScriptedModel(loop=False)

    def run(prompt: str) -> None:
        _agent(model)(prompt)

    threads = [threading.Thread(target=run, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(call.index for call in model.calls) == [0, 1, 2, 3]
