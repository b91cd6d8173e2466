"""B3's judged floor: the manager's exact writes of a turn, replayed raw from a bare agent's hooks.

The manager's repository records every plan it sends (``RecordingRepository``). Before a floor
agent runs the same scripted turn, each recorded plan becomes a ready-made pymongo request: the
same operations with the same documents, aimed at the floor's own collections (same indexes),
so nothing is built inside the clock. The floor agent's hooks send them at the points the manager
sends its own: one per message added, the rest at the invocation's end. Both sides are measured
the same way (the turn minus the same turn with no session manager), so both pay Strands' hook
dispatch and whatever waiting on the network does to the code that runs after it.

Two clients: ``AsyncMongoClient`` awaited on the loop (the floor a library held to "never wait on
the network on the loop's thread" can reach), and the synchronous client called in the hook
(it blocks the loop; a reference).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, MongoClient
from strands.hooks import AfterInvocationEvent, HookProvider, HookRegistry, MessageAddedEvent

from mongodb_session_manager import MongoDBSessionRepository, schema
from mongodb_session_manager._plans import InsertOp, Plan, UpdateOp, client_models

from ._common import Document

TARGETS = ("sessions", "messages", "rollups")


class RecordingRepository(MongoDBSessionRepository):
    """The manager's repository, keeping the plans it runs (the writes a turn sent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[Plan] = []

    def _run_plan(self, plan: Plan, operation: str) -> int | None:
        self.recorded.append(plan)
        return super()._run_plan(plan, operation)

    def take(self) -> list[Plan]:
        """The plans run since the last call."""
        plans, self.recorded = self.recorded, []
        return plans


@dataclass(frozen=True)
class Request:
    """One ready-made driver call: a single operation on a collection, or a client ``bulkWrite``."""

    kind: str  # "insert" | "update" | "delete" | "bulk"
    namespace: str
    args: tuple[Any, ...]


def requests_for(plans: list[Plan], namespaces: dict[str, str]) -> list[Request]:
    """The recorded plans as the calls the repository made (one op: a collection call), fresh documents."""
    requests = []
    for plan in plans:
        fresh = Plan(tuple(_fresh(op) for op in plan.ops), plan.message_index, plan.message_count)
        if len(fresh.ops) > 1:
            requests.append(Request("bulk", "", (client_models(fresh, namespaces),)))
            continue
        op = fresh.ops[0]
        namespace = namespaces[op.target]
        if isinstance(op, InsertOp):
            requests.append(Request("insert", namespace, (op.document,)))
        elif isinstance(op, UpdateOp):
            requests.append(Request("update", namespace, (op.filter, op.update, op.upsert, op.many)))
        else:
            requests.append(Request("delete", namespace, (op.filter,)))
    return requests


def _fresh(op: Any) -> Any:
    if isinstance(op, InsertOp):  # pymongo added an _id to the manager's copy
        document = copy.deepcopy(op.document)
        document.pop("_id", None)
        return InsertOp(op.target, document)
    return op


class ReplayFloor(HookProvider):
    """A bare agent's hooks sending a turn's recorded writes: one per message, the rest at the end."""

    def __init__(self, client: MongoClient[Document] | AsyncMongoClient[Document], prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.pending: list[Request] = []

    def namespaces(self, database: str) -> dict[str, str]:
        return {target: f"{database}.{self.prefix}{target}" for target in TARGETS}

    def register_hooks(self, registry: HookRegistry, **_: Any) -> None:
        registry.add_callback(MessageAddedEvent, self._on_message_added)
        registry.add_callback(AfterInvocationEvent, self._on_after_invocation)

    async def _on_message_added(self, event: MessageAddedEvent) -> None:
        if self.pending:
            await self._send(self.pending.pop(0))

    async def _on_after_invocation(self, event: AfterInvocationEvent) -> None:
        while self.pending:
            await self._send(self.pending.pop(0))

    async def _send(self, request: Request) -> None:
        result = self._call(request)
        if isinstance(self.client, AsyncMongoClient):
            await result

    def _call(self, request: Request) -> Any:
        client: Any = self.client
        if request.kind == "bulk":
            return client.bulk_write(*request.args, ordered=True)
        database, _, name = request.namespace.partition(".")
        collection = client[database][name]
        if request.kind == "insert":
            return collection.insert_one(*request.args)
        if request.kind == "delete":
            return collection.delete_many(*request.args)
        filter_, update, upsert, many = request.args
        call: Callable[..., Awaitable[Any] | Any] = collection.update_many if many else collection.update_one
        return call(filter_, update, upsert=upsert)


def prepare_collections(client: MongoClient[Document], database: str, floor: ReplayFloor) -> None:
    """The floor's collections, with the indexes the manager's carry."""
    names = floor.namespaces(database)
    indexes = {
        "sessions": schema.SESSION_INDEXES,
        "messages": schema.MESSAGE_INDEXES,
        "rollups": schema.ROLLUP_INDEXES,
    }
    for target, namespace in names.items():
        client[database][namespace.partition(".")[2]].create_indexes(schema.index_models(indexes[target]))
