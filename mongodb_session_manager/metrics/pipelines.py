"""Aggregation pipelines over turn records: pure functions returning lists of dicts.

A turn record is a message document carrying ``event_loop_metrics`` (see :mod:`.schema`). Every
pipeline starts with :func:`turn_match`, which always repeats the partial-index filter
(``event_loop_metrics: {$exists: true}``) so the partial indexes qualify.

Index choice (:func:`turn_hint`): a query bound to sessions (one session's turns, ``session_ids``)
is left to the planner: ``session_id`` equality is served by ``session_turn_started_at`` or the
unique index's prefix. A query across sessions is hinted to the partial ``turn_started_at``:
without a time range MongoDB would otherwise scan every message, with the hint it reads only turn
records. Measured on SecantusDB (20k turns in 40k messages): a hint costs a fixed ~0.55 s there,
so session-bound queries stay unhinted (3 ms vs 680 ms for 3 sessions), while cross-session
aggregations are still faster hinted (count of all turns 0.61 s vs 0.83 s).

Session metadata lives in the sessions collection. A metadata filter first reads the ids of the
sessions it selects (:func:`metadata_sessions_pipeline`) and matches turn records with ``$in``
on them; when too many sessions match, the pipeline joins the sessions with ``$lookup`` instead
(``localField: session_id`` -> ``_id``, one ``_id`` lookup per turn record already narrowed by
time, agent and model). Both work on SecantusDB and MongoDB (5.0+ ``$lookup`` syntax); the
measured choice is in :func:`.flows.narrow_by_metadata`.

Percentiles use ``$percentile`` with ``method: "approximate"`` (MongoDB 7.0+). MongoDB computes it
with a t-digest, so on large inputs it may differ slightly from the exact value; SecantusDB
returns the nearest-rank value (measured), which the integration tests assert.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Literal

from .._validation import validate_metadata_filter
from ..errors import InvalidSessionInputError
from .models import MetricsFilter

__all__ = [
    "LATENCY_PERCENTILES",
    "TTFB_PERCENTILES",
    "TURN_INDEX",
    "GroupBy",
    "RankBy",
    "Source",
    "filter_stages",
    "group_key",
    "group_pipeline",
    "metadata_sessions_pipeline",
    "rank_field",
    "rollup_backfill_pipeline",
    "rollup_group_pipeline",
    "rollup_key",
    "rollup_match",
    "rollup_summary_pipeline",
    "rollups_refusal",
    "session_totals_pipeline",
    "session_turns_pipeline",
    "summary_pipeline",
    "tool_usage_pipeline",
    "top_sessions_pipeline",
    "turn_hint",
    "turn_match",
]

GroupBy = Literal["day", "hour", "model", "agent"]
RankBy = Literal["tokens", "latency"]

TURN_INDEX = "turn_started_at"

LATENCY_PERCENTILES = (0.5, 0.95, 0.99)
TTFB_PERCENTILES = (0.5, 0.95)

_M = "$event_loop_metrics."
_IS_TURN = {"event_loop_metrics": {"$exists": True}}
_RANK_FIELDS: dict[str, str] = {"tokens": "total_tokens", "latency": "latency_ms"}
_GROUP_KEYS: dict[str, Any] = {
    "model": _M + "model_id",
    "agent": "$agent_id",
}


def turn_match(metrics_filter: MetricsFilter | None) -> dict[str, Any]:
    """The ``$match`` of turn records a filter selects (without its metadata part)."""
    match: dict[str, Any] = dict(_IS_TURN)
    if metrics_filter is None:
        return match
    started = _time_range(metrics_filter)
    if started:
        match["event_loop_metrics.started_at"] = started
    if metrics_filter.session_ids is not None:
        match["session_id"] = {"$in": list(metrics_filter.session_ids)}
    if metrics_filter.agent_id is not None:
        match["agent_id"] = metrics_filter.agent_id
    if metrics_filter.model_id is not None:
        match["event_loop_metrics.model_id"] = metrics_filter.model_id
    return match


def _time_range(metrics_filter: MetricsFilter) -> dict[str, datetime]:
    """``since`` (inclusive) to ``until`` (exclusive), as query operators."""
    bounds: dict[str, datetime] = {}
    if metrics_filter.since is not None:
        bounds["$gte"] = metrics_filter.since
    if metrics_filter.until is not None:
        bounds["$lt"] = metrics_filter.until
    return bounds


def turn_hint(metrics_filter: MetricsFilter | None) -> str | None:
    """The index to name for a filter's turn records (None: the planner's session index fits)."""
    if metrics_filter is not None and metrics_filter.session_ids is not None:
        return None
    return TURN_INDEX


def metadata_sessions_pipeline(metadata: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    """The ids of (at most ``limit``) sessions whose metadata equals ``metadata`` key by key."""
    return [
        {"$match": _metadata_match(validate_metadata_filter(metadata))},
        {"$project": {"_id": 1}},
        {"$limit": limit},
    ]


def _metadata_match(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {f"metadata.{key}": value for key, value in metadata.items()}


def filter_stages(metrics_filter: MetricsFilter | None, *, sessions_collection: str) -> list[dict[str, Any]]:
    """``$match`` on the turn records, then the metadata join when the filter has metadata."""
    stages: list[dict[str, Any]] = [{"$match": turn_match(metrics_filter)}]
    if metrics_filter is None or not metrics_filter.metadata:
        return stages
    wanted = _metadata_match(validate_metadata_filter(metrics_filter.metadata))
    stages.append(
        {
            "$lookup": {
                "from": sessions_collection,
                "localField": "session_id",
                "foreignField": "_id",
                "pipeline": [{"$match": wanted}, {"$project": {"_id": 1}}],
                "as": "_session",
            }
        }
    )
    stages.append({"$match": {"_session": {"$ne": []}}})
    return stages


# --- one session ------------------------------------------------------------------------------


def session_totals_pipeline(session_id: str) -> list[dict[str, Any]]:
    """The session's totals and each agent's totals, without the agents' (larger) state."""
    agents = {"$objectToArray": {"$ifNull": ["$agents", {}]}}
    return [
        {"$match": {"_id": session_id}},
        {
            "$project": {
                "totals": {"$ifNull": ["$totals", {}]},
                "agents": {
                    "$arrayToObject": {
                        "$map": {
                            "input": agents,
                            "in": {"k": "$$this.k", "v": {"$ifNull": ["$$this.v.totals", {}]}},
                        }
                    }
                },
            }
        },
    ]


def session_turns_pipeline(session_id: str, *, skip: int, limit: int) -> list[dict[str, Any]]:
    """One page of a session's turn records in start order, and how many there are in all."""
    return [
        {"$match": {"session_id": session_id, **_IS_TURN}},
        {"$sort": {"event_loop_metrics.started_at": 1}},
        {"$project": {"session_id": 1, "agent_id": 1, "message_id": 1, "event_loop_metrics": 1}},
        {
            "$facet": {
                "total": [{"$count": "n"}],
                "page": [{"$skip": skip}, {"$limit": limit}],
            }
        },
    ]


# --- across sessions --------------------------------------------------------------------------


def _latency_sample() -> dict[str, Any]:
    """A turn's model latency, or null for a turn that has none to measure.

    A cancelled turn, or one that ended before any model call returned, stores 0 ms: counted,
    it would drag the mean below the median. ``$avg`` and ``$percentile`` skip nulls.
    """
    measured = {
        "$and": [
            {"$ne": [_M + "status", "cancelled"]},
            {"$gt": [{"$ifNull": [_M + "model_calls", 1]}, 0]},
        ]
    }
    return {"$cond": [measured, _M + "accumulated_metrics.latencyMs", None]}


def _status_count(status: str) -> dict[str, Any]:
    return {"$sum": {"$cond": [{"$eq": [_M + "status", status]}, 1, 0]}}


def _aggregates() -> dict[str, Any]:
    """``$group`` accumulators shared by the summary and every grouping."""
    latency = _M + "accumulated_metrics.latencyMs"
    sample = _latency_sample()
    ttfb = _M + "accumulated_metrics.timeToFirstByteMs"
    usage = _M + "accumulated_usage."
    return {
        "turns": {"$sum": 1},
        "failed_turns": _status_count("failed"),
        "cancelled_turns": _status_count("cancelled"),
        "input_tokens": {"$sum": usage + "inputTokens"},
        "output_tokens": {"$sum": usage + "outputTokens"},
        "total_tokens": {"$sum": usage + "totalTokens"},
        "cache_read_input_tokens": {"$sum": usage + "cacheReadInputTokens"},
        "cache_write_input_tokens": {"$sum": usage + "cacheWriteInputTokens"},
        "latency_ms": {"$sum": latency},
        "latency_avg_ms": {"$avg": sample},
        "latency_max_ms": {"$max": sample},
        "ttfb_avg_ms": {"$avg": ttfb},
        "latency_percentiles": _percentile(sample, LATENCY_PERCENTILES),
        "ttfb_percentiles": _percentile(ttfb, TTFB_PERCENTILES),
        "tool_calls": {"$sum": _M + "tool_calls"},
    }


def _percentile(path: str | dict[str, Any], ps: tuple[float, ...]) -> dict[str, Any]:
    return {"$percentile": {"input": path, "p": list(ps), "method": "approximate"}}


def summary_pipeline(
    metrics_filter: MetricsFilter | None, *, sessions_collection: str
) -> list[dict[str, Any]]:
    return [
        *filter_stages(metrics_filter, sessions_collection=sessions_collection),
        {"$group": {"_id": None, **_aggregates()}},
    ]


def group_key(by: GroupBy, *, timezone: str = "UTC") -> Any:
    if by in ("day", "hour"):
        return {"$dateTrunc": {"date": _M + "started_at", "unit": by, "timezone": timezone}}
    if by in _GROUP_KEYS:
        return _GROUP_KEYS[by]
    raise InvalidSessionInputError(f"group_by must be one of 'day', 'hour', 'model', 'agent'; got {by!r}")


def group_pipeline(
    by: GroupBy,
    metrics_filter: MetricsFilter | None,
    *,
    sessions_collection: str,
    timezone: str = "UTC",
) -> list[dict[str, Any]]:
    """One row per day, hour, model or agent, in key order."""
    return [
        *filter_stages(metrics_filter, sessions_collection=sessions_collection),
        {"$group": {"_id": group_key(by, timezone=timezone), **_aggregates()}},
        {"$sort": {"_id": 1}},
    ]


def tool_usage_pipeline(
    metrics_filter: MetricsFilter | None, *, sessions_collection: str
) -> list[dict[str, Any]]:
    """Per tool: calls, successes, errors and time, most called first.

    ``tools`` is a map keyed by tool name; ``$objectToArray`` + ``$unwind`` turn it into rows
    (SecantusDB cannot group on paths through arrays, so the rows are unwound first).
    """
    return [
        *filter_stages(metrics_filter, sessions_collection=sessions_collection),
        {"$project": {"tool": {"$objectToArray": {"$ifNull": [_M + "tools", {}]}}}},
        {"$unwind": "$tool"},
        {
            "$group": {
                "_id": "$tool.k",
                "turns": {"$sum": 1},
                "calls": {"$sum": "$tool.v.calls"},
                "successes": {"$sum": "$tool.v.successes"},
                "errors": {"$sum": "$tool.v.errors"},
                "time_ms": {"$sum": "$tool.v.time_ms"},
            }
        },
        {"$sort": {"calls": -1, "_id": 1}},
    ]


def rank_field(by: RankBy) -> str:
    """The result field sessions are ranked by."""
    if by not in _RANK_FIELDS:
        raise InvalidSessionInputError(f"top_sessions by must be 'tokens' or 'latency'; got {by!r}")
    return _RANK_FIELDS[by]


def top_sessions_pipeline(
    by: RankBy,
    limit: int,
    metrics_filter: MetricsFilter | None,
    *,
    sessions_collection: str,
) -> list[dict[str, Any]]:
    """The ``limit`` sessions with the most tokens or the most model latency (summed over turns)."""
    field = rank_field(by)
    usage = _M + "accumulated_usage."
    latency = _M + "accumulated_metrics.latencyMs"
    return [
        *filter_stages(metrics_filter, sessions_collection=sessions_collection),
        {
            "$group": {
                "_id": "$session_id",
                "turns": {"$sum": 1},
                "input_tokens": {"$sum": usage + "inputTokens"},
                "output_tokens": {"$sum": usage + "outputTokens"},
                "total_tokens": {"$sum": usage + "totalTokens"},
                "latency_ms": {"$sum": latency},
                "latency_avg_ms": {"$avg": _latency_sample()},
                "first_turn_at": {"$min": _M + "started_at"},
                "last_turn_at": {"$max": _M + "started_at"},
            }
        },
        {"$sort": {field: -1, "_id": 1}},
        {"$limit": limit},
    ]


# --- rollups: one document per (hour, agent_id, model_id) -------------------------------------

Source = Literal["auto", "turns", "rollups"]


def rollups_refusal(metrics_filter: MetricsFilter | None, *, timezone: str = "UTC") -> str | None:
    """Why the hourly rollups cannot answer ``metrics_filter`` exactly (None: they can)."""
    if metrics_filter is None:
        return None if timezone == "UTC" else "rollups are hours in UTC; pass timezone='UTC'"
    if metrics_filter.session_ids is not None:
        return "rollups are not kept per session (session_ids)"
    if metrics_filter.metadata:
        return "rollups are not kept per session metadata"
    for name in ("since", "until"):
        moment: datetime | None = getattr(metrics_filter, name)
        utc = None if moment is None else moment.astimezone(dt_timezone.utc)  # +05:30 is not on the hour
        if moment is not None and utc is not None and (utc.minute, utc.second, utc.microsecond) != (0, 0, 0):
            return f"rollups count whole hours; {name} ({moment.isoformat()}) is not on the hour"
    if timezone != "UTC":
        return "rollups are hours in UTC; pass timezone='UTC'"
    return None


def rollup_match(metrics_filter: MetricsFilter | None) -> dict[str, Any]:
    match: dict[str, Any] = {"hour": {"$type": "date"}}  # not the coverage document
    if metrics_filter is None:
        return match
    match["hour"] = {"$type": "date", **_time_range(metrics_filter)}
    if metrics_filter.agent_id is not None:
        match["agent_id"] = metrics_filter.agent_id
    if metrics_filter.model_id is not None:
        match["model_id"] = metrics_filter.model_id
    return match


def _rollup_aggregates() -> dict[str, Any]:
    sums = (
        "turns",
        "failed_turns",
        "cancelled_turns",
        "latency_ms",
        "ttfb_ms",
        "ttfb_turns",
        "latency_sample_ms",
        "latency_turns",
        "tool_calls",
    )
    tokens = {
        "input_tokens": "inputTokens",
        "output_tokens": "outputTokens",
        "total_tokens": "totalTokens",
        "cache_read_input_tokens": "cacheReadInputTokens",
        "cache_write_input_tokens": "cacheWriteInputTokens",
    }
    return {
        **{name: {"$sum": "$" + name} for name in sums},
        **{name: {"$sum": "$" + stored} for name, stored in tokens.items()},
        "latency_max_ms": {"$max": "$latency_max_ms"},
    }


def rollup_key(by: GroupBy, *, timezone: str = "UTC") -> Any:
    if by in ("day", "hour"):
        return {"$dateTrunc": {"date": "$hour", "unit": by, "timezone": timezone}}
    if by == "model":
        return "$model_id"
    if by == "agent":
        return "$agent_id"
    raise InvalidSessionInputError(f"group_by must be one of 'day', 'hour', 'model', 'agent'; got {by!r}")


def rollup_summary_pipeline(metrics_filter: MetricsFilter | None) -> list[dict[str, Any]]:
    return [{"$match": rollup_match(metrics_filter)}, {"$group": {"_id": None, **_rollup_aggregates()}}]


def rollup_group_pipeline(
    by: GroupBy, metrics_filter: MetricsFilter | None, *, timezone: str = "UTC"
) -> list[dict[str, Any]]:
    return [
        {"$match": rollup_match(metrics_filter)},
        {"$group": {"_id": rollup_key(by, timezone=timezone), **_rollup_aggregates()}},
        {"$sort": {"_id": 1}},
    ]


def rollup_backfill_pipeline(rollups_collection: str, hour_format: str) -> list[dict[str, Any]]:
    """Every stored turn record counted into its hour, merged over the rollups (replacing them).

    The ``_id`` is built as ``schema.rollup_id`` builds it, so later turns ``$inc`` the same documents.
    """
    usage = _M + "accumulated_usage."
    timing = _M + "accumulated_metrics."
    hour = {"$dateTrunc": {"date": _M + "started_at", "unit": "hour"}}
    key = {"hour": hour, "agent_id": "$agent_id", "model_id": {"$ifNull": [_M + "model_id", None]}}
    ttfb = timing + "timeToFirstByteMs"
    return [
        {"$match": {**_IS_TURN, "event_loop_metrics.started_at": {"$type": "date"}}},
        {
            "$group": {
                "_id": key,
                "turns": {"$sum": 1},
                "failed_turns": {"$sum": {"$cond": [{"$eq": [_M + "status", "failed"]}, 1, 0]}},
                "cancelled_turns": {"$sum": {"$cond": [{"$eq": [_M + "status", "cancelled"]}, 1, 0]}},
                **{name: {"$sum": {"$ifNull": [usage + name, 0]}} for name in _ROLLUP_TOKENS},
                "latency_ms": {"$sum": {"$ifNull": [timing + "latencyMs", 0]}},
                "latency_max_ms": {"$max": _latency_sample()},
                "latency_sample_ms": {"$sum": {"$ifNull": [_latency_sample(), 0]}},
                "latency_turns": {"$sum": {"$cond": [{"$eq": [_latency_sample(), None]}, 0, 1]}},
                "ttfb_ms": {"$sum": {"$ifNull": [ttfb, 0]}},
                "ttfb_turns": {"$sum": {"$cond": [{"$eq": [{"$type": ttfb}, "missing"]}, 0, 1]}},
                "tool_calls": {"$sum": {"$ifNull": [_M + "tool_calls", 0]}},
            }
        },
        {"$set": {"hour": "$_id.hour", "agent_id": "$_id.agent_id", "model_id": "$_id.model_id"}},
        {
            "$set": {
                "_id": {
                    "$concat": [
                        {"$dateToString": {"date": "$hour", "format": hour_format}},
                        ".",
                        "$agent_id",
                        {"$cond": [{"$eq": ["$model_id", None]}, "", {"$concat": [".", "$model_id"]}]},
                    ]
                }
            }
        },
        {
            "$merge": {
                "into": rollups_collection,
                "on": "_id",
                "whenMatched": "replace",
                "whenNotMatched": "insert",
            }
        },
    ]


_ROLLUP_TOKENS = (
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "cacheReadInputTokens",
    "cacheWriteInputTokens",
)
