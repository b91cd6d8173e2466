"""Stream one persisted turn as text chunks or Server-Sent Events, and keep what broke off.

Both helpers run ``agent.stream_async(prompt)`` (the session manager's hooks store the turn as
it happens) and pull one event at a time: nothing is collected before it is yielded. When a
turn breaks off (the model raises, the consumer's task is cancelled, the client goes away and
the generator is closed, or the ``timeout`` passes) the reply streamed so far is stored as an
assistant message marked incomplete, via ``session_manager.record_incomplete_reply``, so the
conversation stays valid and the next turn, in this process or after a resume, can run.

Strands' events carry the agent, the invocation state and other live objects; only text and
JSON-safe metrics ever leave these helpers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ._error_text import sanitize_error_message
from ._redact import redact_uri
from .errors import ConfigurationError, InvalidSessionInputError, SessionBusyError, TurnAlreadyStoredError
from .manager import IDEMPOTENCY_KEY

if TYPE_CHECKING:
    from strands import Agent
    from strands.types.agent import AgentInput

    from .manager import MongoDBSessionManager

__all__ = ["json_safe", "sse_frame", "stream_sse", "stream_text"]

logger = logging.getLogger(__name__)


async def stream_text(
    agent: Agent,
    prompt: AgentInput,
    *,
    session_manager: MongoDBSessionManager,
    buffer_chunks: int | None = None,
    buffer_ms: float | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> AsyncIterator[str]:
    """Yield the reply's text as it streams; one persisted turn.

    ``buffer_chunks=n`` joins every ``n`` chunks and ``buffer_ms=t`` joins the chunks of ``t``
    milliseconds (whichever comes first when both are set) into one piece, to cut the number of
    network writes. ``timeout`` (seconds, Python 3.11+) bounds the whole turn and stores the
    partial reply with reason ``"timeout"``. Errors are re-raised after the partial reply is stored.
    ``idempotency_key``: a retried request whose key is stored does not run again; its stored
    reply is streamed instead (see ``TurnAlreadyStoredError``).
    """
    turn = _Turn(agent, prompt, session_manager, timeout=timeout, idempotency_key=idempotency_key)
    buffer = _Buffer(buffer_chunks, buffer_ms)
    try:
        async with aclosing(turn.chunks()) as chunks:
            async for chunk in chunks:
                if (piece := buffer.add(chunk)) is not None:
                    yield piece
    except Exception:
        if rest := buffer.flush():
            yield rest
        raise
    if rest := buffer.flush():
        yield rest


async def stream_sse(
    agent: Agent,
    prompt: AgentInput,
    *,
    session_manager: MongoDBSessionManager,
    buffer_chunks: int | None = None,
    buffer_ms: float | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> AsyncIterator[str]:
    """Yield Server-Sent Event frames for one persisted turn.

    ``{"type": "token", "data": "..."}`` per (buffered) chunk, then ``{"type": "done", "metrics":
    {...}}`` with the turn's stored metrics record, or, when the turn fails, ``{"type": "error",
    "error": "...", "incomplete": true}`` (the partial reply is stored). Options as in
    :func:`stream_text`. Cancellation and disconnects end the stream without a final frame. A
    replayed turn (its ``idempotency_key`` was stored) ends with ``{"type": "done", "replayed": true}``.
    """
    turn = _Turn(agent, prompt, session_manager, timeout=timeout, idempotency_key=idempotency_key)
    buffer = _Buffer(buffer_chunks, buffer_ms)
    try:
        async with aclosing(turn.chunks()) as chunks:
            async for chunk in chunks:
                if (piece := buffer.add(chunk)) is not None:
                    yield sse_frame({"type": "token", "data": piece})
    except Exception as exc:
        if rest := buffer.flush():
            yield sse_frame({"type": "token", "data": rest})
        yield sse_frame({"type": "error", "error": _describe(exc), "incomplete": True})
        return
    if rest := buffer.flush():
        yield sse_frame({"type": "token", "data": rest})
    if turn.replayed:
        yield sse_frame({"type": "done", "replayed": True, "metrics": {}})
        return
    yield sse_frame({"type": "done", "metrics": turn.metrics()})


def sse_frame(payload: Mapping[str, Any]) -> str:
    """One SSE ``data:`` frame; JSON escapes newlines, so the payload is always a single line."""
    return f"data: {json.dumps(json_safe(payload), ensure_ascii=False)}\n\n"


def json_safe(value: Any) -> Any:
    """``value`` as JSON can carry it: dates as ISO strings, bytes as base64, unknowns as ``str``."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return str(value)


class _Turn:
    """One ``stream_async`` run: its text since the last stored message, and how it ended."""

    def __init__(
        self,
        agent: Agent,
        prompt: AgentInput,
        session_manager: MongoDBSessionManager,
        *,
        timeout: float | None,
        idempotency_key: str | None = None,
    ) -> None:
        if timeout is not None and sys.version_info < (3, 11):
            raise ConfigurationError("timeout= needs Python 3.11+ (asyncio.timeout_at)")
        self._agent = agent
        self._prompt = prompt
        self._session_manager = session_manager
        self._timeout = timeout
        self._invocation_state = None if idempotency_key is None else {IDEMPOTENCY_KEY: idempotency_key}
        self.replayed = False
        self._parts: list[str] = []
        self._metrics_before = session_manager.last_turn_metrics(agent.agent_id)

    async def chunks(self) -> AsyncGenerator[str, None]:
        """The reply's text chunks; on any interruption the partial reply is stored first."""
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout is None else loop.time() + self._timeout
        stream = self._agent.stream_async(self._prompt, invocation_state=self._invocation_state)
        reason: str | None = None
        try:
            while True:
                try:
                    event = await _pull(stream, deadline)
                except StopAsyncIteration:
                    return
                except TurnAlreadyStoredError as stored:
                    if stored.reply is None:
                        raise
                    self.replayed = True
                    yield stored.reply_text
                    return
                text = event.get("data")
                if isinstance(text, str) and text:
                    self._parts.append(text)
                    yield text
                elif "message" in event:  # a whole message was added (and stored): start afresh
                    self._parts.clear()
        except (TurnAlreadyStoredError, SessionBusyError):
            raise  # the turn did not run here: nothing of it to keep
        except GeneratorExit:
            reason = "disconnected"
            raise
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError) and deadline is not None and loop.time() >= deadline
            reason = "timeout" if timed_out else f"error: {type(exc).__name__}"
            raise
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # Strands types it AsyncIterator
            if reason is not None:
                await self._keep_partial(reason)

    def metrics(self) -> dict[str, Any]:
        """The finished turn's ``event_loop_metrics`` record, JSON-safe ({} if none was made)."""
        record = self._session_manager.last_turn_metrics(self._agent.agent_id)
        if record is None or record is self._metrics_before:
            return {}
        safe: dict[str, Any] = json_safe(record)
        return safe

    async def _keep_partial(self, reason: str) -> None:
        # record_incomplete_reply appends the message and hands the write to an I/O thread before
        # it first suspends, and that write is shielded (run_io): a second cancellation while we
        # wait here cannot lose it. A failed write is logged, never raised over the turn's error.
        try:
            await self._session_manager.record_incomplete_reply(
                self._agent, "".join(self._parts), reason=reason
            )
        except Exception:
            logger.warning(
                "session_id=<%s> | agent_id=<%s> | reason=<%s> | could not store the partial reply",
                self._session_manager.session_id,
                self._agent.agent_id,
                reason,
                exc_info=True,
            )


async def _pull(stream: AsyncIterator[Any], deadline: float | None) -> dict[str, Any]:
    """The next event, within the turn's deadline (scoped to this one step, never across a yield)."""
    if deadline is None:
        event: dict[str, Any] = await anext(stream)
        return event
    if sys.version_info >= (3, 11):
        async with asyncio.timeout_at(deadline):
            event = await anext(stream)
            return event
    raise ConfigurationError("timeout= needs Python 3.11+ (asyncio.timeout_at)")


class _Buffer:
    """Joins chunks by count and/or age; pure bookkeeping, no timers."""

    def __init__(self, chunks: int | None, milliseconds: float | None) -> None:
        if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
            raise InvalidSessionInputError(f"buffer_chunks must be a positive int, got {chunks!r}")
        if milliseconds is not None and (
            isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)) or milliseconds < 0
        ):
            raise InvalidSessionInputError(f"buffer_ms must be a number >= 0, got {milliseconds!r}")
        self._chunks = chunks
        self._seconds = None if milliseconds is None else milliseconds / 1000
        self._pending: list[str] = []
        self._since = 0.0

    def add(self, chunk: str) -> str | None:
        """Take a chunk; return the joined text when it is time to send it."""
        if self._chunks is None and self._seconds is None:
            return chunk
        now = asyncio.get_running_loop().time()
        if not self._pending:
            self._since = now
        self._pending.append(chunk)
        full = self._chunks is not None and len(self._pending) >= self._chunks
        old = self._seconds is not None and now - self._since >= self._seconds
        return self.flush() if full or old else None

    def flush(self) -> str:
        text, self._pending = "".join(self._pending), []
        return text


def _describe(exc: BaseException) -> str:
    detail = sanitize_error_message(redact_uri(str(exc)))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
