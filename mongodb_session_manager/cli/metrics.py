"""``metrics`` and its actions: turn totals and groups, top sessions, tool usage.

Each prints a table, JSON (``--json`` or ``--format json``) or CSV (``--format csv``).
Latency statistics leave out cancelled turns and turns without a finished model call; both
still count in ``turns`` (and in ``cancelled``/``failed``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from ..metrics import MetricsFilter, MetricsGroup, MetricsQuery, SessionRank, ToolUsage
from ..metrics.backfill import rebuild_rollups
from ._common import open_repository
from ._output import make_console, print_csv, print_json, table

__all__ = [
    "COLUMNS",
    "RANK_COLUMNS",
    "TOOL_COLUMNS",
    "backfill",
    "metrics",
    "metrics_filter",
    "tool_usage",
    "top_sessions",
]

COLUMNS = tuple(MetricsGroup.model_fields)
RANK_COLUMNS = tuple(SessionRank.model_fields)
TOOL_COLUMNS = tuple(ToolUsage.model_fields)
_TABLE_COLUMNS = {
    "turns": "turns",
    "failed_turns": "failed",
    "cancelled_turns": "cancelled",
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
_RANK_HEADERS = {
    "session_id": "session_id",
    "turns": "turns",
    "input_tokens": "in",
    "output_tokens": "out",
    "total_tokens": "total",
    "latency_ms": "latency ms",
    "latency_avg_ms": "latency avg",
    "first_turn_at": "first turn",
    "last_turn_at": "last turn",
}
_TOOL_HEADERS = {
    "name": "tool",
    "turns": "turns",
    "calls": "calls",
    "successes": "ok",
    "errors": "errors",
    "time_ms": "time ms",
}

Row = TypeVar("Row", bound=BaseModel)


def metrics_filter(args: argparse.Namespace) -> MetricsFilter:
    """The turns the command's filter options select."""
    return MetricsFilter(
        since=args.since,
        until=args.until,
        agent_id=args.agent,
        model_id=args.model,
        metadata=dict(args.meta or []),
    )


def _output(args: argparse.Namespace) -> str:
    return "json" if args.json else str(args.format)


def metrics(args: argparse.Namespace) -> int:
    """Totals over the selected turns; with ``--group-by``, one row per group as well."""
    selected = metrics_filter(args)
    with open_repository(args) as repository:
        query = MetricsQuery(repository)
        summary = query.summary(selected, source=args.source)
        groups = query.group_by(args.group_by, selected, source=args.source) if args.group_by else []
    output = _output(args)
    if output == "json":
        print_json(
            {
                "filter": selected.model_dump(mode="json", exclude_defaults=True),
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
        console.print(_group_table("Summary", [summary], key=None))
        if args.group_by:
            console.print(_group_table(f"By {args.group_by}", groups, key=args.group_by))
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


def top_sessions(args: argparse.Namespace) -> int:
    """The sessions with the most tokens (``--by tokens``) or summed model latency."""
    selected = metrics_filter(args)
    with open_repository(args) as repository:
        ranks = MetricsQuery(repository).top_sessions(by=args.by, limit=args.limit, filter=selected)
    title = f"Top {args.limit} sessions by {args.by}"
    _print_rows(args, "sessions", ranks, RANK_COLUMNS, title, _RANK_HEADERS, extra={"by": args.by})
    return 0


def tool_usage(args: argparse.Namespace) -> int:
    """Per tool: the turns that called it, calls, successes, errors, time; most called first."""
    selected = metrics_filter(args)
    with open_repository(args) as repository:
        tools = MetricsQuery(repository).tool_usage(selected)
    _print_rows(args, "tools", tools, TOOL_COLUMNS, "Tool usage", _TOOL_HEADERS)
    return 0


def _print_rows(
    args: argparse.Namespace,
    name: str,
    rows: Sequence[Row],
    columns: Sequence[str],
    title: str,
    headers: dict[str, str],
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    output = _output(args)
    if output == "json":
        selected = metrics_filter(args).model_dump(mode="json", exclude_defaults=True)
        print_json({"filter": selected, **(extra or {}), name: [row.model_dump(mode="json") for row in rows]})
    elif output == "csv":
        print_csv((row.model_dump(mode="json") for row in rows), columns)
    else:
        make_console().print(table(title, list(headers.values()), _cells(rows, headers)))


def _cells(rows: Sequence[BaseModel], headers: dict[str, str]) -> list[list[Any]]:
    read: Callable[[BaseModel, str], Any] = getattr
    return [[read(row, field) for field in headers] for row in rows]


def _group_table(title: str, groups: list[MetricsGroup], *, key: str | None) -> Any:
    headers = ([key] if key else []) + list(_TABLE_COLUMNS.values())
    rows = [
        ([_key(group)] if key else []) + [getattr(group, name) for name in _TABLE_COLUMNS] for group in groups
    ]
    return table(title, headers, rows)


def _key(group: MetricsGroup) -> Any:
    return "(none)" if group.key is None else group.key
