"""B5: event-loop lag while many streamed turns run at once, with and without persistence.

A ticker asks to wake every 5 ms and records how late each wake-up is. The same concurrent turns
run once on agents with the manager and once on agents without one; the difference of the two
lags is what persistence adds to the loop.
"""

from __future__ import annotations

import asyncio
import time

from strands import Agent

from mongodb_session_manager import MongoDBSessionManagerFactory

from ._common import Context, Result, make_agent, percentile, ratio, stream_turn

TICK_S = 0.005
TARGET_MS = 5.0


def run(ctx: Context) -> Result:
    turns = ctx.size.lag_turns
    result = Result(
        "B5",
        f"Event-loop lag, {turns} concurrent streamed turns",
        f"max lag from persistence <= {TARGET_MS:g} ms",
    )
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=ctx.database("b5"))
    lags: dict[str, dict[str, list[float]]] = {kind: {"max": [], "p99": []} for kind in ("with", "without")}
    tick_counts: list[int] = []
    for repeat in range(ctx.size.repeats):
        order = ("with", "without") if repeat % 2 == 0 else ("without", "with")
        for kind in order:
            chosen = factory if kind == "with" else None
            worst, p99, ticks = asyncio.run(_one_run(chosen, turns, ctx.size.turns_per_session, repeat))
            tick_counts.append(ticks)
            lags[kind]["max"].append(worst)
            lags[kind]["p99"].append(p99)
    for stat in ("max", "p99"):
        result.add(f"{stat} lag, with the manager", lags["with"][stat], "ms")
        result.add(f"{stat} lag, no session manager", lags["without"][stat], "ms")
    attributable = [w - b for w, b in zip(lags["with"]["max"], lags["without"]["max"], strict=True)]
    result.add("max lag attributable to persistence", attributable, "ms")
    p99_added = [w - b for w, b in zip(lags["with"]["p99"], lags["without"]["p99"], strict=True)]
    result.add("p99 lag attributable to persistence", p99_added, "ms")
    result.add("max lag ratio with / without", ratio(lags["with"]["max"], lags["without"]["max"]), "x")
    added = sorted(attributable)[len(attributable) // 2]
    result.notes.append(
        f"ticker every {TICK_S * 1000:g} ms, lag = how late each wake-up came; each run: "
        f"{ctx.size.turns_per_session} rounds of {turns} concurrent turns (sessions built before the clock), "
        f"{min(tick_counts)}-{max(tick_counts)} ticks per run; runs paired, order alternated"
    )
    result.judge(
        added <= TARGET_MS, f"persistence adds {added:.2f} ms to the worst loop stall (median of runs)"
    )
    return result


async def _one_run(
    factory: MongoDBSessionManagerFactory | None, turns: int, rounds: int, repeat: int
) -> tuple[float, float, int]:
    """Max and p99 lag (ms) and tick count, while ``turns`` turns stream at once, ``rounds`` times."""
    agents: list[Agent] = []
    for n in range(turns + 1):  # the last one warms up (first write ever, index creation)
        manager = None
        if factory is not None:
            manager = await factory.acreate_session_manager(f"b5-{repeat}-{n}", agent_id="assistant")
        agents.append(make_agent(manager))
    await stream_turn(agents.pop(), "warm-up")
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_tick(stop, lags))
    await asyncio.sleep(TICK_S * 2)
    for round_ in range(rounds):
        await asyncio.gather(
            *(stream_turn(agent, f"question {round_}.{n}") for n, agent in enumerate(agents))
        )
    stop.set()
    await ticker
    return max(lags), percentile(lags, 0.99), len(lags)


async def _tick(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        due = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, (time.perf_counter() - due) * 1000))
