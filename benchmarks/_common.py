"""What every measure shares: sizes, sample statistics, results, round-trip counting, agents."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pymongo
from pymongo import monitoring
from strands import Agent, tool
from strands.agent.conversation_manager import SlidingWindowConversationManager
from strands.session import SessionManager
from strands.types.session import Session, SessionType

from mongodb_session_manager import MongoDBSessionManagerFactory, schema
from mongodb_session_manager.testing import ScriptedModel, ScriptedResponse, ScriptedToolCall

Document = dict[str, Any]
Verdict = Literal["MET", "MISSED", "INFO", "NOT MEASURED"]

# A reply of ~60 words: enough streamed chunks to look like a real answer.
REPLY = " ".join(f"word{i}" for i in range(60))


@dataclass(frozen=True)
class Size:
    """How much work each measure does; ``default`` is the documented full run."""

    name: str
    repeats: int  # repeated runs behind every min/median/max
    turns: int  # sequential turns per run (B1, B3)
    resume_sessions: int  # sessions resumed per run (B2)
    resume_messages: tuple[int, ...]  # stored conversation lengths (B4)
    lag_turns: int  # concurrent streamed turns (B5)
    sessions: int  # concurrent sessions (B6)
    turns_per_session: int  # sequential turns in each of them (B6)
    metric_turns: int  # stored turn records (B7)
    memory_turns: int  # measured turns of one long-lived agent (B8)
    memory_warmup: int  # its warm-up turns, before the first heap reading (B8)
    lag_repeats: int  # repeated runs of each request shape (B5: the max lag is noisy)
    throughput_repeats: int  # measured runs of each variant and shape (B6), after one warm-up


SIZES = {
    "tiny": Size("tiny", 2, 3, 2, (100, 300, 1_000), 10, 10, 1, 1_000, 30, 10, 2, 2),
    "default": Size("default", 5, 30, 20, (100, 1_000, 10_000), 50, 100, 3, 100_000, 1_500, 50, 9, 5),
}


@dataclass
class Row:
    """One measured quantity: its samples (one per repeated run) and unit."""

    label: str
    samples: list[float]
    unit: str

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def cells(self) -> tuple[str, str, str]:
        return fmt(min(self.samples)), fmt(self.median), fmt(max(self.samples))


@dataclass
class Result:
    """What one measure reports: its rows, the target and the verdict on it."""

    key: str
    title: str
    target: str
    verdict: Verdict = "INFO"
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, samples: Sequence[float], unit: str) -> Row:
        row = Row(label, [float(s) for s in samples], unit)
        self.rows.append(row)
        return row

    def judge(self, met: bool, why: str) -> None:
        self.verdict = "MET" if met else "MISSED"
        self.notes.insert(0, f"{self.verdict}: {why}")


def fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-run ratios (runs paired by position)."""
    return [n / d if d else float("inf") for n, d in zip(numerators, denominators, strict=True)]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cpu_ms() -> float:
    """CPU time of this process so far, every thread (the server is another process), in ms."""
    return time.process_time() * 1000


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``VmHWM``).

    Not ``ru_maxrss``: Linux keeps that across ``exec``, so a spawned child reports its parent's
    peak until it outgrows it (every variant read the same 99.7 MiB that way).
    """
    for line in _read_status():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib() -> float:
    for line in _read_status():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _read_status() -> list[str]:
    try:
        return Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return []


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as elapsed:`` then ``elapsed[0]`` is the block's time in ms."""
    elapsed: list[float] = []
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append((time.perf_counter() - start) * 1000)


# --- round trips --------------------------------------------------------------------------------


class CommandCounter(monitoring.CommandListener):
    """Counts the commands a client sends (each one is one round trip to the server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        """Yields the list of command names sent inside the block (filled when it ends)."""
        seen: list[str] = []
        start = len(self.names)
        try:
            yield seen
        finally:
            with self._lock:
                seen.extend(self.names[start:])


def counted_client(uri: str) -> tuple[pymongo.MongoClient[Document], CommandCounter]:
    counter = CommandCounter()
    client: pymongo.MongoClient[Document] = pymongo.MongoClient(uri, event_listeners=[counter])
    return client, counter


# --- agents -------------------------------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def plain_model() -> ScriptedModel:
    return ScriptedModel([REPLY], loop=True, chunk_delay=0)


def tool_model() -> ScriptedModel:
    """Every turn: one tool call, then the final text (two model calls, four messages)."""
    return ScriptedModel(
        [ScriptedResponse(tool_calls=[ScriptedToolCall("add", {"a": 2, "b": 3})]), REPLY],
        loop=True,
        chunk_delay=0,
    )


def make_agent(
    session_manager: SessionManager | None,
    *,
    agent_id: str = "assistant",
    model: ScriptedModel | None = None,
    tools: bool = False,
) -> Agent:
    return Agent(
        model=model or plain_model(),
        agent_id=agent_id,
        session_manager=session_manager,
        conversation_manager=SlidingWindowConversationManager(window_size=40),
        tools=[add] if tools else None,
        callback_handler=None,
    )


async def stream_turn(agent: Agent, prompt: str) -> None:
    """One streamed turn, consumed event by event as a web handler would."""
    async for _event in agent.stream_async(prompt):
        pass


# --- the request shapes a web app has ------------------------------------------------------------

API_SHAPES = ("guide", "async")


async def guide_request(
    factory: MongoDBSessionManagerFactory, session_id: str, prompts: Sequence[str]
) -> SessionManager:
    """The guide's API in a handler: ``create_session_manager`` + ``Agent`` + turns + ``close()``.

    ``close()`` on the loop hands the last writes to the I/O threads without waiting; the manager
    is returned so a measure can ``await manager.flush()`` before it stops its clock.
    """
    manager = factory.create_session_manager(session_id)
    agent = make_agent(manager)
    for prompt in prompts:
        await stream_turn(agent, prompt)
    manager.close()
    return manager


async def async_request(
    factory: MongoDBSessionManagerFactory, session_id: str, prompts: Sequence[str]
) -> SessionManager:
    """The async API: ``await acreate_session_manager(sid, agent_id=...)`` + turns + ``await aclose()``."""
    manager = await factory.acreate_session_manager(session_id, agent_id="assistant")
    agent = make_agent(manager)
    for prompt in prompts:
        await stream_turn(agent, prompt)
    await manager.aclose()
    return manager


async def bare_request(prompts: Sequence[str]) -> None:
    """The same request with no session manager (the baseline)."""
    agent = make_agent(None)
    for prompt in prompts:
        await stream_turn(agent, prompt)


async def api_request(
    api: str, factory: MongoDBSessionManagerFactory, session_id: str, prompts: Sequence[str]
) -> SessionManager:
    if api == "guide":
        return await guide_request(factory, session_id, prompts)
    return await async_request(factory, session_id, prompts)


async def seed_sessions(
    factory: MongoDBSessionManagerFactory, session_ids: Sequence[str], turns: int
) -> None:
    """Sessions that already hold ``turns`` turns of agent ``assistant`` (what a resume reads)."""
    prompts = [f"earlier question {n}" for n in range(turns)]
    await asyncio.gather(*(async_request(factory, session_id, prompts) for session_id in session_ids))


# --- the run's shared state ---------------------------------------------------------------------


@dataclass
class Context:
    """One server, one counted client, one size: what every measure is given."""

    uri: str
    size: Size
    client: pymongo.MongoClient[Document]
    counter: CommandCounter
    run_id: str
    databases: list[str] = field(default_factory=list)

    def database(self, key: str) -> str:
        """A database private to one measure of this run (dropped by :meth:`drop_databases`)."""
        name = f"msm_bench_{self.run_id}_{key}"
        self.databases.append(name)
        return name

    def drop_databases(self) -> None:
        for name in self.databases:
            self.client.drop_database(name)
        self.databases.clear()


# --- the raw floor's writes (B3, B6): what the manager sends for a plain turn, as pymongo models ---


def floor_leased(prompt: Document) -> Document:
    """The turn's prompt document carrying the turn lease (taking it costs no op of its own)."""
    return {**prompt, "lease": schema.lease_field(uuid.uuid4().hex, schema.utcnow() + timedelta(seconds=60))}


def floor_reply_writes(
    session_id: str,
    agent_id: str,
    reply: Document,
    session_update: Document,
    *,
    messages: str,
    sessions: str,
    rollups: str | None,
    state: Document | None = None,
) -> list[Any]:
    """The turn's last write: the reply, the session update, the rollup.

    The session update is an upsert carrying what recreates a vanished session document, as the
    manager's is (``state``: the agent's). ``rollups=None``: the floor as issue 10 was filed (no
    lease, no rollup, a plain update).
    """
    if rollups is None:
        return [
            pymongo.InsertOne(reply, namespace=messages),
            pymongo.UpdateOne({"_id": session_id}, session_update, namespace=sessions),
        ]
    rollup = schema.rollup_update(agent_id, reply["event_loop_metrics"])
    assert rollup is not None
    assert state is not None
    session = schema.session_document(Session(session_id=session_id, session_type=SessionType.AGENT))
    update = schema.with_recreation(session_update, agent_id, session, schema.agent_entry(state))
    return [
        pymongo.InsertOne(reply, namespace=messages),
        pymongo.UpdateOne({"_id": session_id}, update, upsert=True, namespace=sessions),
        pymongo.UpdateOne(*rollup, upsert=True, namespace=rollups),
    ]
