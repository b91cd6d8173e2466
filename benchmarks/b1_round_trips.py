"""B1: round trips per turn, counted by a pymongo ``CommandListener`` on the manager's client."""

from __future__ import annotations

import asyncio
from collections import Counter

from mongodb_session_manager import MongoDBSessionManagerFactory

from ._common import Context, Result, make_agent, plain_model, tool_model

TARGET_PLAIN = 3


def run(ctx: Context) -> Result:
    result = Result("B1", "Round trips per turn", f"<= {TARGET_PLAIN} per plain one-cycle turn")
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=ctx.database("b1"))
    plain, plain_names = asyncio.run(_count(ctx, factory, tools=False))
    with_tool, tool_names = asyncio.run(_count(ctx, factory, tools=True))
    result.add("plain turn (2 messages)", plain, "round trips")
    result.add("tool turn (4 messages)", with_tool, "round trips")
    result.notes.append(f"commands of a plain turn: {_names(plain_names)}")
    result.notes.append(f"commands of a tool turn: {_names(tool_names)}")
    worst = max(plain)
    result.judge(worst <= TARGET_PLAIN, f"a plain turn took at most {worst:.0f} round trips")
    return result


async def _count(
    ctx: Context, factory: MongoDBSessionManagerFactory, *, tools: bool
) -> tuple[list[float], list[str]]:
    """Round trips of every measured turn (each run: a fresh session, one warm-up turn first)."""
    counts: list[float] = []
    names: list[str] = []
    for repeat in range(ctx.size.repeats):
        manager = await factory.acreate_session_manager(f"b1-{tools}-{repeat}", agent_id="assistant")
        agent = make_agent(manager, model=tool_model() if tools else plain_model(), tools=tools)
        await agent.invoke_async("warm-up")
        for turn in range(ctx.size.turns):
            with ctx.counter.counting() as seen:
                await agent.invoke_async(f"question {turn}")
            counts.append(len(seen))
            names = seen
    return counts, names


def _names(names: list[str]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in Counter(names).items()) or "none"
