"""``sessions search TEXT``: find messages containing a piece of text, in one user's sessions or all.

Argument set-up lives here too, so the parser only calls :func:`add_search`; the repository is
imported when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

__all__ = ["add_search", "search_sessions"]


def add_search(actions: Any, common: argparse.ArgumentParser) -> None:
    search = actions.add_parser(
        "search", parents=[common], help="messages containing TEXT (case-insensitive), newest first"
    )
    search.add_argument("text", metavar="TEXT")
    search.add_argument("--user", metavar="USER_ID", help="only this user's sessions")
    search.add_argument("--limit", type=int, default=20, help="at most this many matches (1-100, default 20)")
    search.set_defaults(handler=search_sessions)


def search_sessions(args: argparse.Namespace) -> int:
    from ._common import open_repository
    from ._output import iso_utc, print_json

    with open_repository(args) as repository:
        matches = repository.search_messages(args.text, user_id=args.user, limit=args.limit)
    if args.json:
        print_json({"matches": [dataclasses.asdict(match) for match in matches]})
        return 0
    for match in matches:
        sys.stdout.write(
            f"{match.session_id}  {match.agent_id}#{match.message_id}  {match.role or '-'}  "
            f"{iso_utc(match.created_at)}\n  {_one_line(match.text)}\n"
        )
    sys.stdout.write(f"{len(matches)} match(es)\n")
    return 0


def _one_line(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"
