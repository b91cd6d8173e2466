"""Typed results of the metrics queries, and the filter that selects turns.

Results are frozen pydantic models built from aggregation rows by :mod:`.flows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._validation import validate_agent_id, validate_metadata_filter, validate_session_id
from ..errors import InvalidSessionInputError
from .capture import TurnStatus

__all__ = [
    "MetricsFilter",
    "MetricsGroup",
    "MetricsTotals",
    "SessionMetrics",
    "SessionRank",
    "ToolStats",
    "ToolUsage",
    "TurnError",
    "TurnMetrics",
]


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    """The driver returns naive UTC datetimes; results carry aware ones."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- results ----------------------------------------------------------------------------------


class ToolStats(_Result):
    """One tool's use within one turn."""

    calls: int = 0
    successes: int = 0
    errors: int = 0
    time_ms: float = 0.0


class TurnError(_Result):
    type: str
    message: str


class TurnMetrics(_Result):
    """What one invocation of one agent cost (one turn record)."""

    session_id: str
    agent_id: str
    message_id: int
    status: TurnStatus
    started_at: datetime
    ended_at: datetime | None = None
    duration_ms: float | None = None
    model_id: str | None = None
    stop_reason: str | None = None
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    latency_ms: int = 0
    time_to_first_byte_ms: int | None = None
    cycles: int = 0
    cycle_durations_ms: list[float] = Field(default_factory=list)
    tool_calls: int = 0
    tools: dict[str, ToolStats] = Field(default_factory=dict)
    error: TurnError | None = None


class MetricsTotals(_Result):
    """Running totals of a session or of one of its agents."""

    turns: int = 0
    failed_turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    latency_ms: int = 0
    tool_calls: int = 0


class SessionMetrics(_Result):
    """A session's totals, each agent's totals, and one page of its turns in start order."""

    session_id: str
    totals: MetricsTotals
    agents: dict[str, MetricsTotals]
    turns: list[TurnMetrics]
    total_turns: int
    skip: int
    limit: int


class MetricsGroup(_Result):
    """Aggregates over a set of turns: the whole filter (``key`` None) or one day/hour/model/agent.

    The latency mean and percentiles cover the turns with a model latency to measure: cancelled
    turns and turns without a finished model call count in ``turns``, not in the latency stats.
    Read from the hourly rollups, the percentile fields are None (rollups keep sums and maxima);
    ``source="turns"`` computes them from the turn records.
    """

    key: str | datetime | None
    turns: int = 0
    failed_turns: int = 0
    cancelled_turns: int = 0
    error_rate: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    latency_ms: int = 0
    latency_avg_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: int | None = None
    ttfb_avg_ms: float | None = None
    ttfb_p50_ms: float | None = None
    ttfb_p95_ms: float | None = None
    tool_calls: int = 0


class ToolUsage(_Result):
    """One tool over a set of turns; ``time_ms`` is the total time spent in it."""

    name: str
    turns: int
    calls: int
    successes: int
    errors: int
    time_ms: float


class SessionRank(_Result):
    """A session's use over the filtered turns (``latency_ms`` sums the model latency)."""

    session_id: str
    turns: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    latency_ms: int
    latency_avg_ms: float | None
    first_turn_at: datetime
    last_turn_at: datetime


class MetricsFilter(BaseModel):
    """Which turns a query covers; every field narrows the set, all are optional.

    ``since`` is inclusive and ``until`` exclusive (naive datetimes are UTC). ``metadata`` is an
    equality match on the session's metadata (``{"tenant": "acme"}``); operators are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    agent_id: str | None = None
    model_id: str | None = None
    session_ids: tuple[str, ...] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def __init__(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: str | None = None,
        model_id: str | None = None,
        session_ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        # Checked before pydantic so a hostile filter raises InvalidSessionInputError itself.
        if agent_id is not None:
            validate_agent_id(agent_id)
        if model_id is not None and (not isinstance(model_id, str) or not model_id):
            raise InvalidSessionInputError(f"model_id must be a non-empty str, got {model_id!r}")
        if session_ids is not None:
            if isinstance(session_ids, str):
                raise InvalidSessionInputError("session_ids must be a list of ids, not one str")
            session_ids = tuple(validate_session_id(session_id) for session_id in session_ids)
        metadata = validate_metadata_filter(metadata)
        super().__init__(
            since=since,
            until=until,
            agent_id=agent_id,
            model_id=model_id,
            session_ids=session_ids,
            metadata=metadata,
        )
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidSessionInputError(f"since ({self.since}) is after until ({self.until})")

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)
