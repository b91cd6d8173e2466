"""The driver-error edge: every row of ``_driver_errors.RULES``, and bulk-write failures.

Each case raises a real pymongo (or bson) exception inside ``translate_driver_errors``; cases
for rows that hold only inside one driver call make that call for real (no server is needed:
pymongo refuses them before it sends anything).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import bson
import pytest
from bson import errors as bson_errors
from pymongo import AsyncMongoClient, InsertOne, MongoClient
from pymongo import errors as driver

from mongodb_session_manager import (
    ConfigurationError,
    InvalidSessionInputError,
    MessageTooLargeError,
    MongoDBSessionError,
    StoreUnavailableError,
)
from mongodb_session_manager._driver_errors import (
    CLIENT_BULK_WRITE,
    CLIENT_CONSTRUCTOR,
    COMMAND_MISSING_CODES,
    DUPLICATE_KEY_CODES,
    RULES,
    TOO_LARGE_CODES,
    TRANSIENT_CODES,
    ClientBulkWriteUnsupported,
    DuplicateKey,
    Rule,
    translate_driver_errors,
)

OPERATION = "write message"
UNREACHABLE = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100"


def translated(raise_it: Callable[[], object], operation: str = OPERATION) -> BaseException:
    """What ``translate_driver_errors`` turns the exception ``raise_it`` raises into."""
    try:
        with translate_driver_errors(operation):
            raise_it()
    except BaseException as exc:  # CancelledError included
        return exc
    raise AssertionError("nothing was raised")


def raising(error: BaseException) -> Callable[[], NoReturn]:
    def raise_it() -> NoReturn:
        raise error

    return raise_it


def row(types: Any, codes: frozenset[int] | None, origin: str | None) -> Rule:
    """The one row of the table with these columns (the test fails if it is gone)."""
    (found,) = (r for r in RULES if (r.types, r.codes, r.origin) == (types, codes, origin))
    return found


# --- the real driver calls the origin rows are about ----------------------------------------


def unacknowledged_ordered_bulk_write() -> None:
    client: MongoClient[dict[str, Any]]
    with MongoClient(UNREACHABLE, w=0) as client:  # refused before any I/O
        client.bulk_write([InsertOne({"a": 1}, namespace="db.coll")], ordered=True)


def bulk_write_on_a_closed_client() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(UNREACHABLE, connect=False)
    client.close()
    client.bulk_write([InsertOne({"a": 1}, namespace="db.coll")])


def async_bulk_write_refused() -> None:
    async def refused() -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(UNREACHABLE, w=0)
        try:
            await client.bulk_write([InsertOne({"a": 1}, namespace="db.coll")], ordered=True)
        finally:
            await client.close()

    asyncio.run(refused())


def client_with(**options: Any) -> Callable[[], None]:
    def construct() -> None:
        MongoClient("mongodb://user:s3cr3t@127.0.0.1:1/", connect=False, **options).close()

    return construct


def async_client_on_port_99999() -> None:
    AsyncMongoClient("mongodb://127.0.0.1:99999/", connect=False)


def bulk_failure(**details: Any) -> driver.ClientBulkWriteException:
    result = {"error": None, "writeErrors": [], "writeConcernErrors": [], "nInserted": 0, **details}
    return driver.ClientBulkWriteException(result, False)


def unencodable_document() -> None:
    bson.encode({1: "keys must be strings"})  # type: ignore[dict-item]


def bad_database_name() -> None:
    client: MongoClient[dict[str, Any]]
    with MongoClient(UNREACHABLE, connect=False) as client:
        client["bad.name"]


# --- one case (or more) per row ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    rule: Rule
    raise_it: Callable[[], object]
    becomes: type[BaseException]


CASES = [
    Case(
        "DuplicateKeyError",
        row(driver.DuplicateKeyError, None, None),
        raising(driver.DuplicateKeyError("E11000 duplicate key error", 11000, {"errmsg": "E11000"})),
        DuplicateKey,
    ),
    Case(
        "code 11001 (duplicate key, older servers)",
        row(driver.OperationFailure, DUPLICATE_KEY_CODES, None),
        raising(driver.OperationFailure("E11001 duplicate key on update", 11001)),
        DuplicateKey,
    ),
    Case(
        "InvalidOperation from MongoClient.bulk_write (w=0, ordered)",
        row(driver.InvalidOperation, None, CLIENT_BULK_WRITE),
        unacknowledged_ordered_bulk_write,
        ClientBulkWriteUnsupported,
    ),
    Case(
        "InvalidOperation from MongoClient.bulk_write (closed client)",
        row(driver.InvalidOperation, None, CLIENT_BULK_WRITE),
        bulk_write_on_a_closed_client,
        ClientBulkWriteUnsupported,
    ),
    Case(
        "InvalidOperation from AsyncMongoClient.bulk_write",
        row(driver.InvalidOperation, None, CLIENT_BULK_WRITE),
        async_bulk_write_refused,
        ClientBulkWriteUnsupported,
    ),
    Case(
        "CommandNotFound (59) answered to bulkWrite",
        row(driver.OperationFailure, COMMAND_MISSING_CODES, CLIENT_BULK_WRITE),
        raising(bulk_failure(error=driver.OperationFailure("no such command: 'bulkWrite'", 59))),
        ClientBulkWriteUnsupported,
    ),
    Case(
        "CommandNotSupported (115) answered to bulkWrite",
        row(driver.OperationFailure, COMMAND_MISSING_CODES, CLIENT_BULK_WRITE),
        raising(bulk_failure(error=driver.OperationFailure("bulkWrite is not supported", 115))),
        ClientBulkWriteUnsupported,
    ),
    Case(
        "ValueError from MongoClient() (maxPoolSize=-1)",
        row((ValueError, TypeError), None, CLIENT_CONSTRUCTOR),
        client_with(maxPoolSize=-1),
        ConfigurationError,
    ),
    Case(
        "TypeError from MongoClient() (document_class=5)",
        row((ValueError, TypeError), None, CLIENT_CONSTRUCTOR),
        client_with(document_class=5),
        ConfigurationError,
    ),
    Case(
        "ValueError from AsyncMongoClient() (port 99999)",
        row((ValueError, TypeError), None, CLIENT_CONSTRUCTOR),
        async_client_on_port_99999,
        ConfigurationError,
    ),
    Case(
        "DocumentTooLarge",
        row(driver.DocumentTooLarge, None, None),
        raising(driver.DocumentTooLarge("BSON document too large (17826014 bytes)")),
        MessageTooLargeError,
    ),
    Case(
        "BSONObjectTooLarge (10334)",
        row(driver.OperationFailure, TOO_LARGE_CODES, None),
        raising(driver.WriteError("Resulting document after update is larger than 16777216", 10334)),
        MessageTooLargeError,
    ),
    Case(
        "update result too large (17419)",
        row(driver.OperationFailure, TOO_LARGE_CODES, None),
        raising(driver.OperationFailure("Resulting document after update is larger than 16777216", 17419)),
        MessageTooLargeError,
    ),
    Case(
        "document to upsert too large (17420)",
        row(driver.OperationFailure, TOO_LARGE_CODES, None),
        raising(driver.WriteError("Document to upsert is larger than 16777216", 17420)),
        MessageTooLargeError,
    ),
    Case(
        "ServerSelectionTimeoutError",
        row(driver.ConnectionFailure, None, None),
        raising(
            driver.ServerSelectionTimeoutError(
                "127.0.0.1:1: [Errno 111] Connection refused, Timeout: 0.3s, "
                "Topology Description: <TopologyDescription id: 1, servers: [...]>"
            )
        ),
        StoreUnavailableError,
    ),
    Case(
        "NotPrimaryError",
        row(driver.ConnectionFailure, None, None),
        raising(driver.NotPrimaryError("not primary", {"code": 10107})),
        StoreUnavailableError,
    ),
    Case(
        "ExecutionTimeout",
        row(driver.ExecutionTimeout, None, None),
        raising(driver.ExecutionTimeout("operation exceeded time limit", 50)),
        StoreUnavailableError,
    ),
    Case(
        "WTimeoutError",
        row(driver.WTimeoutError, None, None),
        raising(driver.WTimeoutError("waiting for replication timed out", 64)),
        StoreUnavailableError,
    ),
    Case(
        "ShutdownInProgress (91)",
        row(driver.OperationFailure, TRANSIENT_CODES, None),
        raising(driver.OperationFailure("The server is in quiesce mode and will shut down", 91)),
        StoreUnavailableError,
    ),
    Case(
        "pymongo ConfigurationError (unknown option)",
        row(driver.ConfigurationError, None, None),
        client_with(fooBar=1),
        ConfigurationError,
    ),
    Case(
        "InvalidURI",
        row(driver.ConfigurationError, None, None),
        raising(driver.InvalidURI("Must provide at least one hostname or IP")),
        ConfigurationError,
    ),
    Case(
        "InvalidName (database name with a dot)",
        row(driver.InvalidName, None, None),
        bad_database_name,
        ConfigurationError,
    ),
    Case(
        "InvalidDocument (a non-str key)",
        row(bson_errors.InvalidDocument, None, None),
        unencodable_document,
        InvalidSessionInputError,
    ),
    Case(
        "InvalidStringData",
        row(bson_errors.InvalidStringData, None, None),
        raising(bson_errors.InvalidStringData("strings in documents must be valid UTF-8")),
        InvalidSessionInputError,
    ),
    Case(
        "any other server error (Unknown modifier, 9)",
        row(driver.PyMongoError, None, None),
        raising(driver.WriteError("Unknown modifier: $bogus", 9)),
        MongoDBSessionError,
    ),
    Case(
        "InvalidOperation outside bulk_write (closed client)",
        row(driver.PyMongoError, None, None),
        raising(driver.InvalidOperation("Cannot use MongoClient after close")),
        MongoDBSessionError,
    ),
    Case(
        "CommandNotFound (59) outside bulk_write",
        row(driver.PyMongoError, None, None),
        raising(driver.OperationFailure("no such command: 'fooBar'", 59)),
        MongoDBSessionError,
    ),
    Case(
        "InvalidBSON",
        row(bson_errors.BSONError, None, None),
        raising(bson_errors.InvalidBSON("bad eoo")),
        MongoDBSessionError,
    ),
]


def test_every_row_of_the_table_has_a_case() -> None:
    assert {case.rule for case in CASES} == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_row_maps_its_error(case: Case) -> None:
    error = translated(case.raise_it)
    assert type(error) is case.becomes
    assert OPERATION in str(error)
    assert error.__cause__ is not None
    assert "s3cr3t" not in str(error)


def test_rows_are_tried_in_order_and_the_first_that_fits_wins() -> None:
    # DuplicateKeyError is also an OperationFailure and a PyMongoError: the first row decides.
    error = driver.DuplicateKeyError("E11000", 11000)
    assert next(rule.becomes for rule in RULES if rule.matches(error, frozenset())) is DuplicateKey


# --- bulk writes ------------------------------------------------------------------------------


def write_error(code: int, idx: int = 0, errmsg: str = "", **extra: Any) -> dict[str, Any]:
    return {"ok": 0.0, "idx": idx, "code": code, "errmsg": errmsg, **extra}


def test_a_bulk_write_whose_first_operation_hits_a_unique_index_is_a_duplicate_key() -> None:
    failure = bulk_failure(writeErrors=[write_error(11000, 0, "E11000 duplicate key error")])
    assert type(translated(raising(failure))) is DuplicateKey


def test_a_duplicate_key_later_in_a_bulk_write_says_which_write_it_was() -> None:
    # Plans put only idempotent upserts before their message insert: the flow decides by index.
    failure = bulk_failure(writeErrors=[write_error(11000, 1, "E11000 duplicate key error")])
    error = translated(raising(failure))
    assert type(error) is DuplicateKey
    assert error.index == 1
    assert OPERATION in str(error)


@pytest.mark.parametrize("code", sorted(TOO_LARGE_CODES))
def test_a_bulk_write_with_a_too_large_document(code: int) -> None:
    insert = {"insert": 0, "document": {"text": "x" * 1000, "secret": "do-not-show"}}
    failure = bulk_failure(writeErrors=[write_error(code, 0, "object to insert too large", op=insert)])
    error = translated(raising(failure))
    assert type(error) is MessageTooLargeError
    assert OPERATION in str(error)
    assert "16 MiB" in str(error)
    assert "do-not-show" not in str(error)  # pymongo's "full error" carries the document


def test_bad_value_counts_as_too_large_only_when_the_insert_really_is() -> None:
    # mongod answers BadValue (2) for an insert over 16 MiB inside a bulkWrite.
    big = {"insert": 0, "document": {"blob": b"\0" * (16 * 1024 * 1024 + 1)}}
    small = {"insert": 0, "document": {"blob": b"\0"}}
    too_large = bulk_failure(writeErrors=[write_error(2, 0, "object to insert too large", op=big)])
    bad_value = bulk_failure(writeErrors=[write_error(2, 0, "'$' is not a valid field", op=small)])
    assert type(translated(raising(too_large))) is MessageTooLargeError
    assert type(translated(raising(bad_value))) is MongoDBSessionError


def test_a_connection_error_inside_a_bulk_write() -> None:
    failure = bulk_failure(error=driver.AutoReconnect("connection closed by mongodb://u:s3cr3t@db:27017"))
    error = translated(raising(failure))
    assert type(error) is StoreUnavailableError
    assert OPERATION in str(error)
    assert "s3cr3t" not in str(error)


def test_a_write_concern_timeout_inside_a_bulk_write() -> None:
    failure = bulk_failure(writeConcernErrors=[{"code": 64, "errmsg": "waiting for replication timed out"}])
    assert type(translated(raising(failure))) is StoreUnavailableError


def test_a_collection_bulk_write_error_is_read_the_same_way() -> None:
    details = {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}], "writeConcernErrors": []}
    assert type(translated(raising(driver.BulkWriteError(details)))) is DuplicateKey


# --- messages and pass-through ----------------------------------------------------------------


def test_messages_quote_the_servers_errmsg_without_file_paths_or_the_full_error() -> None:
    errmsg = "WiredTiger error: /data/db/collection-7-123.wt: Permission denied"
    failure = driver.OperationFailure(errmsg, 8, {"errmsg": errmsg, "code": 8, "payload": "do-not-show"})
    error = translated(raising(failure), "read session")
    assert str(error).startswith("read session failed:")
    assert "/data/db" not in str(error)
    assert "<path>" in str(error)
    assert "do-not-show" not in str(error)


def test_messages_mask_passwords_and_drop_the_topology_description() -> None:
    failure = driver.ServerSelectionTimeoutError(
        "mongodb://admin:s3cr3t@db:27017 unreachable, Topology Description: <servers: [...]>"
    )
    message = str(translated(raising(failure)))
    assert "admin:***@db" in message
    assert "s3cr3t" not in message
    assert "Topology Description" not in message


def test_messages_stay_short() -> None:
    failure = driver.OperationFailure("x" * 10_000, 9)
    assert len(str(translated(raising(failure)))) < 700


@pytest.mark.parametrize(
    "error",
    [
        MongoDBSessionError("already ours"),
        DuplicateKey("an internal signal"),
        ClientBulkWriteUnsupported("an internal signal"),
        KeyError("a bug stays a bug"),
        ValueError("raised outside a client constructor: a bug here, so it stays loud"),
    ],
    ids=repr,
)
def test_errors_no_row_covers_pass_through_unchanged(error: Exception) -> None:
    assert translated(raising(error)) is error


def test_cancellation_passes_through() -> None:
    cancelled = asyncio.CancelledError()
    assert translated(raising(cancelled)) is cancelled
