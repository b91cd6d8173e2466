"""The agent's lane: its calls run off the loop, in order, and finish even when their caller is cancelled."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mongodb_session_manager._io import Lane


async def test_calls_run_off_the_loop_in_the_order_they_were_queued() -> None:
    lane, seen = Lane(), []
    loop_thread = threading.get_ident()

    def record(value: int) -> int:
        time.sleep(0.001 * (3 - value % 3))  # a later call would overtake an earlier one on its own thread
        seen.append((value, threading.get_ident() != loop_thread))
        return value * 10

    queued = lane.submit(record, 0)
    results = await asyncio.gather(*(lane.run(record, value) for value in range(1, 6)))

    assert queued.result() == 0
    assert results == [10, 20, 30, 40, 50]
    assert seen == [(value, True) for value in range(6)]


async def test_an_error_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await Lane().run(fail)


async def test_a_cancelled_caller_does_not_stop_the_call_nor_the_next_one() -> None:
    lane, started, release, done = Lane(), threading.Event(), threading.Event(), []

    def slow_write() -> None:
        started.set()
        release.wait(5)
        done.append("first")

    caller = asyncio.ensure_future(lane.run(slow_write))
    await asyncio.to_thread(started.wait, 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    following = asyncio.ensure_future(lane.run(done.append, "second"))
    release.set()
    await following

    assert done == ["first", "second"]


async def test_a_failure_nobody_waits_for_any_more_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane, started, release = Lane(), threading.Event(), threading.Event()

    def failing_write() -> None:
        started.set()
        release.wait(5)
        raise RuntimeError("lost connection")

    caller = asyncio.ensure_future(lane.run(failing_write))
    await asyncio.to_thread(started.wait, 5)
    caller.cancel()
    with caplog.at_level(logging.DEBUG, logger="mongodb_session_manager._io"):
        release.set()
        await lane.run(lambda: None)  # the failed call settled before this one ran
        await asyncio.sleep(0)  # and its outcome reached the loop

    assert any("lost connection" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_a_call_outlives_the_loop_that_awaited_it() -> None:
    lane, started, release, done = Lane(), threading.Event(), threading.Event(), threading.Event()

    def slow_write() -> None:
        started.set()
        release.wait(5)
        done.set()

    async def request() -> None:
        caller = asyncio.ensure_future(lane.run(slow_write))
        await asyncio.to_thread(started.wait, 5)
        caller.cancel()

    asyncio.run(request())  # the loop is closed before the write ends
    release.set()

    assert done.wait(5)
    assert lane.idle().result(5) is None


def test_a_call_handed_off_before_the_interpreter_exits_still_runs(tmp_path: Path) -> None:
    landed = tmp_path / "landed"
    script = f"""
import time
from mongodb_session_manager._io import Lane

def slow_write():
    time.sleep(0.2)
    open({str(landed)!r}, "w").write("stored")

Lane().submit(slow_write)  # nobody waits for it: the script ends here
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)

    assert landed.read_text() == "stored"
