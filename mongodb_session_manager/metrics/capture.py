"""Per-turn metrics capture: what one invocation of an agent cost.

Strands' ``agent.event_loop_metrics`` is cumulative over the Agent's lifetime; storing it per
message double-counts every sum. A :class:`TurnTracker` takes a snapshot when the invocation
starts and reports only what happened since: the usage and latency of this turn's model calls
(read from each assistant message's ``metadata``), its cycles and its tool calls.
Pure bookkeeping: no I/O here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from strands.types.content import Message

from .._error_text import error_summary
from ..schema import utcnow

if TYPE_CHECKING:
    from strands import Agent

__all__ = ["USAGE_FIELDS", "TurnStatus", "TurnTracker", "has_tool_use", "message_text"]

TurnStatus = Literal["completed", "failed", "cancelled", "interrupted"]

USAGE_FIELDS = ("inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


def has_tool_use(message: Message) -> bool:
    """Whether a message asks for a tool (then the turn goes on after it)."""
    return any("toolUse" in block for block in message.get("content", []))


def message_text(message: Mapping[str, Any]) -> str:
    """The concatenated text blocks of a message (what a user would call its text)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content or [] if isinstance(block, dict) and "text" in block)


@dataclass
class _ToolSnapshot:
    calls: int
    successes: int
    errors: int
    seconds: float


def _tool_snapshot(agent: Agent) -> dict[str, _ToolSnapshot]:
    return {
        name: _ToolSnapshot(tm.call_count, tm.success_count, tm.error_count, tm.total_time)
        for name, tm in agent.event_loop_metrics.tool_metrics.items()
    }


def _model_id(agent: Agent) -> str | None:
    try:
        config = agent.model.get_config()
    except Exception:  # a model without config is still a model
        return None
    model_id = config.get("model_id") if isinstance(config, Mapping) else None
    return str(model_id) if model_id is not None else None


@dataclass
class TurnTracker:
    """Measures one invocation of one agent, from ``BeforeInvocationEvent`` to its end."""

    agent: Agent
    first_message_index: int
    started_at: Any = field(default_factory=utcnow)
    _started: float = field(default_factory=time.perf_counter)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_FIELDS[:3], 0))
    latency_ms: int = 0
    time_to_first_byte_ms: int | None = None
    model_calls: int = 0
    stop_reason: str | None = None
    error: BaseException | None = None
    recorded: bool = False
    last_message_id: int | None = None

    def __post_init__(self) -> None:
        metrics = self.agent.event_loop_metrics
        self._tools_before = _tool_snapshot(self.agent)
        self._cycles_before = metrics.cycle_count
        self._durations_before = len(metrics.cycle_durations)

    @classmethod
    def start(cls, agent: Agent) -> TurnTracker:
        return cls(agent=agent, first_message_index=len(agent.messages))

    def observe(self, message: Message) -> None:
        """Count an assistant message's model call (Strands puts usage and latency in its metadata)."""
        if message.get("role") != "assistant":
            return
        metadata: Mapping[str, Any] = message.get("metadata") or {}
        usage: Mapping[str, Any] = metadata.get("usage") or {}
        metrics: Mapping[str, Any] = metadata.get("metrics") or {}
        if not usage and not metrics:
            return
        self.model_calls += 1
        for name in USAGE_FIELDS:
            if name in usage:
                self.usage[name] = self.usage.get(name, 0) + int(usage[name])
        self.latency_ms += int(metrics.get("latencyMs") or 0)
        if self.time_to_first_byte_ms is None and metrics.get("timeToFirstByteMs") is not None:
            self.time_to_first_byte_ms = int(metrics["timeToFirstByteMs"])

    def is_final(self, message: Message) -> bool:
        """An assistant message without tool use ends the turn: its numbers are all known now."""
        return message.get("role") == "assistant" and not has_tool_use(message)

    def finish(self, status: TurnStatus) -> tuple[dict[str, Any], dict[str, int]]:
        """The turn's ``event_loop_metrics`` record and the increments for the running totals."""
        metrics = self.agent.event_loop_metrics
        tools = self._tool_usage()
        durations = metrics.cycle_durations[self._durations_before :]
        accumulated_metrics: dict[str, Any] = {"latencyMs": self.latency_ms}
        if self.time_to_first_byte_ms is not None:
            accumulated_metrics["timeToFirstByteMs"] = self.time_to_first_byte_ms
        tool_calls = sum(tool["calls"] for tool in tools.values())
        record: dict[str, Any] = {
            "status": status,
            "started_at": self.started_at,
            "ended_at": utcnow(),
            "duration_ms": round((time.perf_counter() - self._started) * 1000, 3),
            "model_id": _model_id(self.agent),
            "stop_reason": self.stop_reason,
            "model_calls": self.model_calls,
            "accumulated_usage": dict(self.usage),
            "accumulated_metrics": accumulated_metrics,
            "cycles": {
                "count": metrics.cycle_count - self._cycles_before,
                "durations_ms": [round(seconds * 1000, 3) for seconds in durations],
            },
            "tool_calls": tool_calls,
            "tools": tools,
        }
        if self.error is not None:
            record["error"] = error_summary(self.error)
        totals: dict[str, int] = {
            "turns": 1,
            "failedTurns": int(status == "failed"),
            **self.usage,
            "latencyMs": self.latency_ms,
            "toolCalls": tool_calls,
        }
        self.recorded = True
        return record, totals

    def _tool_usage(self) -> dict[str, dict[str, Any]]:
        usage: dict[str, dict[str, Any]] = {}
        for name, now in _tool_snapshot(self.agent).items():
            before = self._tools_before.get(name, _ToolSnapshot(0, 0, 0, 0.0))
            calls = now.calls - before.calls
            if calls:
                usage[name] = {
                    "calls": calls,
                    "successes": now.successes - before.successes,
                    "errors": now.errors - before.errors,
                    "time_ms": round((now.seconds - before.seconds) * 1000, 3),
                }
        return usage
