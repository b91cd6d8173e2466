"""``metrics``: totals and groups of per-turn metrics, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..metrics import MetricsFilter, MetricsGroup, MetricsQuery
from ..metrics.backfill import rebuild_rollups
from ._common import open_repository
from ._output import make_console, print_csv, print_json, table

__all__ = ["COLUMNS", "backfill", "metrics"]

COLUMNS = tuple(MetricsGroup.model_fields)
_TABLE_COLUMNS = {
    "turns": "turns",
    "failed_turns": "failed",
    "input_tokens": "in",
    "output_tokens": "out",
    "total_tokens": "total",
    "latency_avg_ms": "latency avg",
    "latency_p50_ms": "p50",
    "latency_p95_ms": "p95",
    "latency_p99_ms": "p99",
    "ttfb_p50_ms": "TTFB p50",
    "tool_calls": "tools",
}


def metrics(args: argparse.Namespace) -> int:
    if args.action == "backfill":
        return backfill(args)
    metrics_filter = MetricsFilter(
        since=args.since,
        until=args.until,
        agent_id=args.agent,
        model_id=args.model,
        metadata=dict(args.meta or []),
    )
    with open_repository(args) as repository:
        query = MetricsQuery(repository)
        summary = query.summary(metrics_filter, source=args.source)
        groups = query.group_by(args.group_by, metrics_filter, source=args.source) if args.group_by else []
    output = "json" if args.json else args.format
    if output == "json":
        print_json(
            {
                "filter": metrics_filter.model_dump(mode="json", exclude_defaults=True),
                "group_by": args.group_by,
                "summary": summary.model_dump(mode="json"),
                "groups": [group.model_dump(mode="json") for group in groups],
            }
        )
    elif output == "csv":
        rows = groups if args.group_by else [summary]
        print_csv((row.model_dump(mode="json") for row in rows), COLUMNS)
    else:
        console = make_console()
        console.print(_table("Summary", [summary], key=None))
        if args.group_by:
            console.print(_table(f"By {args.group_by}", groups, key=args.group_by))
    return 0


def backfill(args: argparse.Namespace) -> int:
    """Rebuild every hour's rollup from the turn records stored now (idempotent: replaces them)."""
    with open_repository(args) as repository:
        rollups = rebuild_rollups(repository)
    if args.json:
        print_json({"rollups": rollups})
    else:
        sys.stdout.write(f"rebuilt {rollups} hourly rollups from the stored turn records\n")
    return 0


def _table(title: str, groups: list[MetricsGroup], *, key: str | None) -> Any:
    headers = ([key] if key else []) + list(_TABLE_COLUMNS.values())
    rows = [
        ([_key(group)] if key else []) + [getattr(group, name) for name in _TABLE_COLUMNS] for group in groups
    ]
    return table(title, headers, rows)


def _key(group: MetricsGroup) -> Any:
    return "(none)" if group.key is None else group.key
