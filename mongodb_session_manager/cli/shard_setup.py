"""``shard-setup``: shard the package's collections on a cluster, with the keys in :mod:`..schema`.

The plan is a list of commands built from the schema (pure, :func:`shard_plan`), printed as
they would be typed in ``mongosh`` or, with ``--json``, as documents. Without ``--dry-run`` each
runs against a ``mongos``; every step is idempotent (``createIndexes`` of an existing index and
``enableSharding`` of a sharded database change nothing; a collection already sharded on the same
key is reported and skipped, on another key it is an error), so the command can be run again.

What stays unsharded, and why: the rollups collection (one small document per hour, agent and
model) and the key vault (its unique ``keyAltNames`` index could only be kept under a shard key
prefixed by ``keyAltNames``, an array, which a shard key cannot be; it holds one small key per
user).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson import SON

from .. import schema
from .._driver_errors import translate_driver_errors
from ..schema import CollectionNames, IndexSpec, ShardKey
from ._common import EXIT_USAGE, CLIError, connect, resolve_uri
from ._output import print_json

__all__ = ["ShardStep", "is_mongos", "run_step", "shard_plan", "shard_setup", "unsharded"]

Document = dict[str, Any]


@dataclass(frozen=True)
class ShardStep:
    """One command: on which database it runs, the command document, and what it is for."""

    database: str
    command: Mapping[str, Any]
    purpose: str

    def as_json(self) -> Document:
        return {"database": self.database, "command": dict(self.command), "purpose": self.purpose}

    def as_shell(self) -> str:
        sibling = f'db.getSiblingDB("{self.database}").runCommand'
        call = "db.adminCommand" if self.database == "admin" else sibling
        return f"{call}({_shell(self.command)})"


def _key(key: ShardKey) -> SON[str, Any]:
    return SON(list(key))


def _shard(namespace: str, key: ShardKey) -> SON[str, Any]:
    return SON([("shardCollection", namespace), ("key", _key(key))])


def _index(spec: IndexSpec) -> Document:
    return {"key": _key(spec.keys), "name": spec.name, **dict(spec.options)}


def shard_plan(database: str, names: CollectionNames) -> list[ShardStep]:
    """The commands that shard ``database``'s session, message and GridFS chunk collections."""
    unique = schema.MESSAGE_INDEXES[0]
    assert unique.options.get("unique"), "the messages' first index is their unique one"
    hashed_id = IndexSpec(schema.SESSION_SHARD_KEY, "_id_hashed", {})  # type: ignore[arg-type]
    return [
        ShardStep("admin", {"enableSharding": database}, "allow sharding in the database"),
        ShardStep(
            database,
            {"createIndexes": names.sessions, "indexes": [_index(hashed_id)]},
            "the hashed index the sessions' shard key needs",
        ),
        ShardStep(
            "admin",
            SON(
                [("shardCollection", f"{database}.{names.sessions}"), ("key", _key(schema.SESSION_SHARD_KEY))]
            ),
            "sessions: read and written by _id only; a hashed _id spreads them evenly",
        ),
        ShardStep(
            database,
            {"createIndexes": names.messages, "indexes": [_index(unique)]},
            "the unique index whose prefix is the messages' shard key",
        ),
        ShardStep(
            "admin",
            SON(
                [("shardCollection", f"{database}.{names.messages}"), ("key", _key(schema.MESSAGE_SHARD_KEY))]
            ),
            "messages: ranged on a prefix of the unique index, which a cluster then still enforces",
        ),
        ShardStep(
            database,
            {"createIndexes": names.file_chunks, "indexes": [_index(schema.FILE_CHUNKS_INDEX)]},
            "the GridFS chunks index (the driver creates it too, on the first upload)",
        ),
        ShardStep(
            "admin",
            _shard(f"{database}.{names.file_chunks}", schema.FILE_CHUNKS_SHARD_KEY),
            "large content: a file's chunks stay together, read in order",
        ),
    ]


def unsharded(database: str, names: CollectionNames, key_vault_namespace: str | None) -> list[Document]:
    """The package's collections left unsharded on purpose, with the reason."""
    rows = [
        {
            "namespace": f"{database}.{names.rollups}",
            "reason": "one small document per hour, agent and model",
        },
        {"namespace": f"{database}.{names.files}.files", "reason": "one small document per large block"},
    ]
    if key_vault_namespace:
        rows.append(
            {
                "namespace": key_vault_namespace,
                "reason": "its unique keyAltNames index needs a keyAltNames-prefixed shard key, and "
                "keyAltNames is an array; one small key document per user",
            }
        )
    return rows


def is_mongos(client: Any) -> bool:
    """True when ``client`` talks to a ``mongos`` (``hello`` answers ``msg: "isdbgrid"``)."""
    with translate_driver_errors("hello"):
        return bool(client.admin.command("hello").get("msg") == "isdbgrid")


def _sharded_key(client: Any, namespace: str) -> Document | None:
    with translate_driver_errors("read sharding state"):
        entry = client["config"]["collections"].find_one({"_id": namespace, "dropped": {"$ne": True}})
    return None if entry is None else dict(entry.get("key") or {})


def run_step(client: Any, step: ShardStep) -> str:
    """Run one step idempotently; returns ``"applied"`` or ``"already"``."""
    namespace = step.command.get("shardCollection")
    if namespace is not None:
        wanted = dict(step.command["key"])
        current = _sharded_key(client, namespace)
        if current is not None:
            if current != wanted:
                raise CLIError(f"{namespace} is already sharded on {current}, not on {wanted}")
            return "already"
    with translate_driver_errors(step.purpose):
        client[step.database].command(SON(step.command))
    return "applied"


def shard_setup(args: argparse.Namespace) -> int:
    names = CollectionNames.for_base(args.collection)
    plan = shard_plan(args.database, names)
    kept = unsharded(args.database, names, args.key_vault_namespace)
    results: list[str] = []
    if not args.dry_run:
        client = connect(resolve_uri(args))
        try:
            if not is_mongos(client):
                raise CLIError(
                    "shard-setup needs a mongos (a sharded cluster); use --dry-run to print", EXIT_USAGE
                )
            results = [run_step(client, step) for step in plan]
        finally:
            client.close()
    if args.json:
        rows = [step.as_json() for step in plan]
        for row, result in zip(rows, results, strict=False):
            row["result"] = result
        print_json({"database": args.database, "dry_run": args.dry_run, "steps": rows, "unsharded": kept})
        return 0
    for index, step in enumerate(plan):
        status = f"  // {results[index]}" if results else ""
        sys.stdout.write(f"// {step.purpose}\n{step.as_shell()}{status}\n")
    for row in kept:
        sys.stdout.write(f"// unsharded: {row['namespace']}: {row['reason']}\n")
    return 0


def _shell(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_shell(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shell(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
