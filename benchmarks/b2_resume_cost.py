"""B2: round trips and time to build a manager and an Agent on an existing session (a resume)."""

from __future__ import annotations

import asyncio
import time

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory

from ._common import Context, Result, make_agent

TARGET_ROUND_TRIPS = 1
STORED_TURNS = 5


def run(ctx: Context) -> Result:
    result = Result(
        "B2", "Resume: manager + Agent on an existing session", f"<= {TARGET_ROUND_TRIPS} round trips"
    )
    database = ctx.database("b2")
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=database)
    session_ids = [f"b2-{n}" for n in range(ctx.size.resume_sessions)]
    asyncio.run(_seed(factory, session_ids))
    trips: dict[str, list[float]] = {"sync": [], "async": [], "guide": []}
    times: dict[str, list[float]] = {"sync": [], "async": [], "guide": []}
    blocked: list[float] = []
    guide_blocked: list[float] = []
    for _ in range(ctx.size.repeats):
        for session_id in session_ids:
            with ctx.counter.counting() as seen:
                start = time.perf_counter()
                agent = make_agent(
                    MongoDBSessionManager(session_id, client=ctx.client, database_name=database)
                )
                times["sync"].append((time.perf_counter() - start) * 1000)
            trips["sync"].append(len(seen))
            assert len(agent.messages) == 2 * STORED_TURNS
            with ctx.counter.counting() as seen:
                total, on_loop = asyncio.run(_async_resume(factory, session_id))
            trips["async"].append(len(seen))
            times["async"].append(total)
            blocked.append(on_loop)
            with ctx.counter.counting() as seen:
                guide_total, guide_on_loop = asyncio.run(_guide_resume(factory, session_id))
            trips["guide"].append(len(seen))
            times["guide"].append(guide_total)
            guide_blocked.append(guide_on_loop)
    result.add("sync constructor + Agent(), off the loop (eager): round trips", trips["sync"], "round trips")
    result.add("acreate_session_manager + Agent(): round trips", trips["async"], "round trips")
    result.add(
        "guide API on the loop: create_session_manager + Agent() + await load(): round trips",
        trips["guide"],
        "round trips",
    )
    result.add("sync constructor + Agent(), off the loop: time", times["sync"], "ms")
    result.add("await acreate_session_manager + Agent(): time", times["async"], "ms")
    result.add("  of which Agent() on the event loop", blocked, "ms")
    result.add("guide API on the loop, + await load(): time", times["guide"], "ms")
    result.add("  of which create_session_manager + Agent() on the event loop", guide_blocked, "ms")
    worst = max(trips["sync"] + trips["async"])
    result.notes.append(f"each stored session holds {STORED_TURNS} turns ({2 * STORED_TURNS} messages)")
    result.judge(worst <= TARGET_ROUND_TRIPS, f"a resume took at most {worst:.0f} round trips")
    return result


async def _seed(factory: MongoDBSessionManagerFactory, session_ids: list[str]) -> None:
    for session_id in session_ids:
        agent = make_agent(await factory.acreate_session_manager(session_id, agent_id="assistant"))
        for turn in range(STORED_TURNS):
            await agent.invoke_async(f"question {turn}")


async def _async_resume(factory: MongoDBSessionManagerFactory, session_id: str) -> tuple[float, float]:
    """Total time of the async resume, and the part spent on the event loop (``Agent()``)."""
    start = time.perf_counter()
    manager = await factory.acreate_session_manager(session_id, agent_id="assistant")
    on_loop = time.perf_counter()
    agent = make_agent(manager)
    end = time.perf_counter()
    assert len(agent.messages) == 2 * STORED_TURNS
    return (end - start) * 1000, (end - on_loop) * 1000


async def _guide_resume(factory: MongoDBSessionManagerFactory, session_id: str) -> tuple[float, float]:
    """The guide's API on a loop: construction defers the read; ``await load()`` does it."""
    start = time.perf_counter()
    manager = factory.create_session_manager(session_id)
    agent = make_agent(manager)
    on_loop = time.perf_counter()
    await manager.load(agent)
    end = time.perf_counter()
    assert len(agent.messages) == 2 * STORED_TURNS
    return (end - start) * 1000, (on_loop - start) * 1000
