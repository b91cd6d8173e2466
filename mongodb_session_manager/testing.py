"""`ScriptedModel`: a deterministic, streaming Strands model for tests, examples and demos.

It streams the same events a real provider does (``messageStart``, content blocks with deltas,
``messageStop``, ``metadata`` with usage and metrics), so everything downstream of the model
(the event loop, tools, hooks, the session manager, streaming helpers) runs for real, offline,
with token counts a test can predict.

Token accounting, per model call, when a `ScriptedResponse` leaves it unset:

- ``inputTokens  = sum(len(block["text"]) for every top-level text block of every message) // 4
  + 10 * len(messages)`` (the messages Strands sends; the system prompt is not counted);
- ``outputTokens = len(text chunks) + len(tool calls)``;
- ``totalTokens  = inputTokens + outputTokens``.

`ScriptedModel.calls` records what each call reported, so tests can read exact numbers instead
of re-deriving them. One Strands quirk: it replaces ``timeToFirstByteMs`` with its own wall-clock
measurement whenever that measurement is at least 1 ms (a slow machine, a delayed first chunk), so
compare usage and ``latencyMs`` exactly and treat ``timeToFirstByteMs`` as indicative.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel
from pymongo import monitoring
from strands.models import Model
from strands.types.content import Messages
from strands.types.event_loop import Metrics, Usage
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

from .errors import InvalidSessionInputError

if TYPE_CHECKING:
    from strands.types.content import SystemContentBlock

__all__ = [
    "CommandCounter",
    "ScriptedCall",
    "ScriptedModel",
    "ScriptedModelError",
    "ScriptedResponse",
    "ScriptedToolCall",
    "StrictConversationError",
    "conversation_problem",
    "default_input_tokens",
]

T = TypeVar("T", bound=BaseModel)

_CHUNK = re.compile(r"\S+\s*|\s+")
_DEFAULT_CONTEXT_WINDOW = 200_000


class ScriptedModelError(Exception):
    """A simulated provider failure, raised mid-stream by ``error_after_chunks``."""


class StrictConversationError(ScriptedModelError):
    """What a strict provider answers to a conversation it refuses (``ScriptedModel(strict=True)``).

    Bedrock Converse and Anthropic refuse a history whose roles do not alternate, that does not
    start with a user message, or whose ``toolUse`` is not answered by a ``toolResult`` (same
    ids) in the very next message. The strict scripted model refuses exactly that, before it
    streams anything, so a test can tell whether a session is one a real provider accepts.
    """


def conversation_problem(messages: Messages) -> str | None:
    """Why a strict provider would refuse ``messages``, or None when it accepts them."""
    if not messages:
        return "the conversation is empty"
    if messages[0].get("role") != "user":
        return "message 0: the conversation must start with a user message"
    for index, message in enumerate(messages):
        if index and message.get("role") == messages[index - 1].get("role"):
            return f"message {index}: two {message.get('role')} messages in a row"
        wanted = {b["toolUse"]["toolUseId"] for b in message.get("content", []) if "toolUse" in b}
        answered = set()
        if index + 1 < len(messages):
            following = messages[index + 1].get("content", [])
            answered = {b["toolResult"]["toolUseId"] for b in following if "toolResult" in b}
        if wanted - answered:
            return f"message {index}: toolUse {sorted(wanted - answered)} not answered in the next message"
        if index and any("toolResult" in b for b in message.get("content", [])):
            previous = messages[index - 1].get("content", [])
            asked = {b["toolUse"]["toolUseId"] for b in previous if "toolUse" in b}
            given = {b["toolResult"]["toolUseId"] for b in message.get("content", []) if "toolResult" in b}
            if given - asked:
                return f"message {index}: toolResult {sorted(given - asked)} answers no toolUse"
    if messages[-1].get("role") != "user":
        return "the conversation must end with a user message"
    return None


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool the scripted model asks the agent to run.

    ``tool_use_id`` defaults to ``f"tooluse_{call_index}_{position}"``, where ``call_index`` counts
    this model's calls from 0 and ``position`` is the tool call's place in the response.
    """

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    tool_use_id: str | None = None


@dataclass(frozen=True)
class ScriptedResponse:
    """One model call's output: text, tool calls, and the usage and metrics to report.

    ``None`` token counts use the module's default formula. ``error_after_chunks=n`` streams ``n``
    text chunks (at most all of them) and then raises `ScriptedModelError`, like a provider that
    drops the connection mid-reply; nothing after that (tool calls, metadata) is sent.
    """

    text: str = ""
    tool_calls: Sequence[ScriptedToolCall] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: int = 120
    time_to_first_byte_ms: int = 40
    error_after_chunks: int | None = None

    @property
    def stop_reason(self) -> Literal["tool_use", "end_turn"]:
        """``"tool_use"`` when the response calls tools, else ``"end_turn"``."""
        return "tool_use" if self.tool_calls else "end_turn"

    @property
    def chunks(self) -> list[str]:
        """The text split by words, whitespace kept: ``"".join(chunks) == text``."""
        return _CHUNK.findall(self.text)


@dataclass(frozen=True)
class ScriptedCall:
    """What one model call received and reported (recorded when the call starts)."""

    index: int
    messages: Messages
    response: ScriptedResponse
    chunks: tuple[str, ...]
    tool_use_ids: tuple[str, ...]
    stop_reason: Literal["tool_use", "end_turn"]
    usage: Usage
    metrics: Metrics

    @property
    def fails(self) -> bool:
        """Whether this call raises `ScriptedModelError` instead of completing."""
        return self.response.error_after_chunks is not None


class ScriptedModel(Model):
    """A Strands model that replays scripted responses, one per model call.

    A tool-using turn takes two calls: the one returning the tool calls, then the final text. When
    ``responses`` run out the model cycles through them again (``loop=True``), else asks
    ``respond(messages)``, else replies ``"You said: <last user text>"``. A ``str`` is a plain text
    reply. ``chunk_delay`` seconds are awaited between streamed deltas; with 0 the model still
    yields to the event loop there, as a provider streaming from the network does.

    ``strict=True`` refuses, like Bedrock Converse and Anthropic, any conversation
    :func:`conversation_problem` finds fault with (`StrictConversationError`, counted in
    ``refused``). Use it wherever a test resumes a session after a fault.
    """

    def __init__(
        self,
        responses: Sequence[ScriptedResponse | str] = (),
        *,
        respond: Callable[[Messages], ScriptedResponse | str] | None = None,
        model_id: str = "scripted-model",
        chunk_delay: float = 0.0,
        loop: bool = False,
        strict: bool = False,
    ) -> None:
        if isinstance(chunk_delay, bool) or not isinstance(chunk_delay, (int, float)) or chunk_delay < 0:
            raise InvalidSessionInputError(f"chunk_delay must be a number >= 0, got {chunk_delay!r}")
        self._responses = [_as_response(item) for item in responses]
        self._respond = respond
        self._chunk_delay = chunk_delay
        self._loop = loop
        self.strict = strict
        self.refused: list[str] = []
        self._config: dict[str, Any] = {"model_id": model_id, "context_window_limit": _DEFAULT_CONTEXT_WINDOW}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self.calls: list[ScriptedCall] = []

    def update_config(self, **model_config: Any) -> None:
        """Merge ``model_config`` into the config (``model_id``, ``context_window_limit``, ...)."""
        self._config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        """The config; ``context_window_limit`` is set so Strands never warns about a missing one."""
        return dict(self._config)

    def structured_output(
        self, output_model: type[T], prompt: Messages, system_prompt: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[dict[str, T | Any], None]:
        """Not supported: a scripted model cannot invent an instance of an arbitrary schema."""
        raise NotImplementedError(
            "ScriptedModel does not implement structured_output; script a tool call instead"
        )

    async def stream(
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        *,
        tool_choice: Any = None,
        system_prompt_content: list[SystemContentBlock] | None = None,
        invocation_state: dict[str, Any] | None = None,
        cancel_signal: threading.Event | None = None,
        agent_metadata: Any = None,
        structured_output_model: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream the next scripted response as provider events."""
        problem = conversation_problem(messages) if self.strict else None
        if problem is not None:
            self.refused.append(problem)
            raise StrictConversationError(f"ValidationException: {problem}")
        call = self._next_call(messages)
        for position, event in enumerate(_events(call)):
            if cancel_signal is not None and cancel_signal.is_set():
                return
            if position > 0 and "contentBlockDelta" in event:
                # Like a real provider, yield to the loop between chunks (sleep(0) when no delay).
                await asyncio.sleep(self._chunk_delay)
            yield event
        if call.fails:
            raise ScriptedModelError(
                f"scripted provider failure in call {call.index} after "
                f"{min(call.response.error_after_chunks or 0, len(call.chunks))} text chunks"
            )

    def _next_call(self, messages: Messages) -> ScriptedCall:
        """Pick the response for the next call and record what it will report."""
        with self._lock:
            index = next(self._counter)
            response = self._pick(index, messages)
            call = _build_call(index, copy.deepcopy(messages), response)
            self.calls.append(call)
            return call

    def _pick(self, index: int, messages: Messages) -> ScriptedResponse:
        if index < len(self._responses):
            return self._responses[index]
        if self._loop and self._responses:
            return self._responses[index % len(self._responses)]
        if self._respond is not None:
            return _as_response(self._respond(messages))
        return ScriptedResponse(text=f"You said: {_last_user_text(messages)}")


def default_input_tokens(messages: Messages) -> int:
    """The default ``inputTokens`` of a call that sent ``messages`` (see the module docstring)."""
    characters = sum(
        len(block["text"]) for message in messages for block in message["content"] if "text" in block
    )
    return characters // 4 + 10 * len(messages)


def _as_response(item: ScriptedResponse | str) -> ScriptedResponse:
    return ScriptedResponse(text=item) if isinstance(item, str) else item


def _last_user_text(messages: Messages) -> str:
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        texts = [block["text"] for block in message["content"] if "text" in block]
        if texts:
            return " ".join(texts)
    return "(nothing)"


def _build_call(index: int, messages: Messages, response: ScriptedResponse) -> ScriptedCall:
    chunks = tuple(response.chunks)
    input_tokens = default_input_tokens(messages) if response.input_tokens is None else response.input_tokens
    output_tokens = (
        len(chunks) + len(response.tool_calls) if response.output_tokens is None else response.output_tokens
    )
    usage = Usage(
        inputTokens=input_tokens, outputTokens=output_tokens, totalTokens=input_tokens + output_tokens
    )
    if response.cache_read_tokens:
        usage["cacheReadInputTokens"] = response.cache_read_tokens
    if response.cache_write_tokens:
        usage["cacheWriteInputTokens"] = response.cache_write_tokens
    return ScriptedCall(
        index=index,
        messages=messages,
        response=response,
        chunks=chunks,
        tool_use_ids=tuple(
            tool.tool_use_id or f"tooluse_{index}_{position}"
            for position, tool in enumerate(response.tool_calls)
        ),
        stop_reason=response.stop_reason,
        usage=usage,
        metrics=Metrics(latencyMs=response.latency_ms, timeToFirstByteMs=response.time_to_first_byte_ms),
    )


def _events(call: ScriptedCall) -> list[StreamEvent]:
    """The provider events of one call, in order, up to a scripted failure."""
    events: list[StreamEvent] = [{"messageStart": {"role": "assistant"}}]
    block = 0
    if call.chunks:
        events.append({"contentBlockStart": {"contentBlockIndex": block, "start": {}}})
        limit = call.response.error_after_chunks
        for chunk in call.chunks[:limit] if limit is not None else call.chunks:
            events.append({"contentBlockDelta": {"contentBlockIndex": block, "delta": {"text": chunk}}})
        if call.fails:
            return events
        events.append({"contentBlockStop": {"contentBlockIndex": block}})
        block += 1
    elif call.fails:
        return events
    for tool, tool_use_id in zip(call.response.tool_calls, call.tool_use_ids, strict=True):
        events.append(
            {
                "contentBlockStart": {
                    "contentBlockIndex": block,
                    "start": {"toolUse": {"name": tool.name, "toolUseId": tool_use_id}},
                }
            }
        )
        events.append(
            {
                "contentBlockDelta": {
                    "contentBlockIndex": block,
                    "delta": {"toolUse": {"input": json.dumps(dict(tool.input))}},
                }
            }
        )
        events.append({"contentBlockStop": {"contentBlockIndex": block}})
        block += 1
    events.append({"messageStop": {"stopReason": call.stop_reason}})
    events.append({"metadata": {"usage": copy.copy(call.usage), "metrics": copy.copy(call.metrics)}})
    return events


class CommandCounter(monitoring.CommandListener):
    """The names of the database commands a client sends: round trips, countable in a test.

    ``pymongo.MongoClient(uri, event_listeners=[counter])``, then ``counter.take()`` returns (and
    forgets) what was sent since the last take, e.g. ``["aggregate"]`` for a resume.
    """

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.targets: list[tuple[str, Any]] = []  # (command, its collection or 1 for admin commands)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)
        self.targets.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[str]:
        taken, self.commands, self.targets = self.commands, [], []
        return taken

    def take_targets(self) -> list[tuple[str, Any]]:
        """Like :meth:`take`, with each command's collection: ``[("insert", "sessions_messages")]``."""
        taken, self.commands, self.targets = self.targets, [], []
        return taken
