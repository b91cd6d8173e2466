"""The export file: one session document and its messages, in MongoDB Extended JSON (relaxed).

Relaxed Extended JSON keeps what plain JSON loses, so an import restores the session exactly:
dates stay dates (``{"$date": "2025-01-31T12:00:00Z"}``), bytes stay bytes
(``{"$binary": {"base64": ..., "subType": "00"}}``), message ``_id``\\s stay ObjectIds. Any
tool that reads Extended JSON (``mongoimport``, ``bson.json_util``) reads it too::

    {"format": "mongodb-session-manager/export", "format_version": 1, "exported_at": ...,
     "session": {...}, "message_count": N, "messages": [{...}, ...]}

Writing streams one message at a time, so a long conversation is never held in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timezone
from typing import IO, Any

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS, JSONOptions

from ..schema import utcnow
from ._common import EXIT_USAGE, CLIError

__all__ = ["FORMAT", "FORMAT_VERSION", "read_export", "write_export"]

FORMAT = "mongodb-session-manager/export"
FORMAT_VERSION = 1
_READ_OPTIONS = JSONOptions(tz_aware=True, tzinfo=timezone.utc)

Document = dict[str, Any]


def _dumps(value: Any) -> str:
    return json_util.dumps(value, json_options=RELAXED_JSON_OPTIONS, ensure_ascii=False)


def write_export(
    out: IO[str],
    session: Mapping[str, Any],
    messages: Iterable[Mapping[str, Any]],
    *,
    message_count: int,
    on_message: Callable[[], None] | None = None,
) -> int:
    """Write the export to ``out``; returns the number of messages written."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": utcnow(),
        "session": session,
        "message_count": message_count,
    }
    out.write(_dumps(header)[:-1] + ', "messages": [')
    written = 0
    for message in messages:
        out.write(("\n  " if written == 0 else ",\n  ") + _dumps(message))
        written += 1
        if on_message is not None:
            on_message()
    out.write("\n]}\n")
    return written


def read_export(text: str, *, source: str) -> tuple[Document, list[Document]]:
    """The session document and messages of an export, checked for shape."""
    try:
        data = json_util.loads(text, json_options=_READ_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{source} is not valid JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CLIError(
            f'{source} is not a mongodb-session-manager export (no "format": {FORMAT!r})', EXIT_USAGE
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise CLIError(
            f"{source} has format_version {data.get('format_version')!r}; "
            f"this version reads {FORMAT_VERSION}",
            EXIT_USAGE,
        )
    session, messages = data.get("session"), data.get("messages")
    if not isinstance(session, dict) or not isinstance(session.get("_id"), str):
        raise CLIError(f'{source}: "session" must be a document with a string _id', EXIT_USAGE)
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise CLIError(f'{source}: "messages" must be a list of documents', EXIT_USAGE)
    strangers = [m for m in messages if m.get("session_id") != session["_id"]]
    if strangers:
        raise CLIError(
            f"{source}: {len(strangers)} message(s) belong to another session than {session['_id']!r}",
            EXIT_USAGE,
        )
    return session, messages
