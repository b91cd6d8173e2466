"""What a request leaves for the garbage collector: ``python -m benchmarks.gc_census [requests]``.

For each of B5's request shapes (and the same request with no session manager): ``requests``
requests one after another with the collector off, then whether their managers and agents were
freed by reference counting, and what a collection then finds (reference cycles), by type. Then
the collector's own activity while 3 rounds of 50 requests of each shape run at once:
collections per generation, the loop thread's CPU inside them, and what they freed. It is what
explains B5's "longest garbage-collector pause" rows.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import time
import weakref
from typing import Any

import pymongo

from mongodb_session_manager import MongoDBSessionManagerFactory
from mongodb_session_manager.embedded import local_mongodb

from ._common import api_request, bare_request, make_agent, seed_sessions, stream_turn

KINDS = ("none", "guide-new", "guide-resumed", "async-new", "async-resumed")
PROMPTS = ("question 0", "question 1")
CONCURRENT = 50
ROUNDS = 3  # rounds of concurrent requests per shape (a full collection comes every round or two)


async def _request(factory: MongoDBSessionManagerFactory, kind: str, session_id: str) -> list[Any]:
    """One request of ``kind``; a weak reference to its manager (its agent holds it), or agent."""
    api = kind.partition("-")[0]
    if kind == "none":
        agent = make_agent(None)
        for prompt in PROMPTS:
            await stream_turn(agent, prompt)
        return [weakref.ref(agent)]
    manager = await api_request(api, factory, session_id, PROMPTS)
    await manager.flush()  # type: ignore[attr-defined]
    return [weakref.ref(manager)]


def _name(thing: object) -> str:
    kind = type(thing)
    return f"{kind.__module__}.{kind.__qualname__}"


async def _leftovers(factory: MongoDBSessionManagerFactory, kind: str, requests: int) -> str:
    session_ids = [f"census-{kind}-{n}" for n in range(requests + 1)]
    if kind.endswith("resumed"):
        await seed_sessions(factory, session_ids, len(PROMPTS))
    await _request(factory, kind, session_ids.pop())  # warm-up: imports, I/O threads, indexes
    gc.collect()
    gc.disable()
    try:
        refs = [ref for session_id in session_ids for ref in await _request(factory, kind, session_id)]
        await asyncio.sleep(0.05)  # the I/O threads drop what their last call held
        alive = sum(ref() is not None for ref in refs)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = collections.Counter(_name(thing) for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    top = ", ".join(f"{name} x{count}" for name, count in found.most_common(6)) or "-"
    return f"{alive}/{len(refs)} alive without a collection; {found.total()} objects in cycles: {top}"


async def _collector_activity(factory: MongoDBSessionManagerFactory, kind: str) -> str:
    rounds = [[f"census-busy-{kind}-{r}-{n}" for n in range(CONCURRENT)] for r in range(ROUNDS)]
    if kind.endswith("resumed"):
        await seed_sessions(factory, [s for session_ids in rounds for s in session_ids], len(PROMPTS))
    stats: dict[int, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0, 0])
    started = [0.0]

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        cpu = (time.thread_time() - started[0]) * 1000
        row = stats[info["generation"]]
        row[0] += 1
        row[1] += cpu
        row[2] = max(row[2], cpu)
        row[3] += info["collected"]

    gc.callbacks.append(observe)
    try:
        for session_ids in rounds:
            await _concurrent(factory, kind, session_ids)
    finally:
        gc.callbacks.remove(observe)
    return " | ".join(
        f"gen{gen}: {int(n)} runs, {cpu:.1f} ms CPU (longest {longest:.1f}), {int(freed)} freed"
        for gen, (n, cpu, longest, freed) in sorted(stats.items())
    )


async def _concurrent(factory: MongoDBSessionManagerFactory, kind: str, session_ids: list[str]) -> None:
    if kind == "none":
        await asyncio.gather(*(bare_request(PROMPTS) for _ in session_ids))
        return
    api = kind.partition("-")[0]
    managers = await asyncio.gather(*(api_request(api, factory, s, PROMPTS) for s in session_ids))
    await asyncio.gather(*(manager.flush() for manager in managers))  # type: ignore[attr-defined]


async def _census(uri: str, requests: int) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    factory = MongoDBSessionManagerFactory(client=client, database_name="msm_gc_census")
    try:
        print(f"{requests} requests one after another, collector off:")
        for kind in KINDS:
            print(f"  {kind:14s} {await _leftovers(factory, kind, requests)}")
        print(f"{ROUNDS} rounds of {CONCURRENT} requests at once, collector on:")
        for kind in KINDS:
            print(f"  {kind:14s} {await _collector_activity(factory, kind)}")
        print(f"objects the collector tracks now: {len(gc.get_objects()):,}")
    finally:
        client.drop_database("msm_gc_census")
        client.close()


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with local_mongodb() as uri:
        asyncio.run(_census(uri, requests))


if __name__ == "__main__":
    main()
