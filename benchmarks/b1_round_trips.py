"""B1: round trips of the request shapes, counted by a pymongo ``CommandListener``.

The listener sits on the very client the manager uses. For the guide's API
(``create_session_manager`` + ``Agent`` + ``close()``) and the async API
(``await acreate_session_manager(sid, agent_id=...)`` + ``await aclose()``), inside a running
loop as a web handler has it: a first-time session (construction + first plain turn + close), a
resume (construction, and construction with its first turn, where the guide's API reads the
session), a plain turn, close after a turn, and a tool turn. Off the loop, the sync constructor
restores eagerly: counted too. Handed-off writes are awaited (``flush()``) before a count ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory

from ._common import (
    API_SHAPES,
    Context,
    Result,
    make_agent,
    seed_sessions,
    stream_turn,
    tool_model,
)

TARGETS = {"first-time session": 3, "resume construction": 1, "plain turn": 2, "close after a turn": 0}


def run(ctx: Context) -> Result:
    result = Result(
        "B1",
        "Round trips: first-time session, resume, plain turn, close",
        "first-time session (construction + first turn + close) <= 3; resume construction <= 1; "
        "plain turn <= 2; close after a turn 0",
    )
    database = ctx.database("b1")
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=database)
    counts: dict[str, list[float]] = {}
    names: dict[str, list[str]] = {}
    asyncio.run(seed_sessions(factory, ["b1-warm-up"], 1))  # indexes are created once per process
    for repeat in range(ctx.size.repeats):
        for api in API_SHAPES:
            seen = asyncio.run(_count_api(ctx, factory, api, f"{repeat}"))
            for label, commands in seen.items():
                counts.setdefault(f"{api} API: {label}", []).append(len(commands))
                names[f"{api} API: {label}"] = commands
        commands = _count_off_loop(ctx, database, f"b1-sync-{repeat}", factory)
        counts.setdefault("sync constructor off the loop: resume construction", []).append(len(commands))
        names["sync constructor off the loop: resume construction"] = commands
    for label, values in counts.items():
        result.add(label, values, "round trips")
        result.notes.append(f"commands, {label}: {_names(names[label])}")
    failures = []
    for label, values in counts.items():
        for target_name, target in TARGETS.items():
            if label.split(": ", 1)[1] == target_name and max(values) > target:
                failures.append(f"{label} {max(values):.0f} > {target}")
    result.judge(
        not failures,
        "; ".join(failures)
        or "first-time session 3, resume construction 1, plain turn 2, close 0 (worst of every run)",
    )
    return result


async def _count_api(
    ctx: Context, factory: MongoDBSessionManagerFactory, api: str, tag: str
) -> dict[str, list[str]]:
    """Commands of each step of a request, in ``api``, inside a running loop."""
    counter = ctx.counter
    seen: dict[str, list[str]] = {}
    new_id, resumed_id = f"b1-{api}-new-{tag}", f"b1-{api}-resumed-{tag}"
    await seed_sessions(factory, [resumed_id], 2)

    with counter.counting() as commands:
        manager = await _build(factory, api, new_id)
        agent = make_agent(manager)
        await stream_turn(agent, "first question")
        await _close(manager, api)
    seen["first-time session"] = commands

    with counter.counting() as commands:
        manager = await _build(factory, api, resumed_id)
        agent = make_agent(manager)
        if api == "guide":  # deferred: the read happens at the first turn
            await manager.load(agent)
    seen["resume construction"] = commands
    with counter.counting() as commands:
        await stream_turn(agent, "question after the resume")
    seen["plain turn"] = commands
    with counter.counting() as commands:
        await _close(manager, api)
    seen["close after a turn"] = commands

    manager = await _build(factory, api, resumed_id)
    agent = make_agent(manager)
    with counter.counting() as commands:
        await stream_turn(agent, "question after the resume")
        await manager.flush()
    seen["resumed session, first turn (guide API: with its deferred read)"] = commands
    await _close(manager, api)

    manager = await _build(factory, api, f"b1-{api}-tool-{tag}")
    agent = make_agent(manager, model=tool_model(), tools=True)
    await stream_turn(agent, "warm-up")
    with counter.counting() as commands:
        await stream_turn(agent, "add 2 and 3")
    seen["tool turn (4 messages, info)"] = commands
    await _close(manager, api)
    return seen


async def _build(factory: MongoDBSessionManagerFactory, api: str, session_id: str) -> MongoDBSessionManager:
    if api == "guide":
        return factory.create_session_manager(session_id)
    return await factory.acreate_session_manager(session_id, agent_id="assistant")


async def _close(manager: MongoDBSessionManager, api: str) -> None:
    if api == "guide":
        manager.close()  # on the loop it hands off; wait for what it handed off
        await manager.flush()
    else:
        await manager.aclose()


def _count_off_loop(
    ctx: Context, database: str, session_id: str, factory: MongoDBSessionManagerFactory
) -> list[str]:
    """``MongoDBSessionManager(...)`` + ``Agent()`` with no running loop: the eager restore."""
    asyncio.run(seed_sessions(factory, [session_id], 2))
    build: Callable[[], MongoDBSessionManager] = lambda: MongoDBSessionManager(  # noqa: E731
        session_id, client=ctx.client, database_name=database
    )
    with ctx.counter.counting() as commands:
        manager = build()
        make_agent(manager)
    manager.close()
    return commands


def _names(names: list[str]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in Counter(names).items()) or "none"
