"""Run blocking database calls off the event loop, and finish them even if the caller is cancelled."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# pymongo releases the GIL on socket I/O, so threads scale with concurrent turns, not cores.
MAX_IO_THREADS = int(os.environ.get("MSM_IO_THREADS", "64"))

_executor: ThreadPoolExecutor | None = None
_executor_pid = 0
_executor_lock = threading.Lock()


def io_executor() -> ThreadPoolExecutor:
    """The package's I/O threads (recreated in a forked child)."""
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():
        with _executor_lock:
            if _executor is None or _executor_pid != os.getpid():
                _executor = ThreadPoolExecutor(max_workers=MAX_IO_THREADS, thread_name_prefix="msm-io")
                _executor_pid = os.getpid()
    return _executor


async def run_io(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await ``fn(*args, **kwargs)`` on an I/O thread; a cancelled caller does not stop the write."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(io_executor(), functools.partial(fn, *args, **kwargs))
    future.add_done_callback(_log_orphaned_failure)
    return await asyncio.shield(future)


def _log_orphaned_failure(future: asyncio.Future[T]) -> None:
    # Consumes the exception so a write whose caller was cancelled still reports its failure.
    if not future.cancelled() and future.exception() is not None:
        logger.debug("background write finished with an error", exc_info=future.exception())
