"""The ``mongodb-session-manager`` command: demo, browse sessions, read metrics, run a local server.

Every failure is one line on stderr and an exit code a script can test::

    0 ok   1 error   2 bad usage or connection string   3 MongoDB unreachable
    4 session not found   5 session already exists   130 interrupted

Human output is drawn with ``rich`` (``pip install 'mongodb-session-manager[cli]'``);
``--json`` gives machine output on every read command and needs nothing extra.

The package: :mod:`._parser` (arguments), :mod:`._common` (exit codes, connecting),
:mod:`._output` (tables, JSON, CSV), one module per command (:mod:`.sessions`,
:mod:`.transfer` for export files, :mod:`.metrics`, :mod:`.serve`, :mod:`.demo`), and
:func:`main` here, which maps every error to its exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .._redact import redact_uri
from ..embedded import EmbeddedServerError
from ..errors import (
    ConfigurationError,
    InvalidSessionInputError,
    MongoDBSessionError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CLIError,
)
from ._parser import PROG, Handler, parse_args

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also when argparse rejects the arguments)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse already printed (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
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


def _fail(message: str, exit_code: int) -> int:
    line = " ".join(redact_uri(message).split())
    sys.stderr.write(f"{PROG}: error: {line}\n")
    return exit_code


def _unavailable(args: argparse.Namespace, exc: StoreUnavailableError) -> str:
    detail = str(exc).split(", Topology Description")[0]
    uri = args.uri or os.environ.get("MONGODB_URI") or "(no URI)"
    return f"cannot reach MongoDB at {redact_uri(uri)}: {detail}"
