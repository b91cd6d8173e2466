"""Run blocking database calls off the event loop, and finish them even if the caller is cancelled."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from ._fork import in_forked_child

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# pymongo releases the GIL on socket I/O, so threads scale with concurrent turns, not cores.
MAX_IO_THREADS = int(os.environ.get("MSM_IO_THREADS", "64"))

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def io_executor() -> ThreadPoolExecutor:
    """The package's I/O threads (a forked child makes its own on first use)."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=MAX_IO_THREADS, thread_name_prefix="msm-io")
                # Starting a thread waits for it to boot; under load that is milliseconds. Start
                # the first threads from a helper thread, so a loop thread that submits finds
                # idle ones instead of starting them itself.
                threading.Thread(target=_prestart, args=(_executor,), daemon=True).start()
    return _executor


@in_forked_child
def _after_fork_in_child() -> None:
    # The parent's I/O threads do not exist in a child, and the lock may have been held by one
    # of its threads at the fork: a fresh executor on first use, under a new lock.
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


PRESTARTED_IO_THREADS = min(16, MAX_IO_THREADS)


def _prestart(executor: ThreadPoolExecutor) -> None:
    barrier = threading.Barrier(PRESTARTED_IO_THREADS + 1)
    for _ in range(PRESTARTED_IO_THREADS):
        executor.submit(barrier.wait, 5)
    with contextlib.suppress(threading.BrokenBarrierError):  # the executor shut down meanwhile
        barrier.wait(5)


async def run_io(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` on an I/O thread; a cancelled caller does not stop the write."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(io_executor(), functools.partial(fn, *args, **kwargs))
    future.add_done_callback(_log_orphaned_failure)
    return await asyncio.shield(future)


def _log_orphaned_failure(future: asyncio.Future[T] | concurrent.futures.Future[T]) -> None:
    # Consumes the exception so a write whose caller was cancelled still reports its failure.
    if not future.cancelled() and future.exception() is not None:
        logger.debug("background write finished with an error", exc_info=future.exception())


class Lane:
    """Runs calls one after another on the I/O threads, in the order they were submitted.

    One lane per agent of a manager: a write started by a cancelled turn finishes before the
    next write of that agent starts, so ids never collide and order is kept. No thread waits
    for its turn: whichever I/O thread finds the lane idle drains it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[_Item] = collections.deque()
        self._running = False

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        """Queue ``fn``; the future completes when it ran (failures are logged if nobody looks)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.add_done_callback(_log_orphaned_failure)
        self._enqueue((functools.partial(fn, *args, **kwargs), future))
        return future

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` in this lane; a cancelled caller does not stop it.

        The I/O thread hands the outcome straight to the loop's future (no thread-safe future
        in between, no shield): half the CPU of ``wrap_future`` + ``shield`` per call, which a
        turn pays twice. Cancelling the caller cancels only its wait.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._enqueue((functools.partial(fn, *args, **kwargs), waiter))
        return await waiter

    def idle(self) -> concurrent.futures.Future[None]:
        """A future that completes once everything submitted so far has run."""
        return self.submit(_nothing)

    def _enqueue(self, item: _Item) -> None:
        with self._lock:
            self._queue.append(item)
            if self._running:
                return
            self._running = True
        io_executor().submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                call, future = self._queue.popleft()
            if isinstance(future, concurrent.futures.Future) and not future.set_running_or_notify_cancel():
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = call()
            except BaseException as exc:
                error = exc
            # Dropped before the caller wakes, which may be freeing what the call held; and no
            # cycle is left from the error's traceback through this frame to the future.
            del call
            if not isinstance(future, concurrent.futures.Future):
                # The outcome travels in a list the loop empties: once the caller runs, this
                # thread holds nothing of it (a caller that let go of the error frees it at once).
                outcome = [future, result, error]
                del future, result, error
                _settle_soon(outcome)
                del outcome
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            del future, result, error


# A call, and who waits for it: a thread-safe future, or a loop's own future.
_Item = tuple[Callable[[], Any], "concurrent.futures.Future[Any] | asyncio.Future[Any]"]


def _settle_soon(outcome: list[Any]) -> None:
    """Hand ``[waiter, result, error]`` to the waiter's loop (the loop empties the list)."""
    try:
        outcome[0].get_loop().call_soon_threadsafe(_settle, outcome)
    except RuntimeError:  # the loop closed while the call ran: nobody waits any more
        error = outcome[2]
        outcome.clear()
        if error is not None:
            logger.debug("background write finished with an error", exc_info=error)


def _settle(outcome: list[Any]) -> None:
    waiter, result, error = outcome
    outcome.clear()
    if waiter.cancelled():  # its caller was cancelled; the call ran all the same
        if error is not None:
            logger.debug("background write finished with an error", exc_info=error)
    elif error is None:
        waiter.set_result(result)
    else:
        waiter.set_exception(error)


def _nothing() -> None:
    return None


def on_loop_thread() -> bool:
    """True when this thread is running an event loop: no network wait may happen here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
