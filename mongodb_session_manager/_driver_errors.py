"""The one place where pymongo exceptions become this package's errors.

Errors are told apart by exception type and server error code, never by message text: the
wording changes between servers and releases (SecantusDB and mongod already differ), codes and
types do not. :data:`RULES` is the whole mapping, read top to bottom; the first row that fits
wins. ``translate_driver_errors`` applies it to whatever a ``with`` block raises.

Two results are internal signals, not errors: the repositories catch them and never let them out.

- `DuplicateKey`: a write hit a unique index. The message-id flow then allocates a free id.
- `ClientBulkWriteUnsupported`: this client cannot run a client-level ``bulkWrite``; the
  repository writes the same operations one by one instead.

Messages name the operation, mask connection-string passwords, quote only the server's own
``errmsg`` (never the "full error" pymongo appends: it carries document contents and key values),
and replace file paths the server mentions with ``<path>``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import CodeType, TracebackType
from typing import Any, NamedTuple, NoReturn

import bson
from bson import errors as bson_errors
from pymongo import AsyncMongoClient, MongoClient
from pymongo import errors as driver

from ._redact import redact_uri
from .errors import (
    ConfigurationError,
    InvalidSessionInputError,
    MessageTooLargeError,
    MongoDBSessionError,
    StoreUnavailableError,
)

__all__ = [
    "RULES",
    "ClientBulkWriteUnsupported",
    "DuplicateKey",
    "Rule",
    "translate_driver_errors",
]


class DuplicateKey(Exception):
    """Internal: a write hit a unique index (a taken message id, or a racing session upsert).

    ``index``: the position of the failed write in an ordered bulk write, when known. Plans put
    only idempotent upserts before their message insert, so the flow may send a plan again.
    """

    def __init__(self, message: str = "", index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ClientBulkWriteUnsupported(Exception):
    """Internal: the server (or client) cannot run a client-level bulkWrite (MongoDB < 8.0)."""


# --- where an error was raised -----------------------------------------------------------------
#
# Two kinds of rows hold only for errors raised inside one driver call. The call is found by its
# code object on the exception's traceback, which pymongo cannot reword.
#
# - ``MongoClient.bulk_write`` (and ``AsyncMongoClient``'s; motor runs the former in a thread).
#   pymongo 4.20 raises ``InvalidOperation`` there, before sending anything, when the
#   connection's ``maxWireVersion`` is below 25, i.e. MongoDB < 8.0 (``client_bulk.py``), and
#   when the client auto-encrypts or is unacknowledged (``w=0``) with ordered writes
#   (``mongo_client.py``). The exception has no code, and the same type raised by other calls
#   means "client closed", so the call it came from is what tells them apart. Every one of these
#   clients can write the operations one by one, which is what the repositories then do (a closed
#   client falls back too, and its first single write fails as any closed client does). A server
#   that reports wire version 25 without the command answers it with CommandNotFound (59);
#   CommandNotSupported (115) is the answer for a command a server (or a proxy in front of it)
#   knows but does not run in its configuration. The alternative, comparing the wire version
#   before the call, needs the topology discovered first and misses the encryption and ``w=0``
#   cases.
# - ``MongoClient.__init__`` (and ``AsyncMongoClient``'s). pymongo checks option values with
#   plain ``ValueError`` and ``TypeError`` (``pymongo.common``): there, they mean a wrong setting.
#   Raised by any other call they would be a bug in this package, and stay loud.

CLIENT_BULK_WRITE = "client bulk write"
CLIENT_CONSTRUCTOR = "client constructor"


def _code_of(function: Any) -> CodeType:
    code: CodeType = inspect.unwrap(function).__code__  # past ``functools.wraps`` decorators
    return code


_ORIGINS: dict[CodeType, str] = {
    _code_of(MongoClient.bulk_write): CLIENT_BULK_WRITE,
    _code_of(AsyncMongoClient.bulk_write): CLIENT_BULK_WRITE,
    _code_of(MongoClient.__init__): CLIENT_CONSTRUCTOR,
    _code_of(AsyncMongoClient.__init__): CLIENT_CONSTRUCTOR,
}


def _origins(traceback: TracebackType | None) -> frozenset[str]:
    found: set[str] = set()
    while traceback is not None:
        origin = _ORIGINS.get(traceback.tb_frame.f_code)
        if origin is not None:
            found.add(origin)
        traceback = traceback.tb_next
    return frozenset(found)


# --- the table ---------------------------------------------------------------------------------

# MongoDB's 16 MiB document limit (``maxBsonObjectSize`` on every server since 1.8).
MAX_DOCUMENT_SIZE = 16 * 1024 * 1024

DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})
# 10334 BSONObjectTooLarge; 17419 update result too large; 17420 document to upsert too large.
TOO_LARGE_CODES = frozenset({10334, 17419, 17420})
# What the server answers for a command it lacks: CommandNotFound, CommandNotSupported.
COMMAND_MISSING_CODES = frozenset({59, 115})
# Codes MongoDB's retryable-writes specification treats as transient (pymongo turns most of
# them into ``NotPrimaryError`` itself; a reply it does not, e.g. inside a bulk write, lands here),
# plus MaxTimeMSExpired (50) and WriteConcernFailed (64, a write-concern timeout).
TRANSIENT_CODES = frozenset({6, 7, 50, 64, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


class Rule(NamedTuple):
    """One row: errors of ``types`` (with one of ``codes``, raised in ``origin``) become ``becomes``."""

    types: type[BaseException] | tuple[type[BaseException], ...]
    codes: frozenset[int] | None  # None: whatever the code, or none
    origin: str | None  # None: raised anywhere
    becomes: type[Exception]

    def matches(self, error: BaseException, origins: frozenset[str]) -> bool:
        if not isinstance(error, self.types):
            return False
        if self.codes is not None and _code(error) not in self.codes:
            return False
        return self.origin is None or self.origin in origins


_Failure = driver.OperationFailure  # a server reply with an error code (and its subclasses)

RULES: tuple[Rule, ...] = (
    # driver exception             server codes           raised in           becomes
    Rule(driver.DuplicateKeyError, None,                  None,               DuplicateKey),
    Rule(_Failure,                 DUPLICATE_KEY_CODES,   None,               DuplicateKey),
    Rule(driver.InvalidOperation,  None,                  CLIENT_BULK_WRITE,  ClientBulkWriteUnsupported),
    Rule(_Failure,                 COMMAND_MISSING_CODES, CLIENT_BULK_WRITE,  ClientBulkWriteUnsupported),
    Rule((ValueError, TypeError),  None,                  CLIENT_CONSTRUCTOR, ConfigurationError),
    Rule(driver.DocumentTooLarge,  None,                  None,               MessageTooLargeError),
    Rule(_Failure,                 TOO_LARGE_CODES,       None,               MessageTooLargeError),
    Rule(driver.ConnectionFailure, None,                  None,               StoreUnavailableError),
    Rule(driver.ExecutionTimeout,  None,                  None,               StoreUnavailableError),
    Rule(driver.WTimeoutError,     None,                  None,               StoreUnavailableError),
    Rule(_Failure,                 TRANSIENT_CODES,       None,               StoreUnavailableError),
    Rule(driver.ConfigurationError, None,                 None,               ConfigurationError),
    Rule(driver.InvalidName,       None,                  None,               ConfigurationError),
    Rule(bson_errors.InvalidDocument, None,               None,               InvalidSessionInputError),
    Rule(bson_errors.InvalidStringData, None,             None,               InvalidSessionInputError),
    Rule(driver.PyMongoError,      None,                  None,               MongoDBSessionError),
    Rule(bson_errors.BSONError,    None,                  None,               MongoDBSessionError),
)  # fmt: skip

_BULK_ERRORS = (driver.ClientBulkWriteException, driver.BulkWriteError)
_INTERNAL = (DuplicateKey, ClientBulkWriteUnsupported, MongoDBSessionError)


@contextmanager
def translate_driver_errors(operation: str) -> Iterator[None]:
    """Map driver exceptions raised inside the block to the package's error tree.

    ``operation`` ("read session", "write message"...) starts every message. Exceptions no row
    covers (``asyncio.CancelledError``, a bug's ``KeyError``) pass through unchanged.
    """
    try:
        yield
    except _INTERNAL:
        raise
    except _BULK_ERRORS as exc:
        _raise_for_bulk(exc, operation)
    except Exception as exc:
        becomes = _classify(exc, _origins(exc.__traceback__))
        if becomes is None:
            raise
        raise becomes(_message(operation, exc, becomes)) from exc


def _classify(error: BaseException, origins: frozenset[str]) -> type[Exception] | None:
    for rule in RULES:
        if rule.matches(error, origins):
            return rule.becomes
    return None


def _raise_for_bulk(exc: driver.ClientBulkWriteException | driver.BulkWriteError, operation: str) -> NoReturn:
    """A failed bulk write is its first write error, else its top-level error, through ``RULES``."""
    origins = _origins(exc.__traceback__)
    if isinstance(exc, driver.ClientBulkWriteException):
        origins |= {CLIENT_BULK_WRITE}
    details: Mapping[str, Any] = exc.details or {}
    error = _first_error(details)
    becomes = _classify(error, origins) or MongoDBSessionError
    if becomes is DuplicateKey:
        raise DuplicateKey(_message(operation, error, becomes), index=_index(details)) from exc
    if becomes is MongoDBSessionError and _code(error) == 2 and _inserts_too_large(details):
        becomes = MessageTooLargeError
    raise becomes(_message(operation, error, becomes)) from exc


def _first_error(details: Mapping[str, Any]) -> BaseException:
    """The one pymongo error that stands for a failed bulk write (the result document's first)."""
    write_errors = details.get("writeErrors") or []
    if write_errors:
        first = write_errors[0]
        return driver.WriteError(first.get("errmsg", ""), first.get("code"), first)
    top = details.get("error")  # a network or command error; pymongo keeps the exception
    if isinstance(top, BaseException):
        return top
    concern_errors = details.get("writeConcernErrors") or []
    if concern_errors:
        first = concern_errors[0]
        return driver.WriteConcernError(first.get("errmsg", ""), first.get("code"), first)
    return driver.OperationFailure("the bulk write failed", 65, dict(details))


def _index(details: Mapping[str, Any]) -> int | None:
    write_errors = details.get("writeErrors") or [{}]
    index = write_errors[0].get("idx", write_errors[0].get("index"))  # client-level / collection
    return index if isinstance(index, int) else None


def _inserts_too_large(details: Mapping[str, Any]) -> bool:
    """Real mongod answers BadValue (2), not 10334, for an insert over the limit in a bulkWrite.

    BadValue means many things, so it counts only when the insert's document (pymongo attaches
    the failed operation to the write error) really is over MongoDB's 16 MiB.
    """
    write_errors = details.get("writeErrors") or [{}]
    op = write_errors[0].get("op")
    if not isinstance(op, Mapping) or not isinstance(op.get("document"), Mapping):
        return False
    return len(bson.encode(op["document"])) > MAX_DOCUMENT_SIZE


# --- messages ----------------------------------------------------------------------------------

_MAX_DETAIL = 500
# Absolute POSIX paths of two or more parts (not the "//host/db" of a URI), and Windows paths.
_PATHS = re.compile(r"(?<![\w.:/~])(?:/[\w.@+-]+){2,}/?|\b[A-Za-z]:\\[^\s'\",;)]+")


def _code(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def _server_text(text: object) -> str:
    """Server-sent text, safe to show: no passwords, no server file paths, bounded length."""
    cleaned = _PATHS.sub("<path>", redact_uri(str(text or "")))
    return cleaned if len(cleaned) <= _MAX_DETAIL else cleaned[: _MAX_DETAIL - 3] + "..."


def _detail(error: BaseException) -> str:
    if isinstance(error, driver.OperationFailure):
        details = error.details if isinstance(error.details, Mapping) else {}
        errmsg = details.get("errmsg") or (error.args[0] if error.args else "")
        return f"(code {error.code}) {_server_text(errmsg)}"
    # Server selection errors append the whole topology description: keep the first line's worth.
    text = redact_uri(str(error).split(", Topology Description", 1)[0])
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


# What to do when no server answers: the first thing a new user without MongoDB meets.
NO_SERVER_HINT = (
    "is a MongoDB server running there? Start a local one with "
    "`mongodb-session-manager serve-db` and set MONGODB_URI to the URI it prints"
)


def _message(operation: str, error: BaseException, becomes: type[Exception]) -> str:
    if becomes is MessageTooLargeError:
        return _too_large(operation, _detail(error))
    message = f"{operation} failed: {type(error).__name__}: {_detail(error)}"
    if isinstance(error, driver.ServerSelectionTimeoutError):
        return f"{message} ({NO_SERVER_HINT})"
    return message


def _too_large(operation: str, detail: str) -> str:
    return (
        f"{operation}: the message does not fit in one MongoDB document (16 MiB); "
        f"store large files elsewhere and reference them ({detail})"
    )
