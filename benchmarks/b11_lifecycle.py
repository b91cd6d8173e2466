"""B11: what data-lifecycle options cost a plain turn: round trips and time, against none of them.

Variants (each a fresh session, one warm-up turn first, then measured turns interleaved turn by
turn so the server's state is the same for all): no option; ``expire_after``; ``mask`` with the
four built-ins; ``encryption`` (local KMS, a generated key); all of them. Round trips are
counted on the manager's client (key vault reads included: it is the same client); time is the
turn's wall time, so the difference is the client CPU the option adds.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from mongodb_session_manager import MongoDBSessionManagerFactory
from mongodb_session_manager.encryption import ContentEncryption
from mongodb_session_manager.masking import CARD_NUMBER, EMAIL, IBAN, PHONE

from ._common import Context, Result, make_agent, ratio, stopwatch

PROMPT = "Reach me at jane.doe@example.com or +44 20 7946 0958; card 4111 1111 1111 1111."


def run(ctx: Context) -> Result:
    result = Result("B11", "Per-turn cost of expiry, masking and encryption", "round trips unchanged (2)")
    database = ctx.database("b9")
    with tempfile.TemporaryDirectory() as directory:
        encryption = ContentEncryption.local(
            Path(directory) / "master.key", key_vault_namespace=f"{database}.__keyVault"
        )
        variants: dict[str, dict[str, Any]] = {
            "none": {},
            "expire_after": {"expire_after": timedelta(hours=1)},
            "mask (4 built-ins)": {"mask": [EMAIL, CARD_NUMBER, IBAN, PHONE]},
            "encryption": {"encryption": encryption},
            "all of them": {
                "expire_after": timedelta(hours=1),
                "mask": [EMAIL, CARD_NUMBER, IBAN, PHONE],
                "encryption": encryption,
            },
        }
        factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=database)
        trips, times = asyncio.run(_measure(ctx, factory, variants))
    for name in variants:
        result.add(f"{name}: round trips", trips[name], "round trips")
    for name in variants:
        result.add(f"{name}: turn time", times[name], "ms")
    for name in list(variants)[1:]:
        result.add(f"{name}: time / none", ratio(times[name], times["none"]), "x")
    worst = max(max(samples) for samples in trips.values())
    result.judge(
        all(trips[name] == trips["none"] for name in variants) and worst <= 2,
        f"every variant took the same round trips per turn (at most {worst:.0f})",
    )
    return result


async def _measure(
    ctx: Context, factory: MongoDBSessionManagerFactory, variants: dict[str, dict[str, Any]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    trips: dict[str, list[float]] = {name: [] for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(ctx.size.repeats):
        agents = {}
        for index, (name, options) in enumerate(variants.items()):
            manager = factory.create_session_manager(
                f"b9-{repeat}-{index}", user_id=f"user-{index}", **options
            )
            agents[name] = (manager, make_agent(manager))
            await manager.load(agents[name][1])
            await agents[name][1].invoke_async("warm-up")  # indexes, the data key
        for turn in range(ctx.size.turns):
            for name, (_manager, agent) in agents.items():
                with ctx.counter.counting() as seen, stopwatch() as elapsed:
                    await agent.invoke_async(f"{PROMPT} ({turn})")
                trips[name].append(len(seen))
                times[name].append(elapsed[0])
        for manager, _agent in agents.values():
            await manager.aclose()
    return trips, times
