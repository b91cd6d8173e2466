"""``sessions list|show|export|import|delete``: browse and move stored sessions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pymongo import UpdateOne

from .. import schema
from .._driver_errors import DuplicateKey, translate_driver_errors
from .._validation import validate_session_id
from ..repository import MongoDBSessionRepository
from ._common import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CLIError,
    open_repository,
)
from ._hints import command_line
from ._output import (
    incomplete_reason,
    make_console,
    message_text_block,
    plain,
    print_json,
    table,
    totals_table,
    turn_rows,
    turns_table,
)
from .transfer import read_export, write_export

__all__ = [
    "PROGRESS_MIN_MESSAGES",
    "conversation",
    "count_messages",
    "delete_session",
    "export_session",
    "find_session",
    "import_session",
    "list_sessions",
    "report",
    "show_session",
]

Document = dict[str, Any]

PROGRESS_MIN_MESSAGES = 200
_IMPORT_BATCH = 500
_CONVERSATION_SORT = [("agent_id", 1), ("message_id", 1)]


def find_session(repository: MongoDBSessionRepository, session_id: str) -> Document:
    """The session document, or exit 4 naming where it was looked for."""
    document = repository.load_session_document(validate_session_id(session_id))
    if document is None:
        raise CLIError(
            f"session {session_id!r} not found in {repository.database.name}.{repository.names.sessions}",
            EXIT_NOT_FOUND,
        )
    return document


def conversation(
    repository: MongoDBSessionRepository, session_id: str, *, skip: int = 0, limit: int = 0
) -> Iterator[Document]:
    """The session's messages, agent by agent, in order (a cursor, not a list); ``limit=0``: all."""
    with translate_driver_errors("read messages"):
        yield from repository.messages_collection.find(
            {"session_id": session_id}, sort=_CONVERSATION_SORT, skip=skip, limit=limit
        )


def count_messages(repository: MongoDBSessionRepository, session_id: str) -> int:
    with translate_driver_errors("count messages"):
        return repository.messages_collection.count_documents({"session_id": session_id})


# --- commands -----------------------------------------------------------------------------------


def list_sessions(args: argparse.Namespace) -> int:
    filters: dict[str, Any] = {
        "since": args.since,
        "until": args.until,
        "agent_id": args.agent,
        "metadata": dict(args.meta or []),
    }
    if args.user is not None or args.after is not None:
        return _page_sessions(args, filters)
    with open_repository(args) as repository:
        page = repository.list_sessions(skip=args.skip, limit=args.limit, **filters)
        with translate_driver_errors("count sessions"):
            total = repository.collection.count_documents(schema.session_list_filter(**filters))
    if args.json:
        print_json({"total": total, "skip": args.skip, "limit": args.limit, "sessions": page})
        return 0
    shown = f"{args.skip + 1}-{args.skip + len(page)}" if page else "none"
    _print_sessions(f"Sessions ({shown} of {total})", page)
    return 0


def _page_sessions(args: argparse.Namespace, filters: dict[str, Any]) -> int:
    """``--user``/``--after``: one keyset page, and the cursor of the next one."""
    if args.skip:
        raise CLIError("--skip pages by offset; with --user or --after pass the cursor instead", EXIT_USAGE)
    with open_repository(args) as repository:
        page = repository.page_sessions(user_id=args.user, limit=args.limit, after=args.after, **filters)
    if args.json:
        print_json(
            {
                "user_id": args.user,
                "limit": args.limit,
                "sessions": page.sessions,
                "next_cursor": page.next_cursor,
            }
        )
        return 0
    who = f" of {args.user}" if args.user is not None else ""
    _print_sessions(f"Sessions{who} ({len(page.sessions)})", page.sessions)
    if page.next_cursor is not None:
        sys.stdout.write(f"next page: --after {page.next_cursor}\n")
    return 0


def _print_sessions(title: str, page: list[Document]) -> None:
    console = make_console()
    rows = [
        [
            document["session_id"],
            document.get("updated_at"),
            document.get("created_at"),
            ", ".join(document.get("agent_ids") or []) or None,
            (document.get("totals") or {}).get("turns", 0),
            (document.get("totals") or {}).get("totalTokens", 0),
            _compact_metadata(document.get("metadata")),
        ]
        for document in page
    ]
    console.print(
        table(title, ("session_id", "updated", "created", "agents", "turns", "tokens", "metadata"), rows)
    )


def show_session(args: argparse.Namespace) -> int:
    """One page of the conversation (``--limit``/``--offset`` messages), its turns, the totals."""
    with open_repository(args) as repository:
        document = find_session(repository, args.session_id)
        total = count_messages(repository, args.session_id)
        messages = list(conversation(repository, args.session_id, skip=args.offset, limit=args.limit))
    turns = turn_rows(messages)
    end = args.offset + len(messages)
    next_offset = end if end < total else None
    next_page = (
        None
        if next_offset is None
        else command_line(
            args,
            "sessions",
            "show",
            args.session_id,
            "--limit",
            str(args.limit),
            "--offset",
            str(next_offset),
        )
    )
    if args.json:
        print_json(
            {
                "session": document,
                "total_messages": total,
                "offset": args.offset,
                "limit": args.limit,
                "next_offset": next_offset,
                "messages": messages,
                "incomplete_message_ids": [
                    m["message_id"] for m in messages if incomplete_reason(m) is not None
                ],
                "turns": turns,
            }
        )
        return 0
    console = make_console()
    console.print(f"[bold]Session[/bold] {_escape(document['_id'])}")
    console.print(
        f"  created {plain(document.get('created_at'))}, updated {plain(document.get('updated_at'))}"
    )
    if document.get("metadata"):
        console.print(f"  metadata {_escape(_compact_metadata(document['metadata']) or '')}")
    agent_ids = sorted({str(message.get("agent_id")) for message in messages})
    for agent_id in agent_ids:
        console.print(f"\n[bold]Agent[/bold] {_escape(agent_id)}")
        for message in messages:
            if message.get("agent_id") == agent_id:
                console.print(message_text_block(message["message"], incomplete=incomplete_reason(message)))
    if not messages:
        console.print("\n(no messages)" if total == 0 else f"\n(no messages past offset {args.offset})")
    shown = f"{args.offset + 1}-{end}" if messages else "none"
    console.print(f"\nMessages {shown} of {total}")
    if next_page is not None:
        console.print(f"Next page: {_escape(next_page)}", soft_wrap=True)
    console.print()
    console.print(turns_table(turns))
    console.print(totals_table(document.get("totals") or {}))
    return 0


def export_session(args: argparse.Namespace) -> int:
    target: Path | None = args.output
    with open_repository(args) as repository:
        document = find_session(repository, args.session_id)
        with translate_driver_errors("count messages"):
            count = repository.messages_collection.count_documents({"session_id": args.session_id})
        messages = conversation(repository, args.session_id)
        if target is None:
            write_export(sys.stdout, document, messages, message_count=count)
            return 0
        partial = target.with_name(target.name + ".partial")
        try:
            with ExitStack() as stack:
                out = stack.enter_context(partial.open("w", encoding="utf-8"))
                advance = (
                    _progress(stack, count)
                    if sys.stdout.isatty() and count >= PROGRESS_MIN_MESSAGES
                    else None
                )
                written = write_export(out, document, messages, message_count=count, on_message=advance)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    report(
        args,
        f"exported session {args.session_id!r} ({written} messages) to {target}",
        exported=args.session_id,
        messages=written,
        file=str(target),
    )
    return 0


def import_session(args: argparse.Namespace) -> int:
    source = str(args.file)
    text = sys.stdin.read() if source == "-" else _read_text(args.file)
    document, messages = read_export(text, source=source)
    session_id = validate_session_id(document["_id"])
    replaced = False
    with open_repository(args) as repository:
        if repository.load_session_document(session_id) is not None:
            if not args.replace:
                raise CLIError(
                    f"session {session_id!r} already exists; pass --replace to overwrite it", EXIT_CONFLICT
                )
            repository.delete_session(session_id)
            replaced = True
        repository.ensure_indexes()
        try:
            with translate_driver_errors("import session"):
                repository.collection.insert_one(document)
                for start in range(0, len(messages), _IMPORT_BATCH):
                    repository.messages_collection.insert_many(messages[start : start + _IMPORT_BATCH])
                _roll_up(repository, messages)
        except DuplicateKey as exc:
            raise CLIError(
                f"session {session_id!r} was written by someone else during the import: {exc}", EXIT_CONFLICT
            ) from exc
    report(
        args,
        f"imported session {session_id!r} ({len(messages)} messages)",
        imported=session_id,
        messages=len(messages),
        replaced=replaced,
    )
    return 0


def delete_session(args: argparse.Namespace) -> int:
    with open_repository(args) as repository:
        find_session(repository, args.session_id)
        count = count_messages(repository, args.session_id)
        if not args.yes:
            _confirm(f"Delete session {args.session_id!r} and its {count} messages? [y/N] ")
        repository.delete_session(args.session_id)
    report(
        args,
        f"deleted session {args.session_id!r} ({count} messages)",
        deleted=args.session_id,
        messages=count,
    )
    return 0


def report(args: argparse.Namespace, line: str, **fields: Any) -> None:
    """What a command did: ``line`` for people, ``fields`` as one JSON object with ``--json``."""
    if args.json:
        print_json(fields)
    else:
        sys.stdout.write(line + "\n")


# --- helpers ------------------------------------------------------------------------------------


def _roll_up(repository: MongoDBSessionRepository, messages: list[Document]) -> None:
    """Count the imported turns in the hourly rollups, as the write path does for new turns."""
    updates = []
    for message in messages:
        record = message.get("event_loop_metrics")
        rollup = None if record is None else schema.rollup_update(str(message.get("agent_id")), record)
        if rollup is not None:
            updates.append(UpdateOne(rollup[0], rollup[1], upsert=True))
    if updates:
        repository.rollups_collection.bulk_write(updates, ordered=False)


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CLIError(
            "refusing to delete without confirmation: stdin is not a terminal; pass --yes", EXIT_USAGE
        )
    sys.stderr.write(question)
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CLIError("not deleted", EXIT_ERROR)


def _progress(stack: ExitStack, total: int) -> Callable[[], None]:
    """A transient progress bar on stdout, advanced once per exported message."""
    from rich.progress import Progress

    progress = stack.enter_context(Progress(console=make_console(), transient=True))
    task = progress.add_task("Exporting messages", total=total)

    def advance() -> None:
        progress.advance(task)

    return advance


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from exc


def _compact_metadata(metadata: Any) -> str | None:
    if not metadata:
        return None
    return ", ".join(f"{key}={plain(value)}" for key, value in dict(metadata).items())


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
