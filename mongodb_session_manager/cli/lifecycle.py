"""``sessions prune`` and ``users erase``: retention and erasure from the command line.

Argument set-up lives here too, so the parser only calls :func:`add_prune` and
:func:`add_users`; the repository is imported when a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

__all__ = ["add_prune", "add_users", "erase_user", "parse_duration", "prune_sessions"]

_DURATION = re.compile(r"^(?P<number>\d+)(?P<unit>[smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``8w``, for argparse ``type=``."""
    match = _DURATION.match(value.strip())
    if match is None or int(match["number"]) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 30d, 12h or 15m, got {value!r}")
    return timedelta(**{_UNITS[match["unit"]]: int(match["number"])})


def add_prune(actions: Any, common: argparse.ArgumentParser) -> None:
    prune = actions.add_parser(
        "prune", parents=[common], help="delete whole sessions idle for longer than --older-than"
    )
    prune.add_argument(
        "--older-than", type=parse_duration, required=True, metavar="AGE", help="e.g. 30d, 12h, 15m"
    )
    prune.add_argument("--user", metavar="USER_ID", help="only this user's sessions")
    prune.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    prune.add_argument(
        "--archive",
        type=Path,
        metavar="DIR",
        help="write each session to DIR (export format) before deleting it",
    )
    prune.set_defaults(handler=prune_sessions)


def add_users(commands: Any, common: argparse.ArgumentParser) -> None:
    users = commands.add_parser("users", parents=[common], help="per-user data: erase")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    erase = actions.add_parser(
        "erase", parents=[common], help="delete every session and message of a user, print the receipt"
    )
    erase.add_argument("user_id", metavar="USER")
    erase.add_argument("-y", "--yes", action="store_true", help="required: erasure cannot be undone")
    erase.set_defaults(handler=erase_user)


def prune_sessions(args: argparse.Namespace) -> int:
    from ._common import open_repository
    from ._output import print_json

    with open_repository(args) as repository:
        report = repository.prune(
            args.older_than, user_id=args.user, dry_run=args.dry_run, archive_to=args.archive
        )
    if args.json:
        print_json(report.to_dict())
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    sys.stdout.write(
        f"{verb} {report.sessions} session(s) idle since before {report.cutoff.isoformat()} "
        f"({report.messages} message(s))\n"
    )
    if report.archived:
        sys.stdout.write(f"archived {len(report.archived)} session(s) to {args.archive}\n")
    return 0


def erase_user(args: argparse.Namespace) -> int:
    from ._common import EXIT_USAGE, CLIError, open_repository
    from ._output import print_json

    if not args.yes:
        raise CLIError("erasing a user cannot be undone: pass --yes", EXIT_USAGE)
    with open_repository(args) as repository:
        receipt = repository.erase_user(args.user_id)
    if args.json:
        print_json(receipt.to_dict())
        return 0
    sys.stdout.write(
        f"erased user {receipt.user_id!r} at {receipt.erased_at.isoformat()}: "
        f"{receipt.sessions} session(s), {receipt.messages} message(s), {receipt.keys} key(s)\n"
    )
    for session_id in receipt.session_ids:
        sys.stdout.write(f"  {session_id}\n")
    return 0
