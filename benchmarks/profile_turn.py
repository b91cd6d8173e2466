"""Where a persisted turn's client CPU goes: ``python -m benchmarks.profile_turn [turns]``.

One agent with the manager runs sequential turns; ``cProfile`` records the event-loop thread
and, separately, the manager's write path on the I/O thread (``_persist``/``_catch_up`` run one
at a time per agent, so one profiler there is safe). Prints the top functions of each by own
time. Also: the turn's CPU with the repository's writes replaced by a no-op (the manager's own
code and the hand-off, no pymongo), against the same turn with no session manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
from typing import Any

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionRepository
from mongodb_session_manager.embedded import local_mongodb

from ._common import cpu_ms, make_agent

IO_PROFILE = cProfile.Profile()


class ProfiledManager(MongoDBSessionManager):
    """The manager, with its I/O-thread work recorded by ``IO_PROFILE``."""

    def _persist(self, *args: Any, **kwargs: Any) -> None:
        IO_PROFILE.enable()
        try:
            super()._persist(*args, **kwargs)
        finally:
            IO_PROFILE.disable()


class NoWrites(MongoDBSessionRepository):
    """Answers every write plan as applied, without sending it (the manager's cost minus pymongo's)."""

    def _run_plan(self, plan: Any, operation: str) -> int | None:
        return None


async def cpu_per_turn(manager: MongoDBSessionManager | None, turns: int) -> float:
    agent = make_agent(manager)
    await agent.invoke_async("warm-up")
    used = []
    for turn in range(turns):
        start = cpu_ms()
        await agent.invoke_async(f"question {turn}")
        used.append(cpu_ms() - start)
    return statistics.median(used)


async def profiled(uri: str, turns: int) -> cProfile.Profile:
    manager = ProfiledManager("profile-turn", connection_string=uri, database_name="msm_profile")
    agent = make_agent(manager)
    await agent.invoke_async("warm-up")
    loop_profile = cProfile.Profile()
    loop_profile.enable()
    for turn in range(turns):
        await agent.invoke_async(f"question {turn}")
    loop_profile.disable()
    return loop_profile


def top(profile: cProfile.Profile, title: str, count: int = 18) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(count)
    return f"--- {title} ---\n" + "\n".join(out.getvalue().splitlines()[4:])


def main() -> None:
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    # MONGODB_URI: a server started apart (pinned to another core, as benchmarks.run does); an
    # embedded one shares this process's cores, and its time shows up in the socket calls.
    server = (
        contextlib.nullcontext(os.environ["MONGODB_URI"]) if "MONGODB_URI" in os.environ else local_mongodb()
    )
    with server as uri:
        loop_profile = asyncio.run(profiled(uri, turns))
        print(top(loop_profile, f"event-loop thread, {turns} turns, by own time"))
        print(top(IO_PROFILE, f"I/O thread (_persist), {turns} turns, by own time"))
        stub = NoWrites(uri, "msm_profile", "stub")
        rows: dict[str, list[float]] = {}
        for _ in range(3):  # interleaved
            rows.setdefault("none", []).append(asyncio.run(cpu_per_turn(None, turns)))
            rows.setdefault("manager, writes stubbed", []).append(
                asyncio.run(cpu_per_turn(MongoDBSessionManager("stubbed", repository=stub), turns))
            )
            real = MongoDBSessionManager("real", connection_string=uri, database_name="msm_profile")
            rows.setdefault("manager, real writes", []).append(asyncio.run(cpu_per_turn(real, turns)))
        for name, values in rows.items():
            print(f"client CPU per turn, {name}: median {statistics.median(values):.3f} ms {values}")


if __name__ == "__main__":
    main()
