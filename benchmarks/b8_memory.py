"""B8: heap growth of one long-lived agent, against Strands' FileSessionManager doing the same turns.

One agent with a 10-message sliding window runs the same scripted turns (a ~2.6 KB reply each)
with no session manager, with Strands' ``FileSessionManager`` on a temp dir, and with this
package's manager. Each variant runs in its own spawned process, so no heap is shared;
``tracemalloc`` traces the whole run and growth is the traced size after the measured turns
minus after the warm-up turns (``gc.collect()`` before each reading). A manager that keeps a
record of every message it stored grows with the conversation, however short the window.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session import SessionManager

from mongodb_session_manager.testing import ScriptedModel

from ._common import Context, Result, stream_turn

TARGET_KIB = 1024.0  # ours may grow at most 1 MiB more than FileSessionManager
WINDOW = 10
AGENT_ID = "assistant"
# 100 words of 26 characters: a 2,600-character reply, streamed in 100 chunks.
LONG_REPLY = " ".join(f"w{i:03d}" + "x" * 21 for i in range(100))
VARIANTS = {
    "none": "no session manager",
    "file": "Strands FileSessionManager (temp dir)",
    "ours": "mongodb-session-manager (this package)",
}


@dataclass
class MemoryRun:
    """What one variant's process measured."""

    growth_kib: float = 0.0
    held_records: int = 0
    seconds: float = 0.0
    error: str | None = None


def run(ctx: Context) -> Result:
    turns, warmup = ctx.size.memory_turns, ctx.size.memory_warmup
    result = Result(
        "B8",
        f"Heap growth, one agent (window {WINDOW}), {turns:,} turns",
        "within 1 MiB of Strands' FileSessionManager",
    )
    database = ctx.database("b8")
    runs = {variant: _in_child(variant, ctx.uri, database, turns, warmup) for variant in VARIANTS}
    for variant, label in VARIANTS.items():
        outcome = runs[variant]
        if outcome.error is None:
            result.add(f"heap growth, {label}", [outcome.growth_kib], "KiB")
        else:
            result.notes.append(f"{label}: not measured: {outcome.error}")
    failed = {variant: outcome.error for variant, outcome in runs.items() if outcome.error is not None}
    if failed:
        raise RuntimeError(f"variants failed: {failed}")
    ours, file = runs["ours"], runs["file"]
    difference = result.add(
        "difference: ours - FileSessionManager", [ours.growth_kib - file.growth_kib], "KiB"
    )
    for variant in ("file", "ours"):
        added = runs[variant].growth_kib - runs["none"].growth_kib
        result.add(f"  added by the manager ({variant} - none)", [added], "KiB")
    for variant in ("file", "ours"):
        result.add(
            f"records held by the manager, {VARIANTS[variant]}", [runs[variant].held_records], "records"
        )
    result.notes.append(
        f"{warmup} warm-up turns, then {turns:,} measured turns of one agent "
        f"(SlidingWindowConversationManager(window_size={WINDOW}), ScriptedModel replying "
        f"{len(LONG_REPLY):,} characters, streamed with stream_async); each variant in a fresh "
        "spawned process; growth = tracemalloc current size after the turns - after the warm-up "
        "(gc.collect() first); the scripted model's own call log is cleared after every turn"
    )
    result.notes.append("records held after the turns: Strands' _held_records, this package's slot records")
    result.notes.append(
        "turn time under tracemalloc: "
        + ", ".join(f"{variant} {runs[variant].seconds * 1000 / turns:.1f} ms" for variant in VARIANTS)
    )
    result.judge(
        difference.median <= TARGET_KIB,
        f"ours grew {difference.median:,.0f} KiB more than FileSessionManager over {turns:,} turns",
    )
    return result


def _in_child(variant: str, uri: str, database: str, turns: int, warmup: int) -> MemoryRun:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(child_main, variant, uri, database, turns, warmup).result()
        except Exception as exc:
            return MemoryRun(error=repr(exc))


# --- in the child process -----------------------------------------------------------------------


def child_main(variant: str, uri: str, database: str, turns: int, warmup: int) -> MemoryRun:
    with tempfile.TemporaryDirectory(prefix="msm-bench-b8-") as storage:
        manager = _manager(variant, uri, database, storage)
        try:
            return asyncio.run(_measure(manager, turns, warmup))
        finally:
            if manager is not None and hasattr(manager, "close"):
                manager.close()


async def _measure(manager: SessionManager | None, turns: int, warmup: int) -> MemoryRun:
    tracemalloc.start()
    try:
        model = ScriptedModel([LONG_REPLY], loop=True, chunk_delay=0)
        agent = Agent(
            model=model,
            agent_id=AGENT_ID,
            session_manager=manager,
            conversation_manager=SlidingWindowConversationManager(window_size=WINDOW),
            callback_handler=None,
        )
        for turn in range(warmup):
            await _turn(agent, model, turn)
        before = _traced_now()
        start = time.perf_counter()
        for turn in range(warmup, warmup + turns):
            await _turn(agent, model, turn)
        seconds = time.perf_counter() - start
        after = _traced_now()
    finally:
        tracemalloc.stop()
    return MemoryRun(growth_kib=(after - before) / 1024, held_records=_held(manager), seconds=seconds)


async def _turn(agent: Agent, model: ScriptedModel, turn: int) -> None:
    await stream_turn(agent, f"question {turn}")
    model.calls.clear()  # the test double's log (a deep copy of every request) is not the agent's


def _traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _held(manager: SessionManager | None) -> int:
    """How many message records the manager keeps for the agent (0 once it keeps none at all)."""
    slots = getattr(manager, "_slots", None)  # this package: the records still in agent.messages
    if slots is not None:
        return len(slots[AGENT_ID].records)
    held: dict[str, list[Any]] = getattr(manager, "_held_records", None) or {}  # Strands' managers
    return len(held.get(AGENT_ID, []))


def _manager(variant: str, uri: str, database: str, storage: str) -> SessionManager | None:
    session_id = f"b8-{variant}"
    if variant == "file":
        from strands.session.file_session_manager import FileSessionManager

        return FileSessionManager(session_id, storage_dir=storage)
    if variant == "ours":
        from mongodb_session_manager import MongoDBSessionManager

        return MongoDBSessionManager(session_id, connection_string=uri, database_name=database)
    return None
