"""Compatibility shim: the metrics query API moved to :mod:`mongodb_session_manager.metrics`.

Kept for one release so ``from mongodb_session_manager.metrics_query import MetricsQuery`` keeps
working; it will be removed in the next one. Import from ``mongodb_session_manager`` or
``mongodb_session_manager.metrics`` instead.
"""

from .metrics import (
    AsyncMetricsQuery,
    GroupBy,
    MetricsFilter,
    MetricsGroup,
    MetricsQuery,
    MetricsTotals,
    RankBy,
    SessionMetrics,
    SessionRank,
    ToolStats,
    ToolUsage,
    TurnError,
    TurnMetrics,
)

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
]
