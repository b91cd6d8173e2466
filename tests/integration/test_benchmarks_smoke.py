"""The benchmark harness runs end to end at tiny size, so it cannot rot.

Asserts that every measure produced numbers and a verdict, never specific timings (those
depend on the machine; ``python -m benchmarks.run`` is where they are read).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    MongoDBSessionManager,
    MongoDBSessionRepository,
)

sys.path.insert(0, str(Path(__file__).parents[2]))  # the repository root holds `benchmarks`

from benchmarks import run
from benchmarks._common import Result, make_agent, peak_rss_mib
from benchmarks._report import markdown
from benchmarks.b3_persistence import OnLoopManager


def test_every_measure_runs_at_tiny_size(mongodb_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSM_BENCH_INSTALL", "0")  # never reach for PyPI from the test suite
    environment, results = run.run_all(mongodb_uri, "tiny")

    assert [result.key for result in results] == list(run.MEASURES)
    assert environment["server"]
    assert environment["pymongo"]
    for result in results:
        assert result.verdict in ("MET", "MISSED", "INFO"), (result.key, result.notes)
        assert result.rows, result.key
        for row in result.rows:
            assert row.samples, (result.key, row)
            assert all(math.isfinite(value) for value in row.samples), (result.key, row)
        if result.verdict != "INFO":
            assert result.notes[0].startswith(result.verdict), result.notes
    report = markdown(results, environment)
    assert "| quantity | min | median | max |" in report

    by_key = {result.key: result for result in results}
    labels = {key: [row.label for row in result.rows] for key, result in by_key.items()}
    for api in ("guide", "async"):  # B1: every request step of both APIs is counted
        for step in ("first-time session", "resume construction", "plain turn", "close after a turn"):
            assert f"{api} API: {step}" in labels["B1"]
    for shape in ("first-time sessions", "resumed sessions"):  # B5: the four request shapes
        assert sum(label.startswith("added max lag") and shape in label for label in labels["B5"]) == 2
    assert any("raw AsyncMongoClient floor" in label for label in labels["B6"])  # B6: the floor ran
    assert any(label.strip().startswith("a request per turn: ratio ours / raw") for label in labels["B6"])
    assert any("async repository awaited on the loop" in label for label in labels["B3"])


def test_a_miss_says_missed() -> None:
    result = Result("BX", "example", "<= 1")
    result.add("value", [2.0, 3.0], "x")
    result.judge(False, "3x")
    assert "MISSED" in markdown([result])


def test_peak_rss_is_the_child_process_own() -> None:
    """A spawned child reports its own peak, not the parent's (``ru_maxrss`` survives ``exec``)."""
    ballast = bytearray(300 * 1024 * 1024)  # the parent's peak grows by 300 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child_peak = pool.apply(peak_rss_mib)
    assert peak_rss_mib() - child_peak > 250
    del ballast


async def test_b3s_writes_awaited_on_the_loop_store_what_the_manager_stores(
    mongodb_uri: str, mongo_client: MongoClient[dict[str, Any]], database_name: str
) -> None:
    """B3's experiment is only a comparison if its agent stores the very conversation the manager does."""
    async_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
    repository = MongoDBSessionRepository(database_name=database_name, client=mongo_client)
    on_loop = AsyncMongoDBSessionRepository(database_name=database_name, client=async_client)
    for manager in (
        MongoDBSessionManager("via-lane", repository=repository),
        OnLoopManager("via-loop", repository=repository, on_loop=on_loop),
    ):
        agent = make_agent(manager)
        for turn in range(3):
            await agent.invoke_async(f"question {turn}")
        await manager.aclose()
    await async_client.close()

    def stored(session_id: str) -> tuple[list[Any], dict[str, Any]]:
        messages = repository.messages_collection.find({"session_id": session_id}, sort=[("message_id", 1)])
        conversation = [(m["message_id"], m["role"], m["message"]["content"]) for m in messages]
        session = repository.collection.find_one({"_id": session_id}) or {}
        return conversation, session["totals"]

    assert stored("via-loop") == stored("via-lane")
    assert len(stored("via-loop")[0]) == 6  # 3 prompts, 3 replies
