"""Read per-turn metrics back: one session's turns, summaries, groupings, tools, top sessions.

Results are typed (pydantic models). Each query is written once, as a flow (:mod:`.flows`)
over pure pipelines (:mod:`.pipelines`). :class:`MetricsQuery` drives flows with a sync
repository, :class:`AsyncMetricsQuery` with an async one; they differ only in the I/O line.

Usage::

    query = MetricsQuery(repository)
    print(query.summary(MetricsFilter(since=last_week, metadata={"tenant": "acme"})))
    for row in query.group_by("model"):
        print(row.key, row.turns, row.total_tokens, row.latency_p95_ms)
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from .._driver_errors import translate_driver_errors
from .flows import (
    Aggregate,
    Document,
    Flow,
    group_flow,
    session_metrics_flow,
    summary_flow,
    tool_usage_flow,
    top_sessions_flow,
)
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
from .pipelines import GroupBy, RankBy, Source

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
    "Source",
    "ToolStats",
    "ToolUsage",
    "TurnError",
    "TurnMetrics",
]

T = TypeVar("T")


# --- shells -----------------------------------------------------------------------------------


def _collection(repository: Any, target: str) -> Any:
    if target == "rollups":
        return repository.rollups_collection
    return repository.collection if target == "sessions" else repository.messages_collection


def _options(step: Aggregate) -> dict[str, Any]:
    return {} if step.hint is None else {"hint": step.hint}


class MetricsQuery:
    """Metrics queries over a sync :class:`~mongodb_session_manager.MongoDBSessionRepository`."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository
        self._sessions_name: str = repository.collection.name

    def session_metrics(self, session_id: str, *, skip: int = 0, limit: int = 50) -> SessionMetrics:
        """A session's totals, per-agent totals and turns ``[skip, skip + limit)`` in start order."""
        return self._run(session_metrics_flow(session_id, skip=skip, limit=limit))

    def summary(self, filter: MetricsFilter | None = None, *, source: Source = "auto") -> MetricsGroup:
        """Aggregates over every turn the filter selects (``key`` is None).

        ``source``: ``"auto"`` reads the hourly rollups when they answer the filter exactly (no
        sessions or metadata in it, times on the hour), else the turn records; ``"turns"`` or
        ``"rollups"`` force one. Percentiles come only from turn records.
        """
        return self._run(summary_flow(filter, sessions_collection=self._sessions_name, source=source))

    def group_by(
        self,
        by: GroupBy,
        filter: MetricsFilter | None = None,
        *,
        timezone: str = "UTC",
        source: Source = "auto",
    ) -> list[MetricsGroup]:
        """One row per ``"day"``, ``"hour"`` (in ``timezone``), ``"model"`` or ``"agent"``, in key order.

        ``source`` as in :meth:`summary` (rollups are UTC hours: another timezone reads turns).
        """
        return self._run(
            group_flow(by, filter, sessions_collection=self._sessions_name, timezone=timezone, source=source)
        )

    def tool_usage(self, filter: MetricsFilter | None = None) -> list[ToolUsage]:
        """Per tool: calls, successes, errors and time, most called first."""
        return self._run(tool_usage_flow(filter, sessions_collection=self._sessions_name))

    def top_sessions(
        self, *, by: RankBy = "tokens", limit: int = 10, filter: MetricsFilter | None = None
    ) -> list[SessionRank]:
        """The ``limit`` sessions with the most tokens (or summed model latency), highest first."""
        return self._run(top_sessions_flow(by, limit, filter, sessions_collection=self._sessions_name))

    def _run(self, flow: Flow[T]) -> T:
        step = next(flow)
        ensure_indexes = getattr(self._repository, "ensure_indexes", None)
        if ensure_indexes is not None:  # hints name the partial indexes: they must exist
            ensure_indexes()
        while True:
            collection = self._collection(step.target)
            with translate_driver_errors(step.operation):
                documents = list(collection.aggregate(step.pipeline, **_options(step)))
            try:
                step = flow.send(documents)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _collection(self, target: str) -> Any:
        return _collection(self._repository, target)


class AsyncMetricsQuery:
    """The same queries over an async repository (pymongo ``AsyncMongoClient`` or motor)."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository
        self._sessions_name: str = repository.collection.name

    async def session_metrics(self, session_id: str, *, skip: int = 0, limit: int = 50) -> SessionMetrics:
        """See :meth:`MetricsQuery.session_metrics`."""
        return await self._run(session_metrics_flow(session_id, skip=skip, limit=limit))

    async def summary(self, filter: MetricsFilter | None = None, *, source: Source = "auto") -> MetricsGroup:
        """See :meth:`MetricsQuery.summary`."""
        return await self._run(summary_flow(filter, sessions_collection=self._sessions_name, source=source))

    async def group_by(
        self,
        by: GroupBy,
        filter: MetricsFilter | None = None,
        *,
        timezone: str = "UTC",
        source: Source = "auto",
    ) -> list[MetricsGroup]:
        """See :meth:`MetricsQuery.group_by`."""
        return await self._run(
            group_flow(by, filter, sessions_collection=self._sessions_name, timezone=timezone, source=source)
        )

    async def tool_usage(self, filter: MetricsFilter | None = None) -> list[ToolUsage]:
        """See :meth:`MetricsQuery.tool_usage`."""
        return await self._run(tool_usage_flow(filter, sessions_collection=self._sessions_name))

    async def top_sessions(
        self, *, by: RankBy = "tokens", limit: int = 10, filter: MetricsFilter | None = None
    ) -> list[SessionRank]:
        """See :meth:`MetricsQuery.top_sessions`."""
        return await self._run(top_sessions_flow(by, limit, filter, sessions_collection=self._sessions_name))

    async def _run(self, flow: Flow[T]) -> T:
        step = next(flow)
        ensure_indexes = getattr(self._repository, "ensure_indexes", None)
        if ensure_indexes is not None:  # hints name the partial indexes: they must exist
            ensured = ensure_indexes()
            if inspect.isawaitable(ensured):
                await ensured
        while True:
            collection = self._collection(step.target)
            with translate_driver_errors(step.operation):
                cursor = collection.aggregate(step.pipeline, **_options(step))
                if inspect.isawaitable(cursor):  # pymongo's async API; motor returns the cursor
                    cursor = await cursor
                documents: list[Document] = await cursor.to_list(None)
            try:
                step = flow.send(documents)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _collection(self, target: str) -> Any:
        return _collection(self._repository, target)
