"""The ``mongodb-session-manager`` command: demo, browse sessions, read metrics, run a local server.

Every failure is one line on stderr and an exit code a script can test::

    0 ok   1 error   2 bad usage or connection string   3 MongoDB unreachable
    4 session not found   5 session already exists   6 authentication failed or not authorized
    130 interrupted

Human output is drawn with ``rich`` (``pip install 'mongodb-session-manager[cli]'``);
``--json`` gives machine output on every command (errors too: one JSON object on stderr) and
needs nothing extra. No output holds a password: every error line is scrubbed of the password
of the connection string in use, in every form it was written.

The package: :mod:`._parser` (arguments), :mod:`._common` (exit codes, connecting),
:mod:`._output` (tables, JSON, CSV), :mod:`._hints` (command lines to suggest), one module per
command (:mod:`.sessions`, :mod:`.transfer` for export files, :mod:`.metrics`, :mod:`.serve`,
:mod:`.demo`), and :func:`main` here, which maps every error to its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .._redact import password_forms, redact_connection_string, scrub
from ..embedded import EmbeddedServerError
from ..errors import (
    ConfigurationError,
    InvalidSessionInputError,
    MongoDBSessionError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ._common import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CLIError,
    configured_uri,
)
from ._parser import PROG, Handler, UsageError, parse_args

__all__ = ["main"]

# Server codes of a refused login and of a command the user may not run.
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also when argparse rejects the arguments)."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(words)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except UsageError as exc:
        return _usage_error(words, exc)
    handler: Handler = args.handler
    try:
        return handler(args)
    except BaseException as exc:
        if not isinstance(exc, (Exception, KeyboardInterrupt)):
            raise
        message, exit_code = _describe(args, exc)
        return _fail(args, message, exit_code)


def _describe(args: argparse.Namespace, exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code an error is reported with."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, CLIError):
        return str(exc), exc.exit_code
    code = getattr(exc.__cause__, "code", None)
    if isinstance(exc, MongoDBSessionError) and code == _AUTHENTICATION_FAILED:
        return _authentication_failed(args), EXIT_AUTH
    if isinstance(exc, MongoDBSessionError) and code == _UNAUTHORIZED:
        return f"not authorized: {exc}", EXIT_AUTH
    if isinstance(exc, StoreUnavailableError):
        return _unavailable(args, exc), EXIT_UNAVAILABLE
    if isinstance(exc, SessionNotFoundError):
        return str(exc), EXIT_NOT_FOUND
    if isinstance(exc, EmbeddedServerError):
        return str(exc).split(". Last server output:", 1)[0], EXIT_ERROR
    if isinstance(exc, (InvalidSessionInputError, ConfigurationError)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, MongoDBSessionError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}", EXIT_ERROR
    raise exc  # a bug: let its traceback out


def _usage_error(words: list[str], exc: UsageError) -> int:
    """Bad arguments, reported like argparse does (or as JSON), with any password masked.

    The arguments were not parsed, so every word that may be a connection string is scrubbed.
    """
    secrets = [form for word in [*words, os.environ.get("MONGODB_URI", "")] for form in password_forms(word)]
    message = scrub(exc.message, secrets)
    if "--json" in words:
        sys.stderr.write(json.dumps({"error": message, "exit_code": EXIT_USAGE}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"{exc.usage}{exc.prog}: error: {message}\n")
    return EXIT_USAGE


def _fail(args: argparse.Namespace, message: str, exit_code: int) -> int:
    uri = configured_uri(args)
    line = scrub(" ".join(message.split()), password_forms(uri) if uri else [])
    if getattr(args, "json", False):
        sys.stderr.write(json.dumps({"error": line, "exit_code": exit_code}, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"{PROG}: error: {line}\n")
    return exit_code


def _where(args: argparse.Namespace) -> str:
    uri = configured_uri(args)
    return redact_connection_string(uri) if uri else "(no URI)"


def _authentication_failed(args: argparse.Namespace) -> str:
    return (
        f"authentication failed at {_where(args)}: check the user name, the password "
        "(percent-encoded in the URI) and authSource"
    )


def _unavailable(args: argparse.Namespace, exc: StoreUnavailableError) -> str:
    detail = str(exc).split(", Topology Description")[0]
    return f"cannot reach MongoDB at {_where(args)}: {detail}"
