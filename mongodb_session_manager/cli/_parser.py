"""The command line's arguments: one parser, its subcommands, and the ``type=`` checks of options.

Handlers are imported when they run, so ``--help`` and ``serve-db`` do not load what they do
not use.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from .. import schema
from .._validation import validate_metadata_filter
from ..errors import InvalidSessionInputError

__all__ = ["PROG", "Handler", "build_parser", "parse_args", "parse_key_value", "parse_positive", "parse_when"]


Handler = Callable[[argparse.Namespace], int]

PROG = "mongodb-session-manager"
# Defaults of the options accepted before and after the command. They are filled in after parsing:
# argparse shares option objects between a parser and its parents, so a default set on the main
# parser would also overwrite, from the subcommand, a value given before the subcommand.
_GLOBAL_DEFAULTS = {
    "uri": None,
    "database": schema.DEFAULT_DATABASE_NAME,
    "collection": schema.DEFAULT_COLLECTION_NAME,
    "json": False,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: ``sys.argv[1:]``); like argparse, raises ``SystemExit`` on bad usage."""
    args = build_parser().parse_args(argv)
    for name, value in _GLOBAL_DEFAULTS.items():  # options given nowhere (they are SUPPRESSed)
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options work before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--uri", default=argparse.SUPPRESS, help="MongoDB connection string (default: $MONGODB_URI)"
    )
    group.add_argument(
        "--database",
        default=argparse.SUPPRESS,
        help=f"database name (default: {schema.DEFAULT_DATABASE_NAME})",
    )
    group.add_argument(
        "--collection",
        default=argparse.SUPPRESS,
        help="sessions collection; messages live in <collection>_messages "
        f"(default: {schema.DEFAULT_COLLECTION_NAME})",
    )
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="MongoDB as the memory of Strands Agents: demo, sessions, metrics, a local server.",
        epilog="exit codes: 0 ok, 1 error, 2 bad usage or connection string, 3 MongoDB unreachable, "
        "4 session not found, 5 session already exists, 130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", parents=[common], help="stream, store, restore and measure a conversation"
    )
    demo.add_argument(
        "--model", metavar="MODEL_ID", help="a real Strands model id (default: a scripted model)"
    )
    demo.add_argument("--session-id", metavar="ID", help="session to use (default: a new demo-... id)")
    demo.add_argument("--chunk-delay", type=float, default=0.02, metavar="SECONDS", help=argparse.SUPPRESS)
    demo.set_defaults(handler=_demo)

    _add_sessions(commands, common)
    _add_metrics(commands, common)
    _add_shard_setup(commands, common)

    serve = commands.add_parser("serve-db", parents=[common], help="run the embedded SecantusDB until Ctrl-C")
    serve.add_argument("--port", type=parse_positive, default=0, help="TCP port (default: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--storage-path", type=Path, help="directory to keep data in (default: memory only)")
    serve.set_defaults(handler=_serve_db)
    return parser


def _add_sessions(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    sessions = commands.add_parser(
        "sessions", parents=[common], help="list, show, export, import, delete sessions"
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="sessions, most recently active first")
    listing.add_argument("--limit", type=parse_positive, default=20, help="page size (default: 20, max 1000)")
    listing.add_argument("--skip", type=parse_positive, default=0, help="sessions to skip (default: 0)")
    _add_window(listing, what="sessions updated")
    listing.add_argument("--agent", metavar="AGENT_ID", help="only sessions holding this agent")
    _add_meta(listing)
    listing.add_argument("--user", metavar="USER_ID", help="only this user's sessions (cursor-paged)")
    listing.add_argument("--after", metavar="CURSOR", help="the next page: the cursor a page printed")
    listing.set_defaults(handler=_sessions("list_sessions"))

    show = actions.add_parser("show", parents=[common], help="a session's conversation and per-turn metrics")
    show.add_argument("session_id", metavar="ID")
    show.set_defaults(handler=_sessions("show_session"))

    export = actions.add_parser("export", parents=[common], help="a session and its messages as JSON")
    export.add_argument("session_id", metavar="ID")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(handler=_sessions("export_session"))

    imports = actions.add_parser("import", parents=[common], help="recreate a session from an export")
    imports.add_argument("file", type=Path, metavar="FILE", help="an export file, or - for stdin")
    imports.add_argument("--replace", action="store_true", help="overwrite the session if it exists")
    imports.set_defaults(handler=_sessions("import_session"))

    delete = actions.add_parser("delete", parents=[common], help="delete a session and its messages")
    delete.add_argument("session_id", metavar="ID")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_sessions("delete_session"))


def _add_metrics(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    metrics = commands.add_parser("metrics", parents=[common], help="turn totals, optionally grouped")
    metrics.add_argument(
        "action",
        nargs="?",
        choices=("backfill",),
        help="backfill: rebuild the hourly rollups from the stored turn records",
    )
    metrics.add_argument(
        "--source",
        choices=("auto", "turns", "rollups"),
        default="auto",
        help="auto (default): hourly rollups when they answer the filter; turns for percentiles",
    )
    _add_window(metrics, what="turns started")
    metrics.add_argument("--agent", metavar="AGENT_ID", help="only this agent's turns")
    metrics.add_argument("--model", metavar="MODEL_ID", help="only turns of this model")
    _add_meta(metrics)
    metrics.add_argument("--group-by", choices=("day", "hour", "model", "agent"), help="one row per group")
    metrics.add_argument("--format", choices=("table", "json", "csv"), default="table", help="default: table")
    metrics.set_defaults(handler=_metrics)


def _add_shard_setup(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    shard = commands.add_parser(
        "shard-setup", parents=[common], help="shard the collections on a cluster (idempotent)"
    )
    shard.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    shard.add_argument(
        "--key-vault-namespace", metavar="DB.COLL", help="the encryption key vault (reported, kept unsharded)"
    )
    shard.set_defaults(handler=_shard_setup)


def _add_window(parser: argparse.ArgumentParser, *, what: str) -> None:
    parser.add_argument(
        "--since", type=parse_when, metavar="ISO", help=f"{what} at or after (UTC if no zone)"
    )
    parser.add_argument("--until", type=parse_when, metavar="ISO", help=f"{what} before (UTC if no zone)")


def _add_meta(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--meta",
        type=parse_key_value,
        action="append",
        metavar="KEY=VALUE",
        help="session metadata equals VALUE (a string); repeat to combine",
    )


# --- handlers: imported when run, so `--help` and `serve-db` stay light ----------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _sessions(name: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        from . import sessions

        command: Handler = getattr(sessions, name)
        return command(args)

    return handler


def _metrics(args: argparse.Namespace) -> int:
    from .metrics import metrics

    return metrics(args)


def _shard_setup(args: argparse.Namespace) -> int:
    from .shard_setup import shard_setup

    return shard_setup(args)


def _serve_db(args: argparse.Namespace) -> int:
    from .serve import serve_db

    return serve_db(args)


# --- option types ---------------------------------------------------------------------------------


def parse_when(value: str) -> datetime:
    """An ISO date or date-time (naive means UTC), for argparse ``type=``."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or date-time: {value!r} (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def parse_key_value(value: str) -> tuple[str, str]:
    """``key=value`` for ``--meta``, for argparse ``type=``."""
    key, sep, rest = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}")
    try:
        validate_metadata_filter({key: rest})  # the same rule as every other metadata filter
    except InvalidSessionInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key, rest


def parse_positive(value: str) -> int:
    """A non-negative int, for argparse ``type=``."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number
