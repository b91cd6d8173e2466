"""B5: event-loop lag while 50 requests each build a manager and an Agent, stream, and close.

The request shape of a web app: construction and close are inside the clock, as are the writes
``close()`` hands off (the ticker runs until ``flush()`` says they are stored). Four shapes: the
guide's API and the async API, each on first-time and on resumed sessions. A ticker asks to wake
every 5 ms and records how late each wake-up is; the same requests with no session manager give
the baseline, run in the same repeat, order rotated. Added lag = shape - baseline, per repeat.

When a tick is late, a sampler thread records the loop thread's stack (a diagnostic run per
shape after the measured ones), so a miss says where the loop was.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from mongodb_session_manager import MongoDBSessionManagerFactory

from ._common import Context, Result, api_request, bare_request, percentile, seed_sessions

TICK_S = 0.005
TARGET_MS = 5.0
TURNS_PER_REQUEST = 2
STORED_TURNS = 2  # what a resumed session already holds
SHAPES = {
    "guide-new": "guide API (create_session_manager + Agent + close), first-time sessions",
    "guide-resumed": "guide API, resumed sessions",
    "async-new": "async API (acreate_session_manager + aclose), first-time sessions",
    "async-resumed": "async API, resumed sessions",
}
LATE_MS = 10.0  # a tick this late gets the loop's stack sampled (diagnostic runs only)


def run(ctx: Context) -> Result:
    requests = ctx.size.lag_turns
    result = Result(
        "B5",
        f"Event-loop lag, {requests} concurrent requests (build manager + Agent, stream "
        f"{TURNS_PER_REQUEST} turns, close)",
        f"added max lag <= {TARGET_MS:g} ms for all four request shapes",
    )
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=ctx.database("b5"))
    kinds = [*SHAPES, "none"]
    lags: dict[str, dict[str, list[float]]] = {kind: {"max": [], "p99": []} for kind in kinds}
    ticks: list[int] = []
    gc_pauses: dict[str, list[float]] = {kind: [] for kind in kinds}
    for repeat in range(ctx.size.lag_repeats):
        order = kinds[repeat % len(kinds) :] + kinds[: repeat % len(kinds)]
        for kind in order:
            worst, p99, count, _, pauses = asyncio.run(_one_run(factory, kind, requests, f"{repeat}"))
            gc_pauses[kind].append(max(pauses, default=0.0))
            lags[kind]["max"].append(worst)
            lags[kind]["p99"].append(p99)
            ticks.append(count)
    verdicts: list[str] = []
    met = True
    base_max, base_p99 = lags["none"]["max"], lags["none"]["p99"]
    result.add("max lag, no session manager", base_max, "ms")
    result.add("p99 lag, no session manager", base_p99, "ms")
    result.add("  longest garbage-collector pause in the run, no session manager", gc_pauses["none"], "ms")
    for kind, label in SHAPES.items():
        added = [w - b for w, b in zip(lags[kind]["max"], base_max, strict=True)]
        row = result.add(f"added max lag: {label}", added, "ms")
        result.add(f"  max lag, {kind}", lags[kind]["max"], "ms")
        result.add(
            f"  added p99 lag, {kind}",
            [w - b for w, b in zip(lags[kind]["p99"], base_p99, strict=True)],
            "ms",
        )
        result.add(f"  longest garbage-collector pause in the run, {kind}", gc_pauses[kind], "ms")
        met = met and row.median <= TARGET_MS
        verdicts.append(f"{kind} {row.median:+.1f} ms (range {min(added):+.1f} to {max(added):+.1f})")
    result.notes.append(
        f"ticker every {TICK_S * 1000:g} ms; lag = how late each wake-up came; each run: {requests} "
        f"requests at once, {TURNS_PER_REQUEST} streamed turns each; resumed sessions hold "
        f"{STORED_TURNS} turns; {min(ticks)}-{max(ticks)} ticks per run; one warm-up request per run "
        "before the clock; the five kinds of run rotate their order every repeat; each run starts "
        "after gc.collect() (a collection the seeding or an earlier run made due is not its own) "
        "and its collector pauses are those inside the clock"
    )
    frozen: dict[str, list[float]] = {kind: [] for kind in kinds}
    for repeat in range(max(2, ctx.size.lag_repeats // 2)):
        order = kinds[repeat % len(kinds) :] + kinds[: repeat % len(kinds)]
        for kind in order:
            worst, _, _, _, _ = asyncio.run(
                _one_run(factory, kind, requests, f"frozen-{repeat}", freeze=True)
            )
            frozen[kind].append(worst)
    result.add("after gc.freeze(): max lag, no session manager", frozen["none"], "ms")
    for kind in SHAPES:
        result.add(
            f"after gc.freeze(): added max lag, {kind}",
            [w - b for w, b in zip(frozen[kind], frozen["none"], strict=True)],
            "ms",
        )
    result.notes.append(
        "after gc.freeze(): the same runs with the objects alive before the clock (imports, the "
        "client, the factory) moved out of the collector's reach, as a web app can do once after "
        "startup; a full collection then no longer walks them"
    )
    for kind in SHAPES:
        _, _, _, stacks, _ = asyncio.run(_one_run(factory, kind, requests, "diag", sample=True))
        if stacks:
            top = "; ".join(f"{where} x{n}" for where, n in stacks.most_common(4))
            result.notes.append(f"loop stack when a tick was > {LATE_MS:g} ms late, {kind}: {top}")
        else:
            result.notes.append(f"no tick > {LATE_MS:g} ms late in the sampled run, {kind}")
    result.judge(met, "added max lag (median of repeats): " + ", ".join(verdicts))
    return result


async def _one_run(
    factory: MongoDBSessionManagerFactory,
    kind: str,
    requests: int,
    tag: str,
    *,
    sample: bool = False,
    freeze: bool = False,
) -> tuple[float, float, int, Counter[str], list[float]]:
    """Max and p99 lag (ms), tick count, sampled stacks and collector pauses (ms) while
    ``requests`` requests run at once."""
    api, _, age = kind.partition("-")
    session_ids = [f"b5-{kind}-{tag}-{n}" for n in range(requests + 1)]
    prompts = [f"question {n}" for n in range(TURNS_PER_REQUEST)]
    if kind != "none" and age == "resumed":
        await seed_sessions(factory, session_ids, STORED_TURNS)
    # Warm-up request (first of its kind on this loop: I/O threads, index registry, imports).
    if kind == "none":
        await bare_request(prompts)
    else:
        await (await api_request(api, factory, session_ids.pop(), prompts)).flush()  # type: ignore[attr-defined]
    # What the seeding and earlier runs left for the collector is not this run's: a full
    # collection they made due would otherwise land in whichever run comes next.
    gc.collect()
    if freeze:
        gc.freeze()
    lags: list[float] = []
    stop = asyncio.Event()
    last_tick = [time.perf_counter()]
    stacks: Counter[str] = Counter()
    sampler = None
    if sample:
        sampler = _Sampler(threading.get_ident(), last_tick, stacks)
        sampler.start()
    with _gc_pauses() as pauses:
        ticker = asyncio.create_task(_tick(stop, lags, last_tick))
        await asyncio.sleep(TICK_S * 2)
        if kind == "none":
            await asyncio.gather(*(bare_request(prompts) for _ in range(requests)))
        else:
            managers = await asyncio.gather(
                *(api_request(api, factory, session_id, prompts) for session_id in session_ids)
            )
            await asyncio.gather(*(manager.flush() for manager in managers))  # type: ignore[attr-defined]
        stop.set()
        await ticker
    if freeze:
        gc.unfreeze()
    if sampler is not None:
        sampler.stop()
    return max(lags), percentile(lags, 0.99), len(lags), stacks, pauses


async def _tick(stop: asyncio.Event, lags: list[float], last_tick: list[float]) -> None:
    while not stop.is_set():
        due = time.perf_counter() + TICK_S
        last_tick[0] = due
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, (time.perf_counter() - due) * 1000))


class _Sampler(threading.Thread):
    """Samples the loop thread's stack while the ticker is overdue (diagnostic runs only)."""

    def __init__(self, loop_thread: int, last_tick: list[float], stacks: Counter[str]) -> None:
        super().__init__(daemon=True, name="b5-sampler")
        self._loop_thread = loop_thread
        self._last_tick = last_tick
        self._stacks = stacks
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(0.002):
            if (time.perf_counter() - self._last_tick[0]) * 1000 < LATE_MS:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None:
                self._stacks[_where(frame)] += 1

    def stop(self) -> None:
        self._stopped.set()
        self.join()


@contextmanager
def _gc_pauses() -> Iterator[list[float]]:
    """Durations (ms) of the garbage collections that run inside the block (they stall the loop)."""
    pauses: list[float] = []
    started = [0.0]

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(observe)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(observe)


def _where(frame: FrameType | None) -> str:
    """The innermost frames of the package (or, failing that, of strands / pymongo), joined."""
    names: list[str] = []
    current = frame
    while current is not None:
        code = current.f_code
        path = Path(code.co_filename)
        if "mongodb_session_manager" in path.parts or "strands" in path.parts or "pymongo" in path.parts:
            names.append(f"{path.stem}.{code.co_name}")
        current = current.f_back
    return " < ".join(_first(names, 3)) or "outside the package, strands and pymongo"


def _first(names: Sequence[str], count: int) -> list[str]:
    return list(names[:count])
