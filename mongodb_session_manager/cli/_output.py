"""Rendering for the CLI: rich tables and conversations for people, JSON and CSV for programs.

``rich`` (the ``cli`` extra) is imported only when something is drawn for a person, so
``--json`` output works without it.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from bson import ObjectId

from ._common import CLIError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "RICH_HINT",
    "TOTAL_FIELDS",
    "TURN_COLUMNS",
    "describe_block",
    "incomplete_reason",
    "iso_utc",
    "make_console",
    "message_text_block",
    "plain",
    "print_csv",
    "print_json",
    "render_conversation",
    "table",
    "totals_table",
    "turn_rows",
    "turns_table",
]

RICH_HINT = "pip install 'mongodb-session-manager[cli]'"
_ROLE_STYLES = {"user": "bold cyan", "assistant": "bold green"}


def make_console(*, stderr: bool = False, quiet: bool = False) -> Console:
    """A rich console on the current stdout (or stderr); 120 columns when not a terminal.

    ``quiet``: a console that draws nothing (a command whose ``--json`` output replaces it).
    """
    if quiet:
        return cast("Console", _Silent())
    try:
        from rich.console import Console
    except ImportError:
        raise CLIError(f"this command needs the 'rich' package: {RICH_HINT}") from None
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 120
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, quiet=quiet)


class _Silent:
    """Stands in for a rich console that must draw nothing (so ``--json`` needs no rich)."""

    def print(self, *objects: Any, **options: Any) -> None:
        """Draw nothing."""

    def rule(self, *objects: Any, **options: Any) -> None:
        """Draw nothing."""


# --- machine output -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as plain JSON: dates as ISO strings, bytes as ``{"base64": ...}``, ids as strings."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, ObjectId):
        return str(value)
    return value


def iso_utc(moment: datetime) -> str:
    """ISO-8601 with the zone, in UTC: ``2025-01-31T12:00:00.123000Z`` (the driver returns naive UTC)."""
    aware = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return aware.isoformat().replace("+00:00", "Z")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(plain(data), indent=2, ensure_ascii=False) + "\n")


def print_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(plain(row.get(key))) for key in columns})


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


# --- tables -------------------------------------------------------------------------------------


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table; numbers are right-aligned, ``None`` shows as ``-``."""
    from rich.table import Table

    rows = [list(row) for row in rows]
    grid = Table(title=title, title_justify="left", header_style="bold")
    for index, name in enumerate(columns):
        values = [row[index] for row in rows if row[index] is not None]
        numeric = bool(values) and all(isinstance(value, (int, float)) for value in values)
        grid.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        grid.add_row(*(_show(value) for value in row))
    return grid


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# --- conversations ------------------------------------------------------------------------------


def render_conversation(console: Console, messages: Iterable[Mapping[str, Any]]) -> int:
    """Print messages with their roles, tool calls and results; returns how many were printed."""
    count = 0
    for message in messages:
        console.print(message_text_block(message))
        count += 1
    return count


def incomplete_reason(document: Mapping[str, Any]) -> str | None:
    """Why a stored reply broke off (error, cancel, timeout...), or None for a complete message.

    The mark is the message's ``metadata.custom.incomplete`` (what Strands code sees) or the
    document's ``incomplete`` field (what the store adds).
    """
    message: Mapping[str, Any] = document.get("message") or {}
    custom = (message.get("metadata") or {}).get("custom") or {}
    stored = document.get("incomplete")
    if isinstance(stored, Mapping):
        return str(stored.get("reason") or custom.get("reason") or "unknown")
    if isinstance(custom, Mapping) and custom.get("incomplete"):
        return str(custom.get("reason") or "unknown")
    return None


def message_text_block(
    message: Mapping[str, Any], *, prefix: str = "", incomplete: str | None = None
) -> Text:
    """One message as rich text: ``role: content``, one line per content block.

    ``incomplete``: the reason a reply broke off; it is marked under the message.
    """
    from rich.text import Text

    role = str(message.get("role", "?"))
    text = Text(prefix)
    text.append(f"{role:>9}: ", style=_ROLE_STYLES.get(role, "bold"))
    lines = [describe_block(block) for block in message.get("content") or []] or ["(empty)"]
    text.append(lines[0])
    for line in lines[1:]:
        text.append("\n" + " " * (len(prefix) + 11) + line)
    if incomplete is not None:
        text.append(f"\n{' ' * (len(prefix) + 11)}[incomplete reply: {incomplete}]", style="bold yellow")
    return text


def describe_block(block: Mapping[str, Any]) -> str:
    """A content block in one readable line (binary parts by kind and size, never their bytes)."""
    if "text" in block:
        return str(block["text"])
    if "toolUse" in block:
        use = block["toolUse"]
        return f"-> tool {use.get('name')}({_compact(use.get('input'))}) [{use.get('toolUseId')}]"
    if "toolResult" in block:
        result = block["toolResult"]
        parts = [describe_block(part) for part in result.get("content") or []]
        return f"<- {result.get('status', 'success')} [{result.get('toolUseId')}]: {'; '.join(parts)}"
    if "json" in block:
        return _compact(block["json"])
    for kind in ("image", "document", "video"):
        if kind in block:
            media = block[kind]
            name = f" {media['name']!r}" if media.get("name") else ""
            return f"[{kind}{name} {media.get('format', '?')}, {_size(media.get('source'))}]"
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"].get("reasoningText") or {}
        return f"[reasoning] {reasoning.get('text', '(redacted)')}"
    return f"[{', '.join(block)}]"


def _size(source: Any) -> str:
    data = source.get("bytes") if isinstance(source, Mapping) else None
    if isinstance(data, bytes):
        return f"{len(data):,} bytes"
    return "no inline bytes"


def _compact(value: Any) -> str:
    return json.dumps(plain(value), ensure_ascii=False, separators=(",", ": "))


# --- per-turn metrics ---------------------------------------------------------------------------

TURN_COLUMNS = (
    "turn",
    "agent_id",
    "message_id",
    "status",
    "model_id",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "latency_ms",
    "ttfb_ms",
    "cycles",
    "tool_calls",
    "tools",
    "started_at",
)
TOTAL_FIELDS = (
    "turns",
    "failedTurns",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "latencyMs",
    "toolCalls",
)


def turn_rows(message_documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per turn: the messages that carry ``event_loop_metrics``, in the order given."""
    rows: list[dict[str, Any]] = []
    for document in message_documents:
        record = document.get("event_loop_metrics")
        if not isinstance(record, Mapping):
            continue
        usage: Mapping[str, Any] = record.get("accumulated_usage") or {}
        timing: Mapping[str, Any] = record.get("accumulated_metrics") or {}
        tools: Mapping[str, Any] = record.get("tools") or {}
        rows.append(
            {
                "turn": len(rows) + 1,
                "agent_id": document.get("agent_id"),
                "message_id": document.get("message_id"),
                "status": record.get("status"),
                "model_id": record.get("model_id"),
                "input_tokens": usage.get("inputTokens"),
                "output_tokens": usage.get("outputTokens"),
                "total_tokens": usage.get("totalTokens"),
                "latency_ms": timing.get("latencyMs"),
                "ttfb_ms": timing.get("timeToFirstByteMs"),
                "cycles": (record.get("cycles") or {}).get("count"),
                "tool_calls": record.get("tool_calls"),
                "tools": ", ".join(f"{name} x{stats.get('calls', 0)}" for name, stats in tools.items()),
                "started_at": record.get("started_at"),
            }
        )
    return rows


_TURN_HEADERS = {
    "turn": "#",
    "agent_id": "agent",
    "message_id": "msg",
    "status": "status",
    "model_id": "model",
    "input_tokens": "in",
    "output_tokens": "out",
    "total_tokens": "total",
    "latency_ms": "latency ms",
    "ttfb_ms": "TTFB ms",
    "cycles": "cycles",
    "tools": "tools",
}


def turns_table(rows: Sequence[Mapping[str, Any]], *, title: str = "Turns") -> Table:
    return table(
        title,
        list(_TURN_HEADERS.values()),
        ([row.get(key) if row.get(key) != "" else None for key in _TURN_HEADERS] for row in rows),
    )


def totals_table(totals: Mapping[str, Any], *, title: str = "Session totals") -> Table:
    return table(title, TOTAL_FIELDS, [[totals.get(name, 0) for name in TOTAL_FIELDS]])
