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
from .._index_registry import indexes_ready
from ..schema import MESSAGE_INDEXES
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


def _options(step: Aggregate, hints: frozenset[str] | None = None) -> dict[str, Any]:
    """The hint, if its index exists: reads never create indexes (``ensure_indexes()`` does).

    Without the index (a database no writer of this package set up yet) the query runs unhinted:
    the same answer, found without the partial index.
    """
    return {"hint": step.hint} if step.hint is not None and step.hint in (hints or ()) else {}


_ALL_INDEXES = frozenset(spec.name for spec in MESSAGE_INDEXES)


def _indexes_ready(repository: Any) -> frozenset[str]:
    """Every index name, when this process already ensured the repository's indexes; else empty."""
    try:
        ready = indexes_ready(repository.client, repository.database.name, repository.collection.name)
    except AttributeError:  # a repository-like object without the usual attributes
        return frozenset()
    return _ALL_INDEXES if ready else frozenset()


class MetricsQuery:
    """Metrics queries over a sync :class:`~mongodb_session_manager.MongoDBSessionRepository`."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository
        self._sessions_name: str = repository.collection.name
        self._hints: frozenset[str] | None = None

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
        while True:
            collection = self._collection(step.target)
            with translate_driver_errors(step.operation):
                hints = self._hints
                if step.hint is not None and hints is None:
                    hints = self._find_hints(collection)
                documents = list(collection.aggregate(step.pipeline, **_options(step, hints)))
            try:
                step = flow.send(documents)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _find_hints(self, collection: Any) -> frozenset[str]:
        """The hinted indexes that exist (read once, only for a hinted query; never created here)."""
        self._hints = _indexes_ready(self._repository) or frozenset(
            index["name"] for index in collection.list_indexes()
        )
        return self._hints

    def _collection(self, target: str) -> Any:
        return _collection(self._repository, target)


class AsyncMetricsQuery:
    """The same queries over an async repository (pymongo ``AsyncMongoClient`` or motor)."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository
        self._sessions_name: str = repository.collection.name
        self._hints: frozenset[str] | None = None

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
        while True:
            collection = self._collection(step.target)
            with translate_driver_errors(step.operation):
                hints = self._hints
                if step.hint is not None and hints is None:
                    hints = await self._find_hints(collection)
                cursor = collection.aggregate(step.pipeline, **_options(step, hints))
                if inspect.isawaitable(cursor):  # pymongo's async API; motor returns the cursor
                    cursor = await cursor
                documents: list[Document] = await cursor.to_list(None)
            try:
                step = flow.send(documents)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _find_hints(self, collection: Any) -> frozenset[str]:
        """See :meth:`MetricsQuery._find_hints`."""
        ready = _indexes_ready(self._repository)
        if not ready:
            cursor = collection.list_indexes()
            if inspect.isawaitable(cursor):
                cursor = await cursor
            ready = frozenset(index["name"] for index in await cursor.to_list(None))
        self._hints = ready
        return ready

    def _collection(self, target: str) -> Any:
        return _collection(self._repository, target)
