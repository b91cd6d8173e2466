"""Per-turn metrics: capture while an agent runs, typed queries over what was stored.

- :mod:`.capture`: :class:`TurnTracker`, what one invocation cost (pure bookkeeping, no I/O);
- :mod:`.models`: the query filter and the pydantic result models;
- :mod:`.pipelines`: aggregation pipelines over turn records, pure functions returning dicts;
- :mod:`.flows`: each query written once, as a generator both shells drive;
- :mod:`.query`: :class:`MetricsQuery` (sync) and :class:`AsyncMetricsQuery`, the I/O shells.

Imports go one way: capture <- models <- pipelines <- flows <- query.
"""

from .capture import TurnStatus, TurnTracker, has_tool_use, message_text
from .models import (
    MetricsFilter,
    MetricsGroup,
    MetricsTotals,
    SessionMetrics,
    SessionRank,
    ToolStats,
    ToolUsage,
    TurnError,
    TurnMetrics,
)
from .pipelines import GroupBy, RankBy
from .query import AsyncMetricsQuery, MetricsQuery

__all__ = [
    "AsyncMetricsQuery",
    "GroupBy",
    "MetricsFilter",
    "MetricsGroup",
    "MetricsQuery",
    "MetricsTotals",
    "RankBy",
    "SessionMetrics",
    "SessionRank",
    "ToolStats",
    "ToolUsage",
    "TurnError",
    "TurnMetrics",
    "TurnStatus",
    "TurnTracker",
    "has_tool_use",
    "message_text",
]
