"""Run blocking database calls off the event loop, and finish them even if the caller is cancelled."""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ._fork import in_forked_child

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# pymongo releases the GIL on socket I/O, so threads scale with concurrent turns, not cores.
MAX_IO_THREADS = int(os.environ.get("MSM_IO_THREADS", "64"))
PRESTARTED_IO_THREADS = min(16, MAX_IO_THREADS)


class _Threads:
    """The package's I/O threads: each takes the next call from one queue; one more starts while all are busy.

    Not a ``ThreadPoolExecutor``: a turn hands two writes to these threads and waits for each, and
    the executor's future, work item and idle semaphore (Python locks and conditions, on both
    sides of every hand-off) made a hand-off inside a turn cost about 130 µs of wall time against
    about 90 µs here. No lock on the way either: idle threads are counted by tokens in a deque,
    whose append and pop are atomic. Calls carry their own outcome (see :class:`Lane`).
    """

    def __init__(self, limit: int) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle: collections.deque[None] = collections.deque()  # a token per idle thread
        self._lock = threading.Lock()  # starting and stopping threads
        self._limit = limit
        self._started: list[threading.Thread] = []
        self._closed = False
        # Starting a thread waits for it to boot; under load that is milliseconds. Start the first
        # threads from a helper thread, so a loop thread that submits finds idle ones.
        prestart = min(PRESTARTED_IO_THREADS, limit)
        threading.Thread(target=self._prestart, args=(prestart,), daemon=True).start()

    def submit(self, call: Callable[[], None]) -> None:
        """Run ``call`` on an I/O thread (on this one once the interpreter is exiting)."""
        if self._closed:
            call()
            return
        self._calls.put(call)
        try:
            self._idle.pop()  # an idle thread takes it
        except IndexError:
            self._start()  # all busy: one more, up to the limit (else the first done takes it)

    def _prestart(self, count: int) -> None:
        for _ in range(count):
            self._idle.append(None)
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._closed or len(self._started) >= self._limit:
                return
            thread = threading.Thread(target=self._work, name=f"msm-io-{len(self._started)}", daemon=True)
            thread.start()  # under the lock: finish() joins only started threads
            self._started.append(thread)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call()
            except BaseException:  # pragma: no cover - calls settle their own outcome
                logger.exception("an I/O call failed outside its caller's reach")
            del call
            self._idle.append(None)

    def finish(self) -> None:
        """Let every queued call run, then stop the threads (at interpreter exit, as an executor does)."""
        with self._lock:
            self._closed = True
            threads = list(self._started)
        for _ in threads:
            self._calls.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
        while True:  # a call queued as the threads stopped runs here
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                call()


_io_threads: _Threads | None = None
_io_threads_lock = threading.Lock()


def io_threads() -> _Threads:
    """The package's I/O threads (a forked child makes its own on first use)."""
    global _io_threads
    if _io_threads is None:
        with _io_threads_lock:
            if _io_threads is None:
                _io_threads = _Threads(MAX_IO_THREADS)
    return _io_threads


def _finish_at_exit() -> None:
    if _io_threads is not None:
        _io_threads.finish()


# Writes handed off before the interpreter exits still land: like concurrent.futures, before
# atexit handlers run (the default pool's client closes in one).
getattr(threading, "_register_atexit", atexit.register)(_finish_at_exit)


@in_forked_child
def _after_fork_in_child() -> None:
    # The parent's I/O threads do not exist in a child, and the lock may have been held by one
    # of its threads at the fork: fresh threads on first use, under a new lock.
    global _io_threads, _io_threads_lock
    _io_threads, _io_threads_lock = None, threading.Lock()


async def run_io(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` on an I/O thread; a cancelled caller does not stop the write."""
    return await Lane().run(fn, *args, **kwargs)


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
        io_threads().submit(self._drain)

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
