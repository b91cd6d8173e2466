"""The benchmark harness runs end to end at tiny size, so it cannot rot.

Asserts that every measure produced numbers and a verdict, never specific timings (those
depend on the machine; ``python -m benchmarks.run`` is where they are read).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))  # the repository root holds `benchmarks`

from benchmarks import run
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


def test_a_miss_says_missed() -> None:
    result = run.Result("BX", "example", "<= 1")
    result.add("value", [2.0, 3.0], "x")
    result.judge(False, "3x")
    assert "MISSED" in markdown([result])
