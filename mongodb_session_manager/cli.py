"""The ``mongodb-session-manager`` command: demo, browse sessions, read metrics, run a local server.

Every failure is one line on stderr and an exit code a script can test::

    0 ok   1 error   2 bad usage or connection string   3 MongoDB unreachable
    4 session not found   5 session already exists   130 interrupted

Human output is drawn with ``rich`` (``pip install 'mongodb-session-manager[cli]'``);
``--json`` gives machine output on every read command and needs nothing extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import schema
from ._cli_common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CLIError,
    parse_key_value,
    parse_positive,
    parse_when,
)
from ._redact import redact_uri
from .embedded import EmbeddedServerError
from .errors import (
    ConfigurationError,
    InvalidSessionInputError,
    MongoDBSessionError,
    SessionNotFoundError,
    StoreUnavailableError,
)

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

_PROG = "mongodb-session-manager"
# Defaults of the options accepted before and after the command. They are filled in after parsing:
# argparse shares option objects between a parser and its parents, so a default set on the main
# parser would also overwrite, from the subcommand, a value given before the subcommand.
_GLOBAL_DEFAULTS = {
    "uri": None,
    "database": schema.DEFAULT_DATABASE_NAME,
    "collection": schema.DEFAULT_COLLECTION_NAME,
    "json": False,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also when argparse rejects the arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for name, value in _GLOBAL_DEFAULTS.items():  # options given nowhere (they are SUPPRESSed)
        if not hasattr(args, name):
            setattr(args, name, value)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CLIError as exc:
        return _fail(str(exc), exc.exit_code)
    except StoreUnavailableError as exc:
        return _fail(_unavailable(args, exc), EXIT_UNAVAILABLE)
    except SessionNotFoundError as exc:
        return _fail(str(exc), EXIT_NOT_FOUND)
    except EmbeddedServerError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except (InvalidSessionInputError, ConfigurationError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MongoDBSessionError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except OSError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)


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
        prog=_PROG,
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
    _add_window(metrics, what="turns started")
    metrics.add_argument("--agent", metavar="AGENT_ID", help="only this agent's turns")
    metrics.add_argument("--model", metavar="MODEL_ID", help="only turns of this model")
    _add_meta(metrics)
    metrics.add_argument("--group-by", choices=("day", "hour", "model", "agent"), help="one row per group")
    metrics.add_argument("--format", choices=("table", "json", "csv"), default="table", help="default: table")
    metrics.set_defaults(handler=_metrics)


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
        from . import _cli_sessions

        command: Handler = getattr(_cli_sessions, name)
        return command(args)

    return handler


def _metrics(args: argparse.Namespace) -> int:
    from ._cli_metrics import metrics

    return metrics(args)


def _serve_db(args: argparse.Namespace) -> int:
    from ._cli_serve import serve_db

    return serve_db(args)


# --- errors -------------------------------------------------------------------------------------


def _fail(message: str, exit_code: int) -> int:
    line = " ".join(redact_uri(message).split())
    sys.stderr.write(f"{_PROG}: error: {line}\n")
    return exit_code


def _unavailable(args: argparse.Namespace, exc: StoreUnavailableError) -> str:
    detail = str(exc).split(", Topology Description")[0]
    uri = args.uri or os.environ.get("MONGODB_URI") or "(no URI)"
    return f"cannot reach MongoDB at {redact_uri(uri)}: {detail}"
