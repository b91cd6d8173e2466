"""The command line's arguments: one parser, its subcommands, and the ``type=`` checks of options.

Handlers are imported when they run, so ``--help`` and ``serve-db`` do not load what they do
not use.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .. import schema
from .._validation import validate_metadata_filter
from ..errors import InvalidSessionInputError
from .lifecycle import add_prune, add_users

__all__ = [
    "PROG",
    "Handler",
    "UsageError",
    "build_parser",
    "parse_args",
    "parse_key_value",
    "parse_page_size",
    "parse_port",
    "parse_positive",
    "parse_when",
]


Handler = Callable[[argparse.Namespace], int]

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction["_Parser"]

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


# Filters shared by ``metrics`` and its subcommands, filled in after parsing for the same reason.
_METRICS_DEFAULTS = {
    "since": None,
    "until": None,
    "agent": None,
    "model": None,
    "meta": None,
    "format": "table",
}


class UsageError(Exception):
    """Bad arguments: ``message`` and the ``usage`` of the (sub)command ``prog`` they were given to."""

    def __init__(self, prog: str, usage: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.usage, self.message = prog, usage, message


class _Parser(argparse.ArgumentParser):
    """Raises `UsageError` instead of printing and exiting, so ``main`` decides how to report it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, self.format_usage(), message)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: ``sys.argv[1:]``).

    Bad arguments raise `UsageError`; ``--help`` raises ``SystemExit(0)`` after printing.
    """
    args = build_parser().parse_args(argv)
    defaults = {**_GLOBAL_DEFAULTS, **(_METRICS_DEFAULTS if args.command == "metrics" else {})}
    for name, value in defaults.items():  # options given nowhere (they are SUPPRESSed)
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options work before or after the command.

    Each command (and each ``sessions`` action) is added by one small function below, so a new
    one is a new function and one line in :data:`_COMMANDS` or :func:`_add_sessions`.
    """
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        parents=[common],
        description="MongoDB as the memory of Strands Agents: demo, sessions, metrics, a local server.",
        epilog="exit codes: 0 ok, 1 error, 2 bad usage or connection string, 3 MongoDB unreachable, "
        "4 session not found, 5 session already exists, 6 authentication failed or not authorized, "
        "130 interrupted",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(commands, common)
    return parser


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
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
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output (errors too, as one JSON object on stderr)",
    )
    return common


def _add_demo(commands: Commands, common: _Parser) -> None:
    demo = commands.add_parser(
        "demo", parents=[common], help="stream, store, restore and measure a conversation"
    )
    demo.add_argument(
        "--model", metavar="MODEL_ID", help="a real Strands model id (default: a scripted model)"
    )
    demo.add_argument("--session-id", metavar="ID", help="session to use (default: a new demo-... id)")
    demo.add_argument("--chunk-delay", type=float, default=0.02, metavar="SECONDS", help=argparse.SUPPRESS)
    demo.set_defaults(handler=_run("demo", "run_demo"))


def _add_sessions(commands: Commands, common: _Parser) -> None:
    sessions = commands.add_parser(
        "sessions", parents=[common], help="list, show, export, import, delete sessions"
    )
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in (_add_list, _add_show, _add_export, _add_import, _add_delete):
        add(actions, common)


def _add_list(actions: Commands, common: _Parser) -> None:
    listing = actions.add_parser("list", parents=[common], help="sessions, most recently active first")
    listing.add_argument(
        "--limit", type=parse_page_size, default=20, help="page size (default: 20, max 1000)"
    )
    listing.add_argument("--skip", type=parse_positive, default=0, help="sessions to skip (default: 0)")
    _add_window(listing, what="sessions updated")
    listing.add_argument("--agent", metavar="AGENT_ID", help="only sessions holding this agent")
    _add_meta(listing)
    listing.add_argument("--user", metavar="USER_ID", help="only this user's sessions (cursor-paged)")
    listing.add_argument("--after", metavar="CURSOR", help="the next page: the cursor a page printed")
    listing.set_defaults(handler=_run("sessions", "list_sessions"))


def _add_show(actions: Commands, common: _Parser) -> None:
    show = actions.add_parser(
        "show", parents=[common], help="a session's conversation (one page) and per-turn metrics"
    )
    show.add_argument("session_id", metavar="ID")
    show.add_argument(
        "--limit", type=parse_page_size, default=100, help="messages per page (default: 100, max 1000)"
    )
    show.add_argument("--offset", type=parse_positive, default=0, help="messages to skip (default: 0)")
    show.set_defaults(handler=_run("sessions", "show_session"))


def _add_export(actions: Commands, common: _Parser) -> None:
    export = actions.add_parser("export", parents=[common], help="a session and its messages as JSON")
    export.add_argument("session_id", metavar="ID")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(handler=_run("sessions", "export_session"))


def _add_import(actions: Commands, common: _Parser) -> None:
    imports = actions.add_parser("import", parents=[common], help="recreate a session from an export")
    imports.add_argument("file", type=Path, metavar="FILE", help="an export file, or - for stdin")
    imports.add_argument("--replace", action="store_true", help="overwrite the session if it exists")
    imports.set_defaults(handler=_run("sessions", "import_session"))


def _add_delete(actions: Commands, common: _Parser) -> None:
    delete = actions.add_parser("delete", parents=[common], help="delete a session and its messages")
    delete.add_argument("session_id", metavar="ID")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_run("sessions", "delete_session"))
    add_prune(actions, common)


def _add_metrics(commands: Commands, common: _Parser) -> None:
    metrics = commands.add_parser(
        "metrics",
        parents=[common],
        help="turn totals (optionally grouped), top sessions, tool usage",
        description="Without an action: totals over the selected turns, optionally grouped.",
    )
    _add_metrics_filters(metrics)
    metrics.add_argument(
        "--source",
        choices=("auto", "turns", "rollups"),
        default="auto",
        help="auto (default): hourly rollups when they answer the filter; turns for percentiles",
    )
    metrics.add_argument("--group-by", choices=("day", "hour", "model", "agent"), help="one row per group")
    metrics.set_defaults(handler=_run("metrics", "metrics"))
    actions = metrics.add_subparsers(dest="action", metavar="ACTION")

    top = actions.add_parser(
        "top-sessions", parents=[common], help="the sessions that used the most tokens or model latency"
    )
    _add_metrics_filters(top)
    top.add_argument("--by", choices=("tokens", "latency"), default="tokens", help="default: tokens")
    top.add_argument(
        "--limit", type=parse_page_size, default=10, help="how many sessions (default: 10, max 1000)"
    )
    top.set_defaults(handler=_run("metrics", "top_sessions"))

    tools = actions.add_parser("tool-usage", parents=[common], help="calls, errors and time per tool")
    _add_metrics_filters(tools)
    tools.set_defaults(handler=_run("metrics", "tool_usage"))

    backfill = actions.add_parser(
        "backfill", parents=[common], help="rebuild the hourly rollups from the stored turn records"
    )
    backfill.set_defaults(handler=_run("metrics", "backfill"))


def _add_metrics_filters(parser: argparse.ArgumentParser) -> None:
    """Filters accepted by ``metrics`` and by each of its actions (before or after the action)."""
    when = {"type": parse_when, "metavar": "ISO", "default": argparse.SUPPRESS}
    parser.add_argument("--since", help="turns started at or after (UTC if no zone)", **when)  # type: ignore[arg-type]
    parser.add_argument("--until", help="turns started before (UTC if no zone)", **when)  # type: ignore[arg-type]
    parser.add_argument(
        "--agent", metavar="AGENT_ID", default=argparse.SUPPRESS, help="only this agent's turns"
    )
    parser.add_argument(
        "--model", metavar="MODEL_ID", default=argparse.SUPPRESS, help="only this model's turns"
    )
    _add_meta(parser, default=argparse.SUPPRESS)
    parser.add_argument(
        "--format", choices=("table", "json", "csv"), default=argparse.SUPPRESS, help="default: table"
    )


def _add_serve_db(commands: Commands, common: _Parser) -> None:
    serve = commands.add_parser("serve-db", parents=[common], help="run the embedded SecantusDB until Ctrl-C")
    serve.add_argument("--port", type=parse_port, default=0, help="TCP port (default: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--storage-path", type=Path, help="directory to keep data in (default: memory only)")
    serve.set_defaults(handler=_run("serve", "serve_db"))


def _add_shard_setup(commands: Commands, common: _Parser) -> None:
    shard = commands.add_parser(
        "shard-setup", parents=[common], help="shard the collections on a cluster (idempotent)"
    )
    shard.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    shard.add_argument(
        "--key-vault-namespace", metavar="DB.COLL", help="the encryption key vault (reported, kept unsharded)"
    )
    shard.set_defaults(handler=_run("shard_setup", "shard_setup"))


# --- option types ---------------------------------------------------------------------------------


_COMMANDS = (_add_demo, _add_sessions, _add_metrics, add_users, _add_shard_setup, _add_serve_db)


def _add_window(parser: argparse.ArgumentParser, *, what: str) -> None:
    parser.add_argument(
        "--since", type=parse_when, metavar="ISO", help=f"{what} at or after (UTC if no zone)"
    )
    parser.add_argument("--until", type=parse_when, metavar="ISO", help=f"{what} before (UTC if no zone)")


def _add_meta(parser: argparse.ArgumentParser, *, default: object = None) -> None:
    parser.add_argument(
        "--meta",
        type=parse_key_value,
        action="append",
        default=default,
        metavar="KEY=VALUE",
        help="session metadata equals VALUE (a string); repeat to combine",
    )


# --- handlers: imported when run, so `--help` and `serve-db` stay light ----------------------------


def _run(module: str, name: str) -> Handler:
    """A handler that imports ``cli.<module>`` when it runs and calls its ``name``."""

    def handler(args: argparse.Namespace) -> int:
        command: Handler = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return command(args)

    return handler


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


def parse_page_size(value: str) -> int:
    """A page size between 1 and 1000, for argparse ``type=``."""
    number = parse_positive(value)
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000: {value!r}")
    return number


def parse_port(value: str) -> int:
    """A TCP port (0: any free port), for argparse ``type=``."""
    number = parse_positive(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port between 0 and 65535: {value!r}")
    return number


def parse_positive(value: str) -> int:
    """A non-negative int, for argparse ``type=``."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value!r}")
    return number
