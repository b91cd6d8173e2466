"""What every CLI command shares: exit codes, the one CLI error, connecting, parsing options."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from pymongo import MongoClient

from ._driver_errors import translate_driver_errors
from ._redact import redact_uri
from .errors import ConfigurationError
from .pool import new_client
from .repository import MongoDBSessionRepository

Document = dict[str, Any]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_INTERRUPTED = 130

SERVER_SELECTION_TIMEOUT_MS = 3000
_SCHEMES = ("mongodb://", "mongodb+srv://")


class CLIError(Exception):
    """A failure the CLI reports as one line on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def resolve_uri(args: argparse.Namespace) -> str:
    """``--uri``, else ``MONGODB_URI``, else a clear error."""
    uri: str | None = args.uri or os.environ.get("MONGODB_URI")
    if not uri:
        raise CLIError("no MongoDB connection string: pass --uri or set MONGODB_URI", EXIT_USAGE)
    return uri


def connect(uri: str) -> MongoClient[Document]:
    """A new client with a short server selection timeout (unless the URI sets its own).

    Nothing is sent yet: an unreachable server shows up on the first command, as
    ``StoreUnavailableError``, within the timeout.
    """
    if not uri.startswith(_SCHEMES):
        raise CLIError(
            f"not a MongoDB connection string (expected mongodb:// or mongodb+srv://): {redact_uri(uri)}",
            EXIT_USAGE,
        )
    options: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():
        options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pymongo warns (and ignores) bad option values
            with translate_driver_errors("connect"):
                return new_client(uri, **options)
    except (ValueError, UserWarning) as exc:
        raise CLIError(f"invalid connection string {redact_uri(uri)}: {exc}", EXIT_USAGE) from exc
    except ConfigurationError as exc:
        raise CLIError(f"invalid connection string {redact_uri(uri)}: {exc}", EXIT_USAGE) from exc


@contextmanager
def open_repository(args: argparse.Namespace) -> Iterator[MongoDBSessionRepository]:
    """A repository on a client of its own, closed when the command ends."""
    client = connect(resolve_uri(args))
    try:
        yield MongoDBSessionRepository(
            database_name=args.database, collection_name=args.collection, client=client
        )
    finally:
        client.close()


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
    if key.startswith("$"):
        raise argparse.ArgumentTypeError(f"metadata keys must not start with '$': {key!r}")
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
