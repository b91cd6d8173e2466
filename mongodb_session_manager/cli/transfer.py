"""The export file: one session document and its messages, in MongoDB Extended JSON (relaxed).

Relaxed Extended JSON keeps what plain JSON loses, so an import restores the session exactly:
dates stay dates (``{"$date": "2025-01-31T12:00:00Z"}``), bytes stay bytes
(``{"$binary": {"base64": ..., "subType": "00"}}``), message ``_id``\\s stay ObjectIds. Any
tool that reads Extended JSON (``mongoimport``, ``bson.json_util``) reads it too::

    {"format": "mongodb-session-manager/export", "format_version": 1, "exported_at": ...,
     "session": {...}, "message_count": N, "messages": [{...}, ...]}

Writing streams one message at a time, so a long conversation is never held in memory. The
encoding lives in :mod:`.._export`, shared with ``repository.prune(archive_to=...)``.
"""

from __future__ import annotations

from datetime import timezone
from typing import Any

from bson import json_util
from bson.json_util import JSONOptions

from .._export import FORMAT, FORMAT_VERSION, write_export
from ._common import EXIT_USAGE, CLIError

__all__ = ["FORMAT", "FORMAT_VERSION", "read_export", "write_export"]

_READ_OPTIONS = JSONOptions(tz_aware=True, tzinfo=timezone.utc)

Document = dict[str, Any]


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
