"""The benchmark harness runs end to end at tiny size, so it cannot rot.

Asserts that every measure produced numbers and a verdict, never specific timings (those
depend on the machine; ``python -m benchmarks.run`` is where they are read).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))  # the repository root holds `benchmarks`

from benchmarks import run
from benchmarks._common import peak_rss_mib
from benchmarks._report import markdown


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
    result = run.Result("BX", "example", "<= 1")
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
