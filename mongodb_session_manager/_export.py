"""The export encoding: one session document and its messages in MongoDB Extended JSON (relaxed).

Shared by ``sessions export`` (:mod:`.cli.transfer`) and ``repository.prune(archive_to=...)``,
so an archived session re-imports with ``sessions import`` exactly as it was stored::

    {"format": "mongodb-session-manager/export", "format_version": 1, "exported_at": ...,
     "session": {...}, "message_count": N, "messages": [{...}, ...]}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS

from .schema import utcnow

__all__ = ["FORMAT", "FORMAT_VERSION", "archive_path", "dumps", "write_archive", "write_export"]

FORMAT = "mongodb-session-manager/export"
FORMAT_VERSION = 1


def dumps(value: Any) -> str:
    return json_util.dumps(value, json_options=RELAXED_JSON_OPTIONS, ensure_ascii=False)


def write_export(
    out: IO[str],
    session: Mapping[str, Any],
    messages: Iterable[Mapping[str, Any]],
    *,
    message_count: int,
    on_message: Callable[[], None] | None = None,
) -> int:
    """Write the export to ``out``, one message at a time; returns the number of messages written."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": utcnow(),
        "session": session,
        "message_count": message_count,
    }
    out.write(dumps(header)[:-1] + ', "messages": [')
    written = 0
    for message in messages:
        out.write(("\n  " if written == 0 else ",\n  ") + dumps(message))
        written += 1
        if on_message is not None:
            on_message()
    out.write("\n]}\n")
    return written


def archive_path(directory: Path, session_id: str) -> Path:
    """``<directory>/<session id, percent-encoded>.json``: any session id makes one safe file name."""
    return directory / f"{quote(session_id, safe='')}.json"


def write_archive(directory: Path, session: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Path:
    """One session's export file, complete on disk (written aside, synced, renamed) before it returns."""
    directory.mkdir(parents=True, exist_ok=True)
    target = archive_path(directory, str(session["_id"]))
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            write_export(out, session, messages, message_count=len(messages))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
