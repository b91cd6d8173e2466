"""B6: turns per second with many concurrent sessions, against other session managers; peak RSS.

Each variant runs in its own spawned process, so its peak RSS is its own and the third-party
package (installed under ``benchmarks/.vendor``, never into the project) only enters that
process's ``sys.path``. Agents are built first; the clock covers the turns only.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strands import Agent
from strands.session import SessionManager

from ._common import Context, Result, make_agent, ratio, stream_turn

VENDOR = Path(__file__).parent / ".vendor"
PYPI_PACKAGES = ("strands-mongodb-session-manager", "strands-session-mongodb", "strands-agents-session")
VARIANTS = {
    "ours": "mongodb-session-manager (this package)",
    "file": "Strands FileSessionManager (temp dir)",
    "pypi": "PyPI strands-mongodb-session-manager",
    "none": "no session manager",
}


@dataclass
class VariantRun:
    turns_per_s: list[float] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    error: str | None = None


def run(ctx: Context) -> Result:
    size = ctx.size
    result = Result(
        "B6",
        f"Throughput, {size.sessions} concurrent sessions x {size.turns_per_session} turns",
        "report ratios (no target); peak RSS of the run",
    )
    database = ctx.database("b6")
    vendor_problem = _ensure_vendor()
    runs: dict[str, VariantRun] = {}
    for variant in VARIANTS:
        if variant == "pypi" and vendor_problem:
            runs[variant] = VariantRun(error=vendor_problem)
            continue
        runs[variant] = _in_child(
            variant, ctx.uri, database, size.sessions, size.turns_per_session, size.repeats
        )
    for variant, label in VARIANTS.items():
        if runs[variant].error is None:
            result.add(f"{label}", runs[variant].turns_per_s, "turns/s")
        else:
            result.notes.append(f"{label}: not measured: {runs[variant].error}")
    ours = runs["ours"].turns_per_s
    for other in ("file", "pypi", "none"):
        if runs[other].error is None and ours:
            result.add(f"ratio ours / {other}", ratio(ours, runs[other].turns_per_s), "x")
    for variant, label in VARIANTS.items():
        if runs[variant].error is None:
            result.add(f"peak RSS, {label}", [runs[variant].rss_peak_mb], "MiB")
            result.add(
                f"  growth during the runs, {label}",
                [runs[variant].rss_peak_mb - runs[variant].rss_start_mb],
                "MiB",
            )
    result.notes.append(
        "each variant in a fresh spawned process; agents built before the clock; "
        "streamed turns (stream_async); peak RSS = ru_maxrss of that process"
    )
    return result


def _in_child(variant: str, uri: str, database: str, sessions: int, turns: int, repeats: int) -> VariantRun:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(child_main, variant, uri, database, sessions, turns, repeats).result()
        except Exception as exc:
            return VariantRun(error=repr(exc))


def _ensure_vendor() -> str | None:
    """Install the third-party package into benchmarks/.vendor if absent; the reason it is not there."""
    if (VENDOR / "strands_mongodb_session_manager").is_dir():
        return None
    if os.environ.get("MSM_BENCH_INSTALL", "1") == "0":
        return "not installed in benchmarks/.vendor (MSM_BENCH_INSTALL=0)"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        str(VENDOR),
        *PYPI_PACKAGES,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if completed.returncode != 0:
        return f"pip install into benchmarks/.vendor failed: {completed.stderr.strip()[-300:]}"
    return None


# --- in the child process -----------------------------------------------------------------------


def child_main(variant: str, uri: str, database: str, sessions: int, turns: int, repeats: int) -> VariantRun:
    outcome = VariantRun(rss_start_mb=_rss_now_mb())
    outcome.turns_per_s = asyncio.run(_child_runs(variant, uri, database, sessions, turns, repeats))
    outcome.rss_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return outcome


async def _child_runs(
    variant: str, uri: str, database: str, sessions: int, turns: int, repeats: int
) -> list[float]:
    build = _builder(variant, uri, database)
    rates = []
    with tempfile.TemporaryDirectory(prefix="msm-bench-") as storage:
        for repeat in range(repeats + 1):  # run 0 warms up (imports, first writes, indexes)
            agents = [make_agent(await build(f"b6-{variant}-{repeat}-{n}", storage)) for n in range(sessions)]
            start = time.perf_counter()
            await asyncio.gather(*(_session(agent, turns) for agent in agents))
            elapsed = time.perf_counter() - start
            if repeat:
                rates.append(sessions * turns / elapsed)
    return rates


async def _session(agent: Agent, turns: int) -> None:
    for turn in range(turns):
        await stream_turn(agent, f"question {turn}")


def _builder(variant: str, uri: str, database: str) -> Any:
    """An async ``(session_id, storage_dir) -> SessionManager | None`` for the variant."""
    if variant == "ours":
        from mongodb_session_manager import MongoDBSessionManagerFactory

        factory = MongoDBSessionManagerFactory(uri, database_name=database)

        async def ours(session_id: str, storage: str) -> SessionManager:
            return await factory.acreate_session_manager(session_id, agent_id="assistant")

        return ours
    if variant == "file":
        from strands.session.file_session_manager import FileSessionManager

        async def file(session_id: str, storage: str) -> SessionManager:
            return FileSessionManager(session_id, storage_dir=storage)

        return file
    if variant == "pypi":
        import pymongo

        sys.path.insert(0, str(VENDOR))
        from strands_mongodb_session_manager import MongoDBSessionManager as PyPIManager

        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)

        async def pypi(session_id: str, storage: str) -> SessionManager:
            manager: SessionManager = PyPIManager(
                session_id, client=client, database_name=database, collection_name="pypi_sessions"
            )
            return manager

        return pypi

    async def none(session_id: str, storage: str) -> None:
        return None

    return none


def _rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
