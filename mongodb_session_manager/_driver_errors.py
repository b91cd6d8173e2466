"""The one place where pymongo exceptions become this package's errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from pymongo import errors as pymongo_errors

from ._redact import redact_uri
from .errors import (
    ConfigurationError,
    MessageTooLargeError,
    MongoDBSessionError,
    StoreUnavailableError,
)

# Server error codes that mean "this document is too large".
_TOO_LARGE_CODES = frozenset({10334, 17419, 17420, 2})


class DuplicateKey(Exception):
    """Internal: a write hit a unique index (a taken message id, or a racing session upsert).

    ``index``: the position of the failed write in an ordered bulk write, when known.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ClientBulkWriteUnsupported(Exception):
    """Internal: the server (or client) cannot run a client-level bulkWrite (MongoDB < 8.0)."""


@contextmanager
def translate_driver_errors(operation: str) -> Iterator[None]:
    """Map driver exceptions raised inside the block to the package's error tree."""
    try:
        yield
    except (DuplicateKey, ClientBulkWriteUnsupported, MongoDBSessionError):
        raise
    except pymongo_errors.DuplicateKeyError as exc:
        raise DuplicateKey(str(exc)) from exc
    except pymongo_errors.ClientBulkWriteException as exc:
        _raise_for_bulk(exc, operation)
    except pymongo_errors.InvalidOperation as exc:
        if "bulk_write" in str(exc) or "8.0" in str(exc):
            raise ClientBulkWriteUnsupported(str(exc)) from exc
        raise MongoDBSessionError(_describe(operation, exc)) from exc
    except pymongo_errors.DocumentTooLarge as exc:
        raise MessageTooLargeError(_too_large(operation, exc)) from exc
    except (
        pymongo_errors.ConnectionFailure,
        pymongo_errors.ExecutionTimeout,
        pymongo_errors.WTimeoutError,
    ) as exc:
        raise StoreUnavailableError(_describe(operation, exc)) from exc
    except pymongo_errors.ConfigurationError as exc:
        raise ConfigurationError(_describe(operation, exc)) from exc
    except pymongo_errors.OperationFailure as exc:
        if exc.code in _TOO_LARGE_CODES and "too large" in str(exc).lower():
            raise MessageTooLargeError(_too_large(operation, exc)) from exc
        if exc.code == 59:  # CommandNotFound: bulkWrite on a server older than 8.0
            raise ClientBulkWriteUnsupported(str(exc)) from exc
        raise MongoDBSessionError(_describe(operation, exc)) from exc
    except pymongo_errors.PyMongoError as exc:
        raise MongoDBSessionError(_describe(operation, exc)) from exc


def _raise_for_bulk(exc: pymongo_errors.ClientBulkWriteException, operation: str) -> NoReturn:
    write_errors = exc.write_errors or []
    first = write_errors[0] if write_errors else None
    code = first.get("code") if isinstance(first, dict) else None
    if code == 11000 and isinstance(first, dict):
        raise DuplicateKey(str(first.get("errmsg", "")), index=first.get("idx")) from exc
    top = exc.error
    if isinstance(top, pymongo_errors.PyMongoError):
        with translate_driver_errors(operation):
            raise top from exc
    detail = first.get("errmsg", str(exc)) if isinstance(first, dict) else str(exc)
    if code in _TOO_LARGE_CODES and "too large" in str(detail).lower():
        raise MessageTooLargeError(_too_large(operation, Exception(detail))) from exc
    raise MongoDBSessionError(f"{operation} failed: {redact_uri(str(detail))}") from exc


def _describe(operation: str, exc: BaseException) -> str:
    # Server selection errors append the whole topology description: keep the first line's worth.
    detail = str(exc).split(", Topology Description", 1)[0]
    return f"{operation} failed: {type(exc).__name__}: {redact_uri(detail)}"


def _too_large(operation: str, exc: BaseException) -> str:
    return (
        f"{operation}: the message does not fit in one MongoDB document (16 MiB); "
        f"store large files elsewhere and reference them ({redact_uri(str(exc))})"
    )
