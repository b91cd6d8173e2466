"""B10: ``group_by("day")`` over stored turns, read from the hourly rollups against the turn records.

Seeds ``metric_turns`` turn records as B7 does (100,000 over 30 days at default size), builds
their rollups once with ``metrics backfill`` (the write path ``$inc``s them per turn instead), and
times the same query on both sources, checking they agree. Target: rollups >= 100x faster.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from mongodb_session_manager import MetricsFilter, MetricsQuery, MongoDBSessionManagerFactory
from mongodb_session_manager.metrics.backfill import rebuild_rollups

from . import b7_metrics_query
from ._common import Context, Result, ratio

TARGET = 100.0
MAX_REPEATS = 3  # the turn-record side scans every record: seconds each on SecantusDB


def run(ctx: Context) -> Result:
    count = ctx.size.metric_turns
    result = Result(
        "B10", f"Metrics: group_by('day') over {count:,} turns, rollups vs turns", f">= {TARGET:g}x"
    )
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=ctx.database("b10"))
    now = datetime.now(timezone.utc)
    seed_s = b7_metrics_query._seed(factory, count, now)
    start = time.perf_counter()
    hours = rebuild_rollups(factory.repository)
    backfill_s = time.perf_counter() - start
    query = MetricsQuery(factory.repository)
    since = (now - timedelta(days=b7_metrics_query.DAYS + 1)).replace(minute=0, second=0, microsecond=0)
    window = MetricsFilter(since=since)
    turns_rows = query.group_by("day", window, source="turns")
    rollup_rows = query.group_by("day", window, source="rollups")
    fields = {"key", "turns", "failed_turns", "total_tokens", "latency_ms", "tool_calls"}
    if [r.model_dump(include=fields) for r in turns_rows] != [
        r.model_dump(include=fields) for r in rollup_rows
    ]:
        raise AssertionError("group_by('day') differs between rollups and turn records")
    timings: dict[str, list[float]] = {"turns": [], "rollups": []}
    for _ in range(min(ctx.size.repeats, MAX_REPEATS)):
        timings["turns"].append(_timed(lambda: query.group_by("day", window, source="turns")))
        timings["rollups"].append(_timed(lambda: query.group_by("day", window, source="rollups")))
    result.add(f"group_by('day') from turn records ({len(turns_rows)} days)", timings["turns"], "ms")
    result.add(f"group_by('day') from rollups ({hours:,} hourly documents)", timings["rollups"], "ms")
    speedups = ratio(timings["turns"], timings["rollups"])
    result.add("speed-up rollups / turns", speedups, "x")
    result.judge(min(speedups) >= TARGET, f"rollups {min(speedups):,.0f}x faster at worst, equal results")
    result.notes.append(
        f"seeded {count:,} turn records in {seed_s:.1f} s; "
        f"backfill built {hours:,} rollups in {backfill_s:.1f} s"
    )
    return result


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000
