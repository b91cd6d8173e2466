"""What every CLI command shares: exit codes, the one CLI error, connecting to MongoDB."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient

from .._driver_errors import translate_driver_errors
from .._redact import redact_connection_string
from ..errors import ConfigurationError
from ..pool import new_client
from ..repository import MongoDBSessionRepository

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "SERVER_SELECTION_TIMEOUT_MS",
    "CLIError",
    "configured_uri",
    "connect",
    "open_repository",
    "resolve_uri",
]

Document = dict[str, Any]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_AUTH = 6
EXIT_INTERRUPTED = 130

SERVER_SELECTION_TIMEOUT_MS = 3000
_SCHEMES = ("mongodb://", "mongodb+srv://")


class CLIError(Exception):
    """A failure the CLI reports as one line on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def configured_uri(args: argparse.Namespace) -> str | None:
    """``--uri``, else ``MONGODB_URI``, else None (the one connection string a command may use)."""
    uri: str | None = getattr(args, "uri", None) or os.environ.get("MONGODB_URI")
    return uri


def resolve_uri(args: argparse.Namespace) -> str:
    """``--uri``, else ``MONGODB_URI``, else a clear error."""
    uri = configured_uri(args)
    if not uri:
        raise CLIError("no MongoDB connection string: pass --uri or set MONGODB_URI", EXIT_USAGE)
    return uri


def connect(uri: str) -> MongoClient[Document]:
    """A new client with a short server selection timeout (unless the URI sets its own).

    Nothing is sent yet: an unreachable server shows up on the first command, as
    ``StoreUnavailableError``, within the timeout. The connection string is checked here, and a
    bad one is reported without its password (and without pymongo's wording, which may quote it).
    """
    shown = redact_connection_string(uri)
    if not uri.startswith(_SCHEMES):
        raise CLIError(
            f"not a MongoDB connection string (expected mongodb:// or mongodb+srv://, "
            f"in lower case): {shown}",
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
    except (ValueError, UserWarning, ConfigurationError) as exc:
        raise CLIError(f"invalid connection string {shown}: {exc}", EXIT_USAGE) from exc


@contextmanager
def open_repository(args: argparse.Namespace) -> Iterator[MongoDBSessionRepository]:
    """A repository on a client of its own, closed when the command ends.

    Without a content cache: a command reads each file once (an export, a prune's archive), so
    keeping their bytes would only hold memory.
    """
    client = connect(resolve_uri(args))
    try:
        yield MongoDBSessionRepository(
            database_name=args.database,
            collection_name=args.collection,
            client=client,
            large_content_cache_bytes=0,
        )
    finally:
        client.close()
